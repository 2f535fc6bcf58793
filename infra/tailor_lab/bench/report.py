"""What every benchmark shares: its nearest-rank percentiles, and its table printed and figures written as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["percentile", "publish"]


def publish(report: dict[str, Any], table: str, out: Path) -> None:
    """Print a benchmark's table and write its figures to `out` as JSON."""
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out}")


def percentile(values: list[float], q: float) -> float:
    """The `q`th percentile of `values`, a value among them (the nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
