"""`tailor simulate WHAT [ARGS]`: the shopper simulator's commands (calibration, the closed loop, its speed), each a
lab module's main(ARGS)."""

from __future__ import annotations

from typing import Any

from . import delegate

__all__ = ["COMMANDS", "NAME", "add_parser"]

NAME = "simulate"
COMMANDS = {
    "calibrate": "tailor_lab.simulator.calibration",
    "online": "tailor_lab.evaluation.closed_loop",
    "speed": "tailor_lab.bench.simulator",
}


def add_parser(commands: Any) -> None:
    delegate.add_group(commands, NAME, COMMANDS)
