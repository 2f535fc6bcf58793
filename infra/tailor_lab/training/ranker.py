"""Train the purchase-probability ranker on replayed state, evaluate it on a later window, publish it.

Examples. Events are replayed in time order through Ingest's fold (tailor.ingest.fold), so the state
at any moment is the state the API would have read then. At sampled moments inside sessions (one feed
request per sampled session, just before one of its events) the serving pipeline itself gathers the
feed's candidates and their features from that state, through a store view over the replay: training
and serving share the candidate sources and tailor.ranking.features. A candidate is positive when the
shopper buys it within `horizon` after the moment.

Model. scikit-learn's HistGradientBoostingClassifier, exported with skl2onnx into the graph
tailor.ranking.scoring.RankingModel scores: input "features", output "purchase_probability".

Evaluation. Moments of the last `eval_days` (a later window than any training moment's horizon)
are ranked four ways: commercial performance alone (popularity and revenue), the untrained blend
(0.5 commercial performance + 0.4 the item's observed purchase rate + 0.1 diversity), the model
alone, and the blend with the model (what the feed serves). Reported per request and averaged: AUC
of the pointwise score over the candidates, and NDCG@10 of the served top ten (filters and
diversity applied).

    tailor train ranker [--shoppers 600 --days 10 --seed 7 [--busy] | --events FILE.jsonl | --archive BUCKET |
                         --diginetica DIR] [--eval-days 3] [--horizon-hours 24] [--out DIR] [--publish]
                        [--write-default] [--force] [--json PATH]

The report also scores the ranker the layer ships today (and, with --publish, the registry's current one) on the
same requests, so a retrain's gain (or loss) reads off one table. A retrain whose served blend scores a lower
NDCG@10 than the ranker it would replace is neither made the default nor published (the command exits 1) unless
--force.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tailor.archive import archived_events
from tailor.events import Event, parse_event
from tailor.ingest.derive import Contribution
from tailor.ingest.fold import fold_batch
from tailor.ingest.intent import SessionIntent
from tailor.models import model_version
from tailor.ranking import (
    DEFAULT_WEIGHTS,
    FEATURE_NAMES,
    MODEL_NAME,
    CommercialPerformance,
    ConversionPrior,
    Gathered,
    Pipeline,
    PurchaseProbability,
    RankingModel,
    Request,
    RowCache,
)
from tailor.ranking.pipeline import CACHE_TTL_SECONDS
from tailor.ranking.scoring import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ProbabilityModel
from tailor.store.port import TABLES
from tailor_lab.datasets import json_lines

from .model_output import (
    Incumbent,
    add_output_arguments,
    check_output_arguments,
    deliver,
    incumbents_from,
    replaced_models,
    s3_blobs,
)
from .onnx_export import classifier_graph, with_metadata

__all__ = ["Examples", "Replay", "ReplayStore", "TrainedRanker", "build_examples", "evaluate", "incumbents", "main",
           "train_ranker"]

DAY = 86_400.0
BOOSTING = {"max_iter": 150, "learning_rate": 0.1, "max_leaf_nodes": 15, "min_samples_leaf": 40,
            "l2_regularization": 1.0}
TOP = 10
# The evaluation's rows for the blend the feed serves with each ranker: the gate between a retrain and the
# ranker it would replace reads them.
SHIPPED_BLEND = "shipped blend (served today)"
PUBLISHED_BLEND = "published blend (the registry's current)"
TRAINED_BLEND = "trained blend (served)"
SESSION_TTL_SECONDS = 7 * 86_400


# -- the replayed state -----------------------------------------------------------------------------

class Replay:
    """Tailor's state as Ingest keeps it, in memory. Applied events wait until the state is read (`settle`), then go
    through Ingest's fold (tailor.ingest.fold) as one batch, as a stream delivers them: state rows as the fold
    writes them, its counter contributions added one by one. With `intent`, as Ingest runs in a stack: association
    pairs weigh their session's intent and sessions keep their intent (tailor.ingest.intent), scored at the end of
    each batch. Records Ingest would quarantine are left out as it leaves them out."""

    def __init__(self, intent: SessionIntent | None = None) -> None:
        self.rows: dict[str, dict[str, dict[str, Any]]] = {"sessions": {}, "shoppers": {}}
        self.counters: dict[str, dict[str, dict[str, Any]]] = {table: {} for table in TABLES}
        self.events = 0
        self.intent = intent
        self._batch: list[tuple[str, Event]] = []

    def apply(self, event: Event) -> None:
        self._batch.append((f"{self.events:012d}", event))
        self.events += 1

    def settle(self) -> None:
        """Fold the events applied since the last settle, as one batch."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        # Every key the batch touches, in the order it first does: the order the fold scores sessions' intent in.
        rows: dict[str, dict[str, dict[str, Any]]] = {"sessions": {}, "shoppers": {}}
        for _, event in batch:
            for table, key in (("sessions", event.session_id), ("shoppers", event.user_id)):
                if key not in rows[table]:
                    rows[table][key] = self.rows[table].get(key, {})
        # Replayed off the stream: a session's arrival is its event's time, and no shard is known.
        fold = fold_batch(batch, rows, None, ttl=SESSION_TTL_SECONDS, arrivals={p: e.epoch for p, e in batch},
                          intent=self.intent)
        for _, c in fold.contributions:
            self._add(c)
        for table, key, row in fold.changed_rows():
            self.rows[table][key] = row.fields()

    def _add(self, c: Contribution) -> None:
        row = self.counters[c.table].setdefault(c.key, {TABLES[c.table]: c.key})
        for name, amount in c.increments.items():
            row[name] = row.get(name, 0) + amount
        row.update(c.latest)


