"""`tailor bench WHAT [ARGS]`: the lab's benchmarks, each tailor_lab.bench.WHAT's main(ARGS)."""

from __future__ import annotations

from typing import Any

from . import delegate

__all__ = ["COMMANDS", "NAME", "add_parser"]

NAME = "bench"
COMMANDS = {
    "ingest": "tailor_lab.bench.ingest",
    "serving": "tailor_lab.bench.serving",
    "coldstart": "tailor_lab.bench.coldstart",
    "personas": "tailor_lab.bench.personas",
    "ltv": "tailor_lab.bench.ltv",
    "reliability": "tailor_lab.bench.reliability",
    "embeddings": "tailor_lab.bench.embeddings",
    "experiments": "tailor_lab.bench.experiments",
    "archive": "tailor_lab.bench.archive",
}


def add_parser(commands: Any) -> None:
    delegate.add_group(commands, NAME, COMMANDS)
