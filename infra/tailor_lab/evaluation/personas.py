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
before each step, every listing (impression) of the step that the shopper clicked from is re-ranked with the
state as of then, and NDCG@10 of the clicked items is compared between the listing as shown (the base list: the
shop's own order, category best-sellers or search results, which knows nothing of the shopper) and the rerank
route's blend of it with the persona term: score = 0.4 (the route's relevance weight) x base (by rank) + weight
x persona term (whole mixture, and the dominant persona only), so `weight` means what PersonaBlendWeight does.
Also reported: what re-ranking by the simulator's own click model reaches with each shopper's true persona's
price taste, and with their own (ceilings no product can know).

Diginetica (with categories). The same replay on real sessions: the latest days holding --diginetica-test-share
of the events are the test window.
Real data has no listings, so each test view after a session's first gets a base list as a shop's category
page would show it: the category's most viewed items in the training window (top BASE_LIST), in that order; the
viewed item is the click. NDCG@10 of that item in the base and re-ranked lists, over the views whose item is
in the list.

Choosing the blend weight: --validation leaves the test window out and holds out instead the latest part of
the training window (the simulator's last --validation-days, Diginetica's latest days holding its test share of
the training events), the rest being training; several --weight values are measured in one walk.

    tailor evaluate personas [--shoppers 600 --days 6 --test-days 2 --seed 11] [--weight 0.1 [0.2 ...]]
                             [--validation [--validation-days 1]]
                             [--diginetica DIR [--diginetica-test-share 0.2] | --no-diginetica] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tailor.ingest.service import Ingestor
from tailor.personas.model import dominant
from tailor.personas.online import PersonaTracker
from tailor.personas.rebuild import run_job
from tailor.personas.rerank import DEFAULT_WEIGHT, PersonaScorer
from tailor.personas.storage import ModelSource
from tailor.personas.traits import TRAITS, trait_means
from tailor.ranking import DEFAULT_WEIGHTS, ConversionPrior
from tailor.serving import Recommender
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.stream import records_by_shard

__all__ = ["Replay", "evaluate_diginetica", "evaluate_simulated", "format_table", "main", "ndcg_at"]

BATCH = 100
STEP_SECONDS = 900
BASE_LIST = 20
MAX_SAMPLES = 4000
REBUILD_SECONDS = 86400  # the template's schedules of the persona jobs
REFINE_SECONDS = 3600
DIGINETICA_REBUILD_DAYS = 30
DEFAULT_DIGINETICA = Path(__file__).resolve().parents[4] / "shared" / "data" / "diginetica"


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
                       validation_days: float | None = None,
                       echo: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """`validation_days`: leave the test window out and hold out the training window's last days instead."""
    from tailor_lab.simulator import simulate

    started = time.perf_counter()
    simulation = simulate(shoppers=shoppers, days=days, seed=seed)
    events = simulation.events
    split = _epoch(simulation.truth["start"]) + (days - test_days) * 86400
    if validation_days:
        events = [e for e in events if _epoch(e["timestamp"]) < split]
        split -= validation_days * 86400
    train = [e for e in events if _epoch(e["timestamp"]) < split]
    test = [e for e in events if _epoch(e["timestamp"]) >= split]
    replay = Replay(seed=seed)
    echo(f"simulator: {len(events)} events, {shoppers} shoppers; replaying {len(train)} training events")
    trained = _train(replay, train)
    echo(f"personas: k={trained['k']} (BIC over k={sorted(trained['bic'])}), "
         f"{trained['adjustments'].get('items_kept', 0)} items with adjustments")
    recovery = _recovery(replay, simulation.truth)
    window = "validation" if validation_days else "test"
    echo(f"replaying {len(test)} {window} events, re-ranking listings clicked from")
    ranking = _rerank_test(replay, _listing_samples, test, weights, ceilings={
        "ceiling": _true_taste_ranking(simulation), "persona_ceiling": _true_taste_ranking(simulation, persona=True)})
    return {"events": len(events), "train_events": len(train), "test_events": len(test), "shoppers": shoppers,
            "days": days, "test_days": test_days, "validation_days": validation_days, "seed": seed,
            "k": trained["k"], "bic": trained["bic"], "adjustments": trained["adjustments"],
            **recovery, "ranking": ranking, "seconds": round(time.perf_counter() - started, 1)}


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
    ranking = _rerank_test(replay, lambda step: _category_samples(step, lists), test, weights)
    return {"events": len(events), "train_events": len(train), "test_events": len(test), "test_from": split_day,
            "validation": validation, "k": trained["k"], "bic": trained["bic"], "adjustments": trained["adjustments"],
            "ranking": ranking, "seconds": round(time.perf_counter() - started, 1)}


