"""How fast the simulator alone generates events: a table of events per second by size, and the JSON of it.

    tailor simulate speed [--sizes 1000x30,2000x56,500x1] [--repeats 3] [--seed 7] [--out bench-results/simulator.json]

Each row simulates SHOPPERSxDAYS with the default parameters, `--repeats` times, and keeps the fastest run (the
others waited on the machine's other work): events, CPU seconds of this process and wall seconds, and events per
second of each. The target is 50,000 events per CPU second on a month of 1,000 shoppers (the first size): CPU time,
because on a shared machine the wall clock also counts the other processes' turns.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

from tailor_lab.simulator import simulate

from .report import publish

__all__ = ["TARGET_EVENTS_PER_SECOND", "main", "measure"]

TARGET_EVENTS_PER_SECOND = 50_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor simulate speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000x30,2000x56,500x1",
                        help="comma-separated SHOPPERSxDAYS (1000x30,2000x56,500x1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; the fastest counts (3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/simulator.json"))
    args = parser.parse_args(argv)
    try:
        sizes = [(int(a), float(b)) for a, b in (size.strip().split("x") for size in args.sizes.split(",") if size)]
    except ValueError:
        parser.error(f"--sizes: expected SHOPPERSxDAYS pairs like 1000x30, got {args.sizes!r}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    report = measure(sizes, repeats=args.repeats, seed=args.seed)
    publish(report, format_table(report), args.out)
    return 0 if report["rows"][0]["events_per_second"] >= TARGET_EVENTS_PER_SECOND else 1


def measure(sizes: list[tuple[int, float]], *, repeats: int = 3, seed: int = 7) -> dict[str, Any]:
    rows = []
    for shoppers, days in sizes:
        cpu, wall = math.inf, math.inf
        for _ in range(repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            events = len(simulate(shoppers=shoppers, days=days, seed=seed).events)
            cpu = min(cpu, time.process_time() - started_cpu)
            wall = min(wall, time.perf_counter() - started)
        rows.append({"shoppers": shoppers, "days": days, "events": events, "cpu_seconds": round(cpu, 3),
                     "wall_seconds": round(wall, 3), "events_per_second": int(events / cpu),
                     "events_per_wall_second": int(events / wall)})
    return {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
            "python": platform.python_version(), "repeats": repeats, "seed": seed,
            "target_events_per_second": TARGET_EVENTS_PER_SECOND, "rows": rows}


def format_table(report: dict[str, Any]) -> str:
    lines = [f"Simulator alone, default parameters, fastest of {report['repeats']} runs "
             f"(target: {report['target_events_per_second']:,} events/s)",
             f"{'shoppers':>9} {'days':>6} {'events':>10} {'CPU s':>7} {'events/CPU s':>13} {'wall s':>7} "
             f"{'events/wall s':>14}"]
    for row in report["rows"]:
        lines.append(f"{row['shoppers']:>9} {row['days']:>6g} {row['events']:>10,} {row['cpu_seconds']:>7.2f} "
                     f"{row['events_per_second']:>13,} {row['wall_seconds']:>7.2f} {row['events_per_wall_second']:>14,}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
