"""Cold-start benchmark: the API and Ingest functions started in fresh processes as Lambda starts them, against the
local AWS behind an endpoint with DynamoDB-like latency; imports, module init and the first request timed apart,
the median of several starts. Prints a table with the targets beside it and writes the figures as JSON.

    tailor bench coldstart [--runs 5] [--functions api,ingest] [--shoppers 300] [--dynamodb-ms 5]
                           [--baseline CHECKOUT] [--from-source] [--tracing off|on|both]
                           [--out bench-results/coldstart.json]

The first request is a known shopper's feed for the API and a batch of 100 events never seen before for Ingest.
The functions see only the packages they have in AWS. With --baseline, another checkout's functions are started
in turn with these (before and after in the same conditions); with --from-source, the layers' modules are compiled
at every start, as in Lambda today.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tailor_lab.simulator import simulate
from tailor_local.kinesis import kinesis_event
from tailor_local.runtime import LocalFunction
from tailor_local.stack import LocalStack
from tailor_local.template import find_template

from .coldstart_probe import FROM_SOURCE_VARIABLE, HIDDEN_VARIABLE, PROFILE_VARIABLE
from .latency import CONNECT_MS, LATENCY_MS, LatencyEndpoint, excess_ms
from .report import publish
from .state import FEED_N, copy_to_dynamo, feed_event, feed_requests, ingested

__all__ = ["FUNCTIONS", "TARGETS", "format_table", "layer_packages", "main", "measure", "not_deployed", "run"]

# Imports + module init, in ms, at most (issue 14).
TARGETS = {"ApiFunction": 1000.0, "IngestFunction": 600.0}
FUNCTIONS = {"api": "ApiFunction", "ingest": "IngestFunction"}
RUNS = 5
INGEST_BATCH = 100  # the template's BatchSize
# What a function has in AWS besides its layers' own modules: the runtime layer's packages and the Lambda runtime's
# boto3, with what they require.
RUNTIME_REQUIREMENTS = Path("layers/runtime/requirements.txt")  # from the template's folder
LAMBDA_RUNTIME_PACKAGES = ("boto3",)
_PROBE = Path(__file__).with_name("coldstart_probe.py")
# An invocation's trace header, as Lambda sets it when X-Ray tracing is active (the probe's one invocation).
_TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench coldstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"timed starts per function, after one untimed ({RUNS})")
    parser.add_argument("--functions", default="api,ingest", help="comma-separated: api, ingest")
    parser.add_argument("--shoppers", type=int, default=300, help="simulated shoppers whose day is the state (300)")
    parser.add_argument("--items", type=int, default=3000, help="catalog size (3000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dynamodb-ms", type=float, default=LATENCY_MS["dynamodb"],
                        help=f"a DynamoDB call's latency ({LATENCY_MS['dynamodb']:g})")
    parser.add_argument("--s3-ms", type=float, default=LATENCY_MS["s3"],
                        help=f"an S3 call's latency ({LATENCY_MS['s3']:g})")
    parser.add_argument("--other-ms", type=float, default=LATENCY_MS["*"],
                        help=f"any other service's call latency ({LATENCY_MS['*']:g})")
    parser.add_argument("--connect-ms", type=float, default=CONNECT_MS,
                        help=f"a new connection's handshakes ({CONNECT_MS:g})")
    parser.add_argument("--tracing", choices=("off", "on", "both"), default="off",
                        help="X-Ray tracing off, as the local stack runs functions (it has no daemon); on, as "
                             "deployed; or both, start by start in turn (default off)")
    parser.add_argument("--all-packages", action="store_true",
                        help="let the functions import every package of this virtualenv, not only what they have in "
                             "AWS (by default the others are hidden: botocore imports awscrt and pyOpenSSL if found)")
    parser.add_argument("--from-source", action="store_true",
                        help="compile the layers' modules and the function's own from source at every start, as "
                             "Lambda does: the layers are built without bytecode")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout's folder (git worktree add /tmp/before HEAD~1): its functions and "
                             "layers are started too, start by start in turn with this one's, in rows of their own")
    parser.add_argument("--profile", type=Path, default=None,
                        help="a folder: the untimed start of each function writes its -X importtime log and a "
                             "cProfile of its init and first request there")
    parser.add_argument("--out", type=Path, default=Path("bench-results/coldstart.json"))
    parser.add_argument("--template", type=Path, default=None)
    args = parser.parse_args(argv)
    wanted = [f.strip() for f in args.functions.split(",") if f.strip()]
    if not wanted or set(wanted) - set(FUNCTIONS):
        parser.error("--functions takes api, ingest or both")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    latency = {"dynamodb": args.dynamodb_ms, "s3": args.s3_ms, "*": args.other_ms}
    report = run(functions=[FUNCTIONS[f] for f in wanted], runs=args.runs, shoppers=args.shoppers, items=args.items,
                 seed=args.seed, latency_ms=latency, connect_ms=args.connect_ms,
                 template=args.template or find_template(), tracing=args.tracing,
                 all_packages=args.all_packages, from_source=args.from_source, baseline=args.baseline,
                 profile=args.profile)
    publish(report, format_table(report), args.out)
    return 0


def run(*, functions: list[str], runs: int, shoppers: int, items: int, seed: int, latency_ms: dict[str, float],
        connect_ms: float, template: Path, tracing: str = "off", all_packages: bool = False,
        from_source: bool = False, baseline: Path | None = None, profile: Path | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    requirements = template.parent / RUNTIME_REQUIREMENTS
    hidden = [] if all_packages else not_deployed(requirements)
    compiled = layer_packages(requirements) if from_source else None
    simulation = simulate(shoppers=shoppers, days=1.0, seed=seed, start=now - dt.timedelta(days=1), items=items)
    state = ingested(simulation.events)
    results = []
    with open(os.devnull, "w") as quiet, contextlib.ExitStack() as stack_exit:
        stack = LocalStack(template, port=0, stack_name=f"tailor-bench-{uuid.uuid4().hex[:6]}",
                           function_log=quiet).start(pollers=False)
        try:
            copy_to_dynamo(state, stack)
            sink = stack_exit.enter_context(_udp_sink())
            for function_id in functions:
                function = stack.runtime.find(function_id)
                variants = {"": function}
                if baseline is not None:
                    variants["baseline"] = _checked_out(function, template.parent, baseline)
                if tracing != "off":
                    traced = {f"{label}, traced" if label else "traced": _traced(f, sink) for label, f in variants.items()}
                    variants = traced if tracing == "on" else {**variants, **traced}
                starts = (runs + 1) * len(variants)
                if function_id == "ApiFunction":
                    # Each variant's k-th start asks for the same shopper's feed.
                    events = [feed_event(user, session) for user, session in feed_requests(state, runs + 1, seed)
                              for _ in variants]
                else:
                    events = _ingest_events(stack, function, starts, seed=seed, items=items, now=now)
                results += measure(variants, events, latency_ms=latency_ms, connect_ms=connect_ms, hidden=hidden,
                                   from_source=compiled, profile=profile)
        finally:
            stack.stop()
    return {
        "benchmark": "coldstart",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "workload": {"simulated_shoppers": shoppers, "events": len(simulation.events), "catalog": items, "seed": seed,
                     "runs": runs, "feed_n": FEED_N, "ingest_batch": INGEST_BATCH},
        "latency_ms": latency_ms,
        "connect_ms": connect_ms,
        "tracing": tracing,
        "packages": "all of the virtualenv's" if all_packages else "as in AWS",
        "bytecode": "none for the layers and the function (as built)" if from_source else "the virtualenv's",
        "targets_ms": {f: TARGETS[f] for f in functions},
        "results": results,
        "baseline": None if baseline is None else str(baseline),
        "meets_targets": {_name(r): r["cold_start_ms"] <= TARGETS[r["function"]] for r in results},
    }


def measure(variants: Mapping[str, LocalFunction], events: list[dict[str, Any]], *,
            latency_ms: Mapping[str, float] = LATENCY_MS, connect_ms: float = CONNECT_MS, hidden: Iterable[str] = (),
            from_source: Iterable[str] | None = None, profile: Path | None = None) -> list[dict[str, Any]]:
    """Start each of `variants` (label -> function: one function from different checkouts, say) in a fresh process
    per event, in turn, so that they share the machine's conditions, and answer the event: round k's starts, one of
    each variant, take events[k * len(variants):(k + 1) * len(variants)]. The first start of each is untimed (it fills the file cache as a
    warm host's is); the medians of the rest, a row per variant. Every AWS endpoint a function is pointed at is put
    behind a LatencyEndpoint, and the time it waited on the local AWS beyond the modelled latency is taken out.
    `hidden` top-level modules are not found (see not_deployed); with `from_source` (top-level modules, see
    layer_packages), those and the function's own modules are compiled from source at every start. With `profile`
    (a folder), the untimed start writes <function>.importtime and <function>.pstats there."""
    runs, extra = divmod(len(events), len(variants))
    if runs < 2 or extra:
        raise ValueError("measure needs an untimed start and at least one timed one of each variant, as many each")
    with contextlib.ExitStack() as stack:
        endpoints: dict[str, LatencyEndpoint] = {}
        environments = {}
        for label, function in variants.items():
            for key, url in function.environment.items():
                if key.startswith("AWS_ENDPOINT_URL") and key not in endpoints:
                    endpoints[key] = stack.enter_context(LatencyEndpoint(url, latency_ms=latency_ms,
                                                                         connect_ms=connect_ms))
            own = {p.name.removesuffix(".py") for d in [*function.layer_dirs, function.code_dir] if d
                   for p in d.iterdir()}
            inherited = {k: v for k, v in os.environ.items()
                         if not k.startswith(("AWS_", "POWERTOOLS_", "PYTHON", "_X_"))}
            env = {**inherited, **function.environment, **{k: e.url for k, e in endpoints.items()},
                   "PYTHONPATH": os.pathsep.join(str(p) for p in function.layer_dirs),
                   HIDDEN_VARIABLE: ",".join(sorted(set(hidden) - own))}
            if from_source is not None:
                env[FROM_SOURCE_VARIABLE] = ",".join(sorted(set(from_source) | own))
            environments[label] = env
        samples: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
        for n, event in enumerate(events):
            k, v = divmod(n, len(variants))
            # Each round in the other order: what one start leaves behind (the file cache, reads to replay) favours
            # every variant alike.
            label, function = list(variants.items())[v if k % 2 == 0 else len(variants) - 1 - v]
            samples[label].append(_start(function, event, environments[label], list(endpoints.values()),
                                         profile=(profile / label if label else profile) if profile and k == 0
                                         else None))
    rows = []
    for label, function in variants.items():
        timed = samples[label][1:]
        median = {key: statistics.median(s[key] for s in timed) for key in _MEDIANS}
        rows.append({"function": function.logical_id, "variant": label, "runs": len(timed), **median,
                     "target_ms": TARGETS.get(function.logical_id), "samples": timed})
    return rows


def not_deployed(requirements: Path, runtime: tuple[str, ...] = LAMBDA_RUNTIME_PACKAGES) -> list[str]:
    """Top-level modules of the installed distributions a function does not have in AWS: neither `requirements`
    (the runtime layer's), `runtime` (the Lambda runtime's packages) nor anything they require."""
    deployed = _required(_requirements(requirements) + [Requirement(r) for r in runtime])
    return sorted(module for module, names in importlib.metadata.packages_distributions().items()
                  if module not in sys.stdlib_module_names and not {canonicalize_name(n) for n in names} & deployed)


def layer_packages(requirements: Path, runtime: tuple[str, ...] = LAMBDA_RUNTIME_PACKAGES) -> list[str]:
    """Top-level modules the runtime layer carries: what `requirements` requires, less the Lambda runtime's own
    (`runtime` and what they require), which the layer leaves out."""
    layer = _required(_requirements(requirements)) - _required([Requirement(r) for r in runtime])
    return sorted(module for module, names in importlib.metadata.packages_distributions().items()
                  if module not in sys.stdlib_module_names and {canonicalize_name(n) for n in names} & layer)


def format_table(report: dict[str, Any]) -> str:
    header = ("function", "imports ms", "init ms", "imports + init", "target", "first request ms",
              "to first answer", "AWS calls init / first", "moto excess out")
    rows = [header]
    for r in report["results"]:
        target = r["target_ms"]
        verdict = "" if target is None else f"<= {target:g} ms: {'met' if r['cold_start_ms'] <= target else 'MISSED'}"
        rows.append((_name(r), f"{r['imports_ms']:.0f}", f"{r['init_ms']:.0f}", f"{r['cold_start_ms']:.0f}",
                     verdict, f"{r['first_request_ms']:.0f}", f"{r['first_answer_ms']:.0f}",
                     f"{r['init_calls']:.0f} / {r['first_request_calls']:.0f}",
                     f"{r['init_excess_ms'] + r['first_request_excess_ms']:.0f} ms"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) if i in (0, 4) else str(v).rjust(w)
                       for i, (v, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    latency = ", ".join(f"{'others' if k == '*' else k} {v:g} ms" for k, v in report["latency_ms"].items())
    w = report["workload"]
    return "\n".join([
        f"Cold starts: the median of {w['runs']} fresh processes per function (after one untimed), Python "
        f"{report['machine']['python']}, load average {report['machine']['load_average'][0]:.1f} on "
        f"{report['machine']['cpus']} cores; the state of {w['simulated_shoppers']} simulated shoppers in the local "
        f"AWS, answering each call after {latency} (+{report['connect_ms']:g} ms on a new connection; a read "
        f"asked before, from memory); packages "
        f"{report['packages']}, bytecode {report['bytecode']}, X-Ray tracing {report['tracing']}",
        f"First request: a known shopper's feed of {w['feed_n']} (API); {w['ingest_batch']} events never seen "
        "before (Ingest); to first answer: imports, init and the first request. The local AWS's time beyond that "
        "latency is taken out of the figures (last column).",
        *lines])


_MEDIANS = ("imports_ms", "init_ms", "cold_start_ms", "first_request_ms", "first_answer_ms",
            "first_request_imports_ms", "init_calls",
            "first_request_calls", "init_excess_ms", "first_request_excess_ms", "replayed_calls", "modules")


def _start(function: LocalFunction, event: dict[str, Any], env: dict[str, str], endpoints: list[LatencyEndpoint], *,
           profile: Path | None = None) -> dict[str, Any]:
    """One fresh process: its phases' durations, less the local AWS's excess over the modelled latency."""
    assert function.code_dir is not None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        env = {**env, PROFILE_VARIABLE: str((profile / f"{function.logical_id}.pstats").resolve()),
               "PYTHONPROFILEIMPORTTIME": "1"}
    module, _, handler = function.handler_path.rpartition(".")
    with tempfile.TemporaryDirectory(prefix="tailor-coldstart-") as scratch:
        event_file, result_file = Path(scratch, "event.json"), Path(scratch, "result.json")
        event_file.write_text(json.dumps(event))
        done = subprocess.run([sys.executable, str(_PROBE), str(function.code_dir), module, handler, str(event_file),
                               str(result_file)], env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"{function.logical_id}'s cold start failed:\n{done.stderr[-3000:]}")
        result = json.loads(result_file.read_text())
    if profile is not None:
        imports = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
        (profile / f"{function.logical_id}.importtime").write_text("\n".join(imports) + "\n")
    _check(function.logical_id, result["response"])
    calls = [c for e in endpoints for c in e.between(result["begun"], result["answered"])]
    init_calls = [c for c in calls if c.started < result["initialised"]]
    first_calls = [c for c in calls if c.started >= result["started"]]
    init_excess = excess_ms(calls, result["begun"], result["initialised"])
    first_excess = excess_ms(calls, result["started"], result["answered"])
    imports = result["init_imports_s"] * 1000
    init = (result["initialised"] - result["begun"]) * 1000 - imports - init_excess
    first_request = (result["answered"] - result["started"]) * 1000 - first_excess
    return {
        "imports_ms": imports,
        "init_ms": init,
        "cold_start_ms": imports + init,
        "first_request_ms": first_request,
        "first_answer_ms": imports + init + first_request,
        "first_request_imports_ms": result["request_imports_s"] * 1000,
        "init_calls": len(init_calls),
        "first_request_calls": len(first_calls),
        "init_excess_ms": init_excess,
        "first_request_excess_ms": first_excess,
        "replayed_calls": sum(c.replayed for c in calls),
        "modules": result["modules"],
        "calls": {"init": dict(Counter(f"{c.service} {c.operation}" for c in init_calls)),
                  "first_request": dict(Counter(f"{c.service} {c.operation}" for c in first_calls))},
    }


def _traced(function: LocalFunction, sink: str) -> LocalFunction:
    """`function` with X-Ray tracing on, as in AWS, its segments sent to `sink` (host:port)."""
    environment = {k: v for k, v in function.environment.items() if k != "POWERTOOLS_TRACE_DISABLED"}
    return dataclasses.replace(function, environment={**environment, "_X_AMZN_TRACE_ID": _TRACE_ID,
                                                      "AWS_XRAY_DAEMON_ADDRESS": sink})


def _requirements(path: Path) -> list[Requirement]:
    return [Requirement(line) for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _required(wanted: list[Requirement]) -> set[str]:
    """The installed distributions `wanted` names and everything they require, extras and markers considered."""
    pending = list(wanted)
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.add(key[0])
        for line in distribution.requires or ():
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                pending.append(needed)
    return found


def _checked_out(function: LocalFunction, root: Path, checkout: Path) -> LocalFunction:
    """`function` with its code and layers from another checkout of the repository at `root`."""
    def moved(path: Path) -> Path:
        return checkout.resolve() / path.resolve().relative_to(root.resolve())

    return dataclasses.replace(function, code_dir=moved(function.code_dir) if function.code_dir else None,
                               layer_dirs=[moved(p) for p in function.layer_dirs])


@contextlib.contextmanager
def _udp_sink() -> Iterator[str]:
    """host:port of a UDP socket nobody reads: where X-Ray's SDK sends its segments, dropped once its buffer is full."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sink.bind(("127.0.0.1", 0))
        host, port = sink.getsockname()
        yield f"{host}:{port}"
    finally:
        sink.close()


def _name(row: dict[str, Any]) -> str:
    return f"{row['function']} ({row['variant']})" if row["variant"] else row["function"]


def _check(function_id: str, response: Any) -> None:
    """A cold start counts only if it answered as a warm one would."""
    if function_id == "ApiFunction":
        ok = isinstance(response, dict) and response.get("statusCode") == 200
    else:
        ok = isinstance(response, dict) and response.get("batchItemFailures") == []
    if not ok:
        raise RuntimeError(f"{function_id}'s first request failed during the benchmark: {str(response)[:2000]}")


def _ingest_events(stack: LocalStack, function: LocalFunction, count: int, *, seed: int, items: int,
                   now: dt.datetime) -> list[dict[str, Any]]:
    """`count` Kinesis batches of events Tailor has never seen, from shoppers of the last hour on the same catalog,
    on a shard of their own with sequence numbers past any the state has."""
    shoppers = max(40, 4 * count)
    while len(fresh := simulate(shoppers=shoppers, days=1 / 24, seed=seed, start=now - dt.timedelta(hours=2),
                                items=items).events) < count * INGEST_BATCH:
        if shoppers >= 64 * count:
            raise RuntimeError(f"the fresh simulation has {len(fresh)} events, fewer than {count} batches")
        shoppers *= 2  # shoppers of an hour make fewer events than there are batches to fill: ask more of them
    source = next(m.source for m in stack.mappings.values() if m.source.function_id == function.logical_id)
    shard = "shardId-000000000009"
    base = 50_000_000_000_000_000_000
    arrival = dt.datetime.fromtimestamp(time.time(), dt.UTC)
    batches = []
    for n in range(count):
        records = [{"PartitionKey": e["user_id"], "SequenceNumber": str(base + n * INGEST_BATCH + k),
                    "Data": json.dumps(e).encode(), "ApproximateArrivalTimestamp": arrival}
                   for k, e in enumerate(fresh[n * INGEST_BATCH:(n + 1) * INGEST_BATCH])]
        batches.append(kinesis_event(records, shard, source.stream_arn, stack.template.region, function.role_arn))
    return batches
