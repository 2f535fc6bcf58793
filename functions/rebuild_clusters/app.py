"""RebuildClusters: on its schedule, group the items into clusters from the event archive, the items' catalog fields
and the item vectors, place the items the shop lists that no shopper met, keep the ids of clusters whose membership
barely changed, and publish them to the model registry."""

import os
import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.aws_clients import client
from tailor.catalog import read_catalog
from tailor.settings import RebuildClustersSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore
from tailor_lab.training.clusters import ClusterParams, rebuild_from_archive

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = RebuildClustersSettings.read(os.environ)
# A scheduled job, not in a hurry: botocore's default read timeout, and as many tries as its legacy retries made.
bucket = S3BlobStore(client("s3", connect_timeout=5, read_timeout=60, max_attempts=5), settings.data_bucket)
state = DynamoStateStore(client("dynamodb", connect_timeout=5, read_timeout=60, max_attempts=5), settings.tables)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    report = rebuild_from_archive(bucket, time.time(), history_days=settings.cluster_history_days,
                                  params=ClusterParams(clusters=settings.cluster_count),
                                  catalog=read_catalog(state))
    metrics.add_metric(name="ItemClusters", unit=MetricUnit.Count, value=report["clusters"])
    if report["status"] == "skipped":
        logger.warning("item clusters not rebuilt", extra=report)
    else:
        logger.info("item clusters rebuilt", extra=report)
    return report
