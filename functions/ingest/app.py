"""Ingest: shopper events from Kinesis into Tailor's state, exactly once: a write per touched state row, one for the
batch's counters (merged by MergeCounters)."""

import gc

# Init allocates a few hundred thousand objects that live as long as the container (modules, schemas, clients): the
# collector's passes over them during init find nothing to free, so it waits until they are frozen below.
gc.disable()

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response

from tailor.aws_clients import client
from tailor.clusters import PublishedClusters
from tailor.clusters.session import SessionClusters
from tailor.embeddings.online import OnlineVectors
from tailor.experiments.attribution import Attribution
from tailor.ingest.intent import SessionIntent
from tailor.ingest.kinesis import AggregatingKinesisProcessor, publish_metrics, stream_record
from tailor.ingest.service import Ingestor
from tailor.models import ModelRegistry
from tailor.personas.online import PersonaTracker
from tailor.personas.storage import ModelSource
from tailor.settings import IngestSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = IngestSettings.read(os.environ)
_aws = {"connect_timeout": 5, "read_timeout": 30, "max_attempts": 4, "max_pool_connections": 32}
_bucket = S3BlobStore(client("s3", **_aws), settings.data_bucket)
_registry = ModelRegistry(_bucket)
processor = AggregatingKinesisProcessor(
    Ingestor(
        DynamoStateStore(client("dynamodb", **_aws), settings.tables),
        _bucket,
        session_ttl_days=settings.session_ttl_days,
        intent=SessionIntent.load(_registry, environ=settings.intent_config),
        personas=PersonaTracker(ModelSource(_bucket, refresh_seconds=settings.persona_model_refresh_seconds)),
        buffer=settings.counter_buffer,
        attribution=Attribution(window=settings.attribution_window_hours * 3600,
                                revenue_window=settings.realized_revenue_days * 86400),
        # The published item clusters, read by the first feed event a container folds, not at its start.
        clusters=SessionClusters(PublishedClusters(_registry)),
        # The published item vectors likewise, read by the first batch, for sessions' and shoppers' vectors.
        vectors=OnlineVectors.load(_registry),
    ),
    logger=logger,
)
# What init built (libraries, clients, the intent model) lives as long as the container: frozen, the collector's
# full passes skip it, instead of walking a few hundred thousand objects in the middle of a batch.
gc.freeze()
gc.enable()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    response = process_partial_response(event=event, record_handler=stream_record, processor=processor, context=context)
    publish_metrics(metrics, processor.outcome)
    return response
