"""The `tailor` command: run the local stack and its API, replay shoppers through it, invoke functions, and look at the
state."""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib
import importlib.util
import itertools
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from tqdm import tqdm

from tailor_lab.datasets import json_lines

from . import sandbox
from .aws import DEFAULT_PORT, LocalAws
from .http import API_KEY_HEADER, DEFAULT_API_PORT
from .runtime import LambdaRuntime
from .schedule import schedule_sources, scheduled_event
from .stack import (
    LocalStack,
    PutResult,
    StackHandle,
    StackNotRunning,
    all_processed,
    processed_count,
    put_events,
    records_done,
    state_path,
)
from .template import Template, TemplateError, find_template

__all__ = ["main"]

DATASETS = ("sim", "yoochoose", "diginetica", "cdnow", "jsonl")
# The shared data sets sit beside the repository (../shared/data); --path points elsewhere.
DATA_FILES = {
    "yoochoose": "yoochoose-100k/train_tr.txt",
    "diginetica": "diginetica/train-item-views-sample.csv",
    "diginetica purchases": "diginetica/train-purchases.csv",
    "diginetica categories": "diginetica/product-categories.csv",
    "cdnow": "cdnow/CDNOW_master.txt",
}
# Give up waiting for the functions when they finish nothing for this long (a stuck shard, a broken handler).
STALL_TIMEOUT_S = 120.0
# Commands that live in modules of their own, each with main(argv) -> int: `tailor bench ingest ARGS...` runs
# tailor_lab.bench.ingest.main(ARGS).
DELEGATED = {
    ("bench", "ingest"): "tailor_lab.bench.ingest",
    ("bench", "serving"): "tailor_lab.bench.serving",
    ("train", "ranker"): "tailor_lab.training.ranker",
    ("evaluate", "next-item"): "tailor_lab.evaluation.nextitem",
    ("evaluate", "personas"): "tailor_lab.evaluation.personas",
    ("bench", "personas"): "tailor_lab.bench.personas",
    ("train", "intent"): "tailor_lab.training.intent",
    ("evaluate", "intent"): "tailor_lab.evaluation.intent",
    ("evaluate", "ltv"): "tailor_lab.evaluation.ltv",
    ("train", "ltv"): "tailor_lab.training.ltv_command",
    ("bench", "ltv"): "tailor_lab.bench.ltv",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Delegated commands parse their own arguments (--help included), after the global --template if given.
    start = 2 if argv[:1] == ["--template"] else 1 if argv[:1] and argv[0].startswith("--template=") else 0
    module_name = DELEGATED.get(tuple(argv[start:start + 2]))
    if module_name is not None:
        return importlib.import_module(module_name).main(argv[start + 2:])
    args = _parser().parse_args(argv)
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
        print(f"tailor: {exc}; start one with `{_tailor_command(args.template)} local up`", file=sys.stderr)
        return 1
    except (TemplateError, OSError) as exc:
        print(f"tailor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailor", description=__doc__)
    parser.add_argument("--template", type=Path, help="the SAM template (default: template.yaml here or above)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _delegated_commands(commands)

    local = commands.add_parser("local", help="the local stack").add_subparsers(required=True, metavar="ACTION")
    up = local.add_parser("up", help="start the local AWS and the functions, replay shoppers, stay up")
    up.add_argument("--port", type=int, default=DEFAULT_PORT,
                    help=f"port of the local AWS (default {DEFAULT_PORT}; 0 = any free port)")
    up.add_argument("--api-port", type=int, default=DEFAULT_API_PORT,
                    help=f"port of the API (default {DEFAULT_API_PORT}; 0 = any free port)")
    up.add_argument("--api-key", help="the API key the API asks for (default: a new random one)")
    up.add_argument("--replay", choices=("sim", "none"), default="sim", help="what to replay once up (default sim)")
    up.add_argument("--schedules", choices=("on", "off"), default="on",
                    help="fire rate(...) schedules on their timers (default on; cron schedules: tailor invoke)")
    _simulation_options(up)
    up.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter override")
    up.set_defaults(command=_local_up)
    status = local.add_parser("status", help="where the running stack answers and what its event sources did")
    status.set_defaults(command=_local_status)

    replay = commands.add_parser("replay", help="put events on the running stack's stream")
    replay.add_argument("source", choices=DATASETS, nargs="?", default="sim")
    replay.add_argument("--path", type=Path,
                        help="data file (diginetica: the item views file; jsonl: one event per line, e.g. a "
                             "simulation's events.jsonl)")
    replay.add_argument("--purchases", type=Path, help="diginetica purchases file")
    replay.add_argument("--categories", type=Path, help="diginetica product categories file")
    replay.add_argument("--limit", type=int, help="at most this many events")
    replay.add_argument("--no-wait", action="store_true", help="return once the events are on the stream")
    _simulation_options(replay)
    replay.set_defaults(command=_replay)

    invoke = commands.add_parser("invoke", help="run a function once, in this process, against the local stack")
    invoke.add_argument("function", help="logical id (IngestFunction) or short name (ingest)")
    invoke.add_argument("-e", "--event", type=Path,
                        help="event JSON file (default: a scheduled function's schedule event, else {})")
    invoke.set_defaults(command=_invoke)

    state = commands.add_parser("state", help="rows of the running stack's tables")
    what = state.add_subparsers(required=True, metavar="WHAT")
    for name, help_text in (("user", "a shopper and their sessions"), ("session", "a session"),
                            ("item", "an item and its associations"), ("query", "a search query's items")):
        sub = what.add_parser(name, help=help_text)
        sub.add_argument("key")
        sub.set_defaults(command=_state, what=name)
    tables = what.add_parser("tables", help="rows per table")
    tables.set_defaults(command=_state_tables)

    quarantine = commands.add_parser("quarantine", help="records the ingest rejected, with their reasons")
    quarantine.add_argument("--limit", type=int, default=20)
    quarantine.set_defaults(command=_quarantine)
    dlq = commands.add_parser("dlq", help="batches that exhausted their retries (the on-failure queue)")
    dlq.add_argument("--limit", type=int, default=10)
    dlq.add_argument("--records", action="store_true", help="also read the failed records from the stream")
    dlq.set_defaults(command=_dlq)
    return parser


def _delegated_commands(commands: Any) -> None:
    """`tailor bench`, `tailor train`, `tailor evaluate`: each lists what it runs; `tailor bench ingest ARGS` runs
    the module's main(ARGS), which has its own --help."""
    groups: dict[str, dict[str, str]] = {}
    for (group, verb), module_name in DELEGATED.items():
        groups.setdefault(group, {})[verb] = module_name
    for group, verbs in groups.items():
        sub = commands.add_parser(group, help=f"{', '.join(verbs)} (each with its own --help)",
                                  description=f"tailor {group} WHAT [ARGS]; `tailor {group} WHAT --help` for its "
                                              "options.")
        whats = sub.add_subparsers(required=True, metavar="WHAT")
        for verb, module_name in verbs.items():
            what = whats.add_parser(verb, help=_summary_of(module_name), add_help=False)
            what.add_argument("arguments", nargs=argparse.REMAINDER)
            what.set_defaults(command=lambda args, name=module_name: importlib.import_module(name).main(
                args.arguments))


def _summary_of(module_name: str) -> str:
    """The first line of a module's docstring, read without importing it (some import heavy libraries)."""
    try:
        spec = importlib.util.find_spec(module_name)
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
        docstring = ast.get_docstring(ast.parse(source)) or ""
    except (ImportError, OSError, SyntaxError, ValueError):
        return ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def _simulation_options(parser: argparse.ArgumentParser) -> None:
    # 150 shoppers make a day of a little over 10,000 events: enough to see every kind of state, quick to replay.
    parser.add_argument("--shoppers", type=int, default=150, help="simulated shoppers (default 150)")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    parser.add_argument("--start", type=dt.datetime.fromisoformat,
                        help="when the simulated days begin, ISO 8601 with a timezone (default: so they end now, "
                             "which keeps their popularity current for the API)")


# ---- local up / status ---------------------------------------------------------------------------


def _local_up(args: argparse.Namespace) -> int:
    template_path = args.template or find_template()
    state_file = state_path(template_path)
    try:
        running = StackHandle.load(state_file)
    except StackNotRunning:
        running = None
    if running is not None:
        _say(f"tailor: a local stack is already running at {running.endpoint} (pid {running.pid})")
        return 1
    log_path = state_file.parent / "functions.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Stopped by a service manager or `kill`: leave through the same cleanup as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    phases: dict[str, float] = {}
    with open(log_path, "w", encoding="utf-8") as function_log:
        stack = LocalStack(template_path, port=args.port, parameter_overrides=_overrides(args.param),
                           function_log=function_log, api_port=args.api_port, api_key=args.api_key)
        _say(f"Starting the local AWS on 127.0.0.1:{args.port or 'any free port'} ...")
        try:
            stack.start(schedules=args.schedules == "on")
        except KeyboardInterrupt:
            return 130
        phases.update({"local AWS": stack.timings["local AWS"], "resources": stack.timings["resources"]})
        _say(f"Local AWS up in {phases['local AWS']:.1f} s; the template's resources created in "
             f"{phases['resources']:.1f} s.")
        code = 0
        try:
            stack.write_state(state_file, every_s=1.0)
            _describe_stack(stack, log_path)
            tally = EventTally()
            if args.replay == "sim":
                _say(f"Simulating {args.shoppers} shoppers over {args.days:g} day(s), seed {args.seed} ...")
                from tailor_lab.simulator import simulate

                events = simulate(shoppers=args.shoppers, days=args.days, seed=args.seed,
                                  start=_simulation_start(args)).events
                _put_and_wait(stack.aws, stack.stream_name(), tally.watch(events), stack.progress, total=len(events),
                              phases=phases)
                _print_summary(stack.handle, stack.progress())
                started = time.monotonic()
                _build_personas(stack)
                phases["persona rebuild"] = time.monotonic() - started
                _print_next_steps(tally, stack.server.endpoint, stack.template.region, log_path,
                                  _tailor_command(args.template), stack.template.root)
            if stack.api is not None:
                started = time.monotonic()
                _warm_api(stack, log_path)
                phases["API ready"] = time.monotonic() - started
                _print_api_examples(stack.api.url, stack.api_key, tally)
            _say("\nPhases: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases.items()) + ".")
            _say(f"The local stack is up at {stack.server.endpoint}"
                 + (f", its API at {stack.api.url}" if stack.api else "") + ". Ctrl-C stops it.")
            threading.Event().wait()
        except KeyboardInterrupt:
            code = 130
        except SystemExit as stop:  # SIGTERM
            code = stop.code if isinstance(stop.code, int) else 1
        finally:
            stopping = time.monotonic()
            _say("\nStopping the local stack ...")
            stack.stop()
            state_file.unlink(missing_ok=True)
            _say(f"Stopped in {time.monotonic() - stopping:.1f} s.")
    return code


def _warm_api(stack: LocalStack, log_path: Path) -> None:
    """Initialise the functions behind the API, so the first requests find them warm, as provisioned concurrency
    would."""
    assert stack.api is not None and stack.runtime is not None
    for function_id in sorted({route.function_id for route in stack.api.gateway.api.routes}):
        function = stack.runtime.functions[function_id]
        started = time.monotonic()
        try:
            function.load()
        except Exception as exc:  # its requests will fail the same way, with 502s: say why once, here
            _say(f"{function_id} could not be initialised ({type(exc).__name__}: {exc}); see {_shown(log_path)}.")
            continue
        _say(f"API ready: {function_id} initialised in {time.monotonic() - started:.1f} s.")


def _build_personas(stack: LocalStack) -> None:
    """Run the daily persona rebuild once, as its schedule would a day later, so profiles and re-ranking show
    persona mixtures from the start."""
    if stack.runtime is None or "RebuildPersonasFunction" not in stack.template.resources:
        return
    function = stack.runtime.find("RebuildPersonasFunction")
    _say(f"Building personas ({function.logical_id}) ...")
    invocation = function.invoke(_event_for(stack.template, function.logical_id, None))
    if not invocation.ok:
        _say(f"The persona rebuild failed ({invocation.error['errorType']}); see the functions log.")  # type: ignore[index]
    elif invocation.payload.get("published"):
        _say(f"Personas built from the replayed shoppers in {invocation.duration_ms / 1000:.1f} s: "
             f"{invocation.payload['k']} personas.\n  {_k_choice(invocation.payload)}")
    else:
        _say(f"No personas yet: {invocation.payload.get('reason', 'nothing published')} "
             f"({invocation.payload.get('shoppers', 0)} shoppers with events).")


def _k_choice(payload: dict[str, Any]) -> str:
    return f"How k was chosen: {payload.get('k_choice') or 'by BIC'}."


def _local_status(args: argparse.Namespace) -> int:
    handle = _running(args)
    print(f"Local stack {handle.stack_name} at {handle.endpoint} (pid {handle.pid}, since {handle.started_at})")
    if handle.api_url:
        print(f"  API at {handle.api_url}, key {handle.api_key} (header {API_KEY_HEADER}); explorer {handle.api_url}/docs")
    _print_summary(handle, handle.mappings, say=print)
    return 0


def _describe_stack(stack: LocalStack, log_path: Path) -> None:
    assert stack.resources is not None and stack.runtime is not None
    _say(f"Local AWS at {stack.server.endpoint}, region {stack.template.region}; "
         f"resources from {stack.template.path.name}:")
    for lid, resource in stack.resources.items():
        if resource.type in ("AWS::DynamoDB::Table", "AWS::Kinesis::Stream", "AWS::SQS::Queue", "AWS::S3::Bucket"):
            _say(f"  {lid:<22} {resource.type:<22} {resource.name}")
    for key, mapping in stack.mappings.items():
        s = mapping.source
        _say(f"  {key}: {len(mapping.pollers)} shards, batch {s.batch_size}, window {s.batching_window_s:g} s, "
             f"retries {s.maximum_retry_attempts}, bisect {'on' if s.bisect_on_function_error else 'off'}")
    for key, timer in stack.timers.items():
        _say(f"  {key}: fires every {timer.period_s:g} s ({timer.source.expression})")
    if stack.api is not None:
        api = stack.api.gateway.api
        _say(f"  {api.logical_id}: {len(api.routes)} routes at {stack.api.url} (stage {api.stage} optional in the "
             f"path), API key {stack.api_key} in the {API_KEY_HEADER} header")
    _say(f"  function logs and API requests: {_shown(log_path)}")


# ---- replay --------------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    handle = _running(args)
    state_file = state_path(Path(handle.template))
    streams = handle.resources.of_type("AWS::Kinesis::Stream")
    if len(streams) != 1:
        raise TemplateError(f"the template has {len(streams)} Kinesis streams; replay needs exactly one")
    stream_name = next(iter(streams.values())).name
    events, total = _dataset_events(args, Path(handle.template).parent)
    if args.limit is not None:
        events = itertools.islice(events, args.limit)
        total = args.limit if total is None else min(total, args.limit)
    tally = EventTally()

    def progress() -> dict[str, Any]:
        return StackHandle.load(state_file).mappings

    _put_and_wait(handle.aws, stream_name, tally.watch(events), progress, total=total, wait=not args.no_wait)
    if not args.no_wait:
        _print_summary(handle, StackHandle.load(state_file).mappings)
    _print_next_steps(tally, handle.endpoint, handle.region, state_file.parent / "functions.log",
                      _tailor_command(args.template))
    return 0


def _dataset_events(args: argparse.Namespace, repo_root: Path) -> tuple[Iterator[dict[str, Any]], int | None]:
    """The events to replay, and how many there are when that is known up front."""
    if args.source == "sim":
        from tailor_lab.simulator import simulate

        _say(f"Simulating {args.shoppers} shoppers over {args.days:g} day(s), seed {args.seed} ...")
        events = simulate(shoppers=args.shoppers, days=args.days, seed=args.seed, start=_simulation_start(args)).events
        return iter(events), len(events)
    if args.source == "jsonl":
        if args.path is None:
            raise FileNotFoundError("replay jsonl needs --path FILE")
        return json_lines(_existing(args.path)), None
    from tailor_lab import datasets

    if args.source == "yoochoose":
        return datasets.load_yoochoose(_existing(args.path or _data_file(repo_root, "yoochoose"))), None
    if args.source == "diginetica":
        return datasets.load_diginetica(
            _existing(args.path or _data_file(repo_root, "diginetica")),
            _existing(args.purchases or _data_file(repo_root, "diginetica purchases")),
            _existing(args.categories or _data_file(repo_root, "diginetica categories")),
        ), None
    return datasets.load_cdnow(_existing(args.path or _data_file(repo_root, "cdnow"))), None


def _put_and_wait(aws: LocalAws, stream_name: str, events: Iterable[dict[str, Any]],
                  progress: Callable[[], dict[str, Any]], *, total: int | None, wait: bool = True,
                  phases: dict[str, float] | None = None) -> PutResult:
    """Put the events on the stream, showing how many the functions have applied so far, then follow them until they
    have finished with every record; how long each took goes into `phases` ("replay put", "drain")."""
    phases = {} if phases is None else phases
    mappings = progress()
    baseline = records_done(mappings)
    followed = wait and any(m["stream"] == stream_name for m in mappings.values())
    so_far = PutResult()
    started = time.monotonic()
    with tqdm(total=total, unit=" events", desc="put on stream", file=sys.stderr) as bar:
        def advance(count: int) -> None:
            bar.update(count)
            so_far.records += count
            if followed:
                applied = processed_count(progress(), stream_name, so_far, baseline)
                bar.set_postfix_str(f"{min(applied, so_far.records):,} applied", refresh=False)

        put = put_events(aws, stream_name, events, on_progress=advance)
    phases["replay put"] = time.monotonic() - started
    _say(f"Put {put.records:,} events on {stream_name} in {phases['replay put']:.1f} s.")
    if not followed:
        return put
    drain_started = time.monotonic()
    mappings = progress()
    with tqdm(total=put.records, unit=" events", desc="applied", file=sys.stderr) as bar:
        last_change = time.monotonic()
        while not all_processed(mappings, stream_name, put):
            done = min(put.records, processed_count(mappings, stream_name, put, baseline))
            if done != bar.n:
                bar.update(done - bar.n)
                last_change = time.monotonic()
            elif time.monotonic() - last_change > STALL_TIMEOUT_S:
                _say(f"No record finished in {STALL_TIMEOUT_S:.0f} s; not waiting any longer (see the function logs).")
                return put
            time.sleep(0.25)
            mappings = progress()
        bar.update(put.records - bar.n)
    phases["drain"] = time.monotonic() - drain_started
    _say(f"Applied all {put.records:,} events in {time.monotonic() - started:.1f} s: "
         f"{phases['drain']:.1f} s after the last one was put.")
    return put


class EventTally:
    """Counts the replayed events by shopper, session, item and query, to suggest real ids to look at."""

    def __init__(self) -> None:
        self.users: Counter[str] = Counter()
        self.buyers: Counter[str] = Counter()
        self.sessions: dict[str, Counter[str]] = {}
        self.items: dict[str, Counter[str]] = {}
        self.queries: dict[str, Counter[str]] = {}

    def watch(self, events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for event in events:
            user = str(event.get("user_id"))
            self.users[user] += 1
            if event.get("event_type") == "purchase":
                self.buyers[user] += 1
            self.sessions.setdefault(user, Counter())[str(event.get("session_id"))] += 1
            if event.get("item_id"):
                self.items.setdefault(user, Counter())[str(event["item_id"])] += 1
            if event.get("event_type") == "search" and event.get("query"):
                self.queries.setdefault(user, Counter())[str(event["query"])] += 1
            yield event

    def showcase_user(self) -> str | None:
        """A busy shopper, preferably one who bought something and searched."""
        ranked = [u for u, _ in self.users.most_common()]
        for wanted in (lambda u: u in self.buyers and u in self.queries, lambda u: u in self.buyers, lambda u: True):
            for user in ranked:
                if wanted(user):
                    return user
        return None


def _print_next_steps(tally: EventTally, endpoint: str, region: str, log_path: Path, tailor: str,
                      repo_root: Path | None = None) -> None:
    """Commands worth trying next, as they run from here (`tailor` is how to call this command), with real ids from
    what was just replayed; replay ideas when `repo_root` is given."""
    user = tally.showcase_user()
    if user is None:
        return
    session = tally.sessions[user].most_common(1)[0][0]
    item = tally.items[user].most_common(1)[0][0] if user in tally.items else None
    query = tally.queries[user].most_common(1)[0][0] if user in tally.queries else None
    sample_batch = _shown(log_path.parent.parent / "events" / "ingest-kinesis-batch.json")  # beside the template
    lines = [
        ("What to look at and try, from another terminal:", ""),
        (f"{tailor} state user {shlex.quote(user)}", "a busy shopper: counters, RFM inputs, category affinity, sessions"),
        (f"{tailor} state session {shlex.quote(session)}",
         "their busiest session: counts by type, recent items, signals"),
    ]
    if item:
        lines.append((f"{tailor} state item {shlex.quote(item)}",
                      "their most visited item: counters and co-occurring items"))
    if query:
        lines.append((f"{tailor} state query {shlex.quote(query)}", "one of their searches and the items it led to"))
    lines.append((f"{tailor} state tables", "rows per table"))
    lines.append((f"{tailor} quarantine", "malformed records and the reason each was rejected"))
    lines.append((f"{tailor} dlq --records", "batches that exhausted their retries, with their records"))
    lines.append((f"{tailor} invoke ingest -e {shlex.quote(sample_batch)}",
                  "one batch with valid, invalid and duplicate records"))
    if repo_root is not None:
        lines.append((f"{tailor} replay sim --shoppers 50 --days 0.2 --seed 8", "more shoppers through the same path"))
        if _data_file(repo_root, "yoochoose").is_file():
            lines.append((f"{tailor} replay yoochoose --limit 5000", "real sessions (YooChoose) through the same path"))
    lines.append((f"tail -f {shlex.quote(_shown(log_path))}", "the functions' logs"))
    # The local AWS takes any credentials, but the AWS CLI wants some.
    lines.append((f"AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws --region {region} --endpoint-url {endpoint} "
                  "dynamodb list-tables", "any AWS SDK or CLI works against it"))
    # Descriptions line up after the commands, but not after the longest few: those get a line of their own.
    width = max((len(command) for command, why in lines if why and len(command) <= 72), default=0)
    _say("")
    for command, why in lines:
        if not why:
            _say(command)
        elif len(command) <= width:
            _say(f"  {command:<{width}}  {why}")
        else:
            _say(f"  {command}\n  {'':<{width}}  {why}")


@dataclass(frozen=True)
class ApiExample:
    """A curl command to try the API with, what it shows, and the status it answers with."""

    purpose: str
    command: str
    status: int


def api_examples(url: str, key: str, tally: EventTally, now: dt.datetime | None = None) -> list[ApiExample]:
    """Commands that work as printed against the running API, with ids from what was replayed when there are any."""
    now = now or dt.datetime.now(dt.timezone.utc)
    user = tally.showcase_user() or "u-demo-0"
    session = tally.sessions[user].most_common(1)[0][0] if user in tally.sessions else None
    item = tally.items[user].most_common(1)[0][0] if user in tally.items else "item-00001"
    query = tally.queries[user].most_common(1)[0][0] if user in tally.queries else None
    catalog = list(dict.fromkeys([*(tally.items.get(user) or {}), *(i for c in tally.items.values() for i in c)]))
    newcomer = "u-demo-1"
    # Someone else than the showcase shopper, so the other commands keep working after this one.
    erasable = next((u for u, _ in reversed(tally.users.most_common()) if u != user), newcomer)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def curl(path: str, query_: dict[str, Any] | None = None, *, body: Any = None, method: str | None = None,
             keyed: bool = True) -> str:
        target = url + path + ("?" + urlencode(query_, quote_via=quote) if query_ else "")
        parts = ["curl", "-s", "-w", "\\nHTTP %{http_code}\\n"]
        if keyed:
            parts += ["-H", f"{API_KEY_HEADER}: {key}"]
        if method:
            parts += ["-X", method]
        if body is not None:
            parts += ["-H", "content-type: application/json", "-d", json.dumps(body, separators=(",", ":"))]
        return " ".join(shlex.quote(p) for p in [*parts, target])

    def view(n: int, shopper: str, viewed: str, **extra: Any) -> dict[str, Any]:
        return {"event_id": f"demo-{now:%Y%m%d%H%M%S}-{n}", "user_id": shopper, "session_id": f"{shopper}-s1",
                "timestamp": stamp, "event_type": "view", "item_id": viewed, **extra}

    feed = f"/users/{quote(user, safe='')}/feed"
    examples = [
        ApiExample("a busy shopper's feed" + (", in their busiest session" if session else ""),
                   curl(feed, {"n": 5, **({"session_id": session} if session else {})}), 200),
        ApiExample("the same, under 200, each score explained",
                   curl(feed, {"n": 3, "max_price": 200, "explain": "true"}), 200),
        ApiExample("a shopper Tailor has never seen: the cold-start feed",
                   curl(f"/users/{newcomer}/feed", {"n": 5}), 200),
    ]
    if query:
        examples.append(ApiExample("one of their searches, re-ranked for them",
                                   curl("/search", {"q": query, "user_id": user, "n": 5}), 200))
    examples += [
        ApiExample("items related to their most visited item", curl(f"/items/{quote(item, safe='')}/related",
                                                                     {"n": 5}), 200),
        ApiExample("related items given the session so far (session_data: events, not yet ingested)",
                   curl(f"/items/{quote(item, safe='')}/related", body={"user_id": newcomer, "n": 5, "session_data": [
                       view(1, newcomer, item)]}), 200),
        ApiExample("the caller's own list, re-ranked for the shopper",
                   curl("/rerank", body={"items": catalog[:6] or [item], "user_id": user, "n": 3}), 200),
        ApiExample("what Tailor knows about the shopper", curl(f"/users/{quote(user, safe='')}/profile"), 200),
        ApiExample("events over HTTP: each one accepted or refused with its reason (the second has no timestamp)",
                   curl("/events", body={"events": [view(2, newcomer, item),
                                                    {k: v for k, v in view(3, newcomer, item).items()
                                                     if k != "timestamp"}]}), 200),
        ApiExample("erase a shopper (their rows, sessions and archived events)",
                   curl(f"/users/{quote(erasable, safe='')}", method="DELETE"), 200),
        ApiExample("without the key: refused as API Gateway's usage plan refuses it", curl(feed, {"n": 5}, keyed=False),
                   403),
        ApiExample("malformed parameters: 422 naming each field", curl(feed, {"n": 0, "min_price": -5}), 422),
        ApiExample("the OpenAPI document (in a browser, /docs is an explorer)", curl("/docs", {"format": "json"},
                                                                                     keyed=False), 200),
    ]
    return examples


def _print_api_examples(url: str, key: str, tally: EventTally) -> None:
    _say(f"\nThe API answers at {url}; every request but /docs needs the key {key} in the {API_KEY_HEADER} header "
         "(a new key each start unless --api-key). Try, from another terminal:")
    for example in api_examples(url, key, tally):
        _say(f"  # {example.purpose} (expect HTTP {example.status})")
        _say(f"  {example.command}")


def _simulation_start(args: argparse.Namespace) -> dt.datetime:
    if args.start is not None:
        if args.start.tzinfo is None:
            raise TemplateError("--start needs a timezone, e.g. 2026-11-02T00:00:00+00:00")
        return args.start
    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    return now - dt.timedelta(days=args.days)


def _print_summary(handle: StackHandle, mappings: dict[str, Any], say: Callable[[str], None] | None = None) -> None:
    """What the event sources did and what the tables hold; to the terminal, or through `say`."""
    say = say or _say
    for key, mapping in mappings.items():
        shards = mapping["shards"].values()
        totals = {name: sum(s[name] for s in shards) for name in
                  ("records_done", "batches", "invocations", "retries", "bisections", "records_discarded")}
        say(f"  {key}: {totals['records_done']:,} records in {totals['batches']:,} batches, "
             f"{totals['invocations']:,} invocations, {totals['retries']} retries, {totals['bisections']} bisections, "
             f"{totals['records_discarded']} records discarded to the failure queue")
    if "DataBucket" in handle.resources:
        quarantined = sum(1 for _ in handle.objects("DataBucket", "quarantine/"))
        archived = sum(1 for _ in handle.objects("DataBucket", "archive/"))
        say(f"  DataBucket: {quarantined:,} quarantined records, {archived:,} archive objects")
    if "IngestFailureQueue" in handle.resources:
        say(f"  IngestFailureQueue: {handle.queue_depth('IngestFailureQueue')} failure records")
    counts = handle.row_counts()
    say("  rows: " + ", ".join(f"{lid} {n:,}" for lid, n in counts.items()))


# ---- invoke --------------------------------------------------------------------------------------


def _invoke(args: argparse.Namespace) -> int:
    template_path = args.template or find_template()
    try:
        handle = StackHandle.load(state_path(template_path))
    except StackNotRunning:
        _say("No local stack is running; starting a temporary one for this invocation.")
        # Its own resource names: moto's state is per process, shared with any other stack started in it.
        with LocalStack(template_path, port=0, stack_name=f"tailor-invoke-{uuid.uuid4().hex[:8]}",
                        function_log=sys.stderr) as stack:
            assert stack.runtime is not None
            return _invoke_and_print(stack.runtime, args.function, args.event)
    template = Template.load(template_path, region=handle.region, stack_name=handle.stack_name)
    return _invoke_and_print(LambdaRuntime(template, handle.resources, handle.aws, log_stream=sys.stderr),
                             args.function, args.event)


def _invoke_and_print(runtime: LambdaRuntime, name: str, event_file: Path | None) -> int:
    function = runtime.find(name)
    invocation = function.invoke(_event_for(runtime.template, function.logical_id, event_file))
    print(json.dumps(invocation.payload if invocation.ok else invocation.error, indent=2))
    outcome = "ok" if invocation.ok else f"error {invocation.error['errorType']}"  # type: ignore[index]
    _say(f"{function.logical_id}: {outcome} in {invocation.duration_ms:.0f} ms (request {invocation.request_id})")
    if invocation.ok and isinstance(invocation.payload, dict) and "k_choice" in invocation.payload:
        _say(_k_choice(invocation.payload))  # a persona rebuild: why this many personas
    return 0 if invocation.ok else 1


def _event_for(template: Template, function_id: str, event_file: Path | None) -> Any:
    """The event file's content; without one, what the function's first schedule would send it, else {}."""
    if event_file is not None:
        return json.loads(event_file.read_text(encoding="utf-8"))
    for schedule in schedule_sources(template):
        if schedule.function_id == function_id:
            _say(f"Firing {function_id}.{schedule.event_name} ({schedule.expression}).")
            return scheduled_event(schedule, region=template.region, account_id=template.account_id,
                                   stack_name=template.stack_name)
    return {}


# ---- state, quarantine, dlq ----------------------------------------------------------------------


def _state(args: argparse.Namespace) -> int:
    handle = _running(args)
    key = args.key
    if args.what == "user":
        found = _show_row(handle, "ShoppersTable", {"user_id": key}, f"shopper {key}")
        sessions = sorted(handle.scan("SessionsTable", user_id=key),
                          key=lambda row: (row.get("last_seen") or 0, row["session_id"]))
        _say(f"\n{len(sessions)} session(s) of {key}, latest last:")
        for row in sessions:
            _print_json(row)
        return 0 if found or sessions else 1
    if args.what == "session":
        return 0 if _show_row(handle, "SessionsTable", {"session_id": key}, f"session {key}") else 1
    if args.what == "item":
        found = _show_row(handle, "ItemsTable", {"item_id": key}, f"item {key}")
        if "AssociationsTable" in handle.resources:
            _show_row(handle, "AssociationsTable", {"item_id": key}, f"associations of item {key}")
        return 0 if found else 1
    from tailor.text import normalize_query

    return 0 if _show_row(handle, "QueriesTable", {"query": normalize_query(key)}, f"query {key!r}") else 1


def _state_tables(args: argparse.Namespace) -> int:
    handle = _running(args)
    for lid, count in handle.row_counts().items():
        print(f"{lid:<22} {handle.resources.name(lid):<36} {count:>9,} rows")
    return 0


def _show_row(handle: StackHandle, table: str, key: dict[str, str], label: str) -> bool:
    row = handle.get_row(table, key)
    if row is None:
        _say(f"no {label} in {handle.resources.name(table)}")
        return False
    _say(f"{label} ({handle.resources.name(table)}):")
    _print_json(row)
    return True


def _quarantine(args: argparse.Namespace) -> int:
    handle = _running(args)
    objects = list(handle.objects("DataBucket", "quarantine/"))
    _say(f"{len(objects)} quarantined record(s) in s3://{handle.resources.name('DataBucket')}/quarantine/"
         + (f", the last {args.limit}:" if len(objects) > args.limit else ":"))
    for obj in objects[-args.limit:]:
        body = handle.read_object("DataBucket", obj["Key"])
        try:
            entry = json.loads(body)
        except json.JSONDecodeError:
            print(f"{obj['Key']}\n    {body[:200]!r}")
            continue
        data = str(entry.get("data", ""))
        print(f"{entry.get('shard', '?')}:{entry.get('sequence_number', '?')}  {entry.get('reason', '(no reason)')}\n"
              f"    data: {data[:160]}{'...' if len(data) > 160 else ''}")
    return 0


def _dlq(args: argparse.Namespace) -> int:
    handle = _running(args)
    depth = handle.queue_depth("IngestFailureQueue")
    _say(f"{depth} failure record(s) in {handle.resources.name('IngestFailureQueue')}")
    for message in handle.peek_messages("IngestFailureQueue", args.limit):
        record = json.loads(message["Body"])
        info = record.get("KinesisBatchInfo", {})
        context = record.get("requestContext", {})
        print(f"{info.get('shardId')} {info.get('startSequenceNumber')}..{info.get('endSequenceNumber')} "
              f"({info.get('batchSize')} records): {context.get('condition')} after "
              f"{context.get('approximateInvokeCount')} invocation(s), {record.get('timestamp')}")
        if args.records and info:
            for data in _stream_records(handle.aws, info):
                print(f"    {data.decode('utf-8', errors='replace')[:160]}")
    return 0


def _stream_records(aws: LocalAws, info: dict[str, Any]) -> Iterator[bytes]:
    """The records a failure record points at, read back from the stream."""
    kinesis = aws.client("kinesis")
    iterator = kinesis.get_shard_iterator(StreamName=info["streamArn"].split(":stream/", 1)[1], ShardId=info["shardId"],
                                          ShardIteratorType="AT_SEQUENCE_NUMBER",
                                          StartingSequenceNumber=info["startSequenceNumber"])["ShardIterator"]
    end = int(info["endSequenceNumber"])
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=min(int(info.get("batchSize") or 100), 10_000))
        for record in page["Records"]:
            if int(record["SequenceNumber"]) > end:
                return
            yield record["Data"]
        if not page["Records"]:
            return
        iterator = page.get("NextShardIterator")


# ---- helpers -------------------------------------------------------------------------------------


def _running(args: argparse.Namespace) -> StackHandle:
    return StackHandle.load(state_path(args.template or find_template()))


def _overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise TemplateError(f"--param takes NAME=VALUE, not {pair!r}")
        overrides[name] = value
    return overrides


def _data_file(repo_root: Path, name: str) -> Path:
    return repo_root.parent / "shared" / "data" / DATA_FILES[name]


def _existing(path: Path) -> Path:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no data file {path}; give one with --path")
    return Path(path)


def _print_json(row: Any, out: TextIO | None = None) -> None:
    print(json.dumps(row, indent=2, sort_keys=True, default=_json_value), file=out or sys.stdout)


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


def _tailor_command(template: Path | None = None) -> str:
    """This command as the person at the terminal can run it from where they are: `tailor` when that is the one on
    their PATH, else its path (.venv/bin/tailor), else the interpreter running the module; with --template if given."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if Path(program).name == "tailor" and Path(program).is_file():
        on_path = shutil.which("tailor")
        same = on_path is not None and os.path.samefile(on_path, program)
        command = "tailor" if same else shlex.quote(_shown(Path(program)))
    else:
        command = f"{shlex.quote(_shown(Path(sys.executable)))} -m tailor_local.cli"
    return command + (f" --template {shlex.quote(_shown(template))}" if template is not None else "")


def _shown(path: Path) -> str:
    """A path as short as it can be and still work from here: relative inside the current folder, else absolute (links
    kept: .venv/bin/python is the virtualenv's, whatever it links to)."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    if relative.startswith(os.pardir):
        return absolute
    return relative if os.sep in relative else f".{os.sep}{relative}"


def _say(text: str) -> None:
    """Messages for the person at the terminal go to stderr; stdout carries the results that scripts read."""
    print(text, file=sys.stderr)


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


if __name__ == "__main__":
    sys.exit(main())
