"""Events as the stream delivers them to Ingest: records keyed by shopper, spread over shards as Kinesis spreads them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime

from tailor.ingest.service import StreamRecord

__all__ = ["SHARDS", "epoch_of", "records_by_shard", "shard_of"]

SHARDS = 4  # what an on-demand stream starts with


def shard_of(partition_key: str, shards: int = SHARDS) -> str:
    """The shard a record of `partition_key` lands on: spread by the key's MD5, as Kinesis spreads them."""
    return f"shardId-{int(hashlib.md5(partition_key.encode()).hexdigest(), 16) % shards:012d}"


def records_by_shard(events: Iterable[dict], first_sequence: int, *, arrival: float = 0.0,
                     shards: int = SHARDS) -> dict[str, list[StreamRecord]]:
    """Events as Ingest's stream records, keyed by user, numbered from `first_sequence`, grouped by shard in order."""
    grouped: dict[str, list[StreamRecord]] = {}
    for n, event in enumerate(events):
        shard = shard_of(event["user_id"], shards)
        grouped.setdefault(shard, []).append(StreamRecord(shard, str(first_sequence + n), json.dumps(event).encode(),
                                                          event["user_id"], arrival))
    return grouped


def epoch_of(timestamp: str) -> float:
    """An event's ISO 8601 timestamp (a trailing Z for UTC) in epoch seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
