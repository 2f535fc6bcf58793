"""Reliability benchmark: a local stack of its own under bad input, a burst of events, a pause of the embedded AWS and
erasures of long-lived shoppers; what was accepted, applied, quarantined, sent to the failure queue, lost or counted
twice, each figure beside its goal. Prints a table and writes the figures as JSON.

    tailor bench reliability [--fuzz-examples 10] [--fuzz-seconds 90] [--burst-requests 30] [--burst-events 100]
                             [--pause-s 5] [--big-sessions 1000] [--big-years 10] [--small-sessions 60]
                             [--out bench-results/reliability.json]

Every loop is bounded in count and time, and every request goes to loopback addresses: the stack's API and its
embedded AWS. Valid events of shoppers only this benchmark uses travel beside the bad ones; once the stream is
drained, their counts in shopper and item state are compared with what the stack accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import faulthandler
import gzip
import http.client
import json
import logging
import os
import platform
import random
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlencode, urlsplit

from boto3.dynamodb.types import TypeDeserializer

from tailor.archive import ARCHIVE_PREFIX
from tailor.ingest.derive import ITEM_COUNTERS
from tailor.shopper import ShopperState
from tailor_lab.bench.report import percentile, publish
from tailor_lab.simulator import simulate
from tailor_local.stack import LocalStack, PutResult, all_processed, put_events
from tailor_local.template import find_template

__all__ = ["GOALS", "Config", "format_table", "main", "run"]

GOALS = {
    "server_errors": 0,  # responses >= 500 to the bad-input corpus and the schema-driven requests
    "valid_events_lost": 0,
    "valid_events_double_counted": 0,
    "non_infrastructure_failure_records": 0,  # failure-queue records while no infrastructure failed
    "erasure_answer_s": 2.0,
    "erasure_clean_s": 60.0,  # every session row and archived event gone, the shopper row a tombstone
    "feed_p99_burst_over_idle": 2.0,
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# What a shopper row may hold once the shopper is erased: anything but the state folded from their events.
SHOPPER_STATE_FIELDS = frozenset(f.name for f in dataclasses.fields(ShopperState)) - {"user_id"}
FEED_N = 20
REQUEST_TIMEOUT_S = 60.0  # beyond API Gateway's 29 s, so its 504 is what a slow answer shows
DEEP = 100_000  # nesting depth of the deeply nested bodies: far past any JSON parser's recursion limit


@dataclass(frozen=True)
class Config:
    """How much of each part to run; every count and wait is bounded."""

    cases: tuple[str, ...] = ()  # names of bad-input cases to run (HTTP and stream); empty: all
    fuzz_examples: int = 10  # schema-driven requests per operation and mode (positive, negative)
    fuzz_seconds: float = 90.0
    crowd: int = 20  # simulated shoppers whose state the feeds read
    idle_feeds: int = 1000  # its p99 rests on its ten slowest, as the burst's on its ten or twenty
    idle_seconds: float = 120.0
    burst_requests: int = 30
    burst_events: int = 100
    burst_concurrency: int = 3
    max_burst_feeds: int = 2000
    pause_events: int = 1000
    pause_s: float = 5.0
    pause_posts: int = 5
    big_sessions: int = 1000
    big_years: float = 10.0
    small_sessions: int = 60
    events_per_session: int = 2
    drain_timeout_s: float = 600.0
    erasure_timeout_s: float = 90.0
    seed: int = 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench reliability", description=__doc__.split("\n\n")[0])
    defaults = Config()
    parser.add_argument("--cases", default="", help="comma-separated bad-input case names (default: all)")
    parser.add_argument("--fuzz-examples", type=int, default=defaults.fuzz_examples,
                        help=f"schema-driven requests per operation and mode ({defaults.fuzz_examples})")
    parser.add_argument("--fuzz-seconds", type=float, default=defaults.fuzz_seconds,
                        help=f"time limit of the schema-driven requests ({defaults.fuzz_seconds:g})")
    parser.add_argument("--crowd", type=int, default=defaults.crowd, help="simulated shoppers the feeds read")
    parser.add_argument("--idle-feeds", type=int, default=defaults.idle_feeds, help="timed feeds with nothing else")
    parser.add_argument("--idle-seconds", type=float, default=defaults.idle_seconds,
                        help=f"time limit of the idle feeds ({defaults.idle_seconds:g})")
    parser.add_argument("--burst-requests", type=int, default=defaults.burst_requests, help="POST /events in the burst")
    parser.add_argument("--burst-events", type=int, default=defaults.burst_events, help="events per burst request")
    parser.add_argument("--burst-concurrency", type=int, default=defaults.burst_concurrency)
    parser.add_argument("--pause-events", type=int, default=defaults.pause_events,
                        help="events on the stream when the embedded AWS pauses")
    parser.add_argument("--pause-s", type=float, default=defaults.pause_s, help="how long it stays unreachable")
    parser.add_argument("--pause-posts", type=int, default=defaults.pause_posts, help="POST /events during the pause")
    parser.add_argument("--big-sessions", type=int, default=defaults.big_sessions)
    parser.add_argument("--big-years", type=float, default=defaults.big_years)
    parser.add_argument("--small-sessions", type=int, default=defaults.small_sessions)
    parser.add_argument("--events-per-session", type=int, default=defaults.events_per_session)
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout_s,
                        help="longest wait for Ingest to finish the stream, per part")
    parser.add_argument("--erasure-timeout", type=float, default=defaults.erasure_timeout_s,
                        help="longest wait for an erasure to finish")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=Path("bench-results/reliability.json"))
    parser.add_argument("--template", type=Path, default=None)
    args = parser.parse_args(argv)
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = set(cases) - set(case_names())
    if unknown:
        parser.error(f"unknown case {', '.join(sorted(unknown))}; cases: {', '.join(case_names())}")
    config = Config(cases=cases, fuzz_examples=args.fuzz_examples, fuzz_seconds=args.fuzz_seconds, crowd=args.crowd,
                    idle_feeds=args.idle_feeds, idle_seconds=args.idle_seconds, burst_requests=args.burst_requests, burst_events=args.burst_events,
                    burst_concurrency=args.burst_concurrency, pause_events=args.pause_events, pause_s=args.pause_s,
                    pause_posts=args.pause_posts, big_sessions=args.big_sessions, big_years=args.big_years,
                    small_sessions=args.small_sessions, events_per_session=args.events_per_session,
                    drain_timeout_s=args.drain_timeout, erasure_timeout_s=args.erasure_timeout, seed=args.seed)
    report = run(config, template=args.template or find_template(), log_path=args.out.with_suffix(".log"))
    publish(report, format_table(report), args.out)
    return 0


def case_names() -> list[str]:
    """Every bad-input case, HTTP and stream, by name."""
    probe = _Probe("names", random.Random(0), dt.datetime.now(dt.UTC))
    return [c.name for c in _http_cases(probe)] + [c.name for c in _stream_cases(probe)]


def run(config: Config, *, template: Path, log_path: Path) -> dict[str, Any]:
    """Start a local stack, run every part against it, stop it; the figures, checked against GOALS."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        # The pollers' warnings while the embedded AWS is paused belong with the functions' own output.
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        local_logger = logging.getLogger("tailor_local")
        local_logger.addHandler(handler)
        local_logger.propagate = False
        # The stack `tailor local up` runs: Ingest's environments in processes of their own.
        stack = LocalStack(template, port=0, api_port=0, stack_name=f"tailor-reliability-{uuid.uuid4().hex[:6]}",
                           function_log=log, stream_processes=True)
        stack.start(schedules=False)
        try:
            bench = _Bench(stack, config, log)
            sections: dict[str, Any] = {}
            for part, measure in (("seed", bench.seed), ("bad_input", bench.bad_input), ("burst", bench.burst),
                                  ("pause", bench.pause), ("erasure", bench.erasures), ("stream", bench.stream_audit)):
                if part != "seed" and "error" in sections["seed"]:
                    sections[part] = {"error": "not run: the seed did not finish"}
                    continue
                try:
                    sections[part] = measure()
                except Exception as exc:  # a part that breaks is a finding; the other parts still run
                    log.write(f"reliability: {part} failed\n{traceback.format_exc()}")
                    sections[part] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            sections["api_requests_unanswered"] = bench.stalls
        finally:
            stack.stop()
            local_logger.removeHandler(handler)
            local_logger.propagate = True
    checks = _checks(sections)
    return {
        "benchmark": "reliability",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "workload": asdict(config) | {"cases": list(config.cases) or "all"},
        "seconds": round(time.monotonic() - started, 1),
        "functions_log": str(log_path),
        "goals": GOALS,
        **sections,
        "checks": checks,
        "meets_goals": all(c["met"] for c in checks),
    }


