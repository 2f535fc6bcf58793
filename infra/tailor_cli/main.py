"""The `tailor` command: run the local stack and its API, replay shoppers through it, invoke functions, and look at the
state."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from tailor_local import sandbox
from tailor_local.stack import StackNotRunning
from tailor_local.template import TemplateError

from . import bench, catalog, dlq, evaluate, experiments, invoke, local, quarantine, replay, simulate, state, train
from .common import tailor_command

__all__ = ["DELEGATED", "main"]

# The verb groups `tailor --help` lists, in its order; each adds its own subparser.
VERB_GROUPS = (bench, train, evaluate, simulate, local, replay, catalog, invoke, state, experiments, quarantine, dlq)
# Commands that live in modules of their own, each with main(argv) -> int: `tailor bench ingest ARGS...` runs
# tailor_lab.bench.ingest.main(ARGS).
DELEGATED = {(group.NAME, verb): module_name for group in (bench, train, evaluate, simulate)
             for verb, module_name in group.COMMANDS.items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Delegated commands parse their own arguments (--help included), after the global --template if given.
    start = 2 if argv[:1] == ["--template"] else 1 if argv[:1] and argv[0].startswith("--template=") else 0
    module_name = DELEGATED.get(tuple(argv[start:start + 2]))
    if module_name is not None:
        return importlib.import_module(module_name).main(argv[start + 2:])
    args = parser().parse_args(argv)
    # Before anything keeps a reference to sys.stderr: output of functions running in this process then goes to
    # their log, whatever thread they run on, and the rest to the terminal.
    sandbox.install()
    _log_to_terminal()
    try:
        code = args.command(args) or 0
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`tailor state user X | head`): stop quietly, as a filter does. Python flushes stdout
        # again on the way out, so it is pointed at /dev/null first (the way the signal module's docs show).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except StackNotRunning as exc:
        print(f"tailor: {exc}; start one with `{tailor_command(args.template)} local up`", file=sys.stderr)
        return 1
    except (TemplateError, OSError) as exc:
        print(f"tailor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    """`tailor [--template FILE] COMMAND ...`, each verb group's subparser built by its own module."""
    tailor = argparse.ArgumentParser(prog="tailor", description=__doc__)
    tailor.add_argument("--template", type=Path, help="the SAM template (default: template.yaml here or above)")
    commands = tailor.add_subparsers(required=True, metavar="COMMAND")
    for group in VERB_GROUPS:
        group.add_parser(commands)
    return tailor


class _TerminalLog(logging.Handler):
    """Log records for the person at the terminal, written around the progress bars. A function's own records (its
    libraries' loggers, on the thread it runs on) go to its log instead, as they would go to CloudWatch."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if sandbox.current() is not None:
                sys.stderr.write(text + "\n")  # sys.stderr writes to the log of the invocation on this thread
            else:
                tqdm.write(text, file=sys.stderr)
        except Exception:
            self.handleError(record)


def _log_to_terminal() -> None:
    root = logging.getLogger()
    if not any(isinstance(handler, _TerminalLog) for handler in root.handlers):
        handler = _TerminalLog(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
