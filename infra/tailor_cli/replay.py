"""`tailor replay SOURCE`: put a simulated day or a data set on the running stack's stream, follow the functions until
they have applied it, and suggest what to look at with ids from what was replayed."""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tailor_lab.datasets import json_lines
from tailor_local.aws import LocalAws
from tailor_local.stack import (
    PutResult,
    StackHandle,
    all_processed,
    processed_count,
    put_events,
    records_done,
    state_path,
)
from tailor_local.template import TemplateError

from .common import print_summary, running, say, shown, tailor_command

__all__ = ["EventTally", "add_parser", "data_file", "print_next_steps", "put_and_wait", "simulated_events",
           "simulation_options", "simulation_start"]

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


def add_parser(commands: Any) -> None:
    replay = commands.add_parser("replay", help="put events on the running stack's stream")
    replay.add_argument("source", choices=DATASETS, nargs="?", default="sim")
    replay.add_argument("--path", type=Path,
                        help="data file (diginetica: the item views file; jsonl: one event per line, e.g. a "
                             "simulation's events.jsonl)")
    replay.add_argument("--purchases", type=Path, help="diginetica purchases file")
    replay.add_argument("--categories", type=Path, help="diginetica product categories file")
    replay.add_argument("--limit", type=int, help="at most this many events")
    replay.add_argument("--no-wait", action="store_true", help="return once the events are on the stream")
    simulation_options(replay)
    replay.set_defaults(command=_replay)


def simulation_options(parser: argparse.ArgumentParser) -> None:
    # 420 shoppers make a day of a little over 10,000 events: enough to see every kind of state, quick to replay.
    parser.add_argument("--shoppers", type=int, default=420, help="simulated shoppers (default 420)")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    parser.add_argument("--start", type=dt.datetime.fromisoformat,
                        help="when the simulated days begin, ISO 8601 with a timezone (default: so they end now, "
                             "which keeps their popularity current for the API)")


SESSION_ALLOWANCE = dt.timedelta(hours=2)


def simulation_start(args: argparse.Namespace) -> dt.datetime:
    if args.start is not None:
        if args.start.tzinfo is None:
            raise TemplateError("--start needs a timezone, e.g. 2026-11-02T00:00:00+00:00")
        return args.start
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    # A session begun near the end of the window runs on past it, and Ingest refuses events from the future:
    # the window ends early enough that the longest simulated session is over by now.
    return now - dt.timedelta(days=args.days) - SESSION_ALLOWANCE


def simulated_events(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The events of the lab's simulated shoppers the simulation options ask for."""
    say(f"Simulating {args.shoppers} shoppers over {args.days:g} day(s), seed {args.seed} ...")
    from tailor_lab.simulator import simulate

    return simulate(shoppers=args.shoppers, days=args.days, seed=args.seed, start=simulation_start(args)).events


def put_and_wait(aws: LocalAws, stream_name: str, events: Iterable[dict[str, Any]],
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
    say(f"Put {put.records:,} events on {stream_name} in {phases['replay put']:.1f} s.")
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
                say(f"No record finished in {STALL_TIMEOUT_S:.0f} s; not waiting any longer (see the function logs).")
                return put
            time.sleep(0.25)
            mappings = progress()
        bar.update(put.records - bar.n)
    phases["drain"] = time.monotonic() - drain_started
    say(f"Applied all {put.records:,} events in {time.monotonic() - started:.1f} s: "
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


def print_next_steps(tally: EventTally, endpoint: str, region: str, log_path: Path, tailor: str,
                     repo_root: Path | None = None) -> None:
    """Commands worth trying next, as they run from here (`tailor` is how to call this command), with real ids from
    what was just replayed; replay ideas when `repo_root` is given."""
    user = tally.showcase_user()
    if user is None:
        return
    session = tally.sessions[user].most_common(1)[0][0]
    item = tally.items[user].most_common(1)[0][0] if user in tally.items else None
    query = tally.queries[user].most_common(1)[0][0] if user in tally.queries else None
    sample_batch = shown(log_path.parent.parent / "events" / "ingest-kinesis-batch.json")  # beside the template
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
        if data_file(repo_root, "yoochoose").is_file():
            lines.append((f"{tailor} replay yoochoose --limit 5000", "real sessions (YooChoose) through the same path"))
    lines.append((f"tail -f {shlex.quote(shown(log_path))}", "the functions' logs"))
    # The local AWS takes any credentials, but the AWS CLI wants some.
    lines.append((f"AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws --region {region} --endpoint-url {endpoint} "
                  "dynamodb list-tables", "any AWS SDK or CLI works against it"))
    # Descriptions line up after the commands, but not after the longest few: those get a line of their own.
    width = max((len(command) for command, why in lines if why and len(command) <= 72), default=0)
    say("")
    for command, why in lines:
        if not why:
            say(command)
        elif len(command) <= width:
            say(f"  {command:<{width}}  {why}")
        else:
            say(f"  {command}\n  {'':<{width}}  {why}")


def data_file(repo_root: Path, name: str) -> Path:
    return repo_root.parent / "shared" / "data" / DATA_FILES[name]


def _replay(args: argparse.Namespace) -> int:
    handle = running(args)
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

    put_and_wait(handle.aws, stream_name, tally.watch(events), progress, total=total, wait=not args.no_wait)
    if not args.no_wait:
        print_summary(handle, StackHandle.load(state_file).mappings)
    print_next_steps(tally, handle.endpoint, handle.region, state_file.parent / "functions.log",
                     tailor_command(args.template))
    return 0


def _dataset_events(args: argparse.Namespace, repo_root: Path) -> tuple[Iterator[dict[str, Any]], int | None]:
    """The events to replay, and how many there are when that is known up front."""
    if args.source == "sim":
        events = simulated_events(args)
        return iter(events), len(events)
    if args.source == "jsonl":
        if args.path is None:
            raise FileNotFoundError("replay jsonl needs --path FILE")
        return json_lines(_existing(args.path)), None
    from tailor_lab import datasets

    if args.source == "yoochoose":
        return datasets.load_yoochoose(_existing(args.path or data_file(repo_root, "yoochoose"))), None
    if args.source == "diginetica":
        return datasets.load_diginetica(
            _existing(args.path or data_file(repo_root, "diginetica")),
            _existing(args.purchases or data_file(repo_root, "diginetica purchases")),
            _existing(args.categories or data_file(repo_root, "diginetica categories")),
        ), None
    return datasets.load_cdnow(_existing(args.path or data_file(repo_root, "cdnow"))), None


def _existing(path: Path) -> Path:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no data file {path}; give one with --path")
    return Path(path)
