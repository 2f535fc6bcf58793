"""What the verb groups share: the running stack they look at, and how they speak to the person at the terminal."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from tailor_local.stack import StackHandle, state_path
from tailor_local.template import find_template

__all__ = ["at_least_one", "print_json", "print_summary", "running", "say", "shown", "tailor_command"]


def running(args: argparse.Namespace) -> StackHandle:
    """The stack `tailor local up` keeps running for the template (--template, else template.yaml here or above)."""
    return StackHandle.load(state_path(args.template or find_template()))


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more (a --limit of 0 asks for nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def print_summary(handle: StackHandle, mappings: dict[str, Any], line: Callable[[str], None] | None = None) -> None:
    """What the event sources did and what the tables hold; to the terminal, or line by line through `line`."""
    line = line or say
    for key, mapping in mappings.items():
        shards = mapping["shards"].values()
        totals = {name: sum(s[name] for s in shards) for name in
                  ("records_done", "batches", "invocations", "retries", "bisections", "records_discarded")}
        line(f"  {key}: {totals['records_done']:,} records in {totals['batches']:,} batches, "
             f"{totals['invocations']:,} invocations, {totals['retries']} retries, {totals['bisections']} bisections, "
             f"{totals['records_discarded']} records discarded to the failure queue")
    if "DataBucket" in handle.resources:
        quarantined = sum(1 for _ in handle.objects("DataBucket", "quarantine/"))
        archived = sum(1 for _ in handle.objects("DataBucket", "archive/"))
        line(f"  DataBucket: {quarantined:,} quarantined records, {archived:,} archive objects")
    if "IngestFailureQueue" in handle.resources:
        line(f"  IngestFailureQueue: {handle.queue_depth('IngestFailureQueue')} failure records")
    counts = handle.row_counts()
    line("  rows: " + ", ".join(f"{lid} {n:,}" for lid, n in counts.items()))


def say(text: str) -> None:
    """Messages for the person at the terminal go to stderr; stdout carries the results that scripts read."""
    print(text, file=sys.stderr)


def print_json(row: Any, out: TextIO | None = None) -> None:
    print(json.dumps(row, indent=2, sort_keys=True, default=_json_value), file=out or sys.stdout)


def tailor_command(template: Path | None = None) -> str:
    """This command as the person at the terminal can run it from where they are: `tailor` when that is the one on
    their PATH, else its path (.venv/bin/tailor), else the interpreter running the package; with --template if given."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if Path(program).name == "tailor" and Path(program).is_file():
        on_path = shutil.which("tailor")
        same = on_path is not None and os.path.samefile(on_path, program)
        command = "tailor" if same else shlex.quote(shown(Path(program)))
    else:
        command = f"{shlex.quote(shown(Path(sys.executable)))} -m tailor_cli"
    return command + (f" --template {shlex.quote(shown(template))}" if template is not None else "")


def shown(path: Path) -> str:
    """A path as short as it can be and still work from here: relative inside the current folder, else absolute (links
    kept: .venv/bin/python is the virtualenv's, whatever it links to)."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    if relative.startswith(os.pardir):
        return absolute
    return relative if os.sep in relative else f".{os.sep}{relative}"


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "value") and isinstance(value.value, (bytes, bytearray)):  # boto3's Binary
        return value.value.decode("utf-8", errors="replace")
    return str(value)
