"""RebuildPersonas: on schedule, re-cluster shoppers into personas (mode "rebuild") or refine the personas toward
recent shoppers (mode "refine"), and rebuild the persona adjustment vectors from the counters."""

import os

import boto3
from aws_lambda_powertools import Logger, Tracer

from tailor.personas.rebuild import run_job
from tailor.store.aws import DynamoStateStore, S3BlobStore, table_names_from_env

logger = Logger()
tracer = Tracer()

store = DynamoStateStore(boto3.client("dynamodb"), table_names_from_env())
blobs = S3BlobStore(boto3.client("s3"), os.environ["DATA_BUCKET"])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    mode = (event or {}).get("mode", "rebuild") if isinstance(event, dict) else "rebuild"
    summary = run_job(mode, store, blobs)
    # How k was chosen, and on how many shoppers: a model with fewer personas than expected says why.
    logger.info(summary.get("k_choice") or summary.get("reason") or f"personas {mode} done",
                extra={k: summary[k] for k in ("mode", "version", "k", "shoppers", "refined_with") if k in summary})
    return summary
