"""Ingest benchmark: events per second through the Ingest handler on moto and on an in-memory store,
and DynamoDB calls per 1,000 events. Prints a table and writes the figures as JSON.

    tailor bench ingest [--shoppers 60] [--events 6000] [--intent on,off] [--out bench-results/ingest.json]

With `--intent on,off` the memory store is measured twice (moto once, with the first): as deployed
(session intent inferred once per batch, association pairs weighed by it) and with the intent step
left out, what Ingest cost before it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.simulator import simulate
from tailor_lab.stream import SHARDS, shard_of
from tailor_local.kinesis import kinesis_event
from tailor_local.stack import LocalStack
from tailor_local.template import find_template

from .report import percentile, publish

__all__ = ["main", "run"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=60, help="simulated shoppers (default 60)")
    parser.add_argument("--events", type=int, default=6000, help="events to ingest per store (default 6000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stores", default="moto,memory", help="comma-separated: moto, memory")
    parser.add_argument("--out", type=Path, default=Path("bench-results/ingest.json"))
    parser.add_argument("--template", type=Path, default=None)
    parser.add_argument("--intent", default="on", help="comma-separated: on (as deployed), off (default: on)")
    args = parser.parse_args(argv)
    intents = [s.strip() for s in args.intent.split(",") if s.strip()]
    if not intents or set(intents) - {"on", "off"}:
        parser.error("--intent takes on, off or both")
    report = run(shoppers=args.shoppers, events=args.events, seed=args.seed,
                 stores=[s.strip() for s in args.stores.split(",") if s.strip()],
                 template=args.template or find_template(), intents=intents)
    publish(report, format_table(report), args.out)
    return 0


def run(*, shoppers: int, events: int, seed: int, stores: list[str], template: Path,
        intents: list[str] = ("on",)) -> dict[str, Any]:
    simulation = simulate(shoppers=shoppers, days=1.0, seed=seed)
    payload = simulation.events[:events]
    results = []
    with open(os.devnull, "w") as quiet:
        # Event sources stay idle: the benchmark invokes the handler itself and times each invocation.
        stack = LocalStack(template, port=0, stack_name=f"tailor-bench-{uuid.uuid4().hex[:6]}",
                           function_log=quiet).start(pollers=False)
        try:
            source = next(iter(stack.mappings.values())).source
            function = stack.runtime.find(source.function_id)
            function.load()
            module = sys.modules[function.handler.__module__]
            ingestor = module.processor.ingestor
            deployed = ingestor.intent
            for intent in intents:
                ingestor.intent = deployed if intent == "on" else None
                for store in stores:
                    if store == "memory":
                        ingestor.store, ingestor.blobs = MemoryStateStore(), MemoryBlobStore()
                    elif store != "moto":
                        raise SystemExit(f"unknown store {store!r}: use moto or memory")
                    elif intent != intents[0]:
                        continue  # moto keeps the first pass's rows: a second pass would find its records applied
                    result = _measure(store, function, module, payload, source.batch_size, source.stream_arn,
                                      stack.template.region)
                    result["intent"] = deployed.model.label if intent == "on" and deployed is not None else "off"
                    results.append(result)
        finally:
            stack.stop()
        batch_size = source.batch_size
    return {
        "benchmark": "ingest",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "workload": {"simulated_shoppers": shoppers, "events": len(payload), "seed": seed, "shards": SHARDS,
                     "batch_size": batch_size},
        "results": results,
    }


def format_table(report: dict[str, Any]) -> str:
    header = ("store", "intent", "events", "batches", "events/s", "events/cpu-s", "batch p50 ms", "batch p99 ms",
              "writes/1k ev", "reads/1k ev", "writes/key")
    rows = [header] + [
        (r["store"], r.get("intent", "on"), r["events"], r["batches"], f"{r['events_per_second']:.0f}",
         f"{r['events_per_cpu_second']:.0f}", f"{r['batch_ms_p50']:.1f}",
         f"{r['batch_ms_p99']:.1f}", f"{r['write_calls_per_1k_events']:.0f}", f"{r['read_calls_per_1k_events']:.1f}",
         f"{r['write_calls_per_touched_key']:.3f}")
        for r in report["results"]
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    w = report["workload"]
    return (f"Ingest: {w['events']} simulated events, {w['shards']} shards, batches of up to {w['batch_size']}\n"
            + "\n".join(lines))


def _measure(store: str, function: Any, module: Any, payload: list[dict], batch_size: int, stream_arn: str,
             region: str) -> dict[str, Any]:
    ingestor = module.processor.ingestor
    calls_before = dict(ingestor.store.calls)
    durations, keys_touched, accepted = [], 0, 0
    started = time.perf_counter()
    # CPU seconds of this process (the handler runs in it): steadier than wall time on a shared machine.
    cpu_started = time.process_time()
    for shard, records in _batches(payload, batch_size):
        event = kinesis_event(records, shard, stream_arn, region, "arn:aws:iam::123456789012:role/bench")
        invocation = function.invoke(event)
        if not invocation.ok or invocation.payload.get("batchItemFailures"):
            raise RuntimeError(f"ingest failed during the benchmark: {invocation.error or invocation.payload}")
        durations.append(invocation.duration_ms)
        outcome = module.processor.outcome
        keys_touched += outcome.writes
        accepted += outcome.accepted
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    writes = ingestor.store.calls["write"] - calls_before.get("write", 0)
    reads = ingestor.store.calls["read"] - calls_before.get("read", 0)
    busy = sum(durations) / 1000
    return {
        "store": store,
        "events": len(payload),
        "accepted": accepted,
        "batches": len(durations),
        "events_per_second": len(payload) / busy,
        "events_per_cpu_second": len(payload) / cpu,
        "wall_seconds": wall,
        "batch_ms_p50": statistics.median(durations),
        "batch_ms_p99": percentile(durations, 99),
        "write_calls": writes,
        "read_calls": reads,
        "write_calls_per_1k_events": 1000 * writes / len(payload),
        "read_calls_per_1k_events": 1000 * reads / len(payload),
        "touched_keys": keys_touched,
        "write_calls_per_touched_key": writes / keys_touched if keys_touched else 0.0,
    }


def _batches(payload: list[dict], batch_size: int):
    """Records spread over shards by partition key as Kinesis does, in batches per shard."""
    per_shard: dict[str, list[dict]] = {}
    arrived = dt.datetime.now(dt.UTC)
    for n, event in enumerate(payload):
        per_shard.setdefault(shard_of(event["user_id"]), []).append({
            "PartitionKey": event["user_id"],
            "SequenceNumber": str(49_000_000_000_000_000_000 + n),
            "Data": json.dumps(event).encode(),
            "ApproximateArrivalTimestamp": arrived,
        })
    for shard, records in per_shard.items():
        for start in range(0, len(records), batch_size):
            yield shard, records[start:start + batch_size]
