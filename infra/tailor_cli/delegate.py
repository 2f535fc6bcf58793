"""The lab's verb groups (`tailor bench`, `tailor train`, `tailor evaluate`): each lists what it runs, and
`tailor bench ingest ARGS` runs that module's main(ARGS), which parses its own arguments, --help included."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
from pathlib import Path
from typing import Any

__all__ = ["add_group"]


def add_group(commands: Any, group: str, verbs: dict[str, str]) -> None:
    """`tailor GROUP`, listing each verb with the first line of its module's docstring."""
    sub = commands.add_parser(group, help=f"{', '.join(verbs)} (each with its own --help)",
                              description=f"tailor {group} WHAT [ARGS]; `tailor {group} WHAT --help` for its options.")
    whats = sub.add_subparsers(required=True, metavar="WHAT")
    for verb, module_name in verbs.items():
        what = whats.add_parser(verb, help=_summary_of(module_name), add_help=False)
        what.add_argument("arguments", nargs=argparse.REMAINDER)
        what.set_defaults(command=lambda args, name=module_name: importlib.import_module(name).main(args.arguments))


def _summary_of(module_name: str) -> str:
    """The first line of a module's docstring, read without importing it (some import heavy libraries)."""
    try:
        spec = importlib.util.find_spec(module_name)
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
        docstring = ast.get_docstring(ast.parse(source)) or ""
    except (ImportError, OSError, SyntaxError, ValueError):
        return ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""
