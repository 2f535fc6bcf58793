"""Measure personas (recovery, traits, re-ranking) through the product's own code, on the simulator and Diginetica.

Events are replayed through Ingest (tailor.ingest.service with persona tracking) into an in-memory store, the
scheduled persona jobs (tailor.personas.rebuild) run on it, and the rerank route's pipeline
(tailor.serving.Recommender with the persona scorer) re-ranks on what it holds.

Simulator. A simulation's earlier days are the training window, replayed in steps of STEP_SECONDS with the
persona jobs on the template's schedule (rebuild daily, refine hourly, at event time; the first refine finds no
model and builds one), as a deployment would have run them: once a model exists Ingest keeps mixtures, persona
counters and the price levels shoppers look at (which need a model's price quantiles), and each job turns the
counters into adjustment vectors. Reported: the adjusted Rand index of the shoppers' personas against the
simulator's true personas (the latest model's assignment, and the dominant persona of the mixture Ingest kept),
and the accuracy of each trait (posterior mean >= 0.5 against the truth's flag) beside always answering the
trait's majority class. The later days are the test window, replayed the same way, the schedule going on:
every list rendered to a shopper (impression: a category page and its next pages, search results, the item page's
recommendation widget) that the shopper then clicked from is re-ranked with the state as of just before it was
shown, and NDCG@10 of the clicked items is compared between the list as shown (the base list: the shop's own
order, which knows nothing of the shopper) and the rerank route's blend of it with the persona term: score = 0.4
(the route's relevance weight) x base (by rank) + weight x persona term (whole mixture, and the dominant persona
only), so `weight` means what PersonaBlendWeight does.

Oracles. The simulator knows why a shopper clicked: the choice model's chance that they click an item where it was
shown is the examination of its position times the chance they take it once examined (their utility of it in the
session's context: its category, what they saw and bought; simulator/parameters.py). Ranking each list by that
chance is what re-ranking could reach: with the utility of the shopper's true persona (the mean utility of its
shoppers), the persona oracle, the best a persona-level re-ranking can do; with each persona's utility weighed by
the persona's posterior given the shopper's events before the list (the Bayes oracle), the best such a re-ranking
can do when it must tell the persona from the events, as a product must; with the shopper's own, the utility
oracle. Reported: each lift with its 95% bootstrap interval over lists, and each weight's share of the persona
oracle's lift over the shop's order (paired resamples); at the report's top, for scripts, the first --weight's
figures in the deployed mode (mixture): `lift`, `oracle_lift`, `share_of_oracle` and their `_ci95` intervals.

Diginetica (with categories). The same replay on real sessions: the latest days holding --diginetica-test-share
of the events are the test window.
Real data has no listings, so each test view after a session's first gets a base list as a shop's category
page would show it: the category's most viewed items in the training window (top BASE_LIST), in that order; the
viewed item is the click. NDCG@10 of that item in the base and re-ranked lists, over the views whose item is
in the list.

Choosing the blend weight: --validation leaves the test window out and holds out instead the latest part of
the training window (the simulator's last --validation-days, Diginetica's latest days holding its test share of
the training events), the rest being training; several --weight values are measured in one walk.

    tailor evaluate personas [--shoppers 2000 --days 28 --test-days 7 --seed 11] [--weight 0.5 [1 ...]]
                             [--validation [--validation-days 7]]
                             [--diginetica DIR [--diginetica-test-share 0.2] | --no-diginetica] [--json FILE]
    tailor evaluate personas --recovery-only [--seed 12] [--json FILE]    # the training window's recovery alone
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tailor.ingest.service import Ingestor
from tailor.personas.model import dominant, persona_evidence
from tailor.personas.online import PersonaTracker
from tailor.personas.rebuild import run_job
from tailor.personas.rerank import DEFAULT_WEIGHT, PersonaScorer
from tailor.personas.storage import ModelSource
from tailor.personas.traits import TRAITS, trait_means
from tailor.ranking import DEFAULT_WEIGHTS, ConversionPrior
from tailor.serving import Recommender
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab import report_json
from tailor_lab.datasets import SHARED_DATA
from tailor_lab.stream import epoch_of, records_by_shard

__all__ = ["Replay", "evaluate_diginetica", "evaluate_simulated", "format_table", "main", "ndcg_at"]

BATCH = 100
STEP_SECONDS = 900
BASE_LIST = 20
MAX_SAMPLES = 4000
BOOTSTRAP = 500
REBUILD_SECONDS = 86400  # the template's schedules of the persona jobs
REFINE_SECONDS = 3600
DIGINETICA_REBUILD_DAYS = 30
DEFAULT_DIGINETICA = SHARED_DATA / "diginetica"


class Replay:
    """Events through Ingest as Kinesis would hand them over: by shard of the user id, in batches, in order."""

    def __init__(self, *, seed: int = 0, rebuild_seconds: float = REBUILD_SECONDS,
                 refine_seconds: float = REFINE_SECONDS) -> None:
        self.store = MemoryStateStore()
        self.blobs = MemoryBlobStore()
        self.models = ModelSource(self.blobs, refresh_seconds=0.0)
        self.ingestor = Ingestor(self.store, self.blobs, max_workers=1, personas=PersonaTracker(self.models))
        self.seed = seed
        self.rebuild_seconds, self.refine_seconds = rebuild_seconds, refine_seconds
        self.built: dict[str, Any] | None = None  # the latest rebuild that published a model
        self.latest: dict[str, Any] | None = None  # the latest job that published one
        self._sequence = 10 ** 20
        self._rebuilt = self._refined = None  # when the schedules last fired
        self._fed = False  # events came in since the last job

    def walk(self, events: list[dict], before_step: Callable[[float, list[dict]], None] | None = None) -> None:
        """Replay `events` in steps of STEP_SECONDS, running before each step the persona jobs then due: rebuild
        every `rebuild_seconds`, refine every `refine_seconds`, both from the first event walked; a job that no
        event came in before is skipped (it would publish the same model). `before_step(start, events)` sees
        each step after its jobs, before it is replayed."""
        for start, step in _steps(events):
            self._jobs_due(start)
            if before_step is not None:
                before_step(start, step)
            self.feed(step)
            self._fed = True

    def feed(self, events: Iterable[dict]) -> int:
        events = list(events)
        shards = records_by_shard(events, self._sequence + 1)
        self._sequence += len(events)
        fed = 0
        for records in shards.values():
            for start in range(0, len(records), BATCH):
                outcome = self.ingestor.ingest(records[start:start + BATCH])
                if outcome.failed:
                    raise RuntimeError(f"ingest failed {len(outcome.failed)} records")
                fed += outcome.accepted
        return fed

    def job(self, mode: str, *, seed: int = 0, now: float | None = None) -> dict[str, Any]:
        summary = run_job(mode, self.store, self.blobs, seed=seed, clock=time.time if now is None else lambda: now)
        if summary.get("published"):
            self.latest = summary
            if summary["mode"] == "rebuild":
                self.built = summary
        return summary

    def _jobs_due(self, now: float) -> None:
        if self._rebuilt is None:
            self._rebuilt = self._refined = now
            return
        if now - self._rebuilt >= self.rebuild_seconds:
            self._rebuilt += (now - self._rebuilt) // self.rebuild_seconds * self.rebuild_seconds
            self._refined = self._rebuilt
            mode = "rebuild"
        elif now - self._refined >= self.refine_seconds:
            self._refined += (now - self._refined) // self.refine_seconds * self.refine_seconds
            mode = "refine"
        else:
            return
        if self._fed:
            self.job(mode, seed=self.seed, now=now)
            self._fed = False

    def recommender(self, weight: float, mode: str, clock: Callable[[], float]) -> Recommender:
        """The rerank route with the base list's relevance at its deployed weight and the persona term beside it;
        the route's other terms (Tailor's own ranker) are left out: what is measured is the persona layer."""
        weights = {"rerank": {"relevance": DEFAULT_WEIGHTS["rerank"]["relevance"], "personas": weight}}
        return Recommender(self.store, ConversionPrior(), clock=clock, weights=weights, read_waves=None,
                           scorers=[PersonaScorer(self.models, mode=mode)])


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def evaluate_simulated(*, shoppers: int, days: float, test_days: float, seed: int, weights: Sequence[float],
                       validation_days: float | None = None, recovery_only: bool = False,
                       echo: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """`validation_days`: leave the test window out and hold out the training window's last days instead;
    `recovery_only`: stop after the training window's recovery (no re-ranking)."""
    from tailor_lab.simulator import simulate

    started = time.perf_counter()
    simulation = simulate(shoppers=shoppers, days=days, seed=seed)
    events = simulation.events
    split = epoch_of(simulation.truth["start"]) + (days - test_days) * 86400
    if validation_days:
        events = [e for e in events if epoch_of(e["timestamp"]) < split]
        split -= validation_days * 86400
    train = [e for e in events if epoch_of(e["timestamp"]) < split]
    test = [e for e in events if epoch_of(e["timestamp"]) >= split]
    replay = Replay(seed=seed)
    echo(f"simulator: {len(events)} events, {shoppers} shoppers; replaying {len(train)} training events")
    trained = _train(replay, train)
    echo(f"personas: k={trained['k']} (held-out deviance over k={sorted(trained['bic'])}), "
         f"{trained['adjustments'].get('items_kept', 0)} items with adjustments")
    recovery = _recovery(replay, simulation.truth, oracle=_persona_oracle(simulation, train))
    measured = {"events": len(events), "train_events": len(train), "test_events": len(test), "shoppers": shoppers,
                "days": days, "test_days": test_days, "validation_days": validation_days, "seed": seed,
                "k": trained["k"], "bic": trained["bic"], "adjustments": trained["adjustments"], **recovery}
    if recovery_only:
        return {**measured, "seconds": round(time.perf_counter() - started, 1)}
    window = "validation" if validation_days else "test"
    echo(f"replaying {len(test)} {window} events, re-ranking listings clicked from")
    ranking = _rerank_test(replay, _listing_samples(test), test, weights, oracles=_oracles(simulation))
    return {**measured, **_headline(ranking), "ranking": ranking, "seconds": round(time.perf_counter() - started, 1)}


