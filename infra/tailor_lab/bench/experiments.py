"""Experiments benchmark: what assignment adds to a feed and attribution to Ingest's CPU per event. Prints a table and
writes the figures as JSON.

* Feeds: the serving benchmark's state and requests (a simulated day, the default candidate budget, the in-memory
  store), each request served without an experiment, in a live one (assignment, the variant's pipeline, the
  experiment's feed id), in one that also logs the exposure (to the in-memory store), and in one whose variant is
  the adaptive strategy (the session's cluster bandit filling the slots, over clusters built from the simulated
  catalog and day), and in an interleaving experiment of baseline and default (both strategies rank, team draft
  merges), the five taken in turn request by request so that they see the same machine; p50 and p99 of each,
  in wall time and in the thread's CPU time (which the machine's other work does not lengthen), with the
  benchmark's own objects frozen out of the collector's passes, as the API freezes what its init made. Apart, on
  INTERLEAVED_LISTS requests' lists of both strategies, the CPU time of team draft alone and of all an interleaved
  list adds once both have ranked (`interleave`: team draft, its slots' probabilities and the credits).
  Beside them, the experiment's own work in each request of the third row, timed apart in CPU time: reading the live
  experiments, `assign()` on the request's ids, the strategy's lookup, the feed id and logging the exposure. A list
  served in an experiment takes its time without one plus that work, so the p99 grows by at most the work's largest
  value, a bound the machine's spread between runs cannot blur the way it blurs a difference of two p99s.
* Ingest: the same simulated events through Ingest (in-memory store; intent, traits and the counter buffer on, as a
  new stack runs it) without attribution, with attribution and no event naming an experiment, and with every
  impression, click, cart and purchase echoing an experiment's feed id (a worst case: on a shop only those on an
  experiment's surface do); the benchmark's own objects frozen out of the collector's passes, as Ingest freezes
  what its init made; CPU seconds per event (time.process_time), runs interleaved, median and fastest of
  `--runs`, and each row's cost against attribution off as the geometric mean of its runs' ratios to the run beside
  it, with a 95% interval (the t-interval of the ratios' logarithms): runs side by side share the machine's state,
  so their ratio carries less of its drift.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tailor.experiments.assignment import assign
from tailor.experiments.attribution import Attribution
from tailor.experiments.feed_ids import CREDIT_SLOTS, new_feed_id
from tailor.experiments.interleaving import interleave, team_draft
from tailor.experiments.storage import ExperimentStore, LiveExperiments
from tailor.experiments.strategies import BUILT_IN
from tailor.ingest.intent import SessionIntent
from tailor.ingest.service import Ingestor, StreamRecord
from tailor.models import load_model
from tailor.personas.online import PersonaTracker
from tailor.personas.storage import ModelSource
from tailor.ranking import MODEL_NAME, RankingModel
from tailor.serving import Recommender
from tailor.serving.recommender import Request
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.simulator import simulate
from tailor_lab.stream import epoch_of
from tailor_lab.training.clusters import build_clusters

from .report import frozen_heap, percentile, publish
from .serving import WARMUP_REQUESTS
from .state import FEED_N, feed_requests, ingested, started_experiment

__all__ = ["main", "run"]

ATTRIBUTED_TYPES = ("impression", "click", "add_to_cart", "purchase")


INTERLEAVED_LISTS = 300  # requests whose two lists the interleaving work is timed on


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="timed feed requests per row (1500)")
    parser.add_argument("--events", type=int, default=6000, help="events through Ingest per run (6000)")
    parser.add_argument("--runs", type=int, default=11, help="Ingest runs per row (11)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/experiments.json"))
    args = parser.parse_args(argv)
    report = run(requests=args.requests, events=args.events, runs=args.runs, seed=args.seed)
    publish(report, format_table(report), args.out)
    return 0


def run(*, requests: int, events: int, runs: int, seed: int) -> dict[str, Any]:
    return {"benchmark": "experiments", "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "feed": _feeds(requests, seed), "ingest": _ingest(events, runs, seed)}


def format_table(report: dict[str, Any]) -> str:
    lines = ["Feeds (in-memory store, default budget, requests interleaved)",
             f"{'':<46} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU p50':>8} {'CPU p99':>8}"]
    for name, row in report["feed"]["rows"].items():
        lines.append(f"{name:<46} {row['requests']:>8} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                     f"{row['cpu_p50_ms']:>8.2f} {row['cpu_p99_ms']:>8.2f}")
    own = report["feed"]["experiment_work"]
    lines.append(f"the experiment's own work per request, CPU ({own['requests']} requests): p50 {own['p50_us']:.1f} us, "
                 f"p99 {own['p99_us']:.1f} us, largest {own['max_us']:.1f} us; assign() alone "
                 f"{report['feed']['assign_us']:.1f} us a call")
    work = report["feed"]["interleaving_work"]
    lines.append(f"an interleaved list of {work['items']} once both strategies ranked it, CPU ({work['requests']} "
                 f"requests): team draft p50 {work['team draft']['p50_us']:.1f} us, p99 "
                 f"{work['team draft']['p99_us']:.1f} us; with its slots' probabilities and credits p50 "
                 f"{work['interleave']['p50_us']:.1f} us, p99 {work['interleave']['p99_us']:.1f} us")
    ingest = report["ingest"]
    lines += ["", f"Ingest CPU per event ({ingest['events']} events, {ingest['attributed_events']} echoing an "
                  f"experiment's feed id in the last row; {ingest['runs']} runs each)",
              f"{'':<46} {'median us':>9} {'fastest us':>10} {'vs off':>8} {'paired runs, 95%':>24}"]
    for name, row in ingest["rows"].items():
        paired = row.get("vs_off_paired")
        interval = ("" if paired is None else
                    f"{paired['ratio'] - 1:+.1%} [{paired['low'] - 1:+.1%}, {paired['high'] - 1:+.1%}]")
        lines.append(f"{name:<46} {row['median_us']:>9.1f} {row['fastest_us']:>10.1f} {row['vs_off_median']:>+8.1%} "
                     f"{interval:>24}")
    return "\n".join(lines)


def _feeds(requests: int, seed: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    simulation = simulate(shoppers=500, days=1.0, seed=seed, start=now - dt.timedelta(days=1), items=3000)
    state = ingested(simulation.events)
    model = load_model(MODEL_NAME, None, build=RankingModel.from_stored)
    asks = feed_requests(state, requests + WARMUP_REQUESTS, seed)
    experiment = started_experiment({"experiment_id": "exp-bench", "variants": [
        {"name": "a", "strategy": "default"}, {"name": "b", "strategy": "default"}]}, now)
    live = LiveExperiments(lambda: [experiment])
    adaptive = started_experiment({"experiment_id": "exp-adaptive", "variants": [
        {"name": "a", "strategy": "adaptive"}, {"name": "b", "strategy": "adaptive"}]}, now)
    interleaving = started_experiment({"experiment_id": "exp-interleaving", "design": "interleaving", "variants": [
        {"name": "a", "strategy": "baseline"}, {"name": "b", "strategy": "default"}]}, now)
    clusters = build_clusters(simulation.catalog, simulation.events)
    logged = ExperimentStore(MemoryStateStore())

    def log(feed_id: str, ranking: Any) -> None:
        items = [item.item_id for item in ranking.items]
        logged.log_exposure(feed_id, ranking.assignment, strategy=ranking.strategy, items=items,
                            probabilities=[1.0] * len(items), served_at=time.time(), ranker=ranking.model)

    work = _Stopwatch()
    plain = Recommender(state, model)
    plain.pipeline.warm(plain.clock())
    recommenders = {"no experiment": plain,
                    "in an experiment": Recommender(state, model, cache=plain.pipeline.cache, experiments=live),
                    "in an experiment, exposure logged": Recommender(
                        state, model, cache=plain.pipeline.cache, experiments=work.timed(live),
                        strategies=work.timed(lambda: BUILT_IN), exposures=work.timed(log)),
                    "in an experiment of the adaptive strategy": Recommender(
                        state, model, cache=plain.pipeline.cache, experiments=LiveExperiments(lambda: [adaptive]),
                        item_clusters=lambda: clusters),
                    "interleaving baseline and default": Recommender(
                        state, model, cache=plain.pipeline.cache, experiments=LiveExperiments(lambda: [interleaving]))}
    timings: dict[str, list[float]] = {name: [] for name in recommenders}
    cpu: dict[str, list[float]] = {name: [] for name in recommenders}
    own_work: list[float] = []
    with frozen_heap():  # as the API freezes what its init made (functions/api/app.py)
        for n, (user, session) in enumerate(asks):
            order = list(recommenders.items())
            for name, recommender in order if n % 2 else reversed(order):
                work.reset()
                started, started_cpu = time.perf_counter(), time.thread_time()
                recommender.feed(user, session_id=session, n=FEED_N)
                if n >= WARMUP_REQUESTS:
                    timings[name].append((time.perf_counter() - started) * 1000)
                    cpu[name].append((time.thread_time() - started_cpu) * 1000)
            if n >= WARMUP_REQUESTS:
                # What the recommender does with the live experiments besides reading them and logging: assign the
                # request's ids and name its feed id, the same calls on the same arguments.
                found = work.timed(assign)(live(now.timestamp()), "feed", user_id=user, session_id=session)
                work.timed(new_feed_id)(found.experiment.experiment_id, found.variant_name, found.unit_kind)
                own_work.append(work.spent * 1e6)
    started = time.perf_counter()
    for user, _ in asks:
        assign([experiment], "feed", user_id=user, session_id=None)
    assign_us = (time.perf_counter() - started) / len(asks) * 1e6
    interleaving_work = _interleaving_work(plain, asks[WARMUP_REQUESTS:WARMUP_REQUESTS + INTERLEAVED_LISTS])
    return {"rows": {name: {"requests": len(values), "p50_ms": percentile(values, 50),
                            "p99_ms": percentile(values, 99), "cpu_p50_ms": percentile(cpu[name], 50),
                            "cpu_p99_ms": percentile(cpu[name], 99)} for name, values in timings.items()},
            "clusters": len(clusters.ids),
            "experiment_work": {"requests": len(own_work), "p50_us": percentile(own_work, 50),
                                "p99_us": percentile(own_work, 99), "max_us": max(own_work)},
            "assign_us": assign_us, "interleaving_work": interleaving_work}


def _interleaving_work(recommender: Recommender, asks: list[tuple[str, str | None]], repeats: int = 5
                       ) -> dict[str, Any]:
    """CPU time of what an interleaved list adds once both strategies have ranked it (baseline's and default's lists
    of each request): team draft alone, and all of `interleave` (team draft, each slot's items' probabilities, the
    credits a feed id carries), each request's least of `repeats`, in microseconds."""
    coin = random.Random(0)
    now = recommender.clock()
    spent: dict[str, list[float]] = {"team draft": [], "interleave": []}
    for user, session in asks:
        request = Request("feed", user_id=user, session_id=session, n=FEED_N)
        ranking_a, ranking_b = ([item.item_id for item in recommender._ranked(request, now, BUILT_IN[name], "")[1]]
                                for name in ("baseline", "default"))
        for name, work in (("team draft", lambda: team_draft(ranking_a, ranking_b, FEED_N, coin)),
                           ("interleave", lambda: interleave(ranking_a, ranking_b, FEED_N, coin, CREDIT_SLOTS))):
            times = []
            for _ in range(repeats):
                started = time.thread_time()
                work()
                times.append(time.thread_time() - started)
            spent[name].append(min(times) * 1e6)
    return {"requests": len(asks), "items": FEED_N,
            **{name: {"p50_us": percentile(values, 50), "p99_us": percentile(values, 99)}
               for name, values in spent.items()}}


