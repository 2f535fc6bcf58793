"""MergeCounters: on its schedule, add the counters Ingest buffered per shard and batch to the counter tables, once."""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.aws_clients import client
from tailor.ingest.merge import CounterMerge
from tailor.settings import MergeCountersSettings
from tailor.store.aws import DynamoStateStore

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = MergeCountersSettings.read(os.environ)
# A connection for each of the merge's concurrent row writers, and one for its plan.
_aws = {"connect_timeout": 5, "read_timeout": 30, "max_attempts": 5, "max_pool_connections": 17}
merge = CounterMerge(DynamoStateStore(client("dynamodb", **_aws), settings.tables), max_workers=16)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    report = merge.run(remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000.0)
    metrics.add_metric(name="CounterSlotsMerged", unit=MetricUnit.Count, value=report.slots)
    metrics.add_metric(name="CounterRowWrites", unit=MetricUnit.Count, value=sum(report.writes.values()))
    if report.missing:
        metrics.add_metric(name="CounterSlotsMissing", unit=MetricUnit.Count, value=report.missing)
    logger.info("counters merged", extra=report.as_dict())
    return report.as_dict()
