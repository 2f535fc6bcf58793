"""`tailor experiments stop` asks before it stops an experiment for good, and a script says --yes."""

from __future__ import annotations

import io

import pytest

from tailor_cli import experiments
from tailor_cli.main import main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def calls(monkeypatch):
    made = []

    def call(args, method, path, body=None):
        made.append((method, path))
        return 200, {"experiment_id": "exp-1", "status": "stopped"}

    monkeypatch.setattr(experiments, "_call", call)
    return made


STOP = ["experiments", "--api", "http://api.invalid", "--key", "k", "stop", "exp-1"]


def test_a_script_must_say_yes_to_stop_an_experiment(calls, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(STOP) == 2 and calls == []
    assert "give --yes" in capsys.readouterr().err
    assert main([*STOP, "--yes"]) == 0 and calls == [("POST", "/experiments/exp-1/stop")]


@pytest.mark.parametrize(("answer", "stopped"), [("y\n", True), ("yes\n", True), ("\n", False), ("n\n", False),
                                                ("", False)])
def test_at_a_terminal_it_asks_first_and_an_end_of_input_is_a_no(calls, monkeypatch, capsys, answer, stopped):
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    assert main(STOP) == (0 if stopped else 1)
    assert calls == ([("POST", "/experiments/exp-1/stop")] if stopped else [])
    assert "cannot be started again" in capsys.readouterr().err  # the question on stderr: stdout may be a file


def test_without_any_standard_input_it_is_refused(calls, monkeypatch):
    monkeypatch.setattr("sys.stdin", None)
    assert main(STOP) == 2 and calls == []
