"""CompactArchive: on its schedule, merge each shard-day's old archive objects into a few parts, so that the jobs
reading weeks of the archive list and read a few objects a day rather than one per Ingest batch."""

import os
import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tailor.archive import compact_archive, days_of
from tailor.aws_clients import client
from tailor.settings import CompactArchiveSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = CompactArchiveSettings.read(os.environ)
# A connection for each of the compaction's concurrent reads, and one for its listings and writes.
bucket = S3BlobStore(client("s3", connect_timeout=5, read_timeout=60, max_attempts=5, max_pool_connections=9),
                     settings.data_bucket)
# Its lease and the shards' archive checkpoints.
store = DynamoStateStore(client("dynamodb", connect_timeout=5, read_timeout=10, max_attempts=5), settings.tables)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    days = days_of(event, settings.archive_compact_days)
    report = compact_archive(bucket, store, now=time.time(), older_than=settings.archive_compact_after_hours * 3600,
                             days=days, seconds_left=lambda: context.get_remaining_time_in_millis() / 1000.0)
    metrics.add_metric(name="ArchiveObjectsMerged", unit=MetricUnit.Count, value=report.objects_merged)
    metrics.add_metric(name="ArchivePartsWritten", unit=MetricUnit.Count, value=report.parts_written)
    if not report.leased:
        logger.warning("archive not compacted: another run holds the lease", extra=report.as_dict())
    else:
        logger.info("archive compacted", extra=report.as_dict())
    return report.as_dict()
