"""What every benchmark shares: its nearest-rank percentiles, its table printed and figures written as JSON, and the
heap frozen around timed Ingest runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tailor_lab import report_json

__all__ = ["frozen_heap", "percentile", "publish"]


def publish(report: dict[str, Any], table: str, out: Path) -> None:
    """Print a benchmark's table and write its figures to `out` as JSON."""
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    report_json.write(out, report)
    print(f"\nwritten to {out}")


def percentile(values: list[float], q: float) -> float:
    """The `q`th percentile of `values`, a value among them (the nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Every object alive now kept out of the collector's passes until the block ends, as Ingest freezes what its
    init made (functions/ingest/app.py): the collector then walks what the timed code allocates, not the
    benchmark's own objects (simulated days, their records, item vectors)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
