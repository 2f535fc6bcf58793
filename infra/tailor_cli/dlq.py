"""`tailor dlq`: the batches that exhausted their retries (the on-failure queue), and their records if asked."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from tailor_local.aws import LocalAws

from .common import running, say

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="batches that exhausted their retries (the on-failure queue)")
    dlq.add_argument("--limit", type=int, default=10)
    dlq.add_argument("--records", action="store_true", help="also read the failed records from the stream")
    dlq.set_defaults(command=_dlq)


def _dlq(args: argparse.Namespace) -> int:
    handle = running(args)
    depth = handle.queue_depth("IngestFailureQueue")
    say(f"{depth} failure record(s) in {handle.resources.name('IngestFailureQueue')}")
    for message in handle.peek_messages("IngestFailureQueue", args.limit):
        record = json.loads(message["Body"])
        info = record.get("KinesisBatchInfo", {})
        context = record.get("requestContext", {})
        print(f"{info.get('shardId')} {info.get('startSequenceNumber')}..{info.get('endSequenceNumber')} "
              f"({info.get('batchSize')} records): {context.get('condition')} after "
              f"{context.get('approximateInvokeCount')} invocation(s), {record.get('timestamp')}")
        if args.records and info:
            for data in _stream_records(handle.aws, info):
                print(f"    {data.decode('utf-8', errors='replace')[:160]}")
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
