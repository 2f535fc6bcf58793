"""`tailor simulate WHAT [ARGS]`: the shopper simulator's own commands, each tailor_lab.simulator.WHAT's main(ARGS)."""

from __future__ import annotations

from typing import Any

from . import delegate

__all__ = ["COMMANDS", "NAME", "add_parser"]

NAME = "simulate"
COMMANDS = {
    "calibrate": "tailor_lab.simulator.calibration",
}


def add_parser(commands: Any) -> None:
    delegate.add_group(commands, NAME, COMMANDS)
