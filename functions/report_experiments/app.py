"""ReportExperiments: on its schedule, write every running experiment's report from its daily statistics rows."""

import os
from datetime import UTC, datetime

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.aws_clients import client
from tailor.experiments.storage import ExperimentStore
from tailor.settings import ReportExperimentsSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = ReportExperimentsSettings.read(os.environ)
_aws = {"connect_timeout": 5, "read_timeout": 30, "max_attempts": 5}
experiments = ExperimentStore(DynamoStateStore(client("dynamodb", **_aws), settings.tables),
                              S3BlobStore(client("s3", **_aws), settings.data_bucket),
                              revenue_days=settings.realized_revenue_days)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    done = experiments.write_reports(datetime.now(UTC))
    metrics.add_metric(name="ExperimentReportsWritten", unit=MetricUnit.Count, value=len(done["written"]))
    metrics.add_metric(name="ExperimentReportsFailed", unit=MetricUnit.Count, value=len(done["failed"]))
    logger.info("experiment reports written", extra=done)
    return done
