"""RebuildPersonas: on schedule, re-cluster shoppers into personas (mode "rebuild") or refine the personas toward
recent shoppers (mode "refine"), and rebuild the persona adjustment vectors from the counters."""

import os

from aws_lambda_powertools import Logger, Tracer

from tailor.aws_clients import client
from tailor.personas.rebuild import run_job
from tailor.settings import RebuildPersonasSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

logger = Logger()
tracer = Tracer()

settings = RebuildPersonasSettings.read(os.environ)
# A scheduled job, not in a hurry: botocore's default read timeout, and as many tries as its legacy retries made.
_aws = {"connect_timeout": 5, "read_timeout": 60, "max_attempts": 5}
store = DynamoStateStore(client("dynamodb", **_aws), settings.tables)
blobs = S3BlobStore(client("s3", **_aws), settings.data_bucket)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    mode = (event or {}).get("mode", "rebuild") if isinstance(event, dict) else "rebuild"
    summary = run_job(mode, store, blobs, time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    # How k was chosen, and on how many shoppers: a model with fewer personas than expected says why.
    logger.info(summary.get("k_choice") or summary.get("reason") or f"personas {mode} done",
                extra={k: summary[k] for k in ("mode", "version", "k", "shoppers", "refined_with") if k in summary})
    return summary
