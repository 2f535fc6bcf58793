"""The public data sets (YooChoose, Diginetica, CDNOW) as Tailor event streams, and events kept as JSON lines."""

from pathlib import Path

from .loaders import json_lines, load_cdnow, load_diginetica, load_yoochoose

__all__ = ["SHARED_DATA", "json_lines", "load_cdnow", "load_diginetica", "load_yoochoose"]

# Where the commands look for the public data sets unless told: ../shared/data beside the repository.
SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
