"""Reports as strict JSON: the tools that read them (jq, a browser's JSON.parse, a check's script) refuse the NaN and
Infinity that Python's json writes by default. A figure that is not a finite number (a ratio over nothing, a
correlation of constants, an open goal bound) is written null."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["dumps", "strict", "write"]


def dumps(report: Any) -> str:
    """`report` as indented strict JSON, ending in a newline."""
    return json.dumps(strict(report), indent=2, allow_nan=False) + "\n"


def write(path: str | os.PathLike[str], report: Any) -> None:
    Path(path).write_text(dumps(report), encoding="utf-8")


def strict(value: Any) -> Any:
    """`value` with every float that is not finite as None (tuples as lists, numpy numbers as Python's)."""
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
