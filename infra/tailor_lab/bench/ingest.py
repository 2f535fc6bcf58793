"""Ingest benchmark: events per second per shard through the Ingest handler on moto, on an in-memory store and on
one with DynamoDB's latency; DynamoDB calls per 1,000 events, Ingest's and the counter merge's; and what a million
events cost on AWS. Prints a table and writes the figures as JSON.

    tailor bench ingest [--shoppers 300] [--events 6000] [--intent on,off] [--rate 100] [--latency-ms 5]
                        [--batch-size N] [--window SECONDS] [--merge-every SECONDS]
                        [--out bench-results/ingest.json]

The records arrive on each shard at `--rate` events per second and Ingest takes them in batches as the template's
event source mapping makes them: up to its BatchSize (or `--batch-size`), or what arrived within its batching window
(or `--window`) after a batch's first record, whichever is first (so below BatchSize records per window, batches are smaller and
Ingest writes more per event). The counter merge (MergeCounters) runs each time the stream's clock passes its
schedule's period (or every `--merge-every` seconds), and once at the end; its writes depend on the distinct rows
touched per period, so fewer events per period (a lower rate) cost it more per event, and a longer period less.
`lag s` is how far behind the stream the counters were at most when a scheduled run merged them (from the oldest
record's arrival to the run). `writes/key` is write calls over the rows the batches touched (a state or counter row
per batch): 1.0 when every batch writes every row it touches, below when the buffer and the merge gather them.

The "dynamo" store is the in-memory one behind `--latency-ms` a call, at most `--concurrency` calls at once (the
function's connection pool): events per second per shard there are Ingest's throughput with DynamoDB's round trips,
beside Kinesis's write limit of 1,000 records per second per shard. The memory and dynamo stores also meter
capacity units as DynamoDB bills them (a write: 1 per KB of the row written, a strongly consistent read: 1 per 4 KB
of each row read; sizes estimated as the row's JSON length), and the cost line prices them with the measured Lambda
time, S3 requests and Kinesis volume at PRICES.

With `--intent on,off` the memory store is measured twice (moto once, with the first): as deployed
(session intent inferred once per batch, association pairs weighed by it) and with the intent step
left out, what Ingest cost before it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tailor.ingest.merge import CounterMerge
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.simulator import simulate
from tailor_lab.stream import SHARDS, shard_of
from tailor_local.kinesis import kinesis_event
from tailor_local.schedule import rate_seconds, schedule_sources
from tailor_local.stack import LocalStack
from tailor_local.template import find_template

from .report import percentile, publish

__all__ = ["PRICES", "LatencyStore", "main", "run"]

# Public on-demand prices in us-east-1, USD, as AWS's pricing pages give them (aws.amazon.com/kinesis/data-streams/
# pricing, /lambda/pricing, /dynamodb/pricing/on-demand, /s3/pricing), read 2025-06, with DynamoDB's on-demand
# prices as cut on 2024-11-01. Per-hour charges that do not grow with events (the on-demand stream's $0.04 an hour,
# storage, retention past 24 hours) are left out.
PRICES_AS_OF = "2025-06, us-east-1, on-demand"
PRICES: dict[str, float] = {
    "kinesis_in_per_gb": 0.08,  # on-demand data in, each record rounded up to 1 KB
    "kinesis_out_per_gb": 0.04,  # on-demand data retrieved (the event source mapping's reads)
    "lambda_per_gb_second": 0.0000166667,  # x86
    "lambda_per_million_requests": 0.20,
    "dynamodb_per_million_wru": 0.625,
    "dynamodb_per_million_rru": 0.125,
    "s3_per_thousand_puts": 0.005,
}
KINESIS_RECORDS_PER_SHARD = 1000  # Kinesis's write limit per shard, records per second
MERGE_MEMORY_MB = 512  # as the template's functions (Globals.MemorySize)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=300,
                        help="simulated shoppers of a day (default 300: some 6,000 events, as many as --events takes)")
    parser.add_argument("--events", type=int, default=6000, help="events to ingest per store (default 6000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stores", default="moto,memory,dynamo",
                        help="comma-separated: moto, memory, dynamo (memory behind DynamoDB-like latency)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="events per second arriving on each shard, which sets how many the merge gathers per "
                             "period (default 100)")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="the dynamo store's time per call (default 5)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="the dynamo store's calls at once at most (default 32, the function's connection pool)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="records per batch at most (default: the template's BatchSize)")
    parser.add_argument("--window", type=float, default=None,
                        help="the batching window, seconds (default: the template's MaximumBatchingWindowInSeconds)")
    parser.add_argument("--merge-every", type=float, default=None,
                        help="seconds of stream time between the merge's runs (default: the template's schedule)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/ingest.json"))
    parser.add_argument("--template", type=Path, default=None)
    parser.add_argument("--intent", default="on", help="comma-separated: on (as deployed), off (default: on)")
    parser.add_argument("--buffer", default="on",
                        help="comma-separated: on (counters through the buffer and the merge, as deployed), off (a "
                             "write per counter row per batch, as before) (default: on)")
    args = parser.parse_args(argv)
    buffers = [s.strip() for s in args.buffer.split(",") if s.strip()]
    if not buffers or set(buffers) - {"on", "off"}:
        parser.error("--buffer takes on, off or both")
    intents = [s.strip() for s in args.intent.split(",") if s.strip()]
    if not intents or set(intents) - {"on", "off"}:
        parser.error("--intent takes on, off or both")
    if args.rate <= 0 or args.latency_ms < 0 or args.concurrency < 1:
        parser.error("--rate must be positive, --latency-ms at least 0 and --concurrency at least 1")
    if args.batch_size is not None and not 1 <= args.batch_size <= 10_000:
        parser.error("--batch-size must be from 1 to 10,000 (Kinesis event source mappings' limit)")
    if args.merge_every is not None and args.merge_every <= 0:
        parser.error("--merge-every must be positive")
    if args.window is not None and not 0 <= args.window <= 300:
        parser.error("--window must be from 0 to 300 seconds (Kinesis event source mappings' limit)")
    report = run(shoppers=args.shoppers, events=args.events, seed=args.seed,
                 stores=[s.strip() for s in args.stores.split(",") if s.strip()],
                 template=args.template or find_template(), intents=intents, rate=args.rate,
                 latency_ms=args.latency_ms, concurrency=args.concurrency, buffers=buffers,
                 batch_size=args.batch_size, merge_every=args.merge_every, window=args.window)
    publish(report, format_table(report), args.out)
    return 0


def run(*, shoppers: int, events: int, seed: int, stores: list[str], template: Path,
        intents: list[str] = ("on",), rate: float = 100.0, latency_ms: float = 5.0,
        concurrency: int = 32, buffers: list[str] = ("on",), batch_size: int | None = None,
        merge_every: float | None = None, window: float | None = None) -> dict[str, Any]:
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
            period = merge_every or _merge_period(stack)
            batch_size = batch_size or source.batch_size
            window = source.batching_window_s if window is None else window
            buffered = ingestor.buffered
            for intent, buffer in [(i, b) for i in intents for b in buffers]:
                ingestor.intent = deployed if intent == "on" else None
                ingestor.buffered = buffered if buffer == "on" else frozenset()
                for store in stores:
                    if store == "memory":
                        ingestor.store, ingestor.blobs = LatencyStore(MemoryStateStore(), 0.0, 0), MemoryBlobStore()
                    elif store == "dynamo":
                        ingestor.store = LatencyStore(MemoryStateStore(), latency_ms / 1000, concurrency)
                        ingestor.blobs = MemoryBlobStore()
                    elif store != "moto":
                        raise SystemExit(f"unknown store {store!r}: use moto, memory or dynamo")
                    elif (intent, buffer) != (intents[0], buffers[0]):
                        continue  # moto keeps the first pass's rows: a second pass would find its records applied
                    result = _measure(store, function, module, payload, batch_size, source.stream_arn,
                                      stack.template.region, rate=rate, period=period, window=window)
                    result["intent"] = deployed.model.label if intent == "on" and deployed is not None else "off"
                    result["buffer"] = buffer
                    results.append(result)
        finally:
            stack.stop()
    return {
        "benchmark": "ingest",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "workload": {"simulated_shoppers": shoppers, "events": len(payload), "seed": seed, "shards": SHARDS,
                     "batch_size": batch_size, "template_batch_size": source.batch_size,
                     "batching_window_s": window, "events_per_second_per_shard": rate, "merge_period_s": period,
                     "dynamo_latency_ms": latency_ms, "dynamo_concurrency": concurrency},
        "targets": {"write_calls_per_1k_events": 500, "events_per_second_per_shard_dynamo": 2000,
                    "kinesis_records_per_second_per_shard": KINESIS_RECORDS_PER_SHARD},
        "prices": {"as_of": PRICES_AS_OF, **PRICES},
        "results": results,
    }


def format_table(report: dict[str, Any]) -> str:
    header = ("store", "intent", "buffer", "events", "batches", "ev/s/shard", "ev/cpu-s", "batch p50 ms", "batch p99 ms",
              "writes/1k ingest", "merge", "total", "reads/1k", "writes/key", "lag s", "$/M events")
    rows = [header] + [
        (r["store"], r.get("intent", "on"), r.get("buffer", "on"), r["events"], r["batches"], f"{r['events_per_second']:.0f}",
         f"{r['events_per_cpu_second']:.0f}", f"{r['batch_ms_p50']:.1f}", f"{r['batch_ms_p99']:.1f}",
         f"{r['ingest_write_calls_per_1k_events']:.0f}", f"{r['merge_write_calls_per_1k_events']:.0f}",
         f"{r['write_calls_per_1k_events']:.0f}", f"{r['read_calls_per_1k_events']:.1f}",
         f"{r['write_calls_per_touched_key']:.3f}",
         f"{r['counter_lag_s_max']:.0f}" if r.get("counter_lag_s_max") is not None else "-",
         f"{r['cost']['per_million_events']:.2f}" if r.get("cost") else "-")
        for r in report["results"]
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    w, t = report["workload"], report["targets"]
    notes = [f"Targets: at most {t['write_calls_per_1k_events']} write calls per 1,000 events (Ingest's and the "
             f"merge's); at least {t['events_per_second_per_shard_dynamo']:,} events/s per shard on the dynamo store "
             f"({w['dynamo_latency_ms']:g} ms a call, {w['dynamo_concurrency']} at once), where Kinesis takes at most "
             f"{t['kinesis_records_per_second_per_shard']:,} records/s per shard."]
    for r in report["results"]:
        if r.get("cost"):
            c = r["cost"]
            notes.append(f"{r['store']} (buffer {r.get('buffer', 'on')}): ${c['per_million_events']:.2f} per million events = Kinesis "
                         f"{c['kinesis']:.2f} + Lambda {c['lambda']:.2f} + DynamoDB writes {c['dynamodb_writes']:.2f} "
                         f"({r['write_units_per_1k_events']:.0f} WRU/1k events) + reads {c['dynamodb_reads']:.2f} "
                         f"({r['read_units_per_1k_events']:.0f} RRU/1k) + S3 {c['s3']:.2f}")
    notes.append(f"Prices: {report['prices']['as_of']} (tailor_lab.bench.ingest.PRICES).")
    return (f"Ingest: {w['events']} simulated events, {w['shards']} shards, batches of up to {w['batch_size']} "
            f"(the template's {w['template_batch_size']}) within {w['batching_window_s']:g} s, "
            f"{w['events_per_second_per_shard']:g} events/s per shard, the counter merge every "
            f"{w['merge_period_s']:g} s of stream time\n" + "\n".join(lines) + "\n" + "\n".join(notes))


class LatencyStore:
    """A state store in front of another that takes `latency_s` per call, at most `concurrency` calls at once (0: no
    delay), and meters DynamoDB's capacity units: a write, 1 per KB of the larger of the row before and after it; a
    strongly consistent read, 1 per 4 KB of each row read; a row's size estimated as its JSON length."""

    def __init__(self, inner: MemoryStateStore, latency_s: float, concurrency: int):
        self.inner = inner
        self.latency_s = latency_s
        self.calls = inner.calls
        self.units: Counter[str] = Counter()
        self._gate = threading.BoundedSemaphore(concurrency) if latency_s > 0 else None
        self._lock = threading.Lock()

    def read(self, table, keys):
        return self.read_many({table: keys})[table]

    def read_many(self, requests):
        requests = {table: list(dict.fromkeys(keys)) for table, keys in requests.items()}
        # The DynamoDB adapter reads 100 keys a call (BatchGetItem's limit), one call after another.
        rows = self._call(self.inner.read_many, requests, round_trips=max(1, -(-sum(map(len, requests.values())) // 100)))
        self._meter("rru", sum(math.ceil(_size(row) / 4096) for found in rows.values() for row in found.values()))
        return rows

    def scan(self, table, **kwargs):
        rows, start = self._call(self.inner.scan, table, **kwargs)
        self._meter("rru", math.ceil(sum(_size(row) for row in rows) / 4096))
        return rows, start

    def query(self, table, attribute, value):
        rows = self._call(self.inner.query, table, attribute, value)
        self._meter("rru", math.ceil(sum(_size(row) for row in rows) / 4096))
        return rows

    def write_state(self, table, key, *args, **kwargs):
        return self._write(self.inner.write_state, table, key, *args, **kwargs)

    def add(self, table, key, *args, **kwargs):
        return self._write(self.inner.add, table, key, *args, **kwargs)

    def annotate(self, table, key, *args, **kwargs):
        return self._write(self.inner.annotate, table, key, *args, **kwargs)

    def replace(self, table, key, *args, **kwargs):
        return self._write(self.inner.replace, table, key, *args, **kwargs)

    def delete(self, table, key):
        return self._write(self.inner.delete, table, key)

    def delete_many(self, table, keys):
        keys = list(keys)
        self._meter("wru", sum(math.ceil(_size(self.inner.tables[table].get(k, {})) / 1024) or 1 for k in keys))
        return self._call(self.inner.delete_many, table, keys)

    def _write(self, call, table, key, *args, **kwargs):
        before = _size(self.inner.tables[table].get(key, {}))
        try:
            return self._call(call, table, key, *args, **kwargs)
        finally:
            # A condition that fails consumes a write too.
            self._meter("wru", max(1, math.ceil(max(before, _size(self.inner.tables[table].get(key, {}))) / 1024)))

    def _call(self, call, *args, round_trips: int = 1, **kwargs):
        if self._gate is None:
            return call(*args, **kwargs)
        with self._gate:
            time.sleep(self.latency_s * round_trips)
            return call(*args, **kwargs)

    def _meter(self, unit: str, amount: int) -> None:
        with self._lock:
            self.units[unit] += amount


def _size(row: dict[str, Any]) -> int:
    return len(json.dumps(row, separators=(",", ":"), default=str)) if row else 0


def _merge_period(stack: LocalStack) -> float:
    """The counter merge's schedule period, from the template."""
    for source in schedule_sources(stack.template):
        if source.function_id == "MergeCountersFunction":
            return float(rate_seconds(source.expression) or 60)
    raise SystemExit("the template has no MergeCountersFunction schedule")


def _measure(store: str, function: Any, module: Any, payload: list[dict], batch_size: int, stream_arn: str,
             region: str, *, rate: float, period: float, window: float) -> dict[str, Any]:
    ingestor = module.processor.ingestor
    calls_before = dict(ingestor.store.calls)
    merge = CounterMerge(ingestor.store)
    durations, touched, accepted, merge_writes, merge_seconds, merges = [], 0, 0, 0, 0.0, 0
    unmerged_since: float | None = None  # stream time of the oldest record not merged yet
    lags: list[float] = []
    units_before = Counter(getattr(ingestor.store, "units", {}))
    puts_before = getattr(ingestor.blobs, "puts", 0)

    def run_merge(at: float | None) -> None:
        """A run of the merge at stream time `at` (None: the last, which merges what is left)."""
        nonlocal merge_writes, merge_seconds, merges, unmerged_since
        before = ingestor.store.calls["write"]
        started = time.perf_counter()
        report = merge.run()
        merge_seconds += time.perf_counter() - started
        merge_writes += ingestor.store.calls["write"] - before
        merges += 1
        if report.slots and unmerged_since is not None:
            if at is not None:
                lags.append(at - unmerged_since)
            unmerged_since = None

    started = time.perf_counter()
    # CPU seconds of this process (the handler runs in it): steadier than wall time on a shared machine.
    cpu_started = time.process_time()
    next_merge = period
    for at, first, shard, records in _batches(payload, batch_size, rate, window):
        while at >= next_merge:  # the schedule's runs up to now, each at its time
            run_merge(next_merge)
            next_merge += period
        event = kinesis_event(records, shard, stream_arn, region, "arn:aws:iam::123456789012:role/bench")
        invocation = function.invoke(event)
        if not invocation.ok or invocation.payload.get("batchItemFailures"):
            raise RuntimeError(f"ingest failed during the benchmark: {invocation.error or invocation.payload}")
        durations.append(invocation.duration_ms)
        outcome = module.processor.outcome
        touched += outcome.touched
        accepted += outcome.accepted
        unmerged_since = first if unmerged_since is None else unmerged_since
    run_merge(None)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    writes = ingestor.store.calls["write"] - calls_before.get("write", 0)
    reads = ingestor.store.calls["read"] - calls_before.get("read", 0)
    busy = sum(durations) / 1000
    n = len(payload)
    result = {
        "store": store,
        "events": n,
        "accepted": accepted,
        "batches": len(durations),
        "events_per_second": n / busy,
        "events_per_cpu_second": n / cpu,
        "wall_seconds": wall,
        "batch_ms_p50": statistics.median(durations),
        "batch_ms_p99": percentile(durations, 99),
        "merges": merges,
        "merge_seconds": merge_seconds,
        "write_calls": writes,
        "ingest_write_calls": writes - merge_writes,
        "merge_write_calls": merge_writes,
        "read_calls": reads,
        "write_calls_per_1k_events": 1000 * writes / n,
        "ingest_write_calls_per_1k_events": 1000 * (writes - merge_writes) / n,
        "merge_write_calls_per_1k_events": 1000 * merge_writes / n,
        "read_calls_per_1k_events": 1000 * reads / n,
        "touched_keys": touched,
        "write_calls_per_touched_key": writes / touched if touched else 0.0,
        "counter_lag_s_max": max(lags, default=None),
    }
    units = getattr(ingestor.store, "units", None)
    if units is not None:
        wru, rru = units["wru"] - units_before["wru"], units["rru"] - units_before["rru"]
        result.update({"write_units_per_1k_events": 1000 * wru / n, "read_units_per_1k_events": 1000 * rru / n,
                       "s3_puts": ingestor.blobs.puts - puts_before})
        result["cost"] = _cost(payload, durations, function.memory_mb, merge_seconds, merges, wru, rru,
                               result["s3_puts"])
    return result


def _cost(payload: list[dict], durations: list[float], memory_mb: int, merge_seconds: float, merges: int, wru: int,
          rru: int, s3_puts: int) -> dict[str, float]:
    """Dollars per million events at PRICES: Kinesis in and out, Lambda time and requests (Ingest's batches and the
    merge's runs), DynamoDB's capacity units, S3 puts."""
    scale = 1e6 / len(payload)
    kb = sum(math.ceil(len(json.dumps(e).encode()) / 1024) for e in payload)
    kinesis = kb / 1024 ** 2 * (PRICES["kinesis_in_per_gb"] + PRICES["kinesis_out_per_gb"])
    gb_seconds = sum(durations) / 1000 * memory_mb / 1024 + merge_seconds * MERGE_MEMORY_MB / 1024
    lam = gb_seconds * PRICES["lambda_per_gb_second"] + (len(durations) + merges) / 1e6 * PRICES[
        "lambda_per_million_requests"]
    parts = {"kinesis": kinesis * scale, "lambda": lam * scale,
             "dynamodb_writes": wru / 1e6 * PRICES["dynamodb_per_million_wru"] * scale,
             "dynamodb_reads": rru / 1e6 * PRICES["dynamodb_per_million_rru"] * scale,
             "s3": s3_puts / 1000 * PRICES["s3_per_thousand_puts"] * scale}
    return {**parts, "per_million_events": sum(parts.values())}


def _batches(payload: list[dict], batch_size: int, rate: float, window: float):
    """(stream time, its first record's arrival, shard, records) of each batch, in the order they are ready: records
    spread over shards by partition key as Kinesis does, each shard's arriving at `rate` a second (their arrival
    timestamps those stream times), a batch ready at `batch_size` records or `window` seconds after its first record,
    as the event source mapping makes them."""
    per_shard: dict[str, list[dict]] = {}
    start = time.time()
    for n, event in enumerate(payload):
        records = per_shard.setdefault(shard_of(event["user_id"]), [])
        records.append({
            "PartitionKey": event["user_id"],
            "SequenceNumber": str(49_000_000_000_000_000_000 + n),
            "Data": json.dumps(event).encode(),
            "ApproximateArrivalTimestamp": dt.datetime.fromtimestamp(start + len(records) / rate, dt.UTC),
        })
    batches = []
    for shard, records in per_shard.items():
        first = 0
        while first < len(records):
            # Records arrive at k / rate: those within the window after the first join it, up to batch_size.
            # A window under a second is a second: the mapping reads each shard about once a second.
            last = min(first + batch_size, len(records), first + 1 + math.floor(max(window, 1.0) * rate + 1e-9))
            full = last - first == batch_size
            ready = (last / rate) if full else (first + 1) / rate + max(window, 1.0)
            batches.append((ready, (first + 1) / rate, shard, records[first:last]))
            first = last
    return sorted(batches, key=lambda b: (b[0], b[2]))