def evaluate_diginetica(directory: Path, *, test_share: float, weights: Sequence[float], seed: int,
                        validation: bool = False, echo: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """`validation`: leave the test window out and hold out the training window's latest days instead."""
    from tailor_lab.datasets import load_diginetica

    started = time.perf_counter()
    events = list(load_diginetica(directory / "train-item-views-sample.csv", directory / "train-purchases.csv",
                                  directory / "product-categories.csv"))
    days = sorted({e["timestamp"][:10] for e in events})
    train, test, split_day = _latest_days(events, test_share)
    if validation:
        train, test, split_day = _latest_days(train, test_share)
    if not train or not test:
        raise ValueError("Diginetica: too few days to split into training and test windows")
    echo(f"diginetica: {len(events)} events over {len(days)} days; replaying {len(train)} before {split_day}")
    # Its times within a day are made up (the data gives dates): refine daily. Rebuilds, each re-clustering some
    # ten thousand shoppers, every DIGINETICA_REBUILD_DAYS keep the replay of five months short.
    replay = Replay(seed=seed, rebuild_seconds=DIGINETICA_REBUILD_DAYS * 86400, refine_seconds=86400)
    trained = _train(replay, train)
    views = Counter(e["item_id"] for e in train if e["event_type"] == "view")
    by_category: dict[str, list[str]] = defaultdict(list)
    category_of = {e["item_id"]: e["category"] for e in train if e.get("category")}
    for item, _ in views.most_common():
        if item in category_of:
            by_category[category_of[item]].append(item)
    lists = {c: items[:BASE_LIST] for c, items in by_category.items() if len(items) >= 2}
    window = "validation" if validation else "test"
    echo(f"personas: k={trained['k']}; replaying {len(test)} {window} events, re-ranking category lists")
    ranking = _rerank_test(replay, _category_samples(test, lists), test, weights)
    return {"events": len(events), "train_events": len(train), "test_events": len(test), "test_from": split_day,
            "validation": validation, "k": trained["k"], "bic": trained["bic"], "adjustments": trained["adjustments"],
            **_headline(ranking), "ranking": ranking, "seconds": round(time.perf_counter() - started, 1)}


def format_table(report: dict[str, Any]) -> str:
    lines = []
    sim = report.get("simulator")
    if sim:
        held = (f"the {sim['validation_days']:g} before the last {sim['test_days']:g} held out (the last left out)"
                if sim.get("validation_days") else f"last {sim['test_days']:g} for test")
        lines += [f"Simulator ({sim['shoppers']} shoppers, {sim['days']:g} days, {held}, "
                  f"seed {sim['seed']}): k = {sim['k']} personas by held-out deviance",
                  f"  ARI vs true personas: rebuild {sim['ari_rebuild']:.3f}, Ingest's dominant persona "
                  f"{sim['ari_online']:.3f}, Bayes oracle {sim.get('ari_oracle', float('nan')):.3f} "
                  f"({sim['shoppers_compared']} shoppers)",
                  "  trait accuracy (majority baseline): " + ", ".join(
                      f"{t} {v['accuracy']:.2f} ({v['baseline']:.2f})" for t, v in sim["traits"].items()),
                  f"  mean trait accuracy {sim['trait_accuracy']:.3f} (baseline {sim['trait_baseline']:.3f})"]
    header = ("data", "window", "lists", "NDCG@10 base", "weight", "re-ranked (mixture)", "lift", "lists changed",
              "re-ranked (dominant)", "lift", "lists changed")
    rows = [header]
    for name in ("simulator", "diginetica"):
        part = report.get(name)
        if not part or "ranking" not in part:
            continue
        r = part["ranking"]
        window = "validation" if part.get("validation_days") or part.get("validation") else "test"
        for w in r["by_weight"]:
            rows.append((name, window, str(r["lists"]), f"{r['base']:.4f}", f"{w['weight']:g}", f"{w['mixture']:.4f}",
                         f"{w['mixture_lift']:+.2%}", f"{w['mixture_changed']:.0%}", f"{w['dominant']:.4f}",
                         f"{w['dominant_lift']:+.2%}", f"{w['dominant_changed']:.0%}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    table.insert(1, "  ".join("-" * w for w in widths))
    notes = []
    if sim and "oracle" in sim.get("ranking", {}):
        r = sim["ranking"]
        oracles = [f"by the true persona's taste NDCG@10 {r['oracle']:.4f} "
                   f"({_with_interval(r['oracle_lift'], r['oracle_lift_ci95'])})"]
        if r.get("bayes_oracle_share_of_oracle") is not None:
            oracles.append(f"by the personas' tastes weighed by their posterior given the shopper's events (Bayes) "
                           f"{r['bayes_oracle']:.4f} ({_with_interval(r['bayes_oracle_lift'], r['bayes_oracle_lift_ci95'])}; "
                           f"{r['bayes_oracle_share_of_oracle']:.0%} of the persona oracle's lift)")
        oracles.append(f"by each shopper's own utility {r['utility_oracle']:.4f} "
                       f"({_with_interval(r['utility_oracle_lift'], r['utility_oracle_lift_ci95'])})")
        notes.append("simulator oracles (the choice model's true click chance where each item was shown): "
                     + ", ".join(oracles))
        shares = [f"weight {w['weight']:g} {mode} {w[mode + '_share_of_oracle']:.0%} "
                  f"({w[mode + '_share_of_oracle_ci95'][0]:.0%}..{w[mode + '_share_of_oracle_ci95'][1]:.0%})"
                  for w in r["by_weight"] for mode in ("mixture", "dominant")
                  if w.get(mode + "_share_of_oracle") is not None]
        if shares:
            notes.append("share of the persona oracle's lift (95% interval): " + ", ".join(shares))
    if len(rows) == 1:  # recovery alone: nothing was re-ranked
        return "\n".join(lines)
    relevance = DEFAULT_WEIGHTS["rerank"]["relevance"]
    return "\n".join(lines + ["", f"Re-ranking (score = {relevance:g} x base relevance by rank + weight x persona term):"]
                     + table + notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor evaluate personas", description=__doc__.split("\n")[0])
    # Calibrated shoppers visit about once in three weeks: four weeks of 2,000 give about a thousand lists clicked
    # from in the last one.
    parser.add_argument("--shoppers", type=int, default=2000)
    parser.add_argument("--days", type=float, default=28.0)
    parser.add_argument("--test-days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--weight", type=float, nargs="+", default=[DEFAULT_WEIGHT],
                        help=f"persona weight(s) in the blend, PersonaBlendWeight's meaning "
                             f"(default {DEFAULT_WEIGHT:g}, as deployed)")
    parser.add_argument("--validation", action="store_true",
                        help="measure on the training window's latest part, not the test window (to choose the weight)")
    parser.add_argument("--validation-days", type=float, default=7.0,
                        help="with --validation, the simulator's held-out days (default 7)")
    parser.add_argument("--diginetica", type=Path, default=DEFAULT_DIGINETICA,
                        help="directory with Diginetica's views, purchases and categories")
    parser.add_argument("--diginetica-test-share", type=float, default=0.2,
                        help="share of Diginetica's events, its latest days, that is the test window (default 0.2)")
    parser.add_argument("--no-diginetica", action="store_true")
    parser.add_argument("--recovery-only", action="store_true",
                        help="the simulator's persona recovery and traits alone: no re-ranking, no Diginetica")
    parser.add_argument("--no-simulator", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    diginetica = not (args.no_diginetica or args.recovery_only)
    # Checked before the simulator's minutes, not after them.
    if diginetica and not (args.diginetica / "train-item-views-sample.csv").exists():
        print(f"tailor evaluate personas: no Diginetica files in {args.diginetica} (--diginetica DIR, or "
              "--no-diginetica)", file=sys.stderr)
        return 2
    echo = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    report: dict[str, Any] = {"evaluation": "personas",
                              "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if not args.no_simulator:
        report["simulator"] = evaluate_simulated(shoppers=args.shoppers, days=args.days, test_days=args.test_days,
                                                 seed=args.seed, weights=args.weight, echo=echo,
                                                 validation_days=args.validation_days if args.validation else None,
                                                 recovery_only=args.recovery_only)
    if diginetica:
        report["diginetica"] = evaluate_diginetica(args.diginetica, test_share=args.diginetica_test_share,
                                                   weights=args.weight, seed=args.seed, echo=echo,
                                                   validation=args.validation)
    if len(report) == 2:
        parser.error("nothing to evaluate")
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write(args.json, report)
        print(f"\nwritten to {args.json}")
    return 0


# -- helpers ---------------------------------------------------------------------------------------------


@dataclass
class _Sample:
    user_id: str
    session_id: str
    items: list[str]
    clicked: set[str]
    at: float = 0.0  # when it was shown, epoch seconds
    surface: str = "listing"  # how the shopper looks down it (the simulator's "listing" or "widget")
    category: str | None = None  # the session's category when it was shown
    seen: set[str] = field(default_factory=set)  # items viewed in the session before it
    bought: set[str] = field(default_factory=set)


@dataclass
class _Context:
    """What a session showed and did so far, as `_listing_samples` walks its events."""

    lists: list[_Sample] = field(default_factory=list)
    viewed: list[str] = field(default_factory=list)
    bought: set[str] = field(default_factory=set)
    category: str | None = None
    on_page: str | None = None  # the item page the shopper is on, between its view and its dwell
    on_page_category: str | None = None
    previous: str = ""


def _train(replay: Replay, train: list[dict]) -> dict[str, Any]:
    """The training window walked with the jobs on schedule; what the latest rebuild found (k, its criterion) and the
    adjustments of the model in force at its end."""
    replay.walk(train)
    if replay.built is None or replay.latest is None:
        raise ValueError("the training window built no persona model (too few shoppers)")
    return {**replay.built, "adjustments": replay.latest["adjustments"]}


def _recovery(replay: Replay, truth: dict, oracle: dict[str, int] | None = None) -> dict[str, Any]:
    """The adjusted Rand index of the rebuild's and Ingest's personas against the true ones, and given `oracle`
    (user id -> persona, _persona_oracle) the oracle's on the same shoppers; each trait's accuracy."""
    from sklearn.metrics import adjusted_rand_score

    from tailor.personas.features import shopper_features
    from tailor.shopper import ShopperState

    model = replay.models()
    true, online, batch, best = [], [], [], []
    trait_hits: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for user_id, row in replay.store.tables["shoppers"].items():
        state = ShopperState.from_row(row)
        known = truth["shoppers"].get(user_id)
        if state is None or known is None:
            continue
        mixture = (state.personas or {}).get("mixture")
        if mixture:
            true.append(known["persona"])
            online.append(dominant(mixture))
            batch.append(int(np.argmax(model.responsibilities(shopper_features(state, model.space)[None, :],
                                                              [persona_evidence(state)])[0])))
            best.append((oracle or {}).get(user_id, -1))
        means = trait_means((state.personas or {}).get("traits", {}))
        for trait in TRAITS:
            trait_hits[trait.name].append((means[trait.name] >= 0.5, bool(known["trait_flags"][trait.name])))
    traits = {}
    for name, hits in trait_hits.items():
        positives = sum(t for _, t in hits)
        traits[name] = {"accuracy": round(sum(p == t for p, t in hits) / len(hits), 4),
                        "baseline": round(max(positives, len(hits) - positives) / len(hits), 4),
                        "true_share": round(positives / len(hits), 4)}
    return {"ari_rebuild": round(float(adjusted_rand_score(true, batch)), 4),
            "ari_online": round(float(adjusted_rand_score(true, online)), 4), "shoppers_compared": len(true),
            **({"ari_oracle": round(float(adjusted_rand_score(true, best)), 4)} if oracle is not None else {}),
            "traits": traits, "trait_accuracy": round(float(np.mean([v["accuracy"] for v in traits.values()])), 4),
            "trait_baseline": round(float(np.mean([v["baseline"] for v in traits.values()])), 4)}


def _rerank_test(replay: Replay, samples: list[_Sample], test: list[dict], weights: Sequence[float],
                 oracles: dict[str, Callable[[_Sample], list[str]]] | None = None) -> dict[str, Any]:
    """Walk the test window in steps: re-rank the samples shown in the step with the state before it, then replay
    it. `oracles` rank a sample with knowledge no product has (the simulator's truth): what re-ranking could reach;
    each weight's figures then carry their share of the first oracle's lift."""
    now = [0.0]
    recommenders = {(w, mode): replay.recommender(w, mode, lambda: now[0]) for w in weights
                    for mode in ("mixture", "dominant")}
    scores: dict[Any, list[float]] = defaultdict(list)
    changed: Counter = Counter()
    rng = np.random.default_rng(replay.seed)
    by_step: dict[float, list[_Sample]] = defaultdict(list)
    for sample in samples[:MAX_SAMPLES]:
        by_step[sample.at // STEP_SECONDS * STEP_SECONDS].append(sample)

    def rerank(start: float, events: list[dict]) -> None:
        now[0] = start
        for sample in by_step.get(start, ()):
            scores["base"].append(ndcg_at(sample.items, sample.clicked))
            for name, oracle in (oracles or {}).items():
                scores[name].append(ndcg_at(oracle(sample), sample.clicked))
            for key, recommender in recommenders.items():
                ranked = [r.item_id for r in recommender.rerank(sample.items, user_id=sample.user_id,
                                                                 session_id=sample.session_id).items]
                scores[key].append(ndcg_at(ranked, sample.clicked))
                changed[key] += ranked != sample.items

    replay.walk(test, rerank)
    base = np.asarray(scores["base"])
    mean = float(base.mean()) if len(base) else 0.0
    out: dict[str, Any] = {"lists": len(base), "base": round(mean, 5)}
    picks = _resamples(len(base), rng)
    for name in oracles or {}:
        out[name] = round(float(np.mean(scores[name])), 5) if len(base) else 0.0
        out[f"{name}_lift"], out[f"{name}_lift_ci95"] = _lift(base, np.asarray(scores[name]), picks)
    reference = np.asarray(scores[next(iter(oracles))]) if oracles else None
    for name in list(oracles or {})[1:]:
        out[f"{name}_share_of_oracle"], out[f"{name}_share_of_oracle_ci95"] = _share(
            base, np.asarray(scores[name]), reference, picks)
    out["by_weight"] = []
    for w in weights:
        part: dict[str, Any] = {"weight": w}
        for mode in ("mixture", "dominant"):
            values = np.asarray(scores[(w, mode)])
            part[mode] = round(float(values.mean()), 5) if len(values) else 0.0
            part[f"{mode}_lift"], part[f"{mode}_ci95"] = _lift(base, values, picks)
            if reference is not None:
                part[f"{mode}_share_of_oracle"], part[f"{mode}_share_of_oracle_ci95"] = _share(
                    base, values, reference, picks)
            part[f"{mode}_changed"] = round(changed[(w, mode)] / max(len(base), 1), 4)
        out["by_weight"].append(part)
    return out


def _headline(ranking: dict[str, Any]) -> dict[str, Any]:
    """The first weight's figures in the deployed mode (mixture), at the report's top for scripts to read."""
    part = ranking["by_weight"][0]
    out: dict[str, Any] = {"weight": part["weight"], "mode": "mixture", "lift": part["mixture_lift"],
                           "lift_ci95": part["mixture_ci95"]}
    if "oracle" in ranking:
        out.update({"oracle_lift": ranking["oracle_lift"], "oracle_lift_ci95": ranking["oracle_lift_ci95"],
                    "share_of_oracle": part.get("mixture_share_of_oracle"),
                    "share_of_oracle_ci95": part.get("mixture_share_of_oracle_ci95"),
                    "utility_oracle_lift": ranking["utility_oracle_lift"],
                    "utility_oracle_lift_ci95": ranking["utility_oracle_lift_ci95"]})
    if "bayes_oracle" in ranking:
        out.update({key: ranking[key] for key in ("bayes_oracle_lift", "bayes_oracle_lift_ci95",
                                                  "bayes_oracle_share_of_oracle", "bayes_oracle_share_of_oracle_ci95")})
    return out


def _with_interval(value: float, interval: list[float]) -> str:
    return f"{value:+.1%}, 95% {interval[0]:+.1%}..{interval[1]:+.1%}"


def _resamples(n: int, rng: np.random.Generator, rounds: int = BOOTSTRAP) -> np.ndarray:
    """Bootstrap resamples of n samples (rows of indices), the same for every figure so that their intervals pair."""
    return rng.integers(0, n, (rounds, n)) if n >= 2 else np.zeros((0, n), dtype=np.int64)


def _lift(base: np.ndarray, other: np.ndarray, picks: np.ndarray) -> tuple[float, list[float]]:
    """Relative lift of `other`'s mean over `base`'s, with its 95% bootstrap interval."""
    if not len(base) or base.mean() <= 0:
        return 0.0, [0.0, 0.0]
    lift = round(float(other.mean() / base.mean() - 1.0), 5)
    if not len(picks):
        return lift, [lift, lift]
    b = base[picks].mean(axis=1)
    lifts = np.where(b > 0, other[picks].mean(axis=1) / np.where(b > 0, b, 1.0) - 1.0, 0.0)
    return lift, [round(float(np.percentile(lifts, 2.5)), 4), round(float(np.percentile(lifts, 97.5)), 4)]


def _share(base: np.ndarray, other: np.ndarray, oracle: np.ndarray,
           picks: np.ndarray) -> tuple[float | None, list[float] | None]:
    """`other`'s lift over `base` as a share of `oracle`'s, with its 95% bootstrap interval (None without a gap)."""
    gap = oracle.mean() - base.mean() if len(base) else 0.0
    if gap <= 0:
        return None, None
    share = round(float((other.mean() - base.mean()) / gap), 4)
    if not len(picks):
        return share, [share, share]
    b, o, m = base[picks].mean(axis=1), oracle[picks].mean(axis=1), other[picks].mean(axis=1)
    shares = np.where(o > b, (m - b) / np.where(o > b, o - b, 1.0), 0.0)
    return share, [round(float(np.percentile(shares, 2.5)), 4), round(float(np.percentile(shares, 97.5)), 4)]


def _latest_days(events: list[dict], share: float) -> tuple[list[dict], list[dict], str]:
    """Events before and from the day from which the latest days hold `share` of them (days are unevenly filled)."""
    per_day = Counter(e["timestamp"][:10] for e in events)
    later, split_day = 0, max(per_day)
    for day in sorted(per_day, reverse=True):
        later += per_day[day]
        split_day = day
        if later >= share * len(events):
            break
    before = [e for e in events if e["timestamp"][:10] < split_day]
    return before, [e for e in events if e["timestamp"][:10] >= split_day], split_day


def _steps(events: list[dict]) -> list[tuple[float, list[dict]]]:
    steps: dict[int, list[dict]] = defaultdict(list)
    for event in events:
        steps[int(epoch_of(event["timestamp"]) // STEP_SECONDS)].append(event)
    return [(key * STEP_SECONDS, steps[key]) for key in sorted(steps)]


def _oracles(simulation: Any) -> dict[str, Callable[[_Sample], list[str]]]:
    """Rankings with knowledge no product has, from the simulator's choice model: each item of a listing by its
    true chance of the click it could get there, the examination of the position it was shown at (the shopper
    looked down the list as shown) times the chance they take it once examined (parameters.py). "oracle" reads
    that chance with the utility of the shopper's true persona (the mean utility of the persona's shoppers: its
    tastes, the items' quality and price fit), the best a persona-level re-ranking can do; "bayes_oracle" the
    same, each persona's chance weighed by its posterior given the shopper's events before the list
    (_PersonaPosterior), the best a persona-level re-ranking can do that must tell the persona from the events,
    as a product must; "utility_oracle" with the shopper's own utility, the best any re-ranking can do. All add
    the session's context as the shopper weighs it: the intent's bonus for the session's category, the penalties
    of items seen or bought in it. The Bayes oracle reads the simulation's events up to each list, so its lists
    are asked for in the order they were shown, as the test walk does."""
    from tailor_lab.simulator.catalog import CATEGORY_NAMES

    world = simulation.world
    if world is None:
        raise ValueError("the simulation carries no world (its latent side) to rank by")
    choice, params = world.choice, world.params
    posterior = _PersonaPosterior(simulation)
    index = posterior.index
    category_of = world.catalog.category_of
    category_index = {name: c for c, name in enumerate(CATEGORY_NAMES)}
    own = {s.user_id: choice.utility(s) for s in world.shoppers}
    by_persona = {s.user_id: posterior.taste[s.persona] for s in world.shoppers}
    events = iter(simulation.events)
    upcoming = [next(events, None)]  # the first event the posterior has not read yet

    def chance(sample: _Sample, rows: np.ndarray, utility: np.ndarray) -> np.ndarray:
        """The chance of a click on each of `rows` where it was shown; `utility` (..., items) of every item."""
        categories = category_of[rows]
        category = category_index.get(sample.category or "", int(np.bincount(categories).argmax()))
        u = utility[..., rows] - params.click_threshold + params.intent_bonus * (categories == category)
        u = u - params.seen_penalty * np.asarray([item in sample.seen for item in sample.items])
        u = u - params.bought_penalty * np.asarray([item in sample.bought for item in sample.items])
        examination = np.asarray(choice.examination[sample.surface])
        looked = examination[np.minimum(np.arange(len(rows)), len(examination) - 1)]
        return looked / (1.0 + np.exp(-u / params.click_temperature))

    def believed(sample: _Sample) -> np.ndarray:
        """The shopper's posterior over personas given the simulation's events before the list was shown."""
        while upcoming[0] is not None and epoch_of(upcoming[0]["timestamp"]) < sample.at:
            posterior.add(upcoming[0])
            upcoming[0] = next(events, None)
        return np.exp(posterior.log_posterior(sample.user_id))

    def ranking(score: Callable[[_Sample, np.ndarray], np.ndarray | None]) -> Callable[[_Sample], list[str]]:
        def rank(sample: _Sample) -> list[str]:
            rows = np.asarray([index[item] for item in sample.items])
            scores = score(sample, rows)
            if scores is None:
                return list(sample.items)
            return [sample.items[i] for i in np.argsort(-scores, kind="stable")]

        return rank

    def by(utilities: dict[str, np.ndarray]) -> Callable[[_Sample, np.ndarray], np.ndarray | None]:
        def score(sample: _Sample, rows: np.ndarray) -> np.ndarray | None:
            utility = utilities.get(sample.user_id)
            return None if utility is None else chance(sample, rows, utility)

        return score

    def by_posterior(sample: _Sample, rows: np.ndarray) -> np.ndarray:
        return believed(sample) @ chance(sample, rows, posterior.taste)

    return {"oracle": ranking(by(by_persona)), "bayes_oracle": ranking(by_posterior),
            "utility_oracle": ranking(by(own))}


def _persona_oracle(simulation: Any, events: Iterable[dict]) -> dict[str, int]:
    """Each shopper's most probable persona given their `events` (the training window), by _PersonaPosterior."""
    posterior = _PersonaPosterior(simulation)
    for event in events:
        posterior.add(event)
    return {user_id: int(np.argmax(posterior.log_posterior(user_id))) for user_id in posterior.shoppers}


class _PersonaPosterior:
    """Each shopper's posterior over the simulator's personas given the events added so far and the simulator's
    persona parameters (shoppers.PERSONAS, parameters.py): the shares; each session's referral source, drawn from
    the persona's; the categories viewed in each session, counted once a session, under the Dirichlet the shopper's
    category tastes are drawn from around the persona's (integrated out: a Dirichlet-multinomial); each item viewed,
    chosen within its category by popularity ** navigation_popularity x exp(utility / click_temperature) with the
    utility of the persona's tastes (the mean of its shoppers'); and a stated profile's age and location. What the
    product must learn (the personas' tastes, their number) it is given, so it is the ceiling a recovery is
    measured against; it leaves out what it cannot weigh exactly (a shopper's own deviation from the persona's
    brand, style and price tastes, the listing's order around a click), so it is close to the Bayes posterior, not
    exactly it."""

    def __init__(self, simulation: Any):
        from scipy.special import logsumexp

        from tailor_lab.simulator import PERSONAS, REFERRAL_SOURCES
        from tailor_lab.simulator.catalog import CATEGORY_NAMES
        from tailor_lab.simulator.shoppers import _ALL_LOCATIONS

        world = simulation.world
        if world is None:
            raise ValueError("the simulation carries no world (its latent side) to weigh events by")
        catalog, choice, params = world.catalog, world.choice, world.params
        self.index = {item: i for i, item in enumerate(catalog.item_ids)}
        self.category_index = {name: c for c, name in enumerate(CATEGORY_NAMES)}
        self.referral_index = {name: r for r, name in enumerate(REFERRAL_SOURCES)}
        self.taste = np.array([np.mean([choice.utility(s) for s in world.shoppers if s.persona == p], axis=0)
                               if any(s.persona == p for s in world.shoppers) else np.zeros(len(self.index))
                               for p in range(len(PERSONAS))])
        log_popularity = params.navigation_popularity * np.log(np.asarray(catalog.popularity))
        category_of = np.asarray(catalog.category_of)
        self.log_choice = np.empty_like(self.taste)
        for c in range(len(CATEGORY_NAMES)):
            rows = np.flatnonzero(category_of == c)
            w = log_popularity[rows][None, :] + self.taste[:, rows] / params.click_temperature
            self.log_choice[:, rows] = w - logsumexp(w, axis=1, keepdims=True)
        prefs = np.array([[p.categories[name] for name in CATEGORY_NAMES] for p in PERSONAS])
        self.alpha = 15.0 * prefs / prefs.sum(axis=1, keepdims=True) + 0.1  # shoppers.make_shoppers' Dirichlet
        referrals = np.array([[p.referrals.get(r, 0.0) for r in REFERRAL_SOURCES] for p in PERSONAS])
        self.log_referral = np.log(np.maximum(referrals / referrals.sum(axis=1, keepdims=True), 1e-12))
        self.age_mean, self.age_sd = (np.array([p.age[k] for p in PERSONAS]) for k in (0, 1))
        self.log_share = np.log([p.share for p in PERSONAS])
        self.locations = [p.locations for p in PERSONAS]
        self.location_floor = 0.7 / len(_ALL_LOCATIONS)
        self.shoppers: dict[str, dict[str, Any]] = defaultdict(lambda: {
            "referral": {}, "categories": defaultdict(set), "views": np.zeros(len(PERSONAS)), "profile": None})

    def add(self, event: dict) -> None:
        shopper = self.shoppers[event["user_id"]]
        kind, session = event["event_type"], event["session_id"]
        shopper["referral"].setdefault(session, "direct")
        if kind == "referral":
            shopper["referral"][session] = event["source"]
        elif kind == "profile":
            shopper["profile"] = event
        elif kind == "view" and event.get("item_id") in self.index:
            shopper["views"] += self.log_choice[:, self.index[event["item_id"]]]
            if event.get("category") in self.category_index:
                shopper["categories"][session].add(self.category_index[event["category"]])

    def log_posterior(self, user_id: str) -> np.ndarray:
        """log P(persona | the shopper's events so far), normalized (the shares alone for a shopper without any)."""
        from scipy.special import gammaln, logsumexp

        score = self.log_share.copy()
        shopper = self.shoppers.get(user_id)
        if shopper is not None:
            for source in shopper["referral"].values():
                score += self.log_referral[:, self.referral_index[source]]
            counts = np.zeros(self.alpha.shape[1])
            for seen in shopper["categories"].values():
                counts[list(seen)] += 1
            total = self.alpha.sum(axis=1)
            score += (gammaln(total) - gammaln(total + counts.sum())
                      + (gammaln(self.alpha + counts) - gammaln(self.alpha)).sum(axis=1))
            score += shopper["views"]
            profile = shopper["profile"]
            if profile is not None and "age" in profile:
                score += -np.log(self.age_sd) - 0.5 * ((profile["age"] - self.age_mean) / self.age_sd) ** 2
            if profile is not None and "location" in profile:
                own = np.array([0.3 * (profile["location"] in places) / len(places) for places in self.locations])
                score += np.log(own + self.location_floor)
        return score - logsumexp(score)


def _listing_samples(events: list[dict]) -> list[_Sample]:
    """Lists rendered to a shopper (impressions) and the clicks on their items that followed in the session, with
    the session's context as of the list: its category, the items viewed and bought in it. A list rendered on an
    item page (between its view and its dwell) is the page's recommendation widget; a list rendered just after
    scrolling a listing down is its next page, which the listing grows by (clicks count positions down the whole
    listing). A click goes to the latest list of its session that shows the item at the click's position."""
    samples: list[_Sample] = []
    sessions: dict[str, _Context] = {}
    for event in events:
        kind = event["event_type"]
        context = sessions.setdefault(event["session_id"], _Context())
        if kind == "impression":
            items = list(dict.fromkeys(event["item_ids"]))
            latest = context.lists[-1] if context.lists else None
            if context.previous == "listing_scroll" and latest is not None and latest.surface == "listing":
                latest.items += [i for i in items if i not in latest.items]
            else:
                surface = "widget" if context.on_page is not None else "listing"
                category = context.on_page_category if surface == "widget" else context.category
                sample = _Sample(event["user_id"], event["session_id"], items, set(), epoch_of(event["timestamp"]),
                                 surface=surface,
                                 category=category, seen=set(context.viewed), bought=set(context.bought))
                context.lists.append(sample)
                samples.append(sample)
        elif kind == "click":
            position = event.get("position")
            for sample in reversed(context.lists):
                if event["item_id"] in sample.items and (
                        position is None or position >= len(sample.items) or sample.items[position] == event["item_id"]):
                    sample.clicked.add(event["item_id"])
                    break
        elif kind == "view":
            context.viewed.append(event["item_id"])
            context.on_page, context.on_page_category = event["item_id"], event.get("category")
        elif kind == "dwell":
            context.on_page = None
        elif kind == "purchase":
            context.bought.add(event["item_id"])
        elif kind == "category_browse":
            context.category = event.get("category")
        elif kind == "search":
            context.category = None  # the query's category: the oracle reads it off the results
        context.previous = "listing_scroll" if kind == "scroll" and not event.get("item_id") else kind
    return [s for s in samples if s.clicked and len(s.items) > 1]


def _category_samples(events: list[dict], lists: dict[str, list[str]]) -> list[_Sample]:
    samples = []
    started: set[str] = set()
    for event in events:
        if event["event_type"] != "view":
            continue
        session = event["session_id"]
        if session not in started:
            started.add(session)
            continue
        items = lists.get(event.get("category") or "")
        if items and event["item_id"] in items:
            samples.append(_Sample(event["user_id"], session, list(items), {event["item_id"]}, epoch_of(event["timestamp"])))
    return samples
