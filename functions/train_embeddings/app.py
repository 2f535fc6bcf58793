"""TrainEmbeddings: on its schedule, learn the item vectors from the event archive (what shoppers engaged with
together and what they passed over) and the items' catalog fields, and publish them to the model registry, where the
API and Ingest load them."""

import os
import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.aws_clients import client
from tailor.catalog import catalog_attributes
from tailor.settings import TrainEmbeddingsSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore
from tailor_lab.training.embeddings import EmbeddingParams, retrain_from_archive

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = TrainEmbeddingsSettings.read(os.environ)
# A scheduled job, not in a hurry: botocore's default read timeout, and as many tries as its legacy retries made.
bucket = S3BlobStore(client("s3", connect_timeout=5, read_timeout=60, max_attempts=5), settings.data_bucket)
state = DynamoStateStore(client("dynamodb", connect_timeout=5, read_timeout=60, max_attempts=5), settings.tables)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    report = retrain_from_archive(bucket, time.time(), history_days=settings.embedding_history_days,
                                  params=EmbeddingParams(dim=settings.embedding_dim), catalog=catalog_attributes(state))
    metrics.add_metric(name="ItemVectors", unit=MetricUnit.Count, value=report["items"])
    if report["status"] == "skipped":
        logger.warning("item vectors not trained", extra=report)
    else:
        logger.info("item vectors trained", extra=report)
    return report
