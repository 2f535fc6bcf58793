"""Ingest: shopper events from Kinesis into Tailor's state, exactly once, one write per touched key."""

import gc
import os

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from botocore.config import Config

from tailor.ingest.intent import SessionIntent
from tailor.ingest.kinesis import AggregatingKinesisProcessor, publish_metrics, stream_record
from tailor.ingest.service import Ingestor
from tailor.models import ModelRegistry
from tailor.personas.online import PersonaTracker
from tailor.personas.storage import ModelSource
from tailor.store.aws import DynamoStateStore, S3BlobStore, table_names_from_env

logger = Logger()
tracer = Tracer()
metrics = Metrics()

_aws = Config(retries={"mode": "standard", "max_attempts": 4}, max_pool_connections=32)
_bucket = S3BlobStore(boto3.client("s3", config=_aws), os.environ["DATA_BUCKET"])
processor = AggregatingKinesisProcessor(
    Ingestor(
        DynamoStateStore(boto3.client("dynamodb", config=_aws), table_names_from_env()),
        _bucket,
        session_ttl_days=float(os.environ.get("SESSION_TTL_DAYS", "7")),
        intent=SessionIntent.load(ModelRegistry(_bucket)),
        personas=PersonaTracker(ModelSource(_bucket)),
    ),
    logger=logger,
)
# What init built (libraries, clients, the intent model) lives as long as the container: frozen, the collector's
# full passes skip it, instead of walking a few hundred thousand objects in the middle of a batch.
gc.freeze()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    response = process_partial_response(event=event, record_handler=stream_record, processor=processor, context=context)
    publish_metrics(metrics, processor.outcome)
    return response
