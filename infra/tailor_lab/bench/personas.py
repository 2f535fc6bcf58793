"""Persona benchmark: the scheduled rebuild on a million persona counters, and Ingest with personas off and on.
Prints a table and writes the figures as JSON.

Rebuild. Items rows holding persona-weighted counters (as Ingest writes them: one row per item, a counter set per
persona) are put in the in-memory store, a persona model is current, and the refine job runs: it scans the items,
reads the counters, turns them into adjustment vectors and publishes the model. Reported per 100k counter rows,
a counter row being one (persona, item) pair's counters. Scanning DynamoDB adds its own time (about 1 MB per
Scan page) on top of this.

Rebuild's memory. The rebuild job (re-clustering) on shoppers tables of several sizes, made of a simulation's shopper
rows repeated under new ids (its items and queries beside them): the peak memory the job allocates (tracemalloc,
beyond the store's own) and its time, which tracemalloc slows. Past FIT_SHOPPERS the job holds the same number of
shoppers, so its peak stays where it is while a job that held every shopper would grow by each one's row. With
--scan-latency-ms, the job again with every scan page that much late, the table read in one part and in
SCAN_SEGMENTS parts at once: what a parallel scan saves where the table's pages, not the job, take the time.

Ingest. The `tailor bench ingest` workload (simulated shoppers, 4 shards, batches of 100) through Ingest's domain
service on the in-memory store, with persona tracking off and on (with a current persona model), alternated three
times; each setting's fastest run is reported (the machine is shared, and noise only ever slows a run down).

    tailor bench personas [--rows 1000000] [--personas 8] [--rebuild-shoppers 30000,60000] [--scan-latency-ms 100]
                          [--out bench-results/personas.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from tailor.ingest.service import Ingestor
from tailor.personas import rebuild
from tailor.personas.online import COUNTERS, DWELL_EVENTS, PersonaTracker
from tailor.personas.rebuild import FIT_SHOPPERS, run_job
from tailor.personas.storage import ModelSource, current_model
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.evaluation.personas import Replay
from tailor_lab.simulator import simulate
from tailor_lab.stream import records_by_shard

from .report import percentile, publish

__all__ = ["main", "run"]

BATCH = 100
REPEATS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench personas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="persona counter rows (default 1,000,000)")
    parser.add_argument("--personas", type=int, default=8, help="personas per item row (default 8)")
    parser.add_argument("--rebuild-shoppers", type=_sizes, default=(),
                        help="shoppers tables to measure the rebuild's memory on, comma-separated, e.g. 30000,60000 "
                             "(default: none)")
    parser.add_argument("--scan-latency-ms", type=float, default=0.0,
                        help="with --rebuild-shoppers, also time the rebuild with scan pages this late, read in one "
                             "part and in several at once (default: not)")
    parser.add_argument("--shoppers", type=int, default=60, help="Ingest workload: simulated shoppers (default 60)")
    parser.add_argument("--events", type=int, default=6000, help="Ingest workload: events at most (default 6000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/personas.json"))
    args = parser.parse_args(argv)
    report = run(rows=args.rows, personas=args.personas, shoppers=args.shoppers, events=args.events, seed=args.seed,
                 rebuild_shoppers=args.rebuild_shoppers, scan_latency_ms=args.scan_latency_ms)
    publish(report, format_table(report), args.out)
    return 0


def run(*, rows: int, personas: int, shoppers: int, events: int, seed: int,
        rebuild_shoppers: tuple[int, ...] = (), scan_latency_ms: float = 0.0) -> dict[str, Any]:
    model_blobs = _persona_model(seed)
    return {
        "benchmark": "personas",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "rebuild": _rebuild(rows, personas, seed),
        "rebuild_memory": _rebuild_memory(rebuild_shoppers, seed, scan_latency_ms),
        "ingest": _ingest_off_and_on(shoppers, events, seed, model_blobs),
    }


def format_table(report: dict[str, Any]) -> str:
    r = report["rebuild"]
    lines = [f"Rebuild (refine job, in-memory store): {r['counter_rows']:,} counter rows = {r['item_rows']:,} items x "
             f"{r['personas']} personas",
             f"  {r['seconds']:.1f} s in all, {r['seconds_per_100k_rows']:.2f} s per 100k counter rows; "
             f"{r['items_with_adjustments']:,} items with adjustments; peak memory {r['peak_rss_mb']:.0f} MB", ""]
    if report.get("rebuild_memory"):
        lines.append(f"Rebuild (re-clustering, in-memory store; fitted on {FIT_SHOPPERS:,} shoppers at most), "
                     "memory it allocates at peak:")
        for m in report["rebuild_memory"]:
            lines.append(f"  {m['shoppers']:>9,} shoppers: {m['peak_mb']:7.1f} MB, {m['seconds']:.1f} s under "
                         f"tracemalloc (k={m['k']}, fitted on {m['fitted_on']:,})")
            if "scan_latency_ms" in m:
                lines.append(f"  {'':>9}  scan pages {m['scan_latency_ms']:g} ms late: "
                             + ", ".join(f"{seconds:.1f} s in {n} part{'s' if n != 1 else ''}"
                                         for n, seconds in m["seconds_by_scan_parts"].items()))
        lines.append("")
    header = ("personas", "events", "events/s", "batch p50 ms", "batch p99 ms", "writes/1k ev", "reads/1k ev")
    rows = [header] + [(i["personas"], str(i["events"]), f"{i['events_per_second']:.0f}", f"{i['batch_ms_p50']:.1f}",
                        f"{i['batch_ms_p99']:.1f}", f"{i['write_calls_per_1k_events']:.0f}",
                        f"{i['read_calls_per_1k_events']:.1f}") for i in report["ingest"]]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    table = ["  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in rows]
    table.insert(1, "  ".join("-" * w for w in widths))
    off, on = report["ingest"]
    change = on["events_per_second"] / off["events_per_second"] - 1
    return "\n".join(lines + ["Ingest (domain service, in-memory store):"] + table
                     + [f"events/s with personas: {change:+.1%}"])


def _rebuild(rows: int, personas: int, seed: int) -> dict[str, Any]:
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    model = current_model(_persona_model(seed, personas=personas))
    assert model is not None
    from tailor.personas.storage import publish_model

    publish_model(blobs, model)
    items = rows // model.k
    rng = np.random.default_rng(seed)
    prefixes = list(COUNTERS.values()) + [DWELL_EVENTS]
    table = store.tables["items"]
    for i in range(items):
        item_id = f"item-{i:07d}"
        views = rng.poisson(20.0 * rng.random(model.k) + 0.2)
        row: dict[str, Any] = {"item_id": item_id, "price": float(10 + i % 500), "category": f"c{i % 40}"}
        for pid, v in zip(model.ids, views):
            row.update({f"{p}:{pid}": float(v * factor) for p, factor in
                        zip(prefixes, (3.0, 1.0, 0.3, 0.05, 0.02, 25.0, 0.8))})
        table[item_id] = row
    started = time.perf_counter()
    summary = run_job("refine", store, blobs, seed=seed)
    seconds = time.perf_counter() - started
    return {"counter_rows": items * model.k, "item_rows": items, "personas": model.k, "seconds": round(seconds, 3),
            "seconds_per_100k_rows": round(seconds / (items * model.k) * 100_000, 4),
            "items_with_adjustments": summary["adjustments"]["items_kept"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _rebuild_memory(sizes: tuple[int, ...], seed: int, scan_latency_ms: float = 0.0) -> list[dict[str, Any]]:
    """The rebuild job's peak allocation and time on shoppers tables of each size; with `scan_latency_ms`, also its
    time with every scan page answered that much later (as a DynamoDB page would be), reading the table in one part
    and in SCAN_SEGMENTS parts at once."""
    if not sizes:
        return []
    replay = Replay()
    replay.feed(simulate(shoppers=600, days=5.0, seed=seed + 2000).events)
    out = []
    for size in sizes:
        store = _shoppers_table(replay.store, size)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        summary = run_job("rebuild", store, MemoryBlobStore(), seed=seed, clock=lambda: 1.8e9)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
        row = {"shoppers": summary["shoppers"], "k": summary["k"], "fitted_on": summary["fitted_on"],
               "assigned": summary.get("assigned"), "seconds": round(seconds, 1), "peak_mb": round(peak / 2**20, 1)}
        if scan_latency_ms > 0:
            slow = _SlowScans(store, scan_latency_ms / 1000.0)
            row["seconds_by_scan_parts"] = {}
            for segments in (1, rebuild.SCAN_SEGMENTS):
                chosen, rebuild.SCAN_SEGMENTS = rebuild.SCAN_SEGMENTS, segments
                try:
                    started = time.perf_counter()
                    run_job("rebuild", slow, MemoryBlobStore(), seed=seed, clock=lambda: 1.8e9)
                    row["seconds_by_scan_parts"][segments] = round(time.perf_counter() - started, 1)
                finally:
                    rebuild.SCAN_SEGMENTS = chosen
            row["scan_latency_ms"] = scan_latency_ms
        out.append(row)
    return out


def _shoppers_table(simulated: MemoryStateStore, size: int) -> MemoryStateStore:
    """A store of `size` shoppers: the simulation's shopper rows repeated under new ids, its items and queries."""
    rows = list(simulated.tables["shoppers"].items())
    store = MemoryStateStore()
    for table in ("items", "queries"):
        store.tables[table].update(simulated.tables[table])
    shoppers = store.tables["shoppers"]
    for n in range(size):
        user_id, row = rows[n % len(rows)]
        copy = f"{user_id}-{n // len(rows)}"
        shoppers[copy] = {**row, "user_id": copy}
    return store