class ReplayStore:
    """The StateStore reads over a Replay, with rows shaped as Ingest writes them."""

    def __init__(self, replay: Replay):
        self.replay = replay
        self.calls: Counter[str] = Counter()

    def read(self, table: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self.read_many({table: keys})[table]

    def read_many(self, requests):
        self.calls["read"] += 1
        self.replay.settle()
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for table, keys in requests.items():
            found = out.setdefault(table, {})
            for key in keys:
                row = self._row(table, key)
                if row is not None:
                    found[key] = row
        return out

    def _row(self, table: str, key: str) -> dict[str, Any] | None:
        counters = self.replay.counters[table].get(key)
        state = self.replay.rows.get(table, {}).get(key)
        if state is None:
            return counters
        return {**(counters or {}), **copy.deepcopy(state), TABLES[table]: key}  # the caller's own, as a store reads


# -- examples ---------------------------------------------------------------------------------------

@dataclass
class Examples:
    """Feed requests at sampled moments: their candidates' features, which of them the shopper bought and, with
    `keeps_gathered` (what the evaluation re-ranks), the gathered requests themselves. Training keeps only the
    features: a gathered request holds its own copies of every row it read, about half a run's memory."""

    keeps_gathered: bool = True
    gathered: list[Gathered] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)  # float32, where the gathered requests are not kept
    labels: list[np.ndarray] = field(default_factory=list)
    purchases: int = 0  # items bought within the horizon, candidates or not
    start: float | None = None
    end: float | None = None

    def add(self, gathered: Gathered, bought: set[str], moment: float) -> None:
        if self.keeps_gathered:
            self.gathered.append(gathered)
        else:
            self.features.append(gathered.features.astype(np.float32))
        self.labels.append(np.fromiter((i in bought for i in gathered.candidates.ids), dtype=bool,
                                       count=len(gathered.candidates)))
        self.purchases += len(bought)
        self.start = moment if self.start is None else min(self.start, moment)
        self.end = moment if self.end is None else max(self.end, moment)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.labels:
            raise ValueError("no feed requests to learn from")
        blocks = [g.features for g in self.gathered] if self.keeps_gathered else self.features
        return np.vstack(blocks).astype(np.float32), np.concatenate(self.labels).astype(np.int8)

    @property
    def requests(self) -> int:
        return len(self.labels)

    @property
    def positives(self) -> int:
        return int(sum(int(y.sum()) for y in self.labels))

    @property
    def rows(self) -> int:
        return int(sum(len(y) for y in self.labels))


