"""Kinesis batches through Powertools: collect every record, apply them as one aggregate, report failures and
quarantined records in log lines and metrics."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import Metrics, MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from tailor.ingest.service import BatchOutcome, Ingestor, StreamRecord

__all__ = ["AggregatingKinesisProcessor", "NotApplied", "publish_metrics", "stream_record"]


class NotApplied(Exception):
    """The record's effects could not all be written; the stream will deliver it again."""


def stream_record(record: KinesisStreamRecord) -> StreamRecord:
    """The record handler: a Kinesis record as the domain's StreamRecord (it never rejects one)."""
    return StreamRecord(
        shard=record.event_id.split(":", 1)[0],
        sequence=record.kinesis.sequence_number,
        data=record.kinesis.data_as_bytes(),
        partition_key=record.kinesis.partition_key,
        arrival=float(record.kinesis.approximate_arrival_timestamp or 0),
    )


class AggregatingKinesisProcessor(BatchProcessor):
    """A BatchProcessor whose per-record handler only decodes; the batch is applied at the end as a
    whole, so each touched key is written once, and records it could not apply become failures."""

    def __init__(self, ingestor: Ingestor, **kwargs: Any):
        # A batch none of whose records could be written (a store outage) is reported, not raised: a
        # function error would make Lambda bisect it, which only helps to isolate a poison record,
        # and poison records are quarantined before they reach the store.
        kwargs.setdefault("raise_on_entire_batch_failure", False)
        super().__init__(event_type=EventType.KinesisDataStreams, **kwargs)
        self.ingestor = ingestor
        self.outcome = BatchOutcome()
        self._decoded: list[tuple[dict, StreamRecord]] = []

    def _prepare(self) -> None:
        super()._prepare()
        self._decoded = []
        self.outcome = BatchOutcome()

    def success_handler(self, record, result):
        self._decoded.append((record, result))
        return super().success_handler(record, result)

    def _clean(self) -> None:
        if self._decoded:
            self.outcome = self.ingestor.ingest([decoded for _, decoded in self._decoded])
            self._log(self._decoded[0][1].shard, len(self._decoded))
            failed = set(self.outcome.failed)
            for raw, decoded in self._decoded:
                if decoded.sequence in failed:
                    self.success_messages.remove(raw)
                    error = NotApplied(f"record {decoded.sequence} not applied; it will be delivered again")
                    self.failure_handler(KinesisStreamRecord(raw), (NotApplied, error, None))
        super()._clean()

    def _log(self, shard: str, records: int) -> None:
        """A line per quarantined record, with why, and one when records are to be delivered again."""
        if self.logger is None:
            return
        for sequence, reason in self.outcome.quarantines:
            self.logger.warning("record quarantined", extra={"shard": shard, "sequence_number": sequence,
                                                              "reason": reason})
        if self.outcome.failed:
            self.logger.warning("records not applied; the stream delivers them again", extra={
                "shard": shard, "failed": len(self.outcome.failed), "records": records,
                "from_sequence_number": min(self.outcome.failed, key=lambda s: (len(s), s))})


def publish_metrics(metrics: Metrics, outcome: BatchOutcome) -> None:
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=outcome.accepted)
    metrics.add_metric(name="EventsQuarantined", unit=MetricUnit.Count, value=outcome.quarantined)
    # Of those, valid events Ingest could not apply: in another shopper's session, or met by a fault of the fold
    # (each a bug to look into).
    metrics.add_metric(name="EventsNotApplicable", unit=MetricUnit.Count, value=outcome.unapplicable)
    metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="ErasedShopperEvents", unit=MetricUnit.Count, value=outcome.erased)
    metrics.add_metric(name="RecordsToRetry", unit=MetricUnit.Count, value=len(outcome.failed))
    # A batch with records to retry: every one of them (nothing applied), or those from one record on.
    metrics.add_metric(name="BatchesFailed", unit=MetricUnit.Count, value=int(bool(outcome.failed) and
                                                                          len(outcome.failed) == outcome.records))
    metrics.add_metric(name="BatchesPartlyFailed", unit=MetricUnit.Count, value=int(bool(outcome.failed) and
                                                                               len(outcome.failed) < outcome.records))
    metrics.add_metric(name="RowsWritten", unit=MetricUnit.Count, value=outcome.writes)