def _ingest(events: int, runs: int, seed: int) -> dict[str, Any]:
    payload = simulate(shoppers=max(60, events // 10), days=1.0, seed=seed).events[:events]

    def experimental(event: dict[str, Any]) -> dict[str, Any]:
        if event["event_type"] not in ATTRIBUTED_TYPES:
            return event
        variant = "a" if sum(map(ord, event["user_id"])) % 2 else "b"
        return {**event, "feed_id": f"exp-bench.{variant}.u{event['session_id'][-12:]}"}

    attributed = [experimental(e) for e in payload]
    rows = {"attribution off": (None, payload), "attribution on, no feed id of an experiment": (Attribution(), payload),
            "attribution on, feed events in an experiment": (Attribution(), attributed)}
    intent = SessionIntent.shipped()
    # Each event reaches the stream a second after it happened, as a shop's events do: Ingest refuses one dated
    # later than it arrived (beyond the clock skew it allows).
    streams = {name: [StreamRecord("shardId-000000000000", str(49_000_000_000_000_000_000 + i), json.dumps(e).encode(),
                                   e["user_id"], epoch_of(e["timestamp"]) + 1.0) for i, e in enumerate(events_in)]
               for name, (_, events_in) in rows.items()}
    times: dict[str, list[float]] = {name: [] for name in rows}
    with frozen_heap():
        _time_ingest(rows, streams, intent, runs, times)
    off = statistics.median(times["attribution off"])
    return {"events": len(payload), "attributed_events": sum(1 for e in attributed if e is not None and
                                                             str(e.get("feed_id", "")).startswith("exp-bench.")),
            "runs": runs,
            "rows": {name: {"median_us": statistics.median(values), "fastest_us": min(values),
                            "vs_off_median": statistics.median(values) / off - 1,
                            "vs_off_paired": (None if name == "attribution off" else
                                              paired_ratio(values, times["attribution off"]))}
                     for name, values in times.items()}}


def _time_ingest(rows: dict[str, tuple[Attribution | None, list[dict[str, Any]]]],
                 streams: dict[str, list[StreamRecord]], intent: SessionIntent, runs: int,
                 times: dict[str, list[float]]) -> None:
    """CPU microseconds per event of each row's stream through a new Ingestor, `runs` times, into `times`."""
    for run_number in range(-1, runs):  # the first, untimed, loads what a container loads once (the intent model)
        # Each row first in turn: whatever one run leaves the next (caches, the collector's debt) counts against all.
        order = list(rows.items())
        for name, (attribution, _) in order if run_number % 2 == 0 else reversed(order):
            records = streams[name]
            blobs = MemoryBlobStore()
            ingestor = Ingestor(MemoryStateStore(), blobs, max_workers=1, intent=intent, buffer=True,
                                personas=PersonaTracker(ModelSource(blobs)), attribution=attribution)
            refused = 0
            started = time.process_time()
            for start in range(0, len(records), 100):
                outcome = ingestor.ingest(records[start:start + 100])
                refused += outcome.quarantined + len(outcome.failed)
            if run_number >= 0:
                times[name].append((time.process_time() - started) / len(records) * 1e6)
            if refused:
                raise RuntimeError(f"{refused} of the benchmark's events were not ingested ({name})")


def paired_ratio(values: list[float], baseline: list[float]) -> dict[str, float] | None:
    """The ratio of `values` to `baseline`, run i against run i: the geometric mean of the ratios with its 95%
    t-interval (on their logarithms), and their median."""
    from scipy import stats

    logs = [math.log(v / b) for v, b in zip(values, baseline, strict=True)]
    if len(logs) < 2:
        return None
    mean = statistics.fmean(logs)
    half = stats.t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return {"ratio": math.exp(mean), "low": math.exp(mean - half), "high": math.exp(mean + half),
            "median": statistics.median(math.exp(x) for x in logs)}


class _Stopwatch:
    """CPU time this thread spent in the callables it wraps, since the last reset."""

    def __init__(self) -> None:
        self.spent = 0.0

    def reset(self) -> None:
        self.spent = 0.0

    def timed(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.spent += time.thread_time() - started

        return timed_call