def build_examples(events: Iterable[dict | Event], *, eval_days: float = 3.0, horizon_hours: float = 24.0,
                   max_moments: int = 4000, max_eval_moments: int = 2000, max_candidates: int = 200,
                   seed: int = 0, progress: bool = False,
                   intent: SessionIntent | None = None) -> tuple[Examples, Examples]:
    """Training and evaluation requests. Evaluation moments lie in the last `eval_days` of the events
    (up to `horizon` before the end, so their purchases are known); training moments end a horizon
    before evaluation starts, so no training label looks into the evaluation window. With `intent`, state
    and candidates are weighed by session intent as a stack's Ingest and API weigh them."""
    stream = parse_events(events)
    if not stream:
        raise ValueError("no events to train on")
    horizon = horizon_hours * 3600.0
    first, last = stream[0].epoch, stream[-1].epoch
    eval_start = last - eval_days * DAY
    train_until = eval_start - horizon
    eval_until = last - horizon
    if train_until <= first or eval_until <= eval_start:
        raise ValueError(f"{(last - first) / DAY:.1f} days of events are too few for a {eval_days:g}-day evaluation "
                         f"window and a {horizon_hours:g}-hour horizon")

    sessions: dict[str, list[int]] = defaultdict(list)
    purchases: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
    for index, event in enumerate(stream):
        sessions[event.session_id].append(index)
        if event.event_type == "purchase":
            purchases[event.user_id].append((index, event.epoch, event.item_id))
    rng = random.Random(seed)
    train_moments: list[int] = []
    eval_moments: list[int] = []
    for indices in sessions.values():
        index = indices[rng.randrange(len(indices))]
        t = stream[index].epoch
        if first < t < train_until:
            train_moments.append(index)
        elif eval_start <= t < eval_until:
            eval_moments.append(index)
    rng.shuffle(train_moments)
    rng.shuffle(eval_moments)
    chosen = {i: "train" for i in train_moments[:max_moments]}
    chosen.update({i: "eval" for i in eval_moments[:max_eval_moments]})

    replay = Replay(intent)
    # The serving pipeline without a read budget: every candidate's row is read, through the same cache
    # semantics (in replay time) that serving has.
    pipeline = Pipeline(ReplayStore(replay), [], cache=RowCache(CACHE_TTL_SECONDS), max_candidates=max_candidates,
                        read_waves=None, wave_keys=None, prefetch=False,
                        factors=intent.factors if intent is not None else None)
    sets = {"train": Examples(keeps_gathered=False), "eval": Examples()}
    position = 0
    started = time.perf_counter()
    for done, index in enumerate(sorted(chosen)):
        while position < index:
            replay.apply(stream[position])
            position += 1
        event = stream[index]
        now = event.epoch
        gathered = pipeline.gather(Request("feed", user_id=event.user_id, session_id=event.session_id, n=TOP), now)
        bought = {item for i, t, item in purchases.get(event.user_id, ()) if i >= index and t <= now + horizon}
        sets[chosen[index]].add(gathered, bought, now)
        if progress and done % 500 == 0:
            print(f"  {done}/{len(chosen)} requests, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return sets["train"], sets["eval"]


# -- training ---------------------------------------------------------------------------------------

@dataclass
class TrainedRanker:
    onnx: bytes
    metadata: dict[str, Any]
    estimator: Any = field(default=None, repr=False)  # the fitted scikit-learn classifier

    def model(self) -> RankingModel:
        return RankingModel(self.onnx, version=self.metadata.get("version"))


def train_ranker(train: Examples, *, seed: int = 0, iterations: int | None = None, threads: int = 1) -> TrainedRanker:
    """Fit the classifier on the training requests and export it to ONNX with its metadata."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    X, y = train.arrays()
    if y.min() == y.max():
        raise ValueError("the training requests hold no purchased candidates (or only purchased ones)")
    boosting = {**BOOSTING, **({"max_iter": iterations} if iterations else {})}
    # OpenMP threads spin while they wait for each other: on a busy machine two of them take fifty
    # times as long as one, so the thread count is the caller's choice, one unless told otherwise.
    with threadpool_limits(limits=threads, user_api="openmp"):
        classifier = HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **boosting).fit(X, y)
    trained_at = datetime.now(UTC).replace(microsecond=0)
    metadata = {
        "name": MODEL_NAME,
        "feature_names": list(FEATURE_NAMES),
        "output": OUTPUT_NAME,
        "target": "purchase of the candidate within the horizon after the request",
        "trained_at": _iso(trained_at.timestamp()),
        "training_window": {"start": _iso(train.start), "end": _iso(train.end)},
        "training": {"requests": train.requests, "rows": train.rows, "positives": train.positives},
        "model": {"library": "scikit-learn", "estimator": "HistGradientBoostingClassifier", **boosting},
        "library": _library_versions(),
    }
    return TrainedRanker(_export(classifier, metadata), metadata, classifier)


def evaluate(pipeline: Pipeline, examples: Examples, strategies: dict[str, tuple[ProbabilityModel, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean per-request AUC of each strategy's pointwise score and NDCG@10 of its served top ten."""
    from sklearn.metrics import roc_auc_score

    results: dict[str, dict[str, float]] = {}
    for name, (model, weights) in strategies.items():
        scorers = [CommercialPerformance(), PurchaseProbability(model)]
        aucs, ndcgs = [], []
        for gathered, y in zip(examples.gathered, examples.labels):
            if not y.any():
                continue
            if not y.all():
                base, _ = pipeline.blend(gathered, weights=weights, scorers=scorers)
                aucs.append(roc_auc_score(y, base))
            top = pipeline.rank(gathered, n=TOP, weights=weights, scorers=scorers, explain=False)
            index = {item: i for i, item in enumerate(gathered.candidates.ids)}
            gains = np.array([y[index[r.item_id]] for r in top], dtype=np.float64)
            ideal = np.ones(min(int(y.sum()), TOP))
            ndcgs.append(_dcg(gains) / _dcg(ideal))
        results[name] = {"auc": float(np.mean(aucs)) if aucs else float("nan"),
                         "ndcg_at_10": float(np.mean(ndcgs)) if ndcgs else float("nan"),
                         "requests_with_purchase": len(ndcgs)}
    return results


def run(events: Iterable[dict | Event], *, source: str, eval_days: float, horizon_hours: float, max_moments: int,
        max_eval_moments: int, max_candidates: int, seed: int, iterations: int | None = None,
        threads: int = 1, progress: bool = False, shipped: RankingModel | None = None,
        published: RankingModel | None = None) -> tuple[TrainedRanker, dict[str, Any]]:
    """Examples, training and evaluation: the trained model (its metadata holding the metrics) and a report, the
    ranker the layer ships (`shipped`) and a registry's current one (`published`) scored on the same requests.
    State is replayed as a new stack keeps it: session intent from the shipped intent model."""
    started = time.perf_counter()
    intent = SessionIntent.shipped()
    train, held_out = build_examples(events, eval_days=eval_days, horizon_hours=horizon_hours,
                                     max_moments=max_moments, max_eval_moments=max_eval_moments,
                                     max_candidates=max_candidates, seed=seed, progress=progress, intent=intent)
    built = time.perf_counter()
    trained = train_ranker(train, seed=seed, iterations=iterations, threads=threads)
    fitted = time.perf_counter()
    model = trained.model()
    scoring = Pipeline(ReplayStore(Replay()), [], max_candidates=max_candidates)
    feed = dict(DEFAULT_WEIGHTS["feed"])
    strategies: dict[str, tuple[ProbabilityModel, dict[str, float]]] = {
        "commercial performance alone": (ConversionPrior(), {"commercial": 1.0}),
        "untrained blend (purchase rate as probability)": (ConversionPrior(), feed),
    }
    if shipped is not None:  # what a new stack serves today, on the same requests: does retraining pay?
        strategies["shipped model alone"] = (shipped, {"probability": 1.0})
        strategies[SHIPPED_BLEND] = (shipped, feed)
    if published is not None:
        strategies["published model alone"] = (published, {"probability": 1.0})
        strategies[PUBLISHED_BLEND] = (published, feed)
    strategies["trained model alone"] = (model, {"probability": 1.0})
    strategies[TRAINED_BLEND] = (model, feed)
    metrics = evaluate(scoring, held_out, strategies)
    candidates_hit = sum(int(y.sum()) for y in held_out.labels)
    evaluation = {
        "window": {"start": _iso(held_out.start), "end": _iso(held_out.end)},
        "requests": held_out.requests,
        "rows": held_out.rows,
        "purchases_within_horizon": held_out.purchases,
        "purchases_among_candidates": candidates_hit,
        "shipped_version": None if shipped is None else shipped.version,
        "published_version": None if published is None else published.version,
        "metrics": metrics,
    }
    trained.metadata.update({
        "data": source,
        "horizon_hours": horizon_hours,
        "max_candidates": max_candidates,
        "evaluation": evaluation,
    })
    # The metrics are part of the model's metadata: export again so the graph carries them too.
    trained = TrainedRanker(with_metadata(trained.onnx, METADATA_KEY, trained.metadata), trained.metadata, trained.estimator)
    report = {"evaluation": evaluation, "training": trained.metadata["training"],
              "seconds": {"examples": round(built - started, 1), "fit": round(fitted - built, 1),
                          "evaluate": round(time.perf_counter() - fitted, 1)}}
    return trained, report


def incumbents(evaluation: dict[str, Any]) -> dict[str, Incumbent]:
    """The rankers the trained one would replace, where it goes (model_output.DEFAULT, REGISTRY), each by the NDCG@10
    of the blend the feed serves with it: the layer's default, and the registry's current version (or, where the
    registry has none, the default it then serves)."""
    metrics = evaluation["metrics"]

    def scored(version: str | None, blend: str) -> tuple[str, float] | None:
        return (f"{MODEL_NAME}:{version}", metrics[blend]["ndcg_at_10"]) if version else None

    basis = f"the same {metrics[TRAINED_BLEND]['requests_with_purchase']} requests followed by a purchase"
    return incumbents_from("NDCG@10", metrics[TRAINED_BLEND]["ndcg_at_10"], basis,
                           default=scored(evaluation.get("shipped_version"), SHIPPED_BLEND),
                           registry=scored(evaluation.get("published_version"), PUBLISHED_BLEND))


# -- event sources ----------------------------------------------------------------------------------

def parse_events(events: Iterable[dict | Event]) -> list[Event]:
    """Validated events in time order (stable for equal times); invalid ones are left out, as Ingest quarantines them."""
    parsed = []
    for raw in events:
        if isinstance(raw, dict):
            try:
                raw = parse_event(raw)
            except ValueError:
                continue
        parsed.append(raw)
    parsed.sort(key=lambda e: e.epoch)
    return parsed


# -- command ----------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor train ranker", description=__doc__.split("\n\n")[0])
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--events", type=Path, help="events as JSON lines (.jsonl or .jsonl.gz)")
    data.add_argument("--archive", metavar="BUCKET", help="the event archive in this S3 bucket (Ingest's archive/ prefix)")
    data.add_argument("--diginetica", type=Path, metavar="DIR",
                      help="Diginetica views, purchases and categories in DIR (train-item-views*.csv, ...)")
    parser.add_argument("--shoppers", type=int, default=600, help="simulated shoppers, without another source (default 600)")
    parser.add_argument("--days", type=float, default=10.0, help="simulated days (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--busy", action="store_true",
                        help="simulate the busy shop (daily visits, longer sessions, ready buyers: many purchases to "
                             "learn from) rather than the calibrated one")
    parser.add_argument("--since", help="first archive day to read (YYYY-MM-DD)")
    parser.add_argument("--until", help="last archive day to read (YYYY-MM-DD)")
    parser.add_argument("--eval-days", type=float, default=3.0, help="the later window evaluated on (default 3)")
    parser.add_argument("--horizon-hours", type=float, default=24.0, help="a purchase this soon after a request counts (default 24)")
    parser.add_argument("--max-moments", type=int, default=4000, help="training requests (default 4000)")
    parser.add_argument("--max-eval-moments", type=int, default=2000, help="evaluation requests (default 2000)")
    parser.add_argument("--max-candidates", type=int, default=200, help="candidates per request (default 200)")
    parser.add_argument("--iterations", type=int, default=BOOSTING["max_iter"],
                        help=f"boosting iterations (default {BOOSTING['max_iter']})")
    parser.add_argument("--threads", type=int, default=1, help="threads to fit with (default 1)")
    add_output_arguments(parser, compared=True)
    args = parser.parse_args(argv)
    check_output_arguments(parser, args)

    events, source = _events(args, parser)
    shipped, published = replaced_models(MODEL_NAME, RankingModel.from_stored, args)
    trained, report = run(events, source=source, eval_days=args.eval_days, horizon_hours=args.horizon_hours,
                          max_moments=args.max_moments, max_eval_moments=args.max_eval_moments,
                          max_candidates=args.max_candidates, seed=args.seed, iterations=args.iterations,
                          threads=args.threads, progress=True, shipped=shipped, published=published)
    version = model_version(trained.onnx, trained.metadata["trained_at"])
    trained.metadata["version"] = version
    print(format_report(report, version, source))

    delivery = deliver(args, MODEL_NAME, trained.onnx, trained.metadata, incumbents=incumbents(report["evaluation"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**report, "version": version, "data": source, **delivery.report},
                                        indent=2) + "\n")
    return delivery.exit_code


def format_report(report: dict[str, Any], version: str, source: str) -> str:
    ev = report["evaluation"]
    tr = report["training"]
    lines = [
        f"ranker {version}   data: {source}",
        f"training: {tr['requests']} requests, {tr['rows']} candidates, {tr['positives']} bought",
        f"evaluation window {ev['window']['start']} .. {ev['window']['end']}: {ev['requests']} requests, "
        f"{ev['rows']} candidates; {ev['purchases_among_candidates']} of {ev['purchases_within_horizon']} "
        "purchases within the horizon were among the candidates",
        "",
        f"{'strategy':<48} {'AUC':>7} {'NDCG@10':>8} {'requests':>9}",
    ]
    if ev.get("shipped_version"):
        lines.insert(-1, f"(shipped: the ranker the layer ships today, {ev['shipped_version']}, on the same requests)")
    if ev.get("published_version"):
        lines.insert(-1, f"(published: the registry's current ranker, {ev['published_version']}, on the same requests)")
    for name, m in ev["metrics"].items():
        lines.append(f"{name:<48} {m['auc']:>7.4f} {m['ndcg_at_10']:>8.4f} {m['requests_with_purchase']:>9}")
    seconds = report["seconds"]
    lines.append("")
    lines.append(f"(AUC: per request over its candidates, mean over requests with a purchase; NDCG@10 of the "
                 f"served top ten)  time: examples {seconds['examples']}s, fit {seconds['fit']}s, "
                 f"evaluation {seconds['evaluate']}s")
    return "\n".join(lines)


def _events(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Iterable[dict], str]:
    if args.events:
        return json_lines(args.events), f"events file {args.events}"
    if args.archive:
        return archived_events(s3_blobs(args, args.archive), since=args.since, until=args.until), f"archive s3://{args.archive}"
    if args.diginetica:
        from tailor_lab.datasets import load_diginetica

        folder = args.diginetica
        views = next(iter(sorted(folder.glob("train-item-views*.csv"))), None)
        if views is None:
            parser.error(f"no train-item-views*.csv in {folder}")
        purchases = folder / "train-purchases.csv"
        categories = folder / "product-categories.csv"
        return (load_diginetica(views, purchases if purchases.exists() else None,
                                categories if categories.exists() else None, viewed_sessions_only=True),
                f"diginetica {views.name}" + (" + the purchases of its sessions" if purchases.exists() else ""))
    from tailor_lab.simulator import BUSY_PARAMETERS, simulate

    sim = simulate(shoppers=args.shoppers, days=args.days, seed=args.seed,
                   params=BUSY_PARAMETERS if args.busy else None)
    shop = "busy simulator" if args.busy else "simulator"
    return sim.events, f"{shop} ({args.shoppers} shoppers, {args.days:g} days, seed {args.seed})"


# -- helpers ----------------------------------------------------------------------------------------

def _export(classifier: Any, metadata: dict[str, Any]) -> bytes:
    """The classifier as one ONNX graph: "features" (float32, n x k) -> "purchase_probability" (n)."""
    from onnx import TensorProto, helper

    model, probabilities = classifier_graph(classifier, INPUT_NAME, len(FEATURE_NAMES))
    graph = model.graph
    graph.initializer.append(helper.make_tensor("positive_class", TensorProto.INT64, [], [1]))
    graph.node.append(helper.make_node("Gather", [probabilities, "positive_class"], [OUTPUT_NAME], axis=1))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None]))
    return with_metadata(model.SerializeToString(), METADATA_KEY, metadata)


def _dcg(gains: np.ndarray) -> float:
    return float((gains / np.log2(np.arange(2, len(gains) + 2))).sum())


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def _library_versions() -> dict[str, str]:
    import onnx
    import skl2onnx
    import sklearn

    return {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__}


if __name__ == "__main__":
    sys.exit(main())