def format_table(report: dict[str, Any]) -> str:
    lines = []
    sim = report.get("simulator")
    if sim:
        held = (f"the {sim['validation_days']:g} before the last {sim['test_days']:g} held out (the last left out)"
                if sim.get("validation_days") else f"last {sim['test_days']:g} for test")
        lines += [f"Simulator ({sim['shoppers']} shoppers, {sim['days']:g} days, {held}, "
                  f"seed {sim['seed']}): k = {sim['k']} personas by BIC",
                  f"  ARI vs true personas: rebuild {sim['ari_rebuild']:.3f}, Ingest's dominant persona "
                  f"{sim['ari_online']:.3f} ({sim['shoppers_compared']} shoppers)",
                  "  trait accuracy (majority baseline): " + ", ".join(
                      f"{t} {v['accuracy']:.2f} ({v['baseline']:.2f})" for t, v in sim["traits"].items()),
                  f"  mean trait accuracy {sim['trait_accuracy']:.3f} (baseline {sim['trait_baseline']:.3f})"]
    header = ("data", "window", "lists", "NDCG@10 base", "weight", "re-ranked (mixture)", "lift", "lists changed",
              "re-ranked (dominant)", "lift", "lists changed")
    rows = [header]
    for name in ("simulator", "diginetica"):
        part = report.get(name)
        if not part:
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
    if sim and "ceiling" in sim["ranking"]:
        r = sim["ranking"]
        notes.append(f"simulator ceilings, ranking by the simulator's own click model: with each shopper's true "
                     f"persona's price taste NDCG@10 {r['persona_ceiling']:.4f} ({r['persona_ceiling_lift']:+.1%}), "
                     f"with each shopper's own {r['ceiling']:.4f} ({r['ceiling_lift']:+.1%})")
    relevance = DEFAULT_WEIGHTS["rerank"]["relevance"]
    return "\n".join(lines + ["", f"Re-ranking (score = {relevance:g} x base relevance by rank + weight x persona term):"]
                     + table + notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor evaluate personas", description=__doc__.split("\n")[0])
    parser.add_argument("--shoppers", type=int, default=600)
    parser.add_argument("--days", type=float, default=6.0)
    parser.add_argument("--test-days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--weight", type=float, nargs="+", default=[DEFAULT_WEIGHT],
                        help=f"persona weight(s) in the blend, PersonaBlendWeight's meaning "
                             f"(default {DEFAULT_WEIGHT:g}, as deployed)")
    parser.add_argument("--validation", action="store_true",
                        help="measure on the training window's latest part, not the test window (to choose the weight)")
    parser.add_argument("--validation-days", type=float, default=1.0,
                        help="with --validation, the simulator's held-out days (default 1)")
    parser.add_argument("--diginetica", type=Path, default=DEFAULT_DIGINETICA,
                        help="directory with Diginetica's views, purchases and categories")
    parser.add_argument("--diginetica-test-share", type=float, default=0.2,
                        help="share of Diginetica's events, its latest days, that is the test window (default 0.2)")
    parser.add_argument("--no-diginetica", action="store_true")
    parser.add_argument("--no-simulator", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    echo = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    report: dict[str, Any] = {"evaluation": "personas",
                              "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if not args.no_simulator:
        report["simulator"] = evaluate_simulated(shoppers=args.shoppers, days=args.days, test_days=args.test_days,
                                                 seed=args.seed, weights=args.weight, echo=echo,
                                                 validation_days=args.validation_days if args.validation else None)
    if not args.no_diginetica:
        if not (args.diginetica / "train-item-views-sample.csv").exists():
            print(f"tailor evaluate personas: no Diginetica files in {args.diginetica}", file=sys.stderr)
            return 2
        report["diginetica"] = evaluate_diginetica(args.diginetica, test_share=args.diginetica_test_share,
                                                   weights=args.weight, seed=args.seed, echo=echo,
                                                   validation=args.validation)
    if len(report) == 2:
        parser.error("nothing to evaluate")
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {args.json}")
    return 0


# -- helpers ---------------------------------------------------------------------------------------------


@dataclass
class _Sample:
    user_id: str
    session_id: str
    items: list[str]
    clicked: set[str]


def _train(replay: Replay, train: list[dict]) -> dict[str, Any]:
    """The training window walked with the jobs on schedule; what the latest rebuild found (k, BIC) and the
    adjustments of the model in force at its end."""
    replay.walk(train)
    if replay.built is None or replay.latest is None:
        raise ValueError("the training window built no persona model (too few shoppers)")
    return {**replay.built, "adjustments": replay.latest["adjustments"]}


def _recovery(replay: Replay, truth: dict) -> dict[str, Any]:
    from sklearn.metrics import adjusted_rand_score

    from tailor.personas.features import shopper_features
    from tailor.shopper import ShopperState

    model = replay.models()
    true, online, batch = [], [], []
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
            batch.append(int(np.argmax(model.responsibilities(shopper_features(state, model.space)[None, :])[0])))
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
            "traits": traits, "trait_accuracy": round(float(np.mean([v["accuracy"] for v in traits.values()])), 4),
            "trait_baseline": round(float(np.mean([v["baseline"] for v in traits.values()])), 4)}


def _rerank_test(replay: Replay, samples_of: Callable[[list[dict]], list[_Sample]], test: list[dict],
                 weights: Sequence[float],
                 ceilings: dict[str, Callable[[_Sample], list[str]]] | None = None) -> dict[str, Any]:
    """Walk the test window in steps: re-rank the step's samples with the state before it, then replay it.
    `ceilings` rank a sample with knowledge no product has (the simulator's truth): what re-ranking could reach."""
    now = [0.0]
    recommenders = {(w, mode): replay.recommender(w, mode, lambda: now[0]) for w in weights
                    for mode in ("mixture", "dominant")}
    scores: dict[Any, list[float]] = defaultdict(list)
    changed: Counter = Counter()
    rng = np.random.default_rng(replay.seed)

    def rerank(start: float, events: list[dict]) -> None:
        now[0] = start
        # Past MAX_SAMPLES lists the replay goes on (later lists would see its state) but nothing more is ranked.
        samples = samples_of(events) if len(scores["base"]) < MAX_SAMPLES else []
        for sample in samples:
            scores["base"].append(ndcg_at(sample.items, sample.clicked))
            for name, ceiling in (ceilings or {}).items():
                scores.setdefault(name, []).append(ndcg_at(ceiling(sample), sample.clicked))
            for key, recommender in recommenders.items():
                ranked = [r.item_id for r in recommender.rerank(sample.items, user_id=sample.user_id,
                                                                 session_id=sample.session_id).items]
                scores[key].append(ndcg_at(ranked, sample.clicked))
                changed[key] += ranked != sample.items

    replay.walk(test, rerank)
    base = float(np.mean(scores["base"])) if scores["base"] else 0.0
    out: dict[str, Any] = {"lists": len(scores["base"]), "base": round(base, 5)}
    for name in ceilings or {}:
        if scores.get(name):
            out[name] = round(float(np.mean(scores[name])), 5)
            out[f"{name}_lift"] = round(out[name] / base - 1.0, 5) if base else 0.0
    out["by_weight"] = []
    for w in weights:
        part: dict[str, Any] = {"weight": w}
        for mode in ("mixture", "dominant"):
            value = float(np.mean(scores[(w, mode)])) if scores[(w, mode)] else 0.0
            part[mode] = round(value, 5)
            part[f"{mode}_lift"] = round(value / base - 1.0, 5) if base else 0.0
            part[f"{mode}_ci95"] = _bootstrap_lift(np.asarray(scores["base"]), np.asarray(scores[(w, mode)]), rng)
            part[f"{mode}_changed"] = round(changed[(w, mode)] / max(len(scores["base"]), 1), 4)
        out["by_weight"].append(part)
    return out


def _bootstrap_lift(base: np.ndarray, other: np.ndarray, rng: np.random.Generator, rounds: int = 300) -> list[float]:
    if len(base) < 2:
        return [0.0, 0.0]
    lifts = []
    for _ in range(rounds):
        pick = rng.integers(0, len(base), len(base))
        b = base[pick].mean()
        lifts.append(other[pick].mean() / b - 1.0 if b > 0 else 0.0)
    return [round(float(np.percentile(lifts, 2.5)), 4), round(float(np.percentile(lifts, 97.5)), 4)]


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
        steps[int(_epoch(event["timestamp"]) // STEP_SECONDS)].append(event)
    return [(key * STEP_SECONDS, steps[key]) for key in sorted(steps)]


def _true_taste_ranking(simulation: Any, *, persona: bool = False) -> Callable[[_Sample], list[str]]:
    """The simulator's own click model with each shopper's true taste for price (read back from the truth's
    budget-conscious strength, which the simulator derives from it): the best order a listing can be given.
    With `persona`, the taste of the shopper's true persona instead: the best a persona-level re-ranking can do."""
    from tailor_lab.simulator import CATEGORIES, PERSONAS

    median = {c.name: c.median_price for c in CATEGORIES}
    price_ratio = {i["item_id"]: math.log(i["price"] / median[i["category"]]) for i in simulation.catalog}
    persona_taste = {p.name: p.price_beta for p in PERSONAS}
    taste = {}
    for user_id, known in simulation.truth["shoppers"].items():
        t = min(max(known["traits"]["budget_conscious"], 1e-3), 1 - 1e-3)
        taste[user_id] = 0.5 + math.log(t / (1 - t)) / 2  # budget_conscious = sigmoid(2 (price_beta - 0.5))
        if persona:
            taste[user_id] = persona_taste[known["persona"]]

    def rank(sample: _Sample) -> list[str]:
        beta = taste.get(sample.user_id, 0.0)
        score = [-0.8 * math.log(p + 1) - beta * price_ratio.get(item, 0.0) for p, item in enumerate(sample.items)]
        return [sample.items[i] for i in np.argsort(score, kind="stable")[::-1]]

    return rank


def _listing_samples(events: list[dict]) -> list[_Sample]:
    """Listings (impressions) followed in their session, before the next listing, by clicks on their items."""
    samples: list[_Sample] = []
    current: dict[str, _Sample] = {}
    for event in events:
        kind = event["event_type"]
        if kind == "impression":
            sample = _Sample(event["user_id"], event["session_id"], list(dict.fromkeys(event["item_ids"])), set())
            current[event["session_id"]] = sample
            samples.append(sample)
        elif kind == "click":
            sample = current.get(event["session_id"])
            if sample is not None and event["item_id"] in sample.items:
                sample.clicked.add(event["item_id"])
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
            samples.append(_Sample(event["user_id"], session, list(items), {event["item_id"]}))
    return samples


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
