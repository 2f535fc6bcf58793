"""`tailor evaluate WHAT [ARGS]`: the lab's evaluations, each tailor_lab.evaluation.WHAT's main(ARGS)."""

from __future__ import annotations

from typing import Any

from . import delegate

__all__ = ["COMMANDS", "NAME", "add_parser"]

NAME = "evaluate"
COMMANDS = {
    "next-item": "tailor_lab.evaluation.nextitem",
    "personas": "tailor_lab.evaluation.personas",
    "intent": "tailor_lab.evaluation.intent",
    "ltv": "tailor_lab.evaluation.ltv",
    "experiments": "tailor_lab.evaluation.experiments",
    "adaptation": "tailor_lab.evaluation.adaptation",
}


def add_parser(commands: Any) -> None:
    delegate.add_group(commands, NAME, COMMANDS)
