"""TrainLtv: on its schedule, retrain the LTV model on the event archive and publish it to the model registry."""

import os
import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.aws_clients import client
from tailor.settings import TrainLtvSettings
from tailor.store.aws import S3BlobStore
from tailor_lab.training.ltv import retrain_from_archive

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = TrainLtvSettings.read(os.environ)
# A scheduled job, not in a hurry: botocore's default read timeout, and as many tries as its legacy retries made.
bucket = S3BlobStore(client("s3", connect_timeout=5, read_timeout=60, max_attempts=5), settings.data_bucket)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    report = retrain_from_archive(bucket, time.time(), history_weeks=settings.ltv_history_weeks,
                                  horizon_weeks=settings.ltv_horizon_weeks)
    metrics.add_metric(name="LtvTrainingRows", unit=MetricUnit.Count, value=report["training_rows"])
    if report["status"] == "skipped":
        logger.warning("ltv model not retrained", extra=report)
    else:
        logger.info("ltv model trained", extra=report)
    return report
