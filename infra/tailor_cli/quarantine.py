"""`tailor quarantine`: the records the running stack's Ingest rejected, each with its reason."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import at_least_one, running, say

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    quarantine = commands.add_parser("quarantine", help="records the ingest rejected, with their reasons")
    quarantine.add_argument("--limit", type=at_least_one, default=20)
    quarantine.set_defaults(command=_quarantine)


def _quarantine(args: argparse.Namespace) -> int:
    handle = running(args)
    # The most recent last: by day, then by sequence number (as numbers; shards interleave), not by key.
    objects = sorted(handle.objects("DataBucket", "quarantine/"), key=_arrival)
    say(f"{len(objects)} quarantined record(s) in s3://{handle.resources.name('DataBucket')}/quarantine/"
        + (f", the last {args.limit}:" if len(objects) > args.limit else ":"))
    for obj in objects[-args.limit:]:
        body = handle.read_object("DataBucket", obj["Key"])
        try:
            entry = json.loads(body)
        except json.JSONDecodeError:
            print(f"{obj['Key']}\n    {body[:200]!r}")
            continue
        data = str(entry.get("data", ""))
        print(f"{entry.get('shard', '?')}:{entry.get('sequence_number', '?')}  {entry.get('reason', '(no reason)')}\n"
              f"    data: {data[:160]}{'...' if len(data) > 160 else ''}")
    return 0


def _arrival(obj: dict[str, Any]) -> tuple[str, int, str]:
    """quarantine/date=<day>/shard=<shard>/<sequence number>.json: the day, then the sequence number."""
    parts = obj["Key"].split("/")
    day = parts[1] if len(parts) > 1 else ""
    sequence = parts[-1].removesuffix(".json")
    return day, int(sequence) if sequence.isdigit() else -1, obj["Key"]
