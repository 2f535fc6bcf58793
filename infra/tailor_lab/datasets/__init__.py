"""The public data sets (YooChoose, Diginetica, CDNOW) as Tailor event streams, and events kept as JSON lines."""

from .loaders import json_lines, load_cdnow, load_diginetica, load_yoochoose

__all__ = ["json_lines", "load_cdnow", "load_diginetica", "load_yoochoose"]
