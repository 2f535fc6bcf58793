"""`tailor local up` and `tailor local status`: the local AWS with the template's resources and functions, a simulated
day of the lab's shoppers replayed through it, its API warmed up, and what its event sources did."""

from __future__ import annotations

import argparse
import datetime as dt
import faulthandler
import json
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

from tailor_local.aws import DEFAULT_PORT
from tailor_local.http import API_KEY_HEADER, DEFAULT_API_PORT
from tailor_local.runtime import Invocation
from tailor_local.stack import LocalStack, StackHandle, StackNotRunning, state_path
from tailor_local.template import TemplateError, find_template

from .common import print_summary, running, say, shown, tailor_command
from .invoke import event_for, k_choice
from .replay import EventTally, print_next_steps, put_and_wait, simulated_events, simulation_options

__all__ = ["ApiExample", "add_parser", "api_examples", "wait_until_interrupted"]


def add_parser(commands: Any) -> None:
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
    simulation_options(up)
    up.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter override")
    up.set_defaults(command=_local_up)
    status = local.add_parser("status", help="where the running stack answers and what its event sources did")
    status.set_defaults(command=_local_status)


@dataclass(frozen=True)
class ApiExample:
    """A curl command to try the API with, what it shows, and the status it answers with."""

    purpose: str
    command: str
    status: int


# Items the rerank example sends; the catalog example sells out an item outside them, so the others show the same.
RERANKED = 6


def api_examples(url: str, key: str, tally: EventTally, now: dt.datetime | None = None) -> list[ApiExample]:
    """Commands that work as printed against the running API, with ids from what was replayed when there are any."""
    now = now or dt.datetime.now(dt.UTC)
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
                   curl("/rerank", body={"items": catalog[:RERANKED] or [item], "user_id": user, "n": 3}), 200),
        ApiExample("what Tailor knows about the shopper", curl(f"/users/{quote(user, safe='')}/profile"), 200),
        ApiExample("events over HTTP: each one accepted or refused with its reason (the second has no timestamp)",
                   curl("/events", body={"events": [view(2, newcomer, item),
                                                    {k: v for k, v in view(3, newcomer, item).items()
                                                     if k != "timestamp"}]}), 200),
        ApiExample("catalog entries: a new item with its metadata, and one the shop sold out of (it leaves feeds)",
                   curl("/items", body={"items": [
                       {"item_id": "demo-new-item", "name": "Demo item", "category": "demo", "price": 19.9,
                        "available": True},
                       {"item_id": catalog[-1] if len(catalog) > RERANKED else "demo-sold-out", "available": False}]}),
                   200),
        ApiExample("an item as served: each catalog field and where it comes from, its counts, cluster and vector",
                   curl(f"/items/{quote(item, safe='')}"), 200),
        ApiExample("erase a shopper: their state at once, their sessions and archived events after (see status_url)",
                   curl(f"/users/{quote(erasable, safe='')}", method="DELETE"), 202),
        ApiExample("without the key: refused as API Gateway's usage plan refuses it", curl(feed, {"n": 5}, keyed=False),
                   403),
        ApiExample("malformed parameters: 422 naming each field", curl(feed, {"n": 0, "min_price": -5}), 422),
        ApiExample("the OpenAPI document (in a browser, /docs is an explorer)", curl("/docs", {"format": "json"},
                                                                                     keyed=False), 200),
    ]
    return examples



