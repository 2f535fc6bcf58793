"""Measure personas through the product's own code: events replayed through Ingest (tailor.ingest.service with
persona tracking) into an in-memory store, the scheduled persona jobs (tailor.personas.rebuild) on it, and the
rerank route's pipeline (tailor.serving.Recommender with the persona scorer) on what it holds.

Simulator. A simulation's earlier days are the training window: the first half of it is replayed, personas are
built (there is no model before), the rest replayed (Ingest now keeps mixtures and persona counters) and personas
refined, which also turns the counters into adjustment vectors. Reported: the adjusted Rand index of the shoppers' personas against the simulator's true personas (the
rebuild's assignment, and the dominant persona of the mixture Ingest kept), and the accuracy of each trait
(posterior mean >= 0.5 against the truth's flag) beside always answering the trait's majority class. The later
days are the test window, replayed in steps of TEST_STEP_SECONDS: before each step, every listing (impression)
of the step that the shopper clicked from is re-ranked with the state as of then, and NDCG@10 of the clicked
items is compared between the listing as shown (the base list) and the re-ranked list: score = base (by rank)
+ weight x persona adjustment (whole mixture, and the dominant persona only).

Diginetica (with categories). The same replay on real sessions: the latest days holding --diginetica-test-share
of the events are the test window.
Real data has no listings, so each test view after a session's first gets a base list as a shop's category
page would show it: the category's most viewed items in the training window (top BASE_LIST), in that order; the
viewed item is the click. NDCG@10 of that item in the base and re-ranked lists, over the views whose item is
in the list.

    tailor evaluate personas [--shoppers 600 --days 6 --test-days 2 --seed 11] [--weight 0.1]
                             [--diginetica DIR [--diginetica-test-share 0.2] | --no-diginetica] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from tailor.ingest.service import Ingestor, StreamRecord
from tailor.personas.model import dominant
from tailor.personas.online import PersonaTracker
from tailor.personas.rebuild import run_job
from tailor.personas.rerank import PersonaScorer
from tailor.personas.storage import ModelSource
from tailor.personas.traits import TRAITS, trait_means
from tailor.ranking import ConversionPrior
from tailor.serving import Recommender
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

__all__ = ["Replay", "evaluate_diginetica", "evaluate_simulated", "format_table", "main", "ndcg_at"]

SHARDS = 4
BATCH = 100
TEST_STEP_SECONDS = 900
BASE_LIST = 20
MAX_SAMPLES = 4000
BUILD_AT = 0.5  # share of the training window replayed before personas are first built
DEFAULT_DIGINETICA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "diginetica"


class Replay:
    """Events through Ingest as Kinesis would hand them over: by shard of the user id, in batches, in order."""

    def __init__(self) -> None:
        self.store = MemoryStateStore()
        self.blobs = MemoryBlobStore()
        self.models = ModelSource(self.blobs, refresh_seconds=0.0)
        self.ingestor = Ingestor(self.store, self.blobs, max_workers=1, personas=PersonaTracker(self.models))
        self._sequence = 10 ** 20

    def feed(self, events: Iterable[dict]) -> int:
        shards: dict[str, list[StreamRecord]] = defaultdict(list)
        for event in events:
            self._sequence += 1
            digest = int(hashlib.md5(event["user_id"].encode()).hexdigest(), 16)
            shard = f"shardId-{digest % SHARDS:012d}"
            shards[shard].append(StreamRecord(shard, str(self._sequence), json.dumps(event).encode(), event["user_id"]))
        fed = 0
        for records in shards.values():
            for start in range(0, len(records), BATCH):
                outcome = self.ingestor.ingest(records[start:start + BATCH])
                if outcome.failed:
                    raise RuntimeError(f"ingest failed {len(outcome.failed)} records")
                fed += outcome.accepted
        return fed

    def job(self, mode: str, *, seed: int = 0) -> dict[str, Any]:
        return run_job(mode, self.store, self.blobs, seed=seed)

    def recommender(self, weight: float, mode: str, clock: Callable[[], float]) -> Recommender:
        weights = {"rerank": {"relevance": 1.0, "personas": weight}}
        return Recommender(self.store, ConversionPrior(), clock=clock, weights=weights, read_waves=None,
                           scorers=[PersonaScorer(self.models, mode=mode)])


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def evaluate_simulated(*, shoppers: int, days: float, test_days: float, seed: int, weight: float,
                       echo: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    from tailor_local.simulator import simulate

    started = time.perf_counter()
    simulation = simulate(shoppers=shoppers, days=days, seed=seed)
    events = simulation.events
    split = _epoch(simulation.truth["start"]) + (days - test_days) * 86400
    train = [e for e in events if _epoch(e["timestamp"]) < split]
    test = [e for e in events if _epoch(e["timestamp"]) >= split]
    replay = Replay()
    echo(f"simulator: {len(events)} events, {shoppers} shoppers; replaying {len(train)} training events")
    built, refined = _train(replay, train, seed)
    echo(f"personas: k={built['k']} (BIC over k={sorted(built['bic'])}), {refined['adjustments'].get('items_kept', 0)} "
         f"items with adjustments")
    recovery = _recovery(replay, simulation.truth)
    echo(f"replaying {len(test)} test events, re-ranking listings clicked from")
    ranking = _rerank_test(replay, _listing_samples, test, weight, seed, ceiling=_true_taste_ranking(simulation))
    return {"events": len(events), "train_events": len(train), "test_events": len(test), "shoppers": shoppers,
            "days": days, "test_days": test_days, "seed": seed, "weight": weight,
            "k": built["k"], "bic": built["bic"], "adjustments": refined["adjustments"],
            **recovery, "ranking": ranking, "seconds": round(time.perf_counter() - started, 1)}


def evaluate_diginetica(directory: Path, *, test_share: float, weight: float, seed: int,
                        echo: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    from tailor_local.datasets import load_diginetica

    started = time.perf_counter()
    events = list(load_diginetica(directory / "train-item-views-sample.csv", directory / "train-purchases.csv",
                                  directory / "product-categories.csv"))
    days = sorted({e["timestamp"][:10] for e in events})
    # The sample's days are unevenly filled: the test window is the latest days holding `test_share` of the events.
    per_day = Counter(e["timestamp"][:10] for e in events)
    split_day, later = days[-1], 0
    for day in reversed(days):
        later += per_day[day]
        split_day = day
        if later >= test_share * len(events):
            break
    train = [e for e in events if e["timestamp"][:10] < split_day]
    test = [e for e in events if e["timestamp"][:10] >= split_day]
    if not train or not test:
        raise ValueError("Diginetica: too few days to split into training and test windows")
    echo(f"diginetica: {len(events)} events over {len(days)} days; replaying {len(train)} before {split_day}")
    replay = Replay()
    built, refined = _train(replay, train, seed)
    views = Counter(e["item_id"] for e in train if e["event_type"] == "view")
    by_category: dict[str, list[str]] = defaultdict(list)
    category_of = {e["item_id"]: e["category"] for e in train if e.get("category")}
    for item, _ in views.most_common():
        if item in category_of:
            by_category[category_of[item]].append(item)
    lists = {c: items[:BASE_LIST] for c, items in by_category.items() if len(items) >= 2}
    echo(f"personas: k={built['k']}; replaying {len(test)} test events, re-ranking category lists")
    ranking = _rerank_test(replay, lambda step: _category_samples(step, lists), test, weight, seed)
    return {"events": len(events), "train_events": len(train), "test_events": len(test), "test_from": split_day,
            "weight": weight, "k": built["k"], "bic": built["bic"], "adjustments": refined["adjustments"],
            "ranking": ranking, "seconds": round(time.perf_counter() - started, 1)}


def format_table(report: dict[str, Any]) -> str:
    lines = []
    sim = report.get("simulator")
    if sim:
        lines += [f"Simulator ({sim['shoppers']} shoppers, {sim['days']:g} days, last {sim['test_days']:g} for test, "
                  f"seed {sim['seed']}): k = {sim['k']} personas by BIC",
                  f"  ARI vs true personas: rebuild {sim['ari_rebuild']:.3f}, Ingest's dominant persona "
                  f"{sim['ari_online']:.3f} ({sim['shoppers_compared']} shoppers)",
                  "  trait accuracy (majority baseline): " + ", ".join(
                      f"{t} {v['accuracy']:.2f} ({v['baseline']:.2f})" for t, v in sim["traits"].items()),
                  f"  mean trait accuracy {sim['trait_accuracy']:.3f} (baseline {sim['trait_baseline']:.3f})"]
    header = ("data", "lists", "NDCG@10 base", "re-ranked (mixture)", "lift", "re-ranked (dominant)", "lift")
    rows = [header]
    for name in ("simulator", "diginetica"):
        part = report.get(name)
        if not part:
            continue
        r = part["ranking"]
        rows.append((name, str(r["lists"]), f"{r['base']:.4f}", f"{r['mixture']:.4f}", f"{r['mixture_lift']:+.1%}",
                     f"{r['dominant']:.4f}", f"{r['dominant_lift']:+.1%}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    table.insert(1, "  ".join("-" * w for w in widths))
    weight = next(report[n]["weight"] for n in ("simulator", "diginetica") if report.get(n))
    notes = []
    if sim and "ceiling" in sim["ranking"]:
        notes.append(f"simulator ceiling (each shopper's true price taste in the simulator's click model): NDCG@10 "
                     f"{sim['ranking']['ceiling']:.4f} ({sim['ranking']['ceiling_lift']:+.1%})")
    return "\n".join(lines + ["", f"Re-ranking (persona weight {weight:g}):"] + table + notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor evaluate personas", description=__doc__.split("\n")[0])
    parser.add_argument("--shoppers", type=int, default=600)
    parser.add_argument("--days", type=float, default=6.0)
    parser.add_argument("--test-days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--weight", type=float, default=0.1, help="persona weight in the blend (default 0.1, as deployed)")
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
                              "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if not args.no_simulator:
        report["simulator"] = evaluate_simulated(shoppers=args.shoppers, days=args.days, test_days=args.test_days,
                                                 seed=args.seed, weight=args.weight, echo=echo)
    if not args.no_diginetica:
        if not (args.diginetica / "train-item-views-sample.csv").exists():
            print(f"tailor evaluate personas: no Diginetica files in {args.diginetica}", file=sys.stderr)
            return 2
        report["diginetica"] = evaluate_diginetica(args.diginetica, test_share=args.diginetica_test_share,
                                                   weight=args.weight, seed=args.seed, echo=echo)
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


def _train(replay: Replay, train: list[dict], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """As the schedules would: personas built once the first part of the window is in (before, there is no
    model, so no mixtures or counters), then refined with the shoppers and counters of the rest."""
    cut = int(len(train) * BUILD_AT)
    replay.feed(train[:cut])
    built = replay.job("rebuild", seed=seed)
    replay.feed(train[cut:])
    return built, replay.job("refine", seed=seed)


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
                 weight: float, seed: int, ceiling: Callable[[_Sample], list[str]] | None = None) -> dict[str, Any]:
    """Walk the test window in steps: re-rank the step's samples with the state before it, then replay it.
    `ceiling` ranks a sample with knowledge no product has (the simulator's truth): what re-ranking could reach."""
    now = [0.0]
    mixture = replay.recommender(weight, "mixture", lambda: now[0])
    single = replay.recommender(weight, "dominant", lambda: now[0])
    scores: dict[str, list[float]] = {"base": [], "mixture": [], "dominant": []}
    rng = np.random.default_rng(seed)
    for start, events in _steps(test):
        now[0] = start
        # Past MAX_SAMPLES lists the replay goes on (later lists would see its state) but nothing more is ranked.
        samples = samples_of(events) if len(scores["base"]) < MAX_SAMPLES else []
        for sample in samples:
            scores["base"].append(ndcg_at(sample.items, sample.clicked))
            if ceiling is not None:
                scores.setdefault("ceiling", []).append(ndcg_at(ceiling(sample), sample.clicked))
            for name, recommender in (("mixture", mixture), ("dominant", single)):
                ranked = recommender.rerank(sample.items, user_id=sample.user_id, session_id=sample.session_id)
                scores[name].append(ndcg_at([r.item_id for r in ranked.items], sample.clicked))
        replay.feed(events)
    base = float(np.mean(scores["base"])) if scores["base"] else 0.0
    out: dict[str, Any] = {"lists": len(scores["base"]), "base": round(base, 5)}
    if scores.get("ceiling"):
        out["ceiling"] = round(float(np.mean(scores["ceiling"])), 5)
        out["ceiling_lift"] = round(out["ceiling"] / base - 1.0, 5) if base else 0.0
    for name in ("mixture", "dominant"):
        value = float(np.mean(scores[name])) if scores[name] else 0.0
        out[name] = round(value, 5)
        out[f"{name}_lift"] = round(value / base - 1.0, 5) if base else 0.0
        out[f"{name}_ci95"] = _bootstrap_lift(np.asarray(scores["base"]), np.asarray(scores[name]), rng)
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


def _steps(events: list[dict]) -> list[tuple[float, list[dict]]]:
    steps: dict[int, list[dict]] = defaultdict(list)
    for event in events:
        steps[int(_epoch(event["timestamp"]) // TEST_STEP_SECONDS)].append(event)
    return [(key * TEST_STEP_SECONDS, steps[key]) for key in sorted(steps)]


def _true_taste_ranking(simulation: Any) -> Callable[[_Sample], list[str]]:
    """The simulator's own click model with each shopper's true taste for price (read back from the truth's
    budget-conscious strength, which the simulator derives from it): the best order a listing can be given."""
    from tailor_local.simulator import CATEGORIES

    median = {c.name: c.median_price for c in CATEGORIES}
    price_ratio = {i["item_id"]: math.log(i["price"] / median[i["category"]]) for i in simulation.catalog}
    taste = {}
    for user_id, known in simulation.truth["shoppers"].items():
        t = min(max(known["traits"]["budget_conscious"], 1e-3), 1 - 1e-3)
        taste[user_id] = 0.5 + math.log(t / (1 - t)) / 2  # budget_conscious = sigmoid(2 (price_beta - 0.5))

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
