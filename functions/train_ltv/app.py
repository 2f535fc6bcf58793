"""TrainLtv: on its schedule, retrain the LTV model on the event archive and publish it to the model registry."""

import os
import time

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.store.aws import S3BlobStore
from tailor_lab.training.ltv import retrain_from_archive

logger = Logger()
tracer = Tracer()
metrics = Metrics()
bucket = S3BlobStore(boto3.client("s3"), os.environ["DATA_BUCKET"])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    report = retrain_from_archive(bucket, time.time(), history_weeks=float(os.environ.get("LTV_HISTORY_WEEKS", "104")),
                                  horizon_weeks=float(os.environ.get("LTV_HORIZON_WEEKS", "39")))
    metrics.add_metric(name="LtvTrainingRows", unit=MetricUnit.Count, value=report["training_rows"])
    if report["status"] == "skipped":
        logger.warning("ltv model not retrained", extra=report)
    else:
        logger.info("ltv model trained", extra=report)
    return report