class _SlowScans:
    """A store whose scans answer `latency` seconds late, each page on its own (its other calls as they are)."""

    def __init__(self, store: MemoryStateStore, latency: float):
        self.store, self.latency = store, latency

    def scan(self, table: str, **kwargs: Any) -> Any:
        time.sleep(self.latency)
        return self.store.scan(table, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def _persona_model(seed: int, personas: int | None = None) -> MemoryBlobStore:
    """A bucket holding a persona model built from a simulation of its own (another seed than the workload's)."""
    replay = Replay()
    replay.feed(simulate(shoppers=150, days=1.0, seed=seed + 1000).events)
    replay.job("rebuild", seed=seed) if personas is None else run_job(
        "rebuild", replay.store, replay.blobs, ks=(personas,), seed=seed)
    return replay.blobs


def _ingest_off_and_on(shoppers: int, events: int, seed: int, model_blobs: MemoryBlobStore) -> list[dict[str, Any]]:
    """Off and on, alternated REPEATS times on the shared machine; each setting's fastest run is reported."""
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(REPEATS):
        runs["off"].append(_ingest(shoppers, events, seed, None))
        runs["on"].append(_ingest(shoppers, events, seed, model_blobs))
    return [dict(max(found, key=lambda r: r["events_per_second"]), runs=len(found)) for found in runs.values()]


def _ingest(shoppers: int, events: int, seed: int, model_blobs: MemoryBlobStore | None) -> dict[str, Any]:
    payload = simulate(shoppers=shoppers, days=1.0, seed=seed).events[:events]
    store = MemoryStateStore()
    tracker = None
    if model_blobs is not None:
        tracker = PersonaTracker(ModelSource.fixed(current_model(model_blobs)))
    ingestor = Ingestor(store, MemoryBlobStore(), personas=tracker)
    shards = records_by_shard(payload, 49_000_000_000_000_000_000, arrival=time.time())
    durations = []
    for records in shards.values():
        for start in range(0, len(records), BATCH):
            began = time.perf_counter()
            outcome = ingestor.ingest(records[start:start + BATCH])
            durations.append((time.perf_counter() - began) * 1000)
            if outcome.failed:
                raise RuntimeError("ingest failed during the benchmark")
    return {"personas": "on" if tracker else "off", "events": len(payload), "batches": len(durations),
            "events_per_second": len(payload) / (sum(durations) / 1000), "batch_ms_p50": statistics.median(durations),
            "batch_ms_p99": percentile(durations, 99),
            "write_calls_per_1k_events": 1000 * store.calls["write"] / len(payload),
            "read_calls_per_1k_events": 1000 * store.calls["read"] / len(payload)}
