"""`tailor train WHAT [ARGS]`: train a model the functions serve, each with its lab module's main(ARGS)."""

from __future__ import annotations

from typing import Any

from . import delegate

__all__ = ["COMMANDS", "NAME", "add_parser"]

NAME = "train"
COMMANDS = {
    "ranker": "tailor_lab.training.ranker",
    "intent": "tailor_lab.training.intent",
    "ltv": "tailor_lab.training.ltv_command",
    "embeddings": "tailor_lab.training.embeddings_command",
}


def add_parser(commands: Any) -> None:
    delegate.add_group(commands, NAME, COMMANDS)
