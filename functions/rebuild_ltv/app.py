"""RebuildLtv: on its schedule, score every shopper's lifetime value with the current LTV model, resuming a paused run."""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.aws_clients import client
from tailor.ltv.rebuild import LtvRebuild
from tailor.models import ModelRegistry
from tailor.settings import RebuildLtvSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = RebuildLtvSettings.read(os.environ)
# A connection for each of the page's concurrent writers, and a few for the checkpoint and the registry.
_aws = {"connect_timeout": 5, "read_timeout": 30, "max_attempts": 5, "max_pool_connections": settings.ltv_writers + 4}
rebuild = LtvRebuild(DynamoStateStore(client("dynamodb", **_aws), settings.tables),
                     ModelRegistry(S3BlobStore(client("s3", **_aws), settings.data_bucket)),
                     page_size=settings.ltv_page_size, every_seconds=settings.ltv_rebuild_every_hours * 3600.0,
                     writers=settings.ltv_writers)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    report = rebuild.run(remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000.0)
    metrics.add_metric(name="ShoppersScored", unit=MetricUnit.Count, value=report["scored"])
    logger.info("ltv rebuild", extra=report)
    return report
