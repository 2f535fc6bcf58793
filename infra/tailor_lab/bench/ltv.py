"""LTV rebuild benchmark: shoppers scored per second by RebuildLtv on an in-memory store and on moto, and the time
for 1M shoppers extrapolated from the measured runs. Prints a table and writes the figures as JSON.

    tailor bench ltv [--shoppers 4000,16000] [--moto-shoppers 2000] [--page-size 500] [--writers 16]
                     [--out bench-results/ltv.json]

Shopper rows are folded by tailor.shopper.fold_shopper from synthetic purchase and view histories; the
model is trained on such histories first (not timed). Each run is one full rebuild from the first page
(features, ONNX scoring, percentiles, drivers, conditional row updates, a checkpoint per page). The
extrapolation takes the time per shopper of the largest run of each store, split into the part that
grows with shoppers and the fixed start (model load), fitted on the runs' sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tailor.events import parse_event
from tailor.ltv.rebuild import LtvRebuild
from tailor.ltv.scoring import MODEL_NAME
from tailor.models import ModelRegistry
from tailor.shopper import fold_shopper
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.training.ltv import train_ltv
from tailor_local.aws import create_state_tables

from .report import publish

__all__ = ["main", "run", "synthetic_histories"]

START = datetime(2025, 1, 6, tzinfo=dt.UTC)
WEEKS = 30
MILLION = 1_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench ltv", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", default="4000,16000", help="memory-store runs, comma-separated sizes")
    parser.add_argument("--moto-shoppers", default="1000,4000", help="moto runs, comma-separated sizes ('' for none)")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--writers", type=int, default=16, help="concurrent row updates (default 16, as deployed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/ltv.json"))
    args = parser.parse_args(argv)
    sizes = {"memory": _sizes(args.shoppers), "moto": _sizes(args.moto_shoppers)}
    report = run(sizes, page_size=args.page_size, writers=args.writers, seed=args.seed)
    publish(report, format_table(report), args.out)
    return 0


def run(sizes: dict[str, list[int]], *, page_size: int, writers: int, seed: int) -> dict[str, Any]:
    largest = max(n for ns in sizes.values() for n in ns)
    started = time.perf_counter()
    rows = _shopper_rows(largest, seed)
    folded = time.perf_counter() - started
    trained = train_ltv(synthetic_histories(400, seed=seed + 1), START + timedelta(weeks=WEEKS), horizon_weeks=8,
                        windows=3, step_weeks=1, backtest=False)
    as_of = (START + timedelta(weeks=WEEKS)).timestamp()
    runs = []
    for store_name, ns in sizes.items():
        for n in ns:
            runs.append(_measure(store_name, rows[:n], trained, as_of, page_size, writers))
    extrapolated = {}
    for store_name in sizes:
        measured = [r for r in runs if r["store"] == store_name]
        if not measured:
            continue
        n = np.array([r["shoppers"] for r in measured], dtype=float)
        t = np.array([r["seconds"] for r in measured], dtype=float)
        if len(measured) > 1:
            per_shopper, fixed = np.polyfit(n, t, 1)
        else:
            per_shopper, fixed = t[0] / n[0], 0.0
        seconds = max(fixed, 0.0) + per_shopper * MILLION
        extrapolated[store_name] = {"seconds_per_million": round(float(seconds), 1),
                                    "invocations_of_14_minutes": int(np.ceil(seconds / 840.0)),
                                    "from_runs": [int(v) for v in n]}
    return {"benchmark": "ltv-rebuild", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "settings": {"page_size": page_size, "writers": writers, "seed": seed, "model_horizon_weeks": 8,
                         "rows_folded_seconds": round(folded, 1)},
            "runs": runs, "one_million": extrapolated}


def format_table(report: dict[str, Any]) -> str:
    head = f"{'store':<8} {'shoppers':>9} {'seconds':>8} {'shoppers/s':>11} {'scoring s':>10} {'writes/checkpoints s':>21}"
    lines = ["RebuildLtv: one full run (features, ONNX scores, percentiles, drivers, row updates, checkpoints)", head,
             "-" * len(head)]
    for r in report["runs"]:
        lines.append(f"{r['store']:<8} {r['shoppers']:>9,} {r['seconds']:>8.2f} {r['shoppers_per_second']:>11,.0f} "
                     f"{r['scoring_seconds']:>10.2f} {r['seconds'] - r['scoring_seconds']:>21.2f}")
    for store, e in report["one_million"].items():
        lines.append(f"1M shoppers on {store}: {e['seconds_per_million']:,.0f} s extrapolated from runs of "
                     f"{', '.join(f'{n:,}' for n in e['from_runs'])} "
                     f"({e['invocations_of_14_minutes']} invocations of 14 minutes)")
    s = report["settings"]
    lines.append(f"page size {s['page_size']}, {s['writers']} concurrent writers, {report['machine']['cpus']} CPUs")
    return "\n".join(lines)


def synthetic_histories(shoppers: int, *, seed: int, weeks: int = WEEKS) -> list[dict]:
    """Purchase and view events of shoppers who join in the first weeks, buy at their own rate and may lapse."""
    rng = np.random.default_rng(seed)
    events = []
    for s in range(shoppers):
        joined = rng.uniform(0, 6 * 7)
        rate = rng.gamma(1.0, 0.5) / 7
        lapses = rng.exponential(60) if s % 2 else np.inf
        spend = rng.lognormal(3.0, 0.5)
        day = joined
        while day < weeks * 7 and day - joined <= lapses:
            when = START + timedelta(days=day)
            session = f"u{s}-{int(day)}"
            events.append({"event_id": f"v{s}-{len(events)}", "user_id": f"u{s}", "session_id": session,
                           "timestamp": (when - timedelta(minutes=5)).isoformat(), "event_type": "view",
                           "item_id": f"i{s % 50}", "category": f"c{s % 7}"})
            events.append({"event_id": f"p{s}-{len(events)}", "user_id": f"u{s}", "session_id": session,
                           "timestamp": when.isoformat(), "event_type": "purchase", "item_id": f"i{s % 50}",
                           "category": f"c{s % 7}", "price": round(spend * rng.uniform(0.7, 1.3), 2),
                           "quantity": int(rng.integers(1, 3))})
            day += rng.exponential(1 / rate)
    events.sort(key=lambda e: e["timestamp"])
    return events


# -- helpers ----------------------------------------------------------------------------------------

def _shopper_rows(n: int, seed: int) -> list[dict[str, Any]]:
    states = {}
    for raw in synthetic_histories(n, seed=seed):
        event = parse_event(raw)
        states[event.user_id] = fold_shopper(states.get(event.user_id), event)
    return [{**state.to_row(), "sw:shardId-000000000000": "0001"} for state in states.values()]


def _measure(store_name: str, rows: list[dict], trained, as_of: float, page_size: int, writers: int) -> dict[str, Any]:
    if store_name == "memory":
        store, blobs = MemoryStateStore(), MemoryBlobStore()
        for row in rows:
            store.tables["shoppers"][row["user_id"]] = row
        return _timed(store_name, store, blobs, len(rows), trained, as_of, page_size, writers)
    if store_name != "moto":
        raise SystemExit(f"unknown store {store_name!r}: use memory or moto")
    import boto3
    from botocore.config import Config
    from moto import mock_aws

    from tailor.store.aws import DynamoStateStore, S3BlobStore, to_dynamo

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    with mock_aws():
        client = boto3.client("dynamodb", config=Config(max_pool_connections=writers + 4))
        tables = create_state_tables(client, "bench", ("shoppers", "checkpoints"))
        for lo in range(0, len(rows), 25):
            client.batch_write_item(RequestItems={tables["shoppers"]: [
                {"PutRequest": {"Item": {k: to_dynamo(v) for k, v in row.items()}}} for row in rows[lo:lo + 25]]})
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-ltv")
        return _timed(store_name, DynamoStateStore(client, tables), S3BlobStore(s3, "bench-ltv"), len(rows), trained,
                      as_of, page_size, writers)


def _timed(store_name: str, store, blobs, n: int, trained, as_of: float, page_size: int, writers: int) -> dict:
    from tailor.ltv import rebuild as rebuild_module

    registry = ModelRegistry(blobs)
    registry.publish(MODEL_NAME, trained.onnx, trained.metadata)
    scoring = [0.0]
    score = rebuild_module.ltv_entries

    def timed_entries(*args, **kwargs):
        began = time.perf_counter()
        try:
            return score(*args, **kwargs)
        finally:
            scoring[0] += time.perf_counter() - began

    rebuild_module.ltv_entries = timed_entries
    try:
        job = LtvRebuild(store, registry, clock=lambda: as_of, page_size=page_size, writers=writers)
        began = time.perf_counter()
        report = job.run()
        seconds = time.perf_counter() - began
    finally:
        rebuild_module.ltv_entries = score
    if report["status"] != "done" or report["run_scored"] != n:
        raise RuntimeError(f"the rebuild did not score every shopper: {report}")
    return {"store": store_name, "shoppers": n, "seconds": round(seconds, 3),
            "shoppers_per_second": round(n / seconds, 1), "scoring_seconds": round(scoring[0], 3),
            "pages": report["pages"]}


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]
