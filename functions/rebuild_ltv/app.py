"""RebuildLtv: on its schedule, score every shopper's lifetime value with the current LTV model, resuming a paused run."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.ltv.rebuild import LtvRebuild

logger = Logger()
tracer = Tracer()
metrics = Metrics()
rebuild = LtvRebuild.from_environment()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    report = rebuild.run(remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000.0)
    metrics.add_metric(name="ShoppersScored", unit=MetricUnit.Count, value=report["scored"])
    logger.info("ltv rebuild", extra=report)
    return report