def format_table(report: dict[str, Any]) -> str:
    rows = [("figure", "value", "goal", "")]
    for check in report["checks"]:
        rows.append((check["what"], _shown(check["value"]), check["goal"], "met" if check["met"] else "MISSED"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = ["  ".join(str(v).ljust(w) if i != 1 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             .rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    out = [f"Reliability: one local stack, {report['seconds']:.0f} s; functions' output in {report['functions_log']}",
           *lines, "", f"API requests that got no answer at all: {report.get('api_requests_unanswered', 0)} "
                       "(the stacks of every thread at the first few are in the functions' log)"]
    for part, describe in _DESCRIBERS.items():
        section = report.get(part)
        if isinstance(section, dict) and "error" in section:
            out.append(f"{part}: did not finish: {section['error']}")
        elif section is not None:
            out.extend(describe(section))
    return "\n".join(out)


def _describe_bad_input(bad: dict[str, Any]) -> list[str]:
    http_, fuzz, stream = bad["http"], bad["fuzz"], bad["stream"]
    out = [f"Bad input over HTTP: {http_['requests']} requests, {_classes(http_['by_class'])}"]
    for case in http_["cases"]:
        unnamed = case.get("refusal_names_field") is False
        if case["class"] not in ("2xx", "4xx") or case.get("valid_refused") or case.get("bad_accepted") or unnamed:
            out.append(f"  {case['name']}: HTTP {case['status'] or 'no answer'}"
                       + (f", {case['valid_refused']} valid refused" if case.get("valid_refused") else "")
                       + (", bad event accepted" + (", then quarantined" if case.get("quarantined_by_ingest") else "")
                          if case.get("bad_accepted") else "")
                       + (f", refused without naming the field: {case['refusal']}" if unnamed else "")
                       + (f" ({case['detail']})" if case.get("detail") else ""))
    out.append(f"Schema-driven requests: {fuzz['requests']} over {fuzz['operations']} operations in "
               f"{fuzz['seconds']:.0f} s{' (stopped at the time limit)' if fuzz['stopped_by_time'] else ''}, "
               f"{_classes(fuzz['by_class'])}" + (f"; {fuzz['error']}" if fuzz.get("error") else ""))
    for example in fuzz["server_errors"][:5]:
        out.append(f"  {example['method']} {example['path']}: HTTP {example['status'] or 'no answer'}")
    out.append(f"Bad records on the stream: {stream['records']} sent, {stream['quarantined']} quarantined, "
               f"{stream['failure_queue_records']} failure-queue records, {stream['records_discarded']} records "
               f"discarded")
    out.extend(f"  {case['name']}: not quarantined" for case in stream["cases"] if not case["quarantined"])
    return out + _describe_events("bad input", bad)


def _describe_burst(burst: dict[str, Any]) -> list[str]:
    idle, under, posts = burst["idle"], burst["under_burst"], burst["posts"]
    return [f"Feeds: idle p50 {_ms(idle['p50_ms'])} / p99 {_ms(idle['p99_ms'])} ({idle['requests']} answered, "
            f"{idle['failed']} failed); under the burst p50 {_ms(under['p50_ms'])} / p99 {_ms(under['p99_ms'])} "
            f"({under['requests']} answered, {under['failed']} failed); burst of {posts['requests']} POST /events: "
            f"{_classes(posts['by_class'])}, p99 {_ms(posts['p99_ms'])}, {posts['events_sent_again']} events sent "
            f"again", *_describe_events("burst", burst)]


def _describe_pause(pause: dict[str, Any]) -> list[str]:
    posts = pause["posts"]
    return [f"Pause: the embedded AWS unreachable for {pause['pause_s']:g} s with {pause['pending_at_pause']} records "
            f"not yet applied ({pause['cut_requests']} requests cut); {posts['requests']} POST /events during it: "
            f"{_classes(posts['by_class'])}, {posts['refused_retryable']} events refused as retryable, {posts['resent']} "
            f"sent again; {pause['failure_queue_records']} failure-queue records, {pause['records_discarded']} records "
            f"discarded", *_describe_events("pause", pause)]


def _describe_events(name: str, section: dict[str, Any]) -> list[str]:
    events = section["events"]
    missing = "lost" if section["drained"] else "not applied yet (the stream was NOT drained in time)"
    return [f"Valid events beside the {name}: {events['sent']} sent, {events['accepted']} accepted, "
            f"{events['applied']} applied, {events['lost']} {missing}, {events['double_counted']} counted twice "
            f"(item counters: {events['item_units_lost']:g} missing, {events['item_units_extra']:g} extra)"]


def _describe_erasures(erasures: list[dict[str, Any]]) -> list[str]:
    return [f"Erasure of {e['user_id']} ({e['sessions']} sessions over {e['years']:g} years, "
            f"{e['before']['sessions']} session rows and {e['before']['archived_events']} archived events before): "
            f"HTTP {e['delete_status'] or 'no answer'} in {e['answer_s']:.2f} s"
            + (f", status done after {e['done_s']:.1f} s" if e["done_s"] is not None else f", {e['status_note']}")
            + (f", nothing left after {e['clean_s']:.1f} s" if e["clean_s"] is not None else
               f", left after {e['waited_s']:.0f} s: {_leftovers(e['leftovers'])}")
            + f" ({e['scans']} scans for leftovers, {e['scan_s']:.0f} s)"
            for e in erasures]


def _describe_stream(audit: dict[str, Any]) -> list[str]:
    return [f"On the stream: {audit['valid_on_stream']} of {audit['valid_accepted']} accepted valid events, "
            f"{audit['duplicated_on_stream']} of them more than once ({audit['duplicated_sent_again']} sent again by "
            f"the client, {audit['duplicated_sent_once']} sent once)"]


_DESCRIBERS: dict[str, Callable[[Any], list[str]]] = {
    "seed": lambda seed: [], "bad_input": _describe_bad_input, "burst": _describe_burst, "pause": _describe_pause,
    "erasure": _describe_erasures, "stream": _describe_stream,
}


# ---- the parts ---------------------------------------------------------------------------------------


class _Bench:
    """The parts of the benchmark, run in order against one stack."""

    def __init__(self, stack: LocalStack, config: Config, log: TextIO):
        assert stack.api is not None and stack.resources is not None
        self.stack = stack
        self.config = config
        self.handle = stack.handle
        self.log = log
        self.stalls = 0
        self._stall_lock = threading.Lock()
        self.api = _Api(stack.api.url, stack.api_key, on_no_answer=self._stalled)
        if urlsplit(self.handle.endpoint).hostname not in LOOPBACK:
            raise RuntimeError(f"the embedded AWS answers at {self.handle.endpoint}, not on loopback")
        self.stream = stack.stream_name()
        self.kinesis = stack.aws.client("kinesis")
        self.rng = random.Random(config.seed)
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.run_tag = uuid.uuid4().hex[:6]
        self.ledgers: dict[str, _Ledger] = {}
        self.feed_asks: list[tuple[str, str | None]] = []
        self.erasure_users: dict[str, dict[str, Any]] = {}

    # ---- seed: a crowd to read feeds of, and the shoppers to erase

    def seed(self) -> dict[str, Any]:
        started = time.monotonic()
        config = self.config
        # Sessions begun near the end of the simulated half day run past it: an hour's margin keeps every event in
        # the past, where Ingest takes it (one dated past the clock skew of its arrival is quarantined).
        crowd = simulate(shoppers=config.crowd, days=0.5, seed=config.seed,
                         start=self.now - dt.timedelta(days=0.5, hours=1)).events
        last_session: dict[str, str] = {}
        for event in crowd:
            last_session[event["user_id"]] = event["session_id"]
        self.feed_asks = sorted(last_session.items())
        history: list[dict[str, Any]] = []
        for label, sessions, years in (("big", config.big_sessions, config.big_years),
                                       ("small", config.small_sessions, max(config.small_sessions / 365, 1 / 365))):
            user = f"rb-{self.run_tag}-erase-{label}"
            events = _long_history(user, sessions, years, config.events_per_session, self.now, self.rng)
            self.erasure_users[user] = {"label": label, "sessions": sessions, "years": years, "events": len(events)}
            history += events
        put = put_events(self.stack.aws, self.stream, crowd + history)
        drained = self._drain(put)
        return {"crowd_events": len(crowd), "history_events": len(history), "seconds": time.monotonic() - started,
                **drained}

    # ---- bad input: the corpus over HTTP and on the stream, then schema-driven requests

    def bad_input(self) -> dict[str, Any]:
        before = self._counts()
        ledger = self.ledgers.setdefault("bad_input", _Ledger())
        probe = _Probe(f"rb-{self.run_tag}-bad", self.rng, self.now)
        wanted = set(self.config.cases)
        http_results = [self._send_case(case, ledger) for case in _http_cases(probe)
                        if not wanted or case.name in wanted]
        stream_cases = [case for case in _stream_cases(probe) if not wanted or case.name in wanted]
        put = self._put_stream_cases(stream_cases, ledger)
        fuzz = self._fuzz()
        drained = self._drain(put)
        after = self._counts()
        cases = {c.marker: c for c in stream_cases} | {r["marker"]: r for r in http_results if r.get("bad_accepted")}
        quarantined = self._quarantined(before, after, set(cases))
        stream_results = [{"name": c.name, "quarantined": c.marker in quarantined,
                           "reason": quarantined.get(c.marker, "")} for c in stream_cases]
        for result in http_results:
            if result.get("bad_accepted"):
                result["quarantined_by_ingest"] = result["marker"] in quarantined
        # A bad record that got past the API and Ingest's checks may have been applied as an event of its shopper.
        for marker, case in cases.items():
            if marker not in quarantined:
                ledger.tolerate(case.neighbours[0]["user_id"] if isinstance(case, _StreamCase) else case["user_id"])
        return {
            "http": {"requests": len(http_results), "by_class": _tally(r["class"] for r in http_results),
                     "cases": http_results},
            "stream": {"records": len(stream_cases), "quarantined": sum(r["quarantined"] for r in stream_results),
                       "cases": stream_results,
                       "failure_queue_records": after.failure_records - before.failure_records,
                       "records_discarded": after.discarded - before.discarded},
            "fuzz": fuzz,
            "quarantined_total": len(after.quarantine - before.quarantine),
            "events": self._check(ledger),
            **drained,
        }

    def _send_case(self, case: _HttpCase, ledger: _Ledger) -> dict[str, Any]:
        answer = self.api.call(case.method, case.path, case.body, content_type=case.content_type)
        result: dict[str, Any] = {"name": case.name, "method": case.method, "path": case.path[:120],
                                  "status": answer.status, "class": answer.status_class, "ms": round(answer.ms, 1),
                                  "marker": case.marker, "user_id": case.user_id}
        ledger.sent += len(case.valid)
        if answer.status >= 500 or answer.status == 0:
            result["detail"] = answer.text[:200]
        if not case.valid and case.bad_index is None:
            return result
        refusals = _refusals(answer.json()) if answer.status == 200 else None
        if refusals is None:
            # No per-event answer: none of the request's events can be counted as taken.
            result["valid_refused"] = len(case.valid) if answer.status == 200 else 0
            return result
        refused_valid = [i for i in case.valid if i in refusals]
        for index, event in case.valid.items():
            if index not in refusals:
                ledger.took(event)
        result["valid_refused"] = len(refused_valid)
        if refused_valid:
            result["detail"] = "; ".join(refusals[i].reason for i in refused_valid)[:200]
        if case.bad_index is not None:
            refusal = refusals.get(case.bad_index)
            result["bad_accepted"] = refusal is None
            if refusal is not None:
                result["refusal"] = refusal.reason[:200]
                result["refusal_names_field"] = case.names_field is None or case.names_field in refusal.reason
        return result

    def _put_stream_cases(self, cases: list[_StreamCase], ledger: _Ledger) -> PutResult:
        """Each bad record between two valid events of the same shopper, so that they share a shard and a batch."""
        put = PutResult()
        records: list[tuple[bytes, str, dict[str, Any] | None]] = []
        for case in cases:
            for event in case.neighbours[:1]:
                records.append((_json_bytes(event), event["user_id"], event))
            records.append((case.data, case.partition_key, None))
            for event in case.neighbours[1:]:
                records.append((_json_bytes(event), event["user_id"], event))
        for start in range(0, len(records), 100):
            chunk = records[start:start + 100]
            # Deep or huge records make a large call; a hundred at a time stays far below PutRecords' 5 MiB.
            response = self.kinesis.put_records(StreamName=self.stream, Records=[
                {"Data": data, "PartitionKey": key} for data, key, _ in chunk])
            for (data, key, event), outcome in zip(chunk, response["Records"]):
                if "ErrorCode" in outcome:
                    continue
                put.add(outcome["ShardId"], outcome["SequenceNumber"])
                if event is not None:
                    ledger.sent += 1
                    ledger.took(event)
        return put

    def _fuzz(self) -> dict[str, Any]:
        """Requests generated from the OpenAPI document the API serves, bounded per operation and in time."""
        result: dict[str, Any] = {"operations": 0, "requests": 0, "by_class": {}, "server_errors": [], "seconds": 0.0,
                                  "stopped_by_time": False}
        if self.config.fuzz_examples <= 0:
            return result
        started = time.monotonic()
        deadline = started + self.config.fuzz_seconds
        classes: Counter[str] = Counter()
        try:
            import schemathesis
            from hypothesis import HealthCheck, Phase, given, settings
            from schemathesis import GenerationMode

            schema = schemathesis.openapi.from_url(f"{self.api.url}/docs?format=json")
            operations = [(path, method) for path, item in schema.raw_schema["paths"].items() for method in item
                          if method.lower() in ("get", "post", "put", "patch", "delete")]
            result["operations"] = len(operations)
            for path, method in operations:
                operation = schema[path][method]
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    @given(case=operation.as_strategy(generation_mode=mode))
                    @settings(max_examples=self.config.fuzz_examples, deadline=None, derandomize=True, database=None,
                              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
                    def send(case: Any) -> None:
                        if time.monotonic() > deadline:
                            result["stopped_by_time"] = True
                            return
                        try:
                            response = case.call(base_url=self.api.url, headers={"x-api-key": self.api.key},
                                                 timeout=REQUEST_TIMEOUT_S)
                            status = response.status_code
                        except Exception as exc:  # no answer at all is a finding, not the benchmark's failure
                            status, detail = 0, f"{type(exc).__name__}: {exc}"
                        else:
                            detail = ""
                        classes[_status_class(status)] += 1
                        if status >= 500 or status == 0:
                            result["server_errors"].append({"method": method.upper(), "path": path, "status": status,
                                                            "detail": detail[:200] or _curl(case)})

                    send()
        except Exception as exc:  # a schema the generator cannot read is reported beside what did run
            result["error"] = f"{type(exc).__name__}: {exc}"[:300]
        result["requests"] = sum(classes.values())
        result["by_class"] = dict(classes)
        result["seconds"] = time.monotonic() - started
        return result

    # ---- burst: feed latency idle and while a burst of POST /events goes in and through Ingest

    def burst(self) -> dict[str, Any]:
        config = self.config
        if not self.feed_asks:
            raise RuntimeError("the seeded crowd has no shoppers to read feeds of")
        for ask in self.feed_asks[:10]:  # warm the API function and its caches, untimed
            self._feed(ask)
        ledger = self.ledgers.setdefault("burst", _Ledger())
        probe = _Probe(f"rb-{self.run_tag}-burst", self.rng, self.now)
        environments = self._warm_environments(config.burst_concurrency + 1, probe, ledger)
        idle: list[float | None] = []
        idle_ends = time.monotonic() + config.idle_seconds
        while len(idle) < config.idle_feeds and time.monotonic() < idle_ends:
            idle.append(self._feed(self.feed_asks[len(idle) % len(self.feed_asks)]))
        shoppers = max(1, config.burst_requests * config.burst_events // 10)
        bodies = [[probe.event(user=probe.user(self.rng.randrange(shoppers))) for _ in range(config.burst_events)]
                  for _ in range(config.burst_requests)]
        done = threading.Event()
        posts: list[_Answer] = []
        resent: list[dict[str, Any]] = []
        drained: dict[str, Any] = {}

        def send_burst() -> None:
            try:
                with ThreadPoolExecutor(max_workers=max(1, config.burst_concurrency)) as pool:
                    answers = list(pool.map(lambda body: (body, self.api.call("POST", "/events",
                                                                             _json_bytes({"events": body}))), bodies))
                again: list[dict[str, Any]] = []
                for body, answer in answers:
                    posts.append(answer)
                    ledger.sent += len(body)
                    refusals = _refusals(answer.json()) if answer.status == 200 else None
                    for index, event in enumerate(body):
                        if refusals is not None and index not in refusals:
                            ledger.took(event)
                        elif refusals is None or refusals[index].retryable:
                            again.append(event)  # the shop cannot know whether these got in: it sends them again
                resent.extend(again)
                for start in range(0, len(again), config.burst_events):
                    self._send_again(again[start:start + config.burst_events], ledger)
                drained.update(self._drain(None))
            finally:
                done.set()

        sender = threading.Thread(target=send_burst, name="reliability-burst", daemon=True)
        started = time.monotonic()
        sender.start()
        under: list[float | None] = []
        deadline = started + config.drain_timeout_s + 60
        n = 0
        while not done.is_set() and len(under) < config.max_burst_feeds and time.monotonic() < deadline:
            under.append(self._feed(self.feed_asks[n % len(self.feed_asks)]))
            n += 1
        # The sender is bounded itself: its requests by their timeout, its drain by the drain timeout.
        sender.join(timeout=config.burst_requests * REQUEST_TIMEOUT_S + config.drain_timeout_s + 60)
        idle_latency, under_latency = _latency(idle), _latency(under)
        return {
            "idle": idle_latency,
            "under_burst": under_latency,
            "p99_ratio": (under_latency["p99_ms"] / idle_latency["p99_ms"]
                          if idle_latency["requests"] and under_latency["requests"] else None),
            "posts": {"requests": len(posts), "by_class": _tally(a.status_class for a in posts),
                      "p50_ms": percentile([a.ms for a in posts], 50) if posts else None,
                      "p99_ms": percentile([a.ms for a in posts], 99) if posts else None,
                      "events_sent_again": len(resent)},
            "seconds": time.monotonic() - started,
            "api_environments": environments,
            "events": self._check(ledger),
            "drained": drained.get("drained", False),
            "drain_s": drained.get("drain_s"),
        }

    def _warm_environments(self, wanted: int, probe: _Probe, ledger: _Ledger) -> int:
        """As many of the API's execution environments as the burst keeps busy at once (its POSTs beside a feed),
        each having answered a POST, set up before anything is timed, and their events through Ingest. A new
        environment's init runs in the stack's process and would take the interpreter lock from the feeds being
        timed, where in AWS it starts on a CPU of its own; what a cold start costs is `tailor bench coldstart`'s."""
        api = self.stack.runtime.functions[next(route.function_id for route in self.stack.api.gateway.api.routes
                                                 if route.resource == "/events" and route.method == "POST")]
        wanted = min(wanted, max(1, api.max_environments))

        def post(_: int) -> None:
            event = probe.event(user=probe.user(0))
            answer = self.api.call("POST", "/events", _json_bytes({"events": [event]}))
            refusals = _refusals(answer.json()) if answer.status == 200 else None
            ledger.sent += 1
            if refusals is not None and 0 not in refusals:
                ledger.took(event)

        rounds, deadline = 0, time.monotonic() + 60
        with ThreadPoolExecutor(max_workers=wanted) as pool:
            while (api.environments < wanted or rounds < 3) and time.monotonic() < deadline:
                list(pool.map(post, range(wanted)))
                rounds += 1
        self._drain(None)
        return api.environments

    def _stalled(self, answer: _Answer) -> None:
        """A request the API did not answer: what every thread of the stack was doing goes to the log, the first
        few times, for whoever looks into it."""
        with self._stall_lock:
            self.stalls += 1
            if self.stalls <= 3:
                self.log.write(f"\nreliability: no answer from the API ({answer.text[:200]}); every thread's stack:\n")
                self.log.flush()
                faulthandler.dump_traceback(file=self.log, all_threads=True)
                self.log.flush()

    def _feed(self, ask: tuple[str, str | None]) -> float | None:
        """A feed's round trip in ms; None if it failed."""
        user, session = ask
        query = {"n": FEED_N, **({"session_id": session} if session else {})}
        answer = self.api.call("GET", f"/users/{quote(user, safe='')}/feed?{urlencode(query)}")
        return answer.ms if answer.status == 200 else None

    # ---- pause: the embedded AWS unreachable while Ingest works through a batch

    def pause(self) -> dict[str, Any]:
        config = self.config
        before = self._counts()
        ledger = self.ledgers.setdefault("pause", _Ledger())
        probe = _Probe(f"rb-{self.run_tag}-pause", self.rng, self.now)
        shoppers = max(1, config.pause_events // 10)
        events = [probe.event(user=probe.user(self.rng.randrange(shoppers))) for _ in range(config.pause_events)]
        baseline = _ingest_totals(self.stack.progress())
        put = put_events(self.stack.aws, self.stream, events)
        ledger.sent += len(events)
        for event in events:
            ledger.took(event)
        # Pause once Ingest has begun on these records and before it is through them: a batch is then in flight.
        wait_until = time.monotonic() + 60
        while time.monotonic() < wait_until:
            totals = _ingest_totals(self.stack.progress())
            if totals["invocations"] > baseline["invocations"] and not all_processed(self.stack.progress(),
                                                                                     self.stream, put):
                break
            time.sleep(0.02)
        at_pause = _ingest_totals(self.stack.progress())
        posts: list[tuple[list[dict[str, Any]], _Answer]] = []
        bodies = [[probe.event(user=probe.user(self.rng.randrange(shoppers))) for _ in range(20)]
                  for _ in range(config.pause_posts)]

        def post_during_pause(ends: float) -> None:
            # A shop keeps sending while the AWS behind the API is away; each request begins within the pause.
            for body in bodies:
                if time.monotonic() >= ends:
                    return
                posts.append((body, self.api.call("POST", "/events", _json_bytes({"events": body}))))

        with _Outage(self.stack) as outage:
            poster = threading.Thread(target=post_during_pause, args=(time.monotonic() + config.pause_s,),
                                      name="reliability-pause-posts", daemon=True)
            poster.start()
            time.sleep(config.pause_s)
        during = _ingest_totals(self.stack.progress())
        poster.join(timeout=REQUEST_TIMEOUT_S + 5)
        retryable = resent = 0
        for body, answer in list(posts):
            ledger.sent += len(body)
            refusals = _refusals(answer.json()) if answer.status == 200 else None
            again = []
            for index, event in enumerate(body):
                if refusals is None or (index in refusals and refusals[index].retryable):
                    again.append(event)
                elif index not in refusals:
                    ledger.took(event)
            retryable += len(again) if refusals is not None else 0
            resent += len(again)
            self._send_again(again, ledger)
        drained = self._drain(put)
        after = self._counts()
        return {
            "pause_s": config.pause_s,
            "cut_requests": outage.cut,
            "pending_at_pause": len(events) - (at_pause["records_done"] - baseline["records_done"]),
            "ingest_invocations_during_pause": during["invocations"] - at_pause["invocations"],
            "posts": {"requests": len(posts), "by_class": _tally(a.status_class for _, a in posts),
                      "refused_retryable": retryable, "resent": resent},
            "failure_queue_records": after.failure_records - before.failure_records,
            "records_discarded": after.discarded - before.discarded,
            "quarantined": len(after.quarantine - before.quarantine),
            "events": self._check(ledger),
            **drained,
        }

    def _send_again(self, events: list[dict[str, Any]], ledger: _Ledger, attempts: int = 3) -> None:
        """What a careful client does with events it cannot know got in (no answer, a 5xx, a retryable refusal): send
        them again, a few times. Ingest must count each of them once however often it comes."""
        ledger.sent_again.update(event["event_id"] for event in events)
        for attempt in range(attempts):
            if not events:
                return
            if attempt:
                time.sleep(float(attempt))
            answer = self.api.call("POST", "/events", _json_bytes({"events": events}))
            refusals = _refusals(answer.json()) if answer.status == 200 else None
            if refusals is not None:
                for index, event in enumerate(events):
                    if index not in refusals:
                        ledger.took(event)
                events = [e for i, e in enumerate(events) if i in refusals and refusals[i].retryable]

    # ---- erasure: shoppers with long histories and many sessions

    def erasures(self) -> list[dict[str, Any]]:
        scanner = _ArchiveScanner(self.handle)
        users = list(self.erasure_users)
        before_sessions = self._sessions_of(users)
        before_archive = scanner.lines_of(users)
        results = []
        for user in users:
            info = self.erasure_users[user]
            results.append(self._erase(user, scanner) | {
                "label": info["label"], "sessions": info["sessions"], "years": round(info["years"], 2),
                "events": info["events"],
                "before": {"sessions": before_sessions.get(user, 0), "archived_events": before_archive.get(user, 0)},
            })
        return results

    def _erase(self, user: str, scanner: _ArchiveScanner) -> dict[str, Any]:
        path = f"/users/{quote(user, safe='')}"
        started = time.monotonic()
        answer = self.api.call("DELETE", path)
        answered = time.monotonic() - started
        deadline = started + self.config.erasure_timeout_s
        body = answer.json() if isinstance(answer.json(), dict) else {}
        result: dict[str, Any] = {"user_id": user, "delete_status": answer.status, "answer_s": answered,
                                  "answer": {k: body[k] for k in list(body)[:8]}, "asynchronous": answer.status == 202,
                                  "done_s": None, "clean_s": None, "status_note": "", "polls": 0}
        if answer.status == 202:
            status_path = _status_path(body.get("status_url"), self.api.url) or f"{path}/erasure"
            result["failed_polls"] = 0
            while time.monotonic() < deadline:
                poll = self.api.call("GET", status_path)
                result["polls"] += 1
                state = poll.json().get("status") if isinstance(poll.json(), dict) else None
                if state in ("done", "nothing_to_erase"):
                    result["done_s"] = time.monotonic() - started
                    break
                if poll.status >= 500 or poll.status == 0:
                    # A status request that failed says nothing of the erasure: ask again.
                    result["failed_polls"] += 1
                    result["status_note"] = f"status answered HTTP {poll.status or 'nothing'} {poll.text[:120]}"
                elif poll.status != 200 or state not in ("pending", "running", "in_progress"):
                    result["status_note"] = f"status answered HTTP {poll.status} {poll.text[:120]}"
                    break
                time.sleep(0.25)
            else:
                result["status_note"] = f"status not done after {self.config.erasure_timeout_s:g} s"
        elif 200 <= answer.status < 300:
            poll = self.api.call("GET", f"{path}/erasure")
            result["status_note"] = f"answered {answer.status}, not 202; GET {path}/erasure answered HTTP {poll.status}"
        else:
            result["status_note"] = f"DELETE answered HTTP {answer.status or 'nothing'}: {answer.text[:160]}"
        # Scanning every session row and archive object takes a while itself. When the first scan after the status
        # said done finds nothing, nothing was left from then on; otherwise the first clean scan's end counts.
        leftovers: dict[str, Any] = {}
        scans: list[float] = []
        while True:
            scan_started = time.monotonic()
            leftovers = self._leftovers(user, scanner)
            scans.append(time.monotonic() - scan_started)
            if not any(leftovers.values()):
                first_after_done = len(scans) == 1 and result["done_s"] is not None
                result["clean_s"] = result["done_s"] if first_after_done else time.monotonic() - started
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        result["scans"] = len(scans)
        result["scan_s"] = sum(scans)
        result["waited_s"] = time.monotonic() - started
        result["leftovers"] = leftovers
        result["profile_status"] = self.api.call("GET", f"{path}/profile").status
        return result

    def _leftovers(self, user: str, scanner: _ArchiveScanner) -> dict[str, Any]:
        row = _rows(self.handle, "ShoppersTable", "user_id", [user]).get(user)
        return {
            "sessions": self._sessions_of([user]).get(user, 0),
            "archived_events": scanner.lines_of([user]).get(user, 0),
            "shopper_fields": sorted(set(row) & SHOPPER_STATE_FIELDS) if row else [],
        }

    def _sessions_of(self, users: list[str]) -> dict[str, int]:
        wanted = set(users)
        counts: Counter[str] = Counter()
        for row in _scan(self.handle, "SessionsTable", projection="user_id"):
            if row.get("user_id") in wanted:
                counts[row["user_id"]] += 1
        return dict(counts)

    # ---- the stream itself: did every accepted valid event get there, and how often

    def stream_audit(self) -> dict[str, Any]:
        wanted = {event_id for ledger in self.ledgers.values() for event_id in ledger.event_ids}
        seen: Counter[str] = Counter()
        for data in _stream_data(self.kinesis, self.stream):
            try:
                event = json.loads(data)
            except (ValueError, RecursionError):  # the bad records are on the stream too
                continue
            event_id = event.get("event_id") if isinstance(event, dict) else None
            if isinstance(event_id, str) and event_id in wanted:
                seen[event_id] += 1
        sent_again = {event_id for ledger in self.ledgers.values() for event_id in ledger.sent_again}
        duplicated = {event_id for event_id, n in seen.items() if n > 1}
        # An event the client sent again after an answer that did not say whether it got in may well be there twice;
        # one sent once is there twice only if the API (or its SDK) sent it twice.
        return {"valid_accepted": len(wanted), "valid_on_stream": len(seen), "duplicated_on_stream": len(duplicated),
                "duplicated_sent_again": len(duplicated & sent_again),
                "duplicated_sent_once": len(duplicated - sent_again)}

    # ---- draining and counting

    def _drain(self, put: PutResult | None) -> dict[str, Any]:
        """Wait until Ingest is past every record on the stream now: a sentinel per shard, put last, marks the end."""
        started = time.monotonic()
        marks = PutResult()
        if put is not None:
            for shard, sequence in put.last_sequence.items():
                marks.add(shard, sequence)
        for n, shard in enumerate(self.kinesis.list_shards(StreamName=self.stream)["Shards"]):
            user = f"rb-{self.run_tag}-sentinel-{n}"
            event = {"event_id": f"{user}-{uuid.uuid4().hex[:8]}", "user_id": user, "session_id": f"{user}-s",
                     "timestamp": _iso(dt.datetime.now(dt.UTC)), "event_type": "view",
                     "item_id": f"rb-{self.run_tag}-sentinel-item"}
            outcome = self.kinesis.put_record(StreamName=self.stream, Data=_json_bytes(event), PartitionKey=user,
                                              ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"])
            marks.add(outcome["ShardId"], outcome["SequenceNumber"])
        deadline = started + self.config.drain_timeout_s
        while not all_processed(self.stack.progress(), self.stream, marks):
            if time.monotonic() > deadline:
                return {"drained": False, "drain_s": time.monotonic() - started}
            time.sleep(0.2)
        # What the merge's schedule does within a minute: the buffered item counters into the items rows.
        merge = self.stack.runtime.find("MergeCountersFunction").invoke({"job": "merge-counters"})
        if not merge.ok:
            raise RuntimeError(f"the counter merge failed: {merge.error}")
        return {"drained": True, "drain_s": time.monotonic() - started}

    def _counts(self) -> _Counts:
        totals = _ingest_totals(self.stack.progress())
        failures = self.handle.queue_depth("IngestFailureQueue") if "IngestFailureQueue" in self.handle.resources else 0
        return _Counts(quarantine={o["Key"] for o in self.handle.objects("DataBucket", "quarantine/")},
                       failure_records=failures, discarded=totals["records_discarded"])

    def _quarantined(self, before: _Counts, after: _Counts, markers: set[str]) -> dict[str, str]:
        """Which of `markers` the records quarantined since `before` carry, with the reason given for each."""
        found: dict[str, str] = {}
        for key in sorted(after.quarantine - before.quarantine):
            body = self.handle.read_object("DataBucket", key)
            try:
                entry = json.loads(body)
            except (ValueError, RecursionError):
                continue
            data = str(entry.get("data", "")) if isinstance(entry, dict) else ""
            for marker in markers:
                if marker in data:
                    found[marker] = str(entry.get("reason", ""))[:200]
        return found

    def _check(self, ledger: _Ledger) -> dict[str, Any]:
        """The ledger's events against shopper and item state: applied, lost, counted twice."""
        shoppers = _rows(self.handle, "ShoppersTable", "user_id", list(ledger.shoppers))
        applied = lost = double = 0
        for user, expected in ledger.shoppers.items():
            got = int((shoppers.get(user) or {}).get("events", 0))
            applied += min(got, expected)
            lost += max(0, expected - got)
            double += max(0, got - expected - ledger.tolerated[user])
        items = _rows(self.handle, "ItemsTable", "item_id", sorted({item for item, _ in ledger.items}))
        missing = extra = 0.0
        for (item, counter), expected in ledger.items.items():
            got = float((items.get(item) or {}).get(counter, 0))
            missing += max(0.0, expected - got)
            extra += max(0.0, got - expected)
        return {"sent": ledger.sent, "accepted": ledger.accepted, "applied": applied, "lost": lost,
                "double_counted": double, "item_units_lost": missing, "item_units_extra": extra}


# ---- the bad-input corpus --------------------------------------------------------------------------


@dataclass
class _HttpCase:
    name: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    valid: dict[int, dict[str, Any]] = field(default_factory=dict)  # the valid events in an /events body by index
    bad_index: int | None = None  # where the bad event is in an /events body
    names_field: str | None = None  # the field a refusal should name
    marker: str = ""
    user_id: str = ""  # the shopper of the bad event


@dataclass
class _StreamCase:
    name: str
    data: bytes
    partition_key: str
    neighbours: list[dict[str, Any]]  # valid events of the same shopper, one before and one after
    marker: str


class _Probe:
    """Valid events of shoppers and items only this benchmark uses, each with an id of its own."""

    KINDS = ("view", "view", "click", "add_to_cart", "purchase")

    def __init__(self, prefix: str, rng: random.Random, now: dt.datetime):
        self.prefix = prefix
        self.rng = rng
        self.now = now
        self.count = 0
        self.markers = 0

    def user(self, n: int) -> str:
        return f"{self.prefix}-u{n}"

    def event(self, *, user: str | None = None, kind: str | None = None, **fields: Any) -> dict[str, Any]:
        self.count += 1
        user = user or self.user(self.count)
        kind = kind or self.rng.choice(self.KINDS)
        event = {"event_id": f"{self.prefix}-e{self.count}", "user_id": user,
                 "session_id": f"{user}-s{self.count // 50}",
                 "timestamp": _iso(self.now - dt.timedelta(seconds=3600 - self.count % 3600)),
                 "event_type": kind, "item_id": f"{self.prefix}-i{self.rng.randrange(20)}", "category": "books",
                 "price": round(self.rng.uniform(5, 80), 2)}
        if kind in ("add_to_cart", "purchase"):
            event["quantity"] = self.rng.randint(1, 3)
        return event | fields

    def marker(self) -> str:
        """An id for a bad record to carry, so that its quarantine entry can be found; none is part of another."""
        self.markers += 1
        return f"{self.prefix}-bad{self.markers:04d}"


def _http_cases(probe: _Probe) -> list[_HttpCase]:
    """Requests no well-behaved client sends: each either refused with a 4xx, or answered per event."""
    year_ahead = _iso(probe.now + dt.timedelta(days=366))

    def mixed(name: str, bad: dict[str, Any] | str, field_: str | None) -> _HttpCase:
        # A bad event between two valid ones of its shopper: the valid ones must be taken, the bad one refused.
        user = probe.user(10_000 + probe.count)
        marker = probe.marker()
        first, last = probe.event(user=user), probe.event(user=user)
        if isinstance(bad, str):  # JSON text that json.dumps cannot write (NaN, Infinity literals)
            text = "{" + f'"event_id":"{marker}","user_id":"{user}","session_id":"{user}-s0",' \
                         f'"timestamp":"{_iso(probe.now)}","item_id":"{marker}-item",' + bad + "}"
        else:
            text = json.dumps({"event_id": marker, "user_id": user, "session_id": f"{user}-s0",
                               "timestamp": _iso(probe.now), "event_type": "view", "item_id": f"{marker}-item"}
                              | bad, ensure_ascii=False)
        body = '{"events":[' + json.dumps(first) + "," + text + "," + json.dumps(last) + "]}"
        return _HttpCase(name, "POST", "/events", body.encode(), valid={0: first, 2: last},
                         bad_index=1, names_field=field_, marker=marker,
                         user_id=user)

    def valid(name: str, **fields: Any) -> _HttpCase:
        # Odd but valid events (injection strings, unicode ids): taken and applied as any other.
        events = [probe.event(**fields), probe.event(**fields)]
        return _HttpCase(name, "POST", "/events", _json_bytes({"events": events}), valid=dict(enumerate(events)),
                         marker=probe.marker())

    def raw(name: str, path: str, body: bytes | None, method: str = "POST", **extra: Any) -> _HttpCase:
        return _HttpCase(name, method, path, body, marker=probe.marker(), **extra)

    deep_list = "[" * DEEP + "]" * DEEP
    many = [probe.event() for _ in range(501)]
    cases = [
        mixed("purchase price 1e308 x 10000", {"event_type": "purchase", "price": 1e308, "quantity": 10000}, "price"),
        mixed("timestamp 9999-12-31", {"timestamp": "9999-12-31T23:59:59Z"}, "timestamp"),
        mixed("timestamp a year ahead", {"timestamp": year_ahead}, "timestamp"),
        mixed("NaN literal", '"event_type":"purchase","price":NaN', "price"),
        mixed("Infinity literal", '"event_type":"purchase","price":Infinity', "price"),
        mixed("-Infinity quantity", '"event_type":"add_to_cart","quantity":-Infinity', "quantity"),
        mixed("huge string in a field", {"item_id": "x" * 900_000}, "item_id"),
        mixed("huge string outside the schema", {"note": "x" * 1_200_000}, None),
        mixed("wrong type: price text", {"event_type": "purchase", "price": "abc"}, "price"),
        mixed("wrong type: quantity fraction", {"event_type": "purchase", "price": 3.5, "quantity": 1.5}, "quantity"),
        mixed("wrong type: user_id number", {"user_id": 42}, "user_id"),
        mixed("wrong type: event_type list", {"event_type": ["view"]}, "event_type"),
        mixed("wrong type: timestamp object", {"timestamp": {"at": "now"}}, "timestamp"),
        mixed("null timestamp", {"timestamp": None}, "timestamp"),
        mixed("unknown event type", {"event_type": "teleport"}, "event_type"),
        mixed("null byte in user_id", {"user_id": "u\u0000x"}, "user_id"),
        mixed("lone surrogate in category", '"event_type":"view","category":"\\ud800"', "category"),
        mixed("deeply nested field", '"event_type":"view","category":' + "[" * 5000 + "]" * 5000, "category"),
        valid("injection strings as ids", user_id="'; DROP TABLE shoppers; --", item_id="<script>alert(1)</script>",
              category="{{7*7}}"),
        valid("unicode ids", user_id="ü-用户-😀-\u202eevil", item_id="item-ñ-é\u0301-🛒"),
        raw("empty body", "/events", b""),
        raw("non-JSON body", "/events", b"hello, events"),
        raw("JSON null body", "/events", b"null"),
        raw("JSON array body", "/events", b"[]"),
        raw("events not a list", "/events", b'{"events": "view"}'),
        raw("bad UTF-8", "/events", b'{"events":[{"event_id":"\xff\xfe","user_id":"\xc3\x28"}]}'),
        raw("raw null byte", "/events", b'{"events":[{"event_id":"a\x00b"}]}'),
        raw("deep nesting /events", "/events", ('{"events":' + deep_list + "}").encode()),
        raw("deep nesting /rerank", "/rerank", ('{"items":' + deep_list + "}").encode()),
        raw("deep nesting related", "/items/i-1/related", ('{"session_data":' + deep_list + "}").encode()),
        raw("oversized batch: 501 events", "/events", _json_bytes({"events": many})),
        raw("oversized batch: 5,000 events", "/events", _json_bytes({"events": many * 10})),
        raw("body over 10 MB", "/events", b'{"events":[' + b" " * (10 * 1024 * 1024 + 16) + b"]}"),
        raw("wrong content type", "/events", _json_bytes({"events": [probe.event()]}), content_type="text/plain"),
        raw("rerank NaN scores", "/rerank", b'{"items":["a","b"],"base_scores":[NaN,1]}'),
        raw("rerank 1,001 items", "/rerank", _json_bytes({"items": [f"i-{n}" for n in range(1001)]})),
        raw("rerank wrong types", "/rerank", b'{"items":"abc","n":"ten"}'),
        raw("rerank injection ids", "/rerank", _json_bytes({"items": ["'; DROP TABLE items; --", "<script>x</script>"],
                                                            "user_id": "' OR '1'='1"})),
        raw("feed n=1e308", "/users/u-1/feed?n=1e308", None, "GET"),
        raw("feed n=NaN", "/users/u-1/feed?n=NaN", None, "GET"),
        raw("feed injection user", "/users/" + quote("'; DROP TABLE shoppers; --", safe="") + "/feed", None, "GET"),
        raw("feed null byte user", "/users/u%00x/feed", None, "GET"),
        raw("feed bad UTF-8 user", "/users/%FF%FE/feed", None, "GET"),
        raw("feed unicode user", "/users/" + quote("ü-用户-😀", safe="") + "/feed", None, "GET"),
        raw("feed 300-character user", "/users/" + "u" * 300 + "/feed", None, "GET"),
        raw("search script query", "/search?" + urlencode({"q": "<script>alert(1)</script>"}), None, "GET"),
        raw("search 10,000-character query", "/search?" + urlencode({"q": "q" * 10_000}), None, "GET"),
        raw("profile lone surrogate user", "/users/%ED%A0%80/profile", None, "GET"),
    ]
    return cases


def _stream_cases(probe: _Probe) -> list[_StreamCase]:
    """Records a producer that skips the API could put on the stream: Ingest quarantines each with its reason."""
    year_ahead = _iso(probe.now + dt.timedelta(days=366))
    cases = []

    def case(name: str, make: Callable[[str, str, str], bytes], partition_key: str | None = None) -> None:
        user = probe.user(20_000 + probe.count)
        marker = probe.marker()
        base = (f'"event_id":"{marker}","user_id":"{user}","session_id":"{user}-s0",'
                f'"timestamp":"{_iso(probe.now)}","item_id":"{marker}-item"')
        cases.append(_StreamCase("stream: " + name, make(marker, user, base), partition_key or user,
                                 [probe.event(user=user), probe.event(user=user)], marker))

    case("non-JSON", lambda m, u, b: f"{m} is not JSON".encode())
    case("bad UTF-8", lambda m, u, b: b'{"event_id":"' + m.encode() + b'","user_id":"\xff\xfe"}')
    case("JSON array", lambda m, u, b: f'["{m}"]'.encode())
    case("object without the fields", lambda m, u, b: json.dumps({"note": m}).encode())
    case("missing timestamp", lambda m, u, b: ("{" + b.replace(f',"timestamp":"{_iso(probe.now)}"', "")
                                              + ',"event_type":"view"}').encode())
    case("timestamp 9999-12-31", lambda m, u, b: ("{" + b.replace(_iso(probe.now), "9999-12-31T23:59:59Z")
                                                 + ',"event_type":"view"}').encode())
    case("timestamp a year ahead", lambda m, u, b: ("{" + b.replace(_iso(probe.now), year_ahead)
                                                   + ',"event_type":"view"}').encode())
    case("NaN literal", lambda m, u, b: ("{" + b + ',"event_type":"purchase","price":NaN}').encode())
    case("Infinity literal", lambda m, u, b: ("{" + b + ',"event_type":"purchase","price":Infinity}').encode())
    case("purchase price 1e308 x 10000", lambda m, u, b: ("{" + b + ',"event_type":"purchase","price":1e308,'
                                                          '"quantity":10000}').encode())
    case("deep nesting", lambda m, u, b: ("{" + b + ',"event_type":"view","extra":' + "[" * 50_000 + "]" * 50_000
                                          + "}").encode())
    case("huge string", lambda m, u, b: ("{" + b + ',"event_type":"view","category":"' + "x" * 900_000 + '"}').encode())
    case("wrong types", lambda m, u, b: ("{" + b + ',"event_type":"purchase","price":"abc","quantity":[1]}').encode())
    case("null byte", lambda m, u, b: ("{" + b + ',"event_type":"view","category":"a\\u0000b"}').encode() + b"\x00")
    case("lone surrogate", lambda m, u, b: ("{" + b + ',"event_type":"view","category":"\\ud800"}').encode())
    case("null byte in user_id", lambda m, u, b: ("{" + b.replace(f'"user_id":"{u}"', f'"user_id":"{u}\\u0000x"')
                                                 + ',"event_type":"view"}').encode())
    case("partition key not the user", lambda m, u, b: ("{" + b + ',"event_type":"view"}').encode(),
         partition_key="someone-else")
    case("user_id of 300 characters", lambda m, u, b: ("{" + b.replace(f'"user_id":"{u}"', f'"user_id":"{"u" * 300}"')
                                                      + ',"event_type":"view"}').encode())
    return cases


# ---- HTTP --------------------------------------------------------------------------------------------


@dataclass
class _Refusal:
    reason: str
    retryable: bool


@dataclass
class _Answer:
    status: int  # 0: no answer (refused, reset, timed out)
    body: bytes
    ms: float

    @property
    def status_class(self) -> str:
        return _status_class(self.status)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None


class _Api:
    """The stack's API over HTTP on loopback, with its key; raw paths and bodies sent as given."""

    def __init__(self, url: str, key: str, *, on_no_answer: Callable[[_Answer], None] | None = None):
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK:
            raise RuntimeError(f"the API answers at {url}, not on loopback")
        self.url, self.key = url, key
        self.on_no_answer = on_no_answer
        self.host, self.port = parts.hostname, parts.port or 80

    def call(self, method: str, path: str, body: bytes | None = None, *, content_type: str = "application/json",
             timeout: float = REQUEST_TIMEOUT_S) -> _Answer:
        headers = {"x-api-key": self.key}
        if body is not None:
            headers["content-type"] = content_type
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            status, data = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            status, data = 0, f"{type(exc).__name__}: {exc}".encode()
        finally:
            connection.close()
        answer = _Answer(status, data, (time.perf_counter() - started) * 1000)
        if status == 0 and self.on_no_answer is not None:
            self.on_no_answer(answer)
        return answer


def _refusals(answer: Any) -> dict[int, _Refusal] | None:
    """The events an answer to POST /events refuses, by index; None if it says nothing per event. Reads both
    {"accepted", "failed", "failures": [{index, error, retryable}]} and a list of per-event statuses."""
    if not isinstance(answer, dict):
        return None
    failures = answer.get("failures")
    if isinstance(failures, list):
        return {int(f["index"]): _Refusal(str(f.get("error") or f.get("reason") or ""), bool(f.get("retryable")))
                for f in failures if isinstance(f, dict) and isinstance(f.get("index"), int)}
    for name in ("results", "statuses", "events"):
        entries = answer.get(name)
        if isinstance(entries, list):
            return {int(e.get("index", n)): _Refusal(str(e.get("reason") or e.get("error") or ""),
                                                     bool(e.get("retryable")))
                    for n, e in enumerate(entries)
                    if isinstance(e, dict) and str(e.get("status", "")).lower() != "accepted"}
    return None


def _status_path(status_url: Any, api_url: str) -> str | None:
    """The path to poll an erasure's status at, if the answer gave one on this API."""
    if not isinstance(status_url, str) or not status_url:
        return None
    parts = urlsplit(status_url)
    if parts.scheme:
        if parts.hostname not in LOOPBACK or parts.port != urlsplit(api_url).port:
            return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


# ---- the embedded AWS, paused --------------------------------------------------------------------------


class _Outage:
    """The embedded AWS unreachable (tailor_local.aws.MotoServer.pause): every request it receives has its connection
    cut, the connections clients keep open included, as when the endpoint goes away; afterwards it answers as
    before, its state intact. `cut` counts the requests cut."""

    def __init__(self, stack: LocalStack):
        self.server = stack.server
        self.cut = 0

    def __enter__(self) -> _Outage:
        self.server.pause()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut = self.server.resume()


# ---- state and archive reads ---------------------------------------------------------------------------


@dataclass
class _Counts:
    quarantine: set[str]
    failure_records: int
    discarded: int


@dataclass
class _Ledger:
    """Valid events the stack took, and what they must add to shopper and item state once applied."""

    sent: int = 0
    accepted: int = 0
    shoppers: Counter = field(default_factory=Counter)
    items: Counter = field(default_factory=Counter)  # (item_id, counter) -> units
    event_ids: set[str] = field(default_factory=set)
    sent_again: set[str] = field(default_factory=set)  # ids of events the client sent more than once
    tolerated: Counter = field(default_factory=Counter)  # shopper -> events beyond these that they may also show

    def tolerate(self, user_id: str) -> None:
        self.tolerated[user_id] += 1

    def took(self, event: dict[str, Any]) -> None:
        if event["event_id"] in self.event_ids:
            return
        self.event_ids.add(event["event_id"])
        self.accepted += 1
        self.shoppers[event["user_id"]] += 1
        counter = ITEM_COUNTERS.get(event["event_type"])
        if counter and event.get("item_id"):
            self.items[(event["item_id"], counter)] += event.get("quantity", 1)


class _ArchiveScanner:
    """Archived events by shopper, from every archive object; objects already read are not read again unless they
    changed."""

    def __init__(self, handle: Any):
        self.handle = handle
        self._lines: dict[tuple[str, str], list[str]] = {}  # (key, etag) -> lines naming any user asked about so far
        self._users: set[str] = set()

    def lines_of(self, users: Iterable[str]) -> dict[str, int]:
        users = set(users)
        if not users <= self._users:
            self._lines.clear()  # cached lines hold only the users asked about before
            self._users |= users
        counts: Counter[str] = Counter()
        for obj in self.handle.objects("DataBucket", ARCHIVE_PREFIX):
            key = (obj["Key"], obj.get("ETag", ""))
            if key not in self._lines:
                body = self.handle.read_object("DataBucket", obj["Key"])
                try:
                    text = gzip.decompress(body).decode("utf-8", errors="replace")
                except (OSError, EOFError):
                    text = body.decode("utf-8", errors="replace")
                self._lines[key] = [line for line in text.splitlines() if any(u in line for u in self._users)]
            for line in self._lines[key]:
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                user = event.get("user_id") if isinstance(event, dict) else None
                if isinstance(user, str) and user.strip() in users:
                    counts[user.strip()] += 1
        return dict(counts)


def _rows(handle: Any, table: str, key_name: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    client = handle.aws.client("dynamodb")
    name = handle.resources.name(table)
    deserialize = TypeDeserializer().deserialize
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), 100):
        pending: dict[str, Any] = {name: {"Keys": [{key_name: {"S": k}} for k in keys[start:start + 100]]}}
        for _ in range(20):
            response = client.batch_get_item(RequestItems=pending)
            for item in response.get("Responses", {}).get(name, []):
                row = {k: deserialize(v) for k, v in item.items()}
                found[row[key_name]] = row
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
    return found


def _scan(handle: Any, table: str, *, projection: str | None = None) -> Iterable[dict[str, Any]]:
    client = handle.aws.client("dynamodb")
    deserialize = TypeDeserializer().deserialize
    request: dict[str, Any] = {"TableName": handle.resources.name(table)}
    if projection:
        request["ProjectionExpression"] = projection
    while True:
        page = client.scan(**request)
        for item in page.get("Items", []):
            yield {k: deserialize(v) for k, v in item.items()}
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _stream_data(kinesis: Any, stream: str) -> Iterable[bytes]:
    """Every record's data on every shard, from the oldest."""
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for _ in range(10_000):  # pages: far more than the stream holds
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                yield record["Data"]
            iterator = page.get("NextShardIterator")
            if not page["Records"] or not iterator:
                break


def _ingest_totals(progress: dict[str, Any]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for mapping in progress.values():
        for shard in mapping["shards"].values():
            for name in ("records_done", "invocations", "records_discarded"):
                totals[name] += shard[name]
    return {name: totals[name] for name in ("records_done", "invocations", "records_discarded")}


# ---- events ------------------------------------------------------------------------------------------


def _long_history(user: str, sessions: int, years: float, per_session: int, now: dt.datetime,
                  rng: random.Random) -> list[dict[str, Any]]:
    """A shopper's `sessions` sessions spread evenly over the last `years` years, oldest first."""
    span = dt.timedelta(days=365 * years)
    events = []
    for s in range(sessions):
        start = now - span + span * (s / max(1, sessions)) + dt.timedelta(hours=1)
        start = min(start, now - dt.timedelta(hours=2))
        for k in range(per_session):
            kind = "purchase" if k == per_session - 1 and s % 10 == 0 else ("add_to_cart" if k == 2 else "view")
            event = {"event_id": f"{user}-s{s}-e{k}", "user_id": user, "session_id": f"{user}-s{s}",
                     "timestamp": _iso(start + dt.timedelta(minutes=k)), "event_type": kind,
                     "item_id": f"{user}-i{rng.randrange(200)}", "category": "garden",
                     "price": round(rng.uniform(5, 200), 2)}
            if kind in ("add_to_cart", "purchase"):
                event["quantity"] = 1
            events.append(event)
    return events


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _curl(case: Any) -> str:
    with contextlib.suppress(Exception):
        return case.as_curl_command()[:300]
    return ""


# ---- figures -----------------------------------------------------------------------------------------


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if status else "no answer"


def _tally(classes: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(classes).items()))


def _latency(samples: list[float | None]) -> dict[str, Any]:
    """Percentiles of the feeds that were answered; those that failed are counted beside them."""
    answered = [s for s in samples if s is not None]
    failed = len(samples) - len(answered)
    if not answered:
        return {"requests": 0, "failed": failed, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"requests": len(answered), "failed": failed, "p50_ms": percentile(answered, 50),
            "p99_ms": percentile(answered, 99), "max_ms": max(answered)}


def _checks(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure beside its goal; a part that did not finish is a goal missed."""
    checks = [_check(f"{part} finished", section["error"], "finished", False)
              for part, section in sections.items() if isinstance(section, dict) and "error" in section]
    seed = sections.get("seed")
    if isinstance(seed, dict) and "error" not in seed:
        # Parts that start while the seed is still on its way measure Ingest's backlog as well as themselves.
        checks.append(_check("seed drained before the parts began, s", seed["drain_s"] if seed["drained"] else
                             "not drained", "drained", seed["drained"]))
    bad, burst, pause, erasures = (sections.get(p) for p in ("bad_input", "burst", "pause", "erasure"))
    finished = {p: s for p, s in (("bad input", bad), ("burst", burst), ("pause", pause))
                if isinstance(s, dict) and "error" not in s}
    if "bad input" in finished:
        server_errors = sum(n for c, n in bad["http"]["by_class"].items() if c in ("5xx", "no answer")) + \
            sum(n for c, n in bad["fuzz"]["by_class"].items() if c in ("5xx", "no answer"))
        checks.append(_check("responses >= 500 (or none) to bad input and schema-driven requests", server_errors,
                             f"{GOALS['server_errors']}", server_errors <= GOALS["server_errors"]))
        if bad["fuzz"].get("error"):
            checks.append(_check("schema-driven requests", "could not run", "run", False))
    for name, section in finished.items():
        events = section["events"]
        # Until the stream is drained, what is missing may still come: not applied yet, not known to be lost.
        checks.append(_check(f"valid events lost ({name})" if section["drained"] else
                             f"valid events not applied when the drain timed out ({name})", events["lost"], "0",
                             events["lost"] == 0 and section["drained"]))
        extra = events["item_units_extra"]
        checks.append(_check(f"valid events counted twice ({name}; item units extra {extra:g})",
                             events["double_counted"], "0", events["double_counted"] == 0 and extra == 0))
    if "bad input" in finished:
        cases = bad["http"]["cases"]
        unnamed = sum(1 for c in cases if c.get("refusal_names_field") is False)
        checks.append(_check("refused bad events whose reason does not name the field", unnamed, "0", unnamed == 0))
        bad_accepted = sum(1 for c in cases if c.get("bad_accepted"))
        checks.append(_check("bad events accepted at the door", bad_accepted, "0", bad_accepted == 0))
        valid_refused = sum(c.get("valid_refused", 0) for c in cases)
        checks.append(_check("valid events refused beside bad ones", valid_refused, "0", valid_refused == 0))
        not_quarantined = bad["stream"]["records"] - bad["stream"]["quarantined"]
        checks.append(_check("bad stream records not quarantined", not_quarantined, "0", not_quarantined == 0))
        non_infra = bad["stream"]["failure_queue_records"] + bad["stream"]["records_discarded"]
        checks.append(_check("failure-queue records without an infrastructure fault", non_infra,
                             f"{GOALS['non_infrastructure_failure_records']}",
                             non_infra <= GOALS["non_infrastructure_failure_records"]))
    for erasure in erasures if isinstance(erasures, list) else []:
        label = f"{erasure['sessions']} sessions"
        checks.append(_check(f"erasure answered, s ({label}; HTTP {erasure['delete_status'] or 'none'})",
                             erasure["answer_s"], f"< {GOALS['erasure_answer_s']:g}",
                             erasure["answer_s"] < GOALS["erasure_answer_s"] and erasure["asynchronous"]))
        clean = erasure["clean_s"]
        checks.append(_check(f"erasure done and nothing left, s ({label})",
                             clean if clean is not None else "not clean", f"<= {GOALS['erasure_clean_s']:g}",
                             clean is not None and clean <= GOALS["erasure_clean_s"] and erasure["done_s"] is not None))
    audit = sections.get("stream")
    if isinstance(audit, dict) and "error" not in audit:
        checks.append(_check("accepted events on the stream twice though sent once", audit["duplicated_sent_once"],
                             "0", audit["duplicated_sent_once"] == 0))
    if "burst" in finished:
        ratio = burst["p99_ratio"]
        failed_feeds = burst["idle"]["failed"] + burst["under_burst"]["failed"]
        checks.append(_check("feed p99 under the burst / idle", ratio if ratio is not None else "n/a",
                             f"<= {GOALS['feed_p99_burst_over_idle']:g}",
                             ratio is not None and ratio <= GOALS["feed_p99_burst_over_idle"] and not failed_feeds))
        checks.append(_check("feeds that failed (idle and under the burst)", failed_feeds, "0", failed_feeds == 0))
    return checks


def _check(what: str, value: Any, goal: str, met: bool) -> dict[str, Any]:
    return {"what": what, "value": value, "goal": goal, "met": bool(met)}


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _classes(by_class: dict[str, int]) -> str:
    return ", ".join(f"{n} {c}" for c, n in by_class.items()) or "none"


def _leftovers(leftovers: dict[str, Any]) -> str:
    parts = [f"{leftovers.get('sessions', 0)} session rows", f"{leftovers.get('archived_events', 0)} archived events"]
    if leftovers.get("shopper_fields"):
        parts.append(f"shopper row with {len(leftovers['shopper_fields'])} state fields")
    return ", ".join(parts)