def _local_up(args: argparse.Namespace) -> int:
    template_path = args.template or find_template()
    state_file = state_path(template_path)
    try:
        running_stack = StackHandle.load(state_file)
    except StackNotRunning:
        running_stack = None
    if running_stack is not None:
        say(f"tailor: a local stack is already running at {running_stack.endpoint} (pid {running_stack.pid})")
        return 1
    log_path = state_file.parent / "functions.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Stopped by a service manager or `kill`: leave through the same cleanup as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # Ctrl-C stops it, as it says, even where it was started with SIGINT ignored (a script's `tailor local up &`
    # inherits that, and Python keeps it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # `kill -USR1 PID` prints every thread's stack: what a stack that is slow to start or stop is doing.
    faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    phases: dict[str, float] = {}
    with open(log_path, "w", encoding="utf-8") as function_log:
        stack = LocalStack(template_path, port=args.port, parameter_overrides=_overrides(args.param),
                           function_log=function_log, api_port=args.api_port, api_key=args.api_key,
                           stream_processes=True)
        say(f"Starting the local AWS on 127.0.0.1:{args.port or 'any free port'} ...")
        try:
            # Timers start once the replay is in: a merge or rebuild they fired meanwhile would redo what follows it.
            stack.start(schedules=False)
        except KeyboardInterrupt:
            return 130
        phases.update({"local AWS": stack.timings["local AWS"], "resources": stack.timings["resources"]})
        say(f"Local AWS up in {phases['local AWS']:.1f} s; the template's resources created in "
            f"{phases['resources']:.1f} s.")
        code = 0
        try:
            stack.write_state(state_file, every_s=1.0)
            _describe_stack(stack, log_path)
            tally = EventTally()
            if args.replay == "sim":
                # The lab's simulator feeds the stack: the local AWS itself knows nothing of it.
                events = simulated_events(args)
                put_and_wait(stack.aws, stack.stream_name(), tally.watch(events), stack.progress, total=len(events),
                             phases=phases)
                print_summary(stack.handle, stack.progress())
                started = time.monotonic()
                _run_after_replay(stack, phases)
                phases["after the replay"] = time.monotonic() - started
                print_next_steps(tally, stack.server.endpoint, stack.template.region, log_path,
                                 tailor_command(args.template), stack.template.root)
            if args.schedules == "on":
                stack.start_schedules()
            if stack.api is not None:
                started = time.monotonic()
                _warm_api(stack, log_path)
                phases["API ready"] = time.monotonic() - started
                _print_api_examples(stack.api.url, stack.api_key, tally)
            say("\nPhases: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases.items()) + ".")
            say(f"The local stack is up at {stack.server.endpoint}"
                + (f", its API at {stack.api.url}" if stack.api else "") + ". Ctrl-C stops it.")
            wait_until_interrupted()
        except KeyboardInterrupt:
            code = 130
        except SystemExit as stop:  # SIGTERM
            code = stop.code if isinstance(stop.code, int) else 1
        finally:
            stopping = time.monotonic()
            say("\nStopping the local stack ...")
            stack.stop()
            state_file.unlink(missing_ok=True)
            say(f"Stopped in {time.monotonic() - stopping:.1f} s.")
    _exit_without_waiting_for_handlers(code)


def wait_until_interrupted(wake_seconds: float = 1.0) -> NoReturn:
    """Wait for Ctrl-C (KeyboardInterrupt). Python runs a signal's handler on the main thread, and a signal the system
    hands one of the stack's many other threads interrupts no wait there: waking every `wake_seconds` acts on it."""
    while True:
        time.sleep(wake_seconds)


def _exit_without_waiting_for_handlers(code: int) -> NoReturn:
    """Leave now, once the stack has stopped and its files are closed: a handler's thread pool may still be working
    through calls to the local AWS that has gone, and Python would wait for each of its threads before exiting (they
    are daemons, but concurrent.futures joins them all the same), for many seconds."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
            say(f"{function_id} could not be initialised ({type(exc).__name__}: {exc}); see {shown(log_path)}.")
            continue
        say(f"API ready: {function_id} initialised in {time.monotonic() - started:.1f} s.")


def _run_after_replay(stack: LocalStack, phases: dict[str, float]) -> None:
    """What the schedules would run after the replay, in two lanes side by side: the counter merge and then the
    persona rebuild (which reads the merged counters); the LTV and the cluster rebuilds (which read the shopper rows
    and the archive that Ingest wrote). The merge's time is the local AWS's, the rebuilds' mostly this process's, so
    the lanes overlap on two cores."""

    def lane(steps: list[tuple[str, Any]]) -> None:
        for phase, step in steps:
            started = time.monotonic()
            step(stack)
            phases[phase] = time.monotonic() - started

    models = threading.Thread(target=lane, args=([("LTV rebuild", _score_ltv), ("cluster rebuild", _build_clusters)],),
                              name="after-replay-models", daemon=True)
    models.start()
    lane([("counter merge", _merge_counters), ("persona rebuild", _build_personas)])
    models.join()


def _merge_counters(stack: LocalStack) -> None:
    """Merge Ingest's buffered counters into the items, associations, queries and trends rows now, as the merge's
    schedule would within a minute, so popularity and related items (and the persona rebuild) see the replay."""
    _invoke_once(stack, "MergeCountersFunction", "counter merge")


def _build_personas(stack: LocalStack) -> None:
    """Run the daily persona rebuild once, as its schedule would a day later, so profiles and re-ranking show
    persona mixtures from the start."""
    invocation = _invoke_once(stack, "RebuildPersonasFunction", "persona rebuild", announce="Building personas")
    if invocation is None or not invocation.ok:
        return
    if invocation.payload.get("published"):
        say(f"Personas built from the replayed shoppers in {invocation.duration_ms / 1000:.1f} s: "
            f"{invocation.payload['k']} personas.\n  {k_choice(invocation.payload)}")
    else:
        say(f"No personas yet: {invocation.payload.get('reason', 'nothing published')} "
            f"({invocation.payload.get('shoppers', 0)} shoppers with events).")


def _score_ltv(stack: LocalStack) -> None:
    """Score every shopper's lifetime value once, as RebuildLtv's schedule would within 15 minutes, so profiles show
    an LTV and its drivers from the start (with the model shipped in the layer while the registry has none)."""
    invocation = _invoke_once(stack, "RebuildLtvFunction", "LTV rebuild", announce="Scoring lifetime values")
    if invocation is not None and invocation.ok:
        report = invocation.payload
        say(f"Lifetime values: {report.get('scored', 0)} shoppers scored ({report.get('model', 'no model')}) "
            f"in {invocation.duration_ms / 1000:.1f} s.")


def _build_clusters(stack: LocalStack) -> None:
    """Run the daily item cluster rebuild once, as its schedule would a day later, so the adaptive feed strategy and
    Ingest's session posteriors have the replay's clusters from the start (the API loads them when it starts)."""
    invocation = _invoke_once(stack, "RebuildClustersFunction", "cluster rebuild", announce="Building item clusters")
    if invocation is not None and invocation.ok:
        report = invocation.payload
        say(f"Item clusters: {report.get('clusters', 0)} over {report.get('items', 0)} items "
            f"({report.get('status')}) in {invocation.duration_ms / 1000:.1f} s.")


def _invoke_once(stack: LocalStack, function_id: str, what: str, *,
                 announce: str | None = None) -> Invocation | None:
    """Invoke a scheduled function of the template once, with its schedule's event, saying so if it failed; None if
    the template has no such function."""
    if stack.runtime is None or function_id not in stack.template.resources:
        return None
    function = stack.runtime.find(function_id)
    if announce:
        say(f"{announce} ({function.logical_id}) ...")
    invocation = function.invoke(event_for(stack.template, function.logical_id, None))
    if not invocation.ok:
        say(f"The {what} failed ({invocation.error['errorType']}); see the functions log.")  # type: ignore[index]
    return invocation


def _local_status(args: argparse.Namespace) -> int:
    handle = running(args)
    print(f"Local stack {handle.stack_name} at {handle.endpoint} (pid {handle.pid}, since {handle.started_at})")
    if handle.api_url:
        print(f"  API at {handle.api_url}, key {handle.api_key} (header {API_KEY_HEADER}); explorer {handle.api_url}/docs")
    print_summary(handle, handle.mappings, line=print)
    return 0


def _describe_stack(stack: LocalStack, log_path: Path) -> None:
    assert stack.resources is not None and stack.runtime is not None
    say(f"Local AWS at {stack.server.endpoint}, region {stack.template.region}; "
        f"resources from {stack.template.path.name}:")
    for lid, resource in stack.resources.items():
        if resource.type in ("AWS::DynamoDB::Table", "AWS::Kinesis::Stream", "AWS::SQS::Queue", "AWS::S3::Bucket"):
            say(f"  {lid:<22} {resource.type:<22} {resource.name}")
    for key, mapping in stack.mappings.items():
        s = mapping.source
        say(f"  {key}: {len(mapping.pollers)} shards, batch {s.batch_size}, window {s.batching_window_s:g} s, "
            f"retries {s.maximum_retry_attempts}, bisect {'on' if s.bisect_on_function_error else 'off'}")
    for key, timer in stack.timers.items():
        say(f"  {key}: fires every {timer.period_s:g} s ({timer.source.expression})")
    if stack.api is not None:
        api = stack.api.gateway.api
        say(f"  {api.logical_id}: {len(api.routes)} routes at {stack.api.url} (stage {api.stage} optional in the "
            f"path), API key {stack.api_key} in the {API_KEY_HEADER} header")
    say(f"  function logs and API requests: {shown(log_path)}")


def _print_api_examples(url: str, key: str, tally: EventTally) -> None:
    say(f"\nThe API answers at {url}; every request but /docs needs the key {key} in the {API_KEY_HEADER} header "
        "(a new key each start unless --api-key). Try, from another terminal:")
    for example in api_examples(url, key, tally):
        say(f"  # {example.purpose} (expect HTTP {example.status})")
        say(f"  {example.command}")
    say(f"The experiments console, in a browser: {url}/console#key={key}")


def _overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise TemplateError(f"--param takes NAME=VALUE, not {pair!r}")
        overrides[name] = value
    return overrides
