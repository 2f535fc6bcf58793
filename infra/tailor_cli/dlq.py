"""`tailor dlq`: the batches that exhausted their retries (the on-failure queue), and their records if asked."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from tailor_local.aws import LocalAws

from .common import at_least_one, running, say

__all__ = ["add_parser"]


QUEUES = {"ingest": "IngestFailureQueue", "erasure": "ErasureDeadLetterQueue"}


def add_parser(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="batches that exhausted their retries (the on-failure queue), or erasures "
                                          "that failed five times (--queue erasure)")
    dlq.add_argument("--queue", choices=sorted(QUEUES), default="ingest",
                     help="ingest: IngestFailureQueue (default); erasure: ErasureDeadLetterQueue")
    dlq.add_argument("--limit", type=at_least_one, default=10)
    dlq.add_argument("--records", action="store_true", help="also read the failed records from the stream")
    dlq.set_defaults(command=_dlq)


def _dlq(args: argparse.Namespace) -> int:
    handle = running(args)
    queue = QUEUES[args.queue]
    if queue not in handle.resources:
        say(f"the template has no {queue}")
        return 1
    depth = handle.queue_depth(queue)
    messages = handle.peek_messages(queue, args.limit)
    say(f"{depth} message(s) in {handle.resources.name(queue)}"
        + (f", the first {len(messages)}:" if depth > len(messages) else ":"))
    for message in messages:
        try:
            record = json.loads(message["Body"])
        except json.JSONDecodeError:
            print(f"(not JSON) {message['Body'][:160]}")
            continue
        if args.queue == "erasure":
            print(f"erasure {record.get('erasure_id')} of {record.get('user_id')}: received "
                  f"{message.get('Attributes', {}).get('ApproximateReceiveCount', '?')} time(s); redrive it to "
                  f"{handle.resources.name('ErasureQueue')} (SQS's redrive) once its cause is mended")
            continue
        info = record.get("KinesisBatchInfo", {})
        context = record.get("requestContext", {})
        print(f"{info.get('shardId')} {info.get('startSequenceNumber')}..{info.get('endSequenceNumber')} "
              f"({info.get('batchSize')} records): {context.get('condition')} after "
              f"{context.get('approximateInvokeCount')} invocation(s), {record.get('timestamp')}")
        if args.records and info:
            try:
                for data in _stream_records(handle.aws, info):
                    print(f"    {data.decode('utf-8', errors='replace')[:160]}")
            except Exception as error:  # the stream gone, or the records past its retention: say so, go on
                print(f"    (its records cannot be read from the stream: {error})")
    return 0


def _stream_records(aws: LocalAws, info: dict[str, Any]) -> Iterator[bytes]:
    """The records a failure record points at, read back from the stream."""
    kinesis = aws.client("kinesis")
    iterator = kinesis.get_shard_iterator(StreamName=info["streamArn"].split(":stream/", 1)[1], ShardId=info["shardId"],
                                          ShardIteratorType="AT_SEQUENCE_NUMBER",
                                          StartingSequenceNumber=info["startSequenceNumber"])["ShardIterator"]
    end = int(info["endSequenceNumber"])
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=min(int(info.get("batchSize") or 100), 10_000))
        for record in page["Records"]:
            if int(record["SequenceNumber"]) > end:
                return
            yield record["Data"]
        if not page["Records"]:
            return
        iterator = page.get("NextShardIterator")
