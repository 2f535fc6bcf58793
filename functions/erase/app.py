"""Erase: each queued erasure carried through (the shopper's sessions, their archived events) and marked done."""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from tailor.aws_clients import client
from tailor.erasure import complete_erasure
from tailor.settings import EraseSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = EraseSettings.read(os.environ)
_aws = {"connect_timeout": 5, "read_timeout": 30, "max_attempts": 8}
state = DynamoStateStore(client("dynamodb", **_aws), settings.tables)
archive = S3BlobStore(client("s3", **_aws), settings.data_bucket)
# A failed message is reported, not raised: the queue delivers it again all the same, without a function error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def erase(record: SQSRecord, lambda_context) -> dict:
    """One message, {user_id, erasure_id}; an error leaves it on the queue, which delivers it again, and after
    its last try moves it to the dead-letter queue."""
    message = record.json_body
    if not isinstance(message, dict):
        raise ValueError("the message is not a JSON object")
    for field in ("user_id", "erasure_id"):
        if not isinstance(message.get(field), str) or not message[field]:
            raise ValueError(f"{field}: missing, or not a non-empty string")
    status = complete_erasure(state, archive, message["user_id"], message["erasure_id"],
                              seconds_left=lambda: lambda_context.get_remaining_time_in_millis() / 1000.0)
    # The erasure's id, not whose it is: logs are kept where no erasure reaches.
    logger.info("erasure", extra={k: v for k, v in status.items() if k != "user_id"})
    if status["status"] == "done":
        metrics.add_metric(name="ErasuresDone", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ErasedSessions", unit=MetricUnit.Count, value=status["removed"]["sessions"])
        metrics.add_metric(name="ErasedArchiveEvents", unit=MetricUnit.Count,
                           value=status["removed"]["archive_events"])
    return status


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    return process_partial_response(event=event, record_handler=erase, processor=processor, context=context)
