"""The Kinesis batch processor reports what a batch did: a log line per quarantined record with its reason, one when
records are to be delivered again, and metrics of both, partial batch failures included."""

import base64
import copy
import io
import json
import logging
import uuid

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import process_partial_response

from tailor.ingest.kinesis import AggregatingKinesisProcessor, publish_metrics, stream_record
from tailor.ingest.service import Ingestor
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers.ingest import TransientError


class SessionsDown(MemoryStateStore):
    """A store whose writes of one session's row fail."""

    def __init__(self, session: str | None):
        super().__init__()
        self.session = session

    def write_state(self, table, key, fields, **kwargs):
        if table == "sessions" and key == self.session:
            raise TransientError("throttled")
        return super().write_state(table, key, fields, **kwargs)


def run(batch: dict, store: MemoryStateStore) -> tuple[dict, list[dict], dict[str, float]]:
    """The batch through the processor: its response, its log lines, and the metrics it publishes."""
    lines = io.StringIO()
    # Loggers of one service share their handlers: a service of its own keeps the lines of this run apart.
    logger = Logger(service=f"ingest-{uuid.uuid4().hex}", logger_handler=logging.StreamHandler(lines))
    processor = AggregatingKinesisProcessor(Ingestor(store, MemoryBlobStore(), max_workers=1), logger=logger)
    response = process_partial_response(event=batch, record_handler=stream_record, processor=processor)
    metrics = Metrics(namespace="Tailor", service="ingest-test")
    metrics.clear_metrics()
    publish_metrics(metrics, processor.outcome)
    published = metrics.serialize_metric_set()
    metrics.clear_metrics()
    names = [m["Name"] for m in published["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    values = {name: sum(published[name]) if isinstance(published[name], list) else published[name] for name in names}
    return response, [json.loads(line) for line in lines.getvalue().splitlines()], values


def data(record: dict) -> dict:
    try:
        return json.loads(base64.b64decode(record["kinesis"]["data"]))
    except ValueError:
        return {}


def test_every_quarantined_record_is_logged_with_its_reason_and_counted(ingest_batch):
    # Besides the sample's five invalid records, u-2002 sends an event in u-1001's session.
    intruder = copy.deepcopy(next(r for r in ingest_batch["Records"] if data(r).get("user_id") == "u-2002"))
    sequence = str(int(ingest_batch["Records"][-1]["kinesis"]["sequenceNumber"]) + 1000)
    intruder["kinesis"]["sequenceNumber"], intruder["eventID"] = sequence, f"shardId-000000000000:{sequence}"
    event = {**data(intruder), "event_id": "evt-intruder", "session_id": "s-1001-a"}
    intruder["kinesis"]["data"] = base64.b64encode(json.dumps(event).encode()).decode()
    ingest_batch["Records"].append(intruder)
    records = ingest_batch["Records"]

    response, logged, metrics = run(ingest_batch, SessionsDown(None))
    assert response == {"batchItemFailures": []}
    quarantines = [line for line in logged if line["message"] == "record quarantined"]
    assert len(quarantines) == 6 and all(line["level"] == "WARNING" for line in quarantines)
    assert {line["sequence_number"] for line in quarantines} == {r["kinesis"]["sequenceNumber"] for r in records[-6:]}
    reasons = {line["sequence_number"]: line["reason"] for line in quarantines}
    assert reasons[sequence] == "session_id: session 's-1001-a' belongs to another shopper"
    assert any(reason.startswith("price:") for reason in reasons.values())
    assert metrics["EventsQuarantined"] == 6 and metrics["EventsNotApplicable"] == 1
    assert (metrics["RecordsToRetry"], metrics["BatchesFailed"], metrics["BatchesPartlyFailed"]) == (0, 0, 0)


def test_records_to_deliver_again_are_logged_and_counted_as_a_partial_batch_failure(ingest_batch):
    records = ingest_batch["Records"]
    response, logged, metrics = run(ingest_batch, SessionsDown("s-2002-a"))
    first = next(r["kinesis"]["sequenceNumber"] for r in records if data(r).get("session_id") == "s-2002-a")
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed and min(failed, key=int) == first
    (line,) = [line for line in logged if line["message"].startswith("records not applied")]
    assert line["failed"] == len(failed) and line["from_sequence_number"] == first and line["records"] == len(records)
    assert (metrics["RecordsToRetry"], metrics["BatchesFailed"], metrics["BatchesPartlyFailed"]) == (len(failed), 0, 1)
