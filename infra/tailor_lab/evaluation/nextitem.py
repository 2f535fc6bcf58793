"""Measure Tailor's next-item recommendations on real sessions, against published baselines, in one run.

Protocol (session-rec, Ludewig & Jannach): for every test session, sorted by time, and every
position p from 0 to len-2, recommend 20 items from the items up to p and check the item at p+1.
HR@20 is the share of hits, MRR@20 the mean reciprocal rank (0 outside the top 20). Test events
whose item never occurs in training are dropped, then test sessions shorter than 2.

Inputs: a session-rec training and test file (tab separated `SessionId ItemId Time`, e.g.
YooChoose's train_tr.txt and train_valid.txt), or Diginetica's item-views file alone, split as
SR-GNN does: sessions of one view dropped, items seen fewer than 5 times dropped, then sessions
shorter than 2; a session's date is the date of its last line; sessions dated in the last 7 days
are the test set (sessions dated exactly 7 days before the last date belong to neither, as there).

Tailor learns by replaying the training events through the Ingest domain path
(`tailor.ingest.service.Ingestor` on the in-memory store, with session intent weighing the association
pairs as deployed: the shipped intent model and factors; --no-intent leaves it out) and recommends with
the API's own session candidates: `tailor.ranking.candidates.SessionSource`, as the feed route runs it for
a shopper whose only history is the session (tailor.associations.rank_next_items over the association
rows, the pairs weighed by the intent Ingest keeps in the session state). It is measured twice:

* live: the test events are ingested too, one at a time in time order, and each recommendation
  is made right after its event, from what Ingest holds then, as the deployed system would.
* train-only: nothing of the test period is stored; each test session's state is folded from
  its own events up to p. The baselines see the same information.

Baselines, fitted on the training file directly: popularity (most viewed items), item
co-occurrence (session-rec's association rules: every pair of events in a session, scored from
the last item), sequential rules (session-rec's SR: steps 10, weights 1/gap) and V-SKNN
(session-rec's VMContextKNN with the configuration of its published example, VSKNN_CONFIG).
For reference, "V-SKNN (live events)" is V-SKNN whose neighbourhood index also receives the test
events as the live mode does (a session is never its own neighbour): the gap between it and
V-SKNN is what learning from the live stream brings, whatever the method.

Tailor's figures come with a 95% interval of their relative difference to V-SKNN, from
resampling the test sessions: small test sets move by several percent on the luck of a few
sessions. Diginetica's sample file is such a set: every prefix of every test session is evaluated,
but the SR-GNN item filter (items viewed 5 times or more in the file's sessions of two views) keeps
318 of its 6,774 items, so the last 7 days' 270 sessions (1,218 views) become 39 sessions of known
items with 99 evaluation points. The recommendations file holds the live mode's lists and scores.

    tailor evaluate next-item --train train_tr.txt --test train_valid.txt --out recs.csv [--json figures.json]
    tailor evaluate next-item --train train-item-views.csv --out recs.csv
    tailor evaluate next-item --train train_tr.txt --test train_valid.txt --validation-days 1 --out val.csv

`--validation-days` leaves the test set out and evaluates on the last days of the training part
instead: the split that Tailor's next-item parameters (tailor.associations.NextItemParams) are
chosen on.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from tailor.embeddings import ItemVectors, VectorUpdate, update_vector
from tailor.embeddings.online import OnlineVectors
from tailor.embeddings.ranking import DEFAULT_BLEND, EmbeddingBlend
from tailor.events import parse_event
from tailor.ingest.intent import SessionIntent
from tailor.ingest.service import Ingestor, StreamRecord
from tailor.intent import IntentFactors
from tailor.ranking.candidates import SessionSource
from tailor.ranking.context import RankingContext, Request
from tailor.ranking.rows import Partners, partners
from tailor.session import SessionState, fold_session
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab import report_json
from tailor_lab.datasets import SHARED_DATA, load_diginetica, load_yoochoose
from tailor_lab.stream import epoch_of
from tailor_lab.training.embeddings import (
    EmbeddingParams,
    interactions_from_events,
    read_item_metadata,
    train_item_vectors,
)

__all__ = ["CUTOFF", "GOAL", "VSKNN_CONFIG", "CoOccurrence", "NextItemSplit", "Popularity", "SequentialRules", "VSKNN",
           "evaluate_next_item", "format_table", "load_diginetica_split", "load_session_rec_split", "main",
           "session_rec_split", "validation_split"]

CUTOFF = 20
GOAL = 0.05  # Tailor's aim: at least 5% (relative) above V-SKNN on both HR@20 and MRR@20
# session-rec conf/example_next.yml (rsc15-100k): k 500, sample_size 5000, weighting quadratic,
# weighting_score div, idf_weighting 5; the rest are VMContextKNN's defaults.
VSKNN_CONFIG: dict[str, Any] = {
    "k": 500, "sample_size": 5000, "sampling": "recent", "similarity": "vec", "weighting": "quadratic",
    "weighting_score": "div", "idf_weighting": 5, "remind": True, "extend": False, "normalize": True,
}
DIGINETICA_TEST_DAYS = 7
DIGINETICA_MIN_ITEM_SUPPORT = 5
SEQUENTIAL_RULE_STEPS = 10
REPLAY_BATCH = 500
BOOTSTRAP_SAMPLES = 1000
SHARD = "shardId-000000000000"
TAILOR_LIVE = "tailor (live)"
TAILOR_TRAIN_ONLY = "tailor (train-only)"
VSKNN_LIVE = "V-SKNN (live events)"
EMBEDDINGS = "embeddings"
BLEND_LIVE = "tailor + embeddings (live)"
BLEND_TRAIN_ONLY = "tailor + embeddings (train-only)"
CATEGORY_POPULARITY = "category popularity"
BASELINES = ("popularity", "co-occurrence", "sequential rules", "V-SKNN")
LIVE_METHODS = (VSKNN_LIVE, TAILOR_LIVE, BLEND_LIVE)
TRAIN_ONLY_METHODS = (TAILOR_TRAIN_ONLY, EMBEDDINGS, BLEND_TRAIN_ONLY)
MODES = ("live", "train-only", "both")
COLD_SUPPORT = 5  # a target item with fewer training interactions is a cold-start point
_DATA = SHARED_DATA
DEFAULT_TRAIN = _DATA / "yoochoose-100k" / "train_tr.txt"
DEFAULT_TEST = _DATA / "yoochoose-100k" / "train_valid.txt"
_DAY = 86_400


@dataclass
class NextItemSplit:
    """Training and test events (dicts valid per parse_event, in time order) and how they were made."""

    name: str
    train: list[dict]
    test: list[dict]
    labels: dict[str, str] = field(default_factory=dict)  # session_id -> the data set's own session id
    train_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)  # item metadata for the vectors

    def label(self, session_id: str) -> str:
        return self.labels.get(session_id, session_id)


def load_session_rec_split(train_path: str | os.PathLike[str], test_path: str | os.PathLike[str]) -> NextItemSplit:
    """A session-rec training and test file, with session-rec's test filter."""
    return session_rec_split(f"{Path(train_path).name} -> {Path(test_path).name}", list(load_yoochoose(train_path)),
                             list(load_yoochoose(test_path)))


def session_rec_split(name: str, train: list[dict], test: list[dict]) -> NextItemSplit:
    """Training and test events (load_yoochoose's, in time order) with session-rec's test filter: items seen in
    training, sessions of two events or more. Test sessions (and events) get ids of their own ("yt-" for "yc-"): a
    test file that numbers its sessions as the training file does must not carry on a training session in live mode."""
    known = {e["item_id"] for e in train}
    test = _sessions_of_two([_as_test(e) for e in test if e["item_id"] in known])
    labels = {e["session_id"]: e["session_id"][3:] for e in train + test}
    return NextItemSplit(name, train, test, labels)


def _as_test(event: dict) -> dict:
    return {**event, **{key: "yt-" + event[key].removeprefix("yc-") for key in ("event_id", "user_id", "session_id")}}


def load_diginetica_split(views_path: str | os.PathLike[str], *, test_days: int = DIGINETICA_TEST_DAYS,
                          min_item_support: int = DIGINETICA_MIN_ITEM_SUPPORT) -> NextItemSplit:
    """Diginetica's item views split as SR-GNN does (see the module doc); event times from load_diginetica."""
    path = Path(views_path)
    lines: dict[str, list[tuple[int, int, str]]] = defaultdict(list)  # session -> (timeframe, line, item)
    session_day: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        header = [h.strip().replace("_", "").lower() for h in fh.readline().strip().split(";")]
        try:
            col = {name: header.index(name) for name in ("sessionid", "itemid", "timeframe", "eventdate")}
        except ValueError:
            raise ValueError(f"{path}: not a Diginetica item-views file (header {header!r})") from None
        for lineno, line in enumerate(fh, 2):
            fields = line.strip().split(";")
            if fields == [""]:
                continue
            session = fields[col["sessionid"]]
            lines[session].append((int(fields[col["timeframe"]]), lineno, fields[col["itemid"]]))
            day = date.fromisoformat(fields[col["eventdate"]])
            session_day[session] = calendar.timegm(day.timetuple())
    kept = {s: sorted(v, key=lambda x: x[0]) for s, v in lines.items() if len(v) > 1}
    support = Counter(item for v in kept.values() for _, _, item in v)
    kept = {s: [x for x in v if support[x[2]] >= min_item_support] for s, v in kept.items()}
    kept = {s: v for s, v in kept.items() if len(v) > 1}
    if not kept:
        raise ValueError(f"{path}: no session keeps two views of items seen {min_item_support} times or more")
    split_day = max(session_day[s] for s in kept) - test_days * _DAY
    train_lines = {line for s, v in kept.items() if session_day[s] < split_day for _, line, _ in v}
    test_lines = {line for s, v in kept.items() if session_day[s] > split_day for _, line, _ in v}
    train, test = [], []
    for event in load_diginetica(path):
        line = int(event["event_id"].rsplit("-", 1)[1])  # "dg-<file stem>-<line number>"
        if line in train_lines:
            train.append(event)
        elif line in test_lines:
            test.append(event)
    known = {e["item_id"] for e in train}
    test = _sessions_of_two([e for e in test if e["item_id"] in known])
    labels = {e["session_id"]: e["session_id"][3:] for e in train + test}
    return NextItemSplit(f"{path.name} (last {test_days} days as test)", train, test, labels)


def validation_split(split: NextItemSplit, days: float) -> NextItemSplit:
    """A split of `split`'s training events alone, to choose parameters without the test set: the sessions
    ending in the last `days` days of training are the test, the earlier ones the training, with the same
    test filter (items seen in training, sessions of two events or more)."""
    sessions = _group(split.train)
    ends = {s: epoch_of(events[-1]["timestamp"]) for s, events in sessions.items()}
    cut = max(ends.values(), default=0.0) - days * _DAY
    train = [e for e in split.train if ends[e["session_id"]] <= cut]
    known = {e["item_id"] for e in train}
    held_out = _sessions_of_two([e for e in split.train if ends[e["session_id"]] > cut and e["item_id"] in known])
    return NextItemSplit(f"{split.name}, training part: last {days:g} days as validation", train, held_out,
                         split.labels)


def evaluate_next_item(split: NextItemSplit, out_path: str | os.PathLike[str] | None = None, *,
                       echo: Callable[[str], None] | None = None, intent: bool = True, mode: str = "both",
                       vectors: ItemVectors | None = None, embedding_params: EmbeddingParams | None = None,
                       blend: EmbeddingBlend = DEFAULT_BLEND, embeddings: bool = True,
                       categories: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run the protocol on `split`; write the recommendations of `mode` (Tailor's with the embeddings; live for
    "both") to `out_path`; return the figures. With `intent` (as deployed), Ingest weighs association pairs by
    the shipped intent model and factors. The embeddings are `vectors`, else trained here on the training events
    with `embedding_params` (tailor train embeddings' defaults); `embeddings=False` leaves them out.
    `categories` (item -> category) makes the cold-start baseline category popularity."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    say = echo or (lambda message: None)
    started = time.perf_counter()
    train_sessions = _item_sequences(split.train)
    test_sessions = _group(split.test)
    order = sorted(test_sessions, key=lambda s: _natural(split.label(s)))
    points = [(s, p) for s in order for p in range(len(test_sessions[s]) - 1)]
    say(f"{split.name}: {len(split.train)} training events in {len(train_sessions)} sessions; "
        f"{len(split.test)} test events in {len(test_sessions)} sessions, {len(points)} evaluation points")

    baselines: dict[str, Any] = {}
    for name, build in (("popularity", Popularity), ("co-occurrence", CoOccurrence),
                        ("sequential rules", SequentialRules), ("V-SKNN", VSKNN)):
        t = time.perf_counter()
        baselines[name] = build(train_sessions)
        say(f"  fitted {name} in {time.perf_counter() - t:.1f}s")
    seconds: Counter = Counter()
    if embeddings and vectors is None:
        t = time.perf_counter()
        vectors = train_item_vectors(interactions_from_events(split.train), embedding_params or EmbeddingParams(),
                                     attributes=split.train_attributes, index=False)
        seconds["embedding training"] = time.perf_counter() - t
        say(f"  trained item vectors ({len(vectors)} x {vectors.dim}) in {seconds['embedding training']:.1f}s")
    if not embeddings:
        vectors = None
    # The session source blends with the vectors and takes the revisit odds from them, as the API's does; Tailor's
    # rows without the vectors are the same source with the blend's weight 0 (the odds kept). Ingest keeps the
    # sessions' vectors in their rows, as deployed with vectors.
    blends = (replace(blend, weight=0.0), blend) if vectors is not None else (blend,)
    online = None if vectors is None else OnlineVectors(lambda: vectors, blend.update)

    t = time.perf_counter()
    store = MemoryStateStore()
    session_intent = SessionIntent.shipped() if intent else None
    stream = _Stream(Ingestor(store, MemoryBlobStore(), max_workers=1, intent=session_intent, vectors=online))
    for start in range(0, len(split.train), REPLAY_BATCH):
        stream.ingest(split.train[start:start + REPLAY_BATCH])
    replay_seconds = time.perf_counter() - t
    say(f"  replayed the training events through Ingest in {replay_seconds:.1f}s")
    lookup = _Associations(store)
    factors = IntentFactors.default()

    lists: dict[str, dict[tuple[str, int], list[str]]] = defaultdict(dict)
    scored: dict[str, dict[tuple[str, int], list[tuple[str, float]]]] = defaultdict(dict)
    if vectors is not None:
        t = time.perf_counter()
        for session_id in order:
            events = test_sessions[session_id]
            current = None
            for position, raw in enumerate(events[:-1]):
                current = update_vector(current, vectors.vector(raw["item_id"]), raw["event_type"], rule=blend.update)
                lists[EMBEDDINGS][(session_id, position)] = [
                    item for item, _ in vectors.nearest(current, CUTOFF)] if current is not None else []
        seconds[EMBEDDINGS] += time.perf_counter() - t

    # Train-only: every test session on its own, its state folded from its events as they are revealed.
    for session_id in order:
        events = test_sessions[session_id]
        prefix: list[str] = []
        state: SessionState | None = None
        for position, raw in enumerate(events[:-1]):
            prefix.append(raw["item_id"])
            for name, model in baselines.items():
                t = time.perf_counter()
                lists[name][(session_id, position)] = model.recommend(prefix)
                seconds[name] += time.perf_counter() - t
            if mode == "live":
                continue
            t = time.perf_counter()
            event, recent = parse_event(raw), list(state.items) if state is not None else []
            state = fold_session(state, event, ttl_seconds=0)
            if online is not None:
                _fold_vector(online, state, event, recent)
            ranked = _session_candidates(state, lookup, factors, vectors, blends)
            elapsed = time.perf_counter() - t
            for name, found in zip((TAILOR_TRAIN_ONLY, BLEND_TRAIN_ONLY), ranked):
                scored[name][(session_id, position)] = found
                seconds[name] += elapsed
    say("  recommended for every test prefix from the training data alone")

    # Live: the test events go through Ingest one by one in time order, and each recommendation is
    # made from what the stores hold right after its event. V-SKNN gets the same events for reference.
    if mode != "train-only":
        t = time.perf_counter()
        vsknn_live = VSKNN(train_sessions)
        seconds[VSKNN_LIVE] += time.perf_counter() - t
        position_of = {raw["event_id"]: p for s in order for p, raw in enumerate(test_sessions[s])}
        prefixes: dict[str, list[str]] = defaultdict(list)
        for raw in sorted(split.test, key=lambda e: (epoch_of(e["timestamp"]), e["session_id"], position_of[e["event_id"]])):
            session_id, position = raw["session_id"], position_of[raw["event_id"]]
            t = time.perf_counter()
            stream.ingest([raw])
            seconds[TAILOR_LIVE] += time.perf_counter() - t
            t = time.perf_counter()
            vsknn_live.extend(session_id, raw["item_id"], epoch_of(raw["timestamp"]))
            seconds[VSKNN_LIVE] += time.perf_counter() - t
            prefixes[session_id].append(raw["item_id"])
            if position + 1 == len(test_sessions[session_id]):
                continue
            t = time.perf_counter()
            state = SessionState.from_row(store.tables["sessions"][session_id])
            ranked = _session_candidates(state, lookup, factors, vectors, blends)
            elapsed = time.perf_counter() - t
            for name, found in zip((TAILOR_LIVE, BLEND_LIVE), ranked):
                scored[name][(session_id, position)] = found
                seconds[name] += elapsed
            t = time.perf_counter()
            lists[VSKNN_LIVE][(session_id, position)] = vsknn_live.recommend(prefixes[session_id], session_id)
            seconds[VSKNN_LIVE] += time.perf_counter() - t
        say("  recommended live, ingesting the test events as they came")
    for name, found in scored.items():
        lists[name] = {key: [item for item, _ in ranked] for key, ranked in found.items()}

    written = BLEND_TRAIN_ONLY if mode == "train-only" else BLEND_LIVE
    if written not in scored:
        written = TAILOR_TRAIN_ONLY if mode == "train-only" else TAILOR_LIVE
    if out_path is not None:
        _write_recommendations(Path(out_path), split, points, scored[written])

    methods = [name for name in (*BASELINES, *(LIVE_METHODS if mode != "train-only" else ()),
                                 *(TRAIN_ONLY_METHODS if mode != "live" else ())) if name in lists]
    targets = [test_sessions[s][p + 1]["item_id"] for s, p in points]
    reciprocal = {name: _reciprocal_ranks([lists[name][key] for key in points], targets) for name in methods}
    session_of_point = np.repeat(np.arange(len(order)), [len(test_sessions[s]) - 1 for s in order])
    pairs = [(name, reference) for name, reference in (
        (TAILOR_LIVE, "V-SKNN"), (BLEND_LIVE, "V-SKNN"), (TAILOR_TRAIN_ONLY, "V-SKNN"), (BLEND_TRAIN_ONLY, "V-SKNN"),
        (TAILOR_LIVE, VSKNN_LIVE), (BLEND_LIVE, VSKNN_LIVE)) if name in reciprocal and reference in reciprocal]
    versus = {f"{name} vs {reference}": _relative(reciprocal[name], reciprocal[reference], session_of_point)
              for name, reference in pairs}
    cold = _cold_start(split, points, targets, test_sessions, train_sessions, reciprocal, categories)
    return {
        "data": split.name,
        "mode": mode,
        "recommendations": written if out_path is not None else None,
        "train": {"events": len(split.train), "sessions": len(train_sessions),
                  "items": len({e["item_id"] for e in split.train})},
        "test": {"events": len(split.test), "sessions": len(test_sessions), "points": len(points)},
        "cutoff": CUTOFF,
        "methods": {name: {"hr": float((reciprocal[name] > 0).mean()), "mrr": float(reciprocal[name].mean()),
                           "seconds": round(seconds[name], 2)} for name in methods},
        "relative": versus,
        "cold_start": cold,
        "goal": {"relative_gain": GOAL, "reference": "V-SKNN",
                 "met": {name: all(versus[f"{name} vs V-SKNN"][m]["relative"] >= GOAL for m in ("hr", "mrr"))
                         for name, reference in pairs if reference == "V-SKNN"}},
        "vsknn_config": VSKNN_CONFIG,
        "embeddings": None if vectors is None else {
            "items": len(vectors), "dim": vectors.dim, "params": vectors.metadata.get("params"),
            "blend": {"weight": blend.weight, "sharpness": blend.sharpness, "pool": blend.pool, "reorders": blend.reorders,
                      "decay": blend.update.decay}, "training_seconds": round(seconds["embedding training"], 2)},
        "intent": None if session_intent is None else session_intent.model.label,
        "ingest_replay_seconds": round(replay_seconds, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }


def format_table(figures: dict[str, Any]) -> str:
    lines = [f"{figures['data']}: {figures['test']['points']} evaluation points in "
             f"{figures['test']['sessions']} test sessions; trained on {figures['train']['events']} events",
             f"{'method':34s} {'HR@20':>8s} {'MRR@20':>8s} {'seconds':>8s}"]
    for name, m in figures["methods"].items():
        lines.append(f"{name:34s} {m['hr']:8.4f} {m['mrr']:8.4f} {m['seconds']:8.1f}")
    cold = figures.get("cold_start")
    if cold:
        lines.append(f"cold start: {cold['points']} points whose target had fewer than {cold['support_below']} "
                     f"training interactions" + ("" if cold["categories"] else " (no categories: popularity)"))
        for name, m in cold["methods"].items():
            lines.append(f"  {name:32s} {m['hr']:8.4f} {m['mrr']:8.4f}")
    lines.append("relative difference (95% interval from resampling test sessions):")
    for name, c in figures["relative"].items():
        parts = [f"{metric.upper()} {c[metric]['relative']:+.1%} [{c[metric]['low']:+.1%}, {c[metric]['high']:+.1%}]"
                 for metric in ("hr", "mrr")]
        lines.append(f"  {name:52s} {'  '.join(parts)}")
    goal = figures["goal"]
    for name, met in goal["met"].items():
        lines.append(f"goal (+{goal['relative_gain']:.0%} on HR@20 and MRR@20 over {goal['reference']}), "
                     f"{name}: {'met' if met else 'missed'}")
    lines.append("V-SKNN: " + ", ".join(f"{k}={v}" for k, v in figures["vsknn_config"].items()))
    if figures.get("embeddings"):
        e = figures["embeddings"]
        lines.append(f"embeddings: {e['items']} items x {e['dim']}; blend " +
                     ", ".join(f"{k}={v}" for k, v in e["blend"].items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor evaluate next-item", description=__doc__.split("\n")[0])
    parser.add_argument("--train", help="session-rec training file, or Diginetica's item-views file "
                                        "(default: the YooChoose 100k sample's train_tr.txt)")
    parser.add_argument("--test", help="session-rec test file; omit it with a Diginetica views file "
                                       "(default with the default --train: train_valid.txt)")
    parser.add_argument("--out", required=True, help="recommendations: SessionId;Position;Recommendations;Scores")
    parser.add_argument("--json", help="write the figures here as JSON")
    parser.add_argument("--test-days", type=int, default=DIGINETICA_TEST_DAYS,
                        help="Diginetica: days at the end that are the test set (default: %(default)s)")
    parser.add_argument("--no-intent", action="store_true",
                        help="Ingest without intent weighting (to measure what intent weighting changes)")
    parser.add_argument("--validation-days", type=float,
                        help="leave the test set out: evaluate on the sessions ending in the last DAYS days of the "
                             "training part, trained on the rest (to choose parameters)")
    parser.add_argument("--min-item-support", type=int, default=DIGINETICA_MIN_ITEM_SUPPORT,
                        help="Diginetica: drop items seen fewer times (default: %(default)s)")
    parser.add_argument("--mode", choices=MODES, default="both",
                        help="live, train-only or both (default); the recommendations file holds that mode's lists "
                             "(live for both) of Tailor with the embeddings")
    parser.add_argument("--vectors", help="item vectors file (tailor train embeddings' vectors.npz); default: "
                                          "trained here on the training events")
    parser.add_argument("--no-embeddings", action="store_true", help="leave the embeddings out")
    parser.add_argument("--items", help="item metadata CSV (item_id, category, ...; or Diginetica's "
                                        "product-categories.csv): the vectors' metadata and the cold-start categories")
    defaults, blend_defaults = EmbeddingParams(), DEFAULT_BLEND
    parser.add_argument("--dim", type=int, default=defaults.dim, help="embedding dimensions (default: %(default)s)")
    parser.add_argument("--window", type=int, default=defaults.window,
                        help="co-interaction window in events (default: %(default)s)")
    parser.add_argument("--blend-weight", type=float, default=blend_defaults.weight,
                        help="weight of the cosine in the blend (default: %(default)s)")
    parser.add_argument("--blend-sharpness", type=float, default=blend_defaults.sharpness,
                        help="power of the cosine in the blend (default: %(default)s)")
    parser.add_argument("--vector-decay", type=float, default=blend_defaults.update.decay,
                        help="what an engagement leaves of the session vector (default: %(default)s)")
    args = parser.parse_args(argv)

    train = args.train or str(DEFAULT_TRAIN)
    test = args.test or (str(DEFAULT_TEST) if args.train is None else None)
    try:
        if test is None:
            split = load_diginetica_split(train, test_days=args.test_days, min_item_support=args.min_item_support)
        else:
            split = load_session_rec_split(train, test)
    except (OSError, ValueError) as exc:
        print(f"tailor evaluate next-item: {exc}", file=sys.stderr)
        return 2
    if args.validation_days is not None:
        split = validation_split(split, args.validation_days)
    if not split.test:
        print("tailor evaluate next-item: no test session keeps two events with items seen in training",
              file=sys.stderr)
        return 2
    try:
        vectors = ItemVectors.from_npz(Path(args.vectors).read_bytes()) if args.vectors else None
        metadata = read_item_metadata(args.items) if args.items else None
    except (OSError, ValueError) as exc:
        print(f"tailor evaluate next-item: {exc}", file=sys.stderr)
        return 2
    categories = {item: found["category"] for item, found in (metadata or {}).items() if "category" in found}
    if metadata and not args.vectors:
        split.train_attributes = metadata
    blend = EmbeddingBlend(weight=args.blend_weight, sharpness=args.blend_sharpness,
                           update=VectorUpdate(decay=args.vector_decay))
    figures = evaluate_next_item(split, args.out, echo=lambda message: print(message, flush=True),
                                 intent=not args.no_intent, mode=args.mode, vectors=vectors,
                                 embedding_params=EmbeddingParams(dim=args.dim, window=args.window), blend=blend,
                                 embeddings=not args.no_embeddings, categories=categories or None)
    print(format_table(figures))
    if args.json:
        report_json.write(Path(args.json), figures)
    return 0


# -- baselines: fitted on the training sessions (item sequences in time order) ----------------------


class Popularity:
    """The most viewed items of the training data, for every session alike."""

    def __init__(self, sessions: Mapping[str, Sequence[tuple[float, str]]]):
        counts = Counter(item for events in sessions.values() for _, item in events)
        self.top = [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:CUTOFF]]

    def recommend(self, prefix: Sequence[str]) -> list[str]:
        return self.top


class CoOccurrence:
    """session-rec's association rules: each event pairs with every earlier event of its session,
    both ways; the session's last item's partners, most frequent first."""

    def __init__(self, sessions: Mapping[str, Sequence[tuple[float, str]]]):
        rules: dict[str, Counter] = defaultdict(Counter)
        for events in sessions.values():
            seen: list[str] = []
            for _, item in events:
                for earlier in seen:
                    rules[item][earlier] += 1
                    rules[earlier][item] += 1
                seen.append(item)
        self.rules = {item: _top(counts.items()) for item, counts in rules.items()}

    def recommend(self, prefix: Sequence[str]) -> list[str]:
        return self.rules.get(prefix[-1], [])


class SequentialRules:
    """session-rec's SR: item b after a within 10 events adds 1/gap to the rule a -> b; the last item's rules."""

    def __init__(self, sessions: Mapping[str, Sequence[tuple[float, str]]], steps: int = SEQUENTIAL_RULE_STEPS):
        rules: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for events in sessions.values():
            items = [item for _, item in events]
            for p in range(1, len(items)):
                for gap in range(1, min(steps, p) + 1):
                    rules[items[p - gap]][items[p]] += 1.0 / gap
        self.rules = {item: _top(targets.items()) for item, targets in rules.items()}

    def recommend(self, prefix: Sequence[str]) -> list[str]:
        return self.rules.get(prefix[-1], [])


class VSKNN:
    """V-SKNN as session-rec's VMContextKNN computes it, with VSKNN_CONFIG.

    For a session prefix (with repeats), every item gets the weight (i/L)^2 of its last position i
    of L; a training session's similarity is the sum of the weights of the items it shares divided
    by the number of distinct prefix items. Candidates are the training sessions sharing an item,
    the 5000 most recent of them (by their last event) if there are more; the 500 most similar are
    the neighbours (ties: the more recent first). Each neighbour adds similarity x (1 + 5 idf(item))
    / step to each of its items, step being how many events back the prefix last had an item of
    that neighbour; idf(item) = ln(training sessions / the item's training events). Items of the
    prefix are not excluded (remind). Only items with a positive score are recommended.

    `extend` adds an event of another session to the neighbourhood index (not part of the
    published method: it measures V-SKNN with the information Tailor's live mode has).
    """

    def __init__(self, sessions: Mapping[str, Sequence[tuple[float, str]]], config: Mapping[str, Any] = VSKNN_CONFIG):
        self.k, self.sample_size, self.idf_weighting = config["k"], config["sample_size"], config["idf_weighting"]
        self.items = sorted({item for events in sessions.values() for _, item in events})
        self.index = {item: i for i, item in enumerate(self.items)}
        self.session_index: dict[str, int] = {}
        self.session_items: list[set[int]] = []
        self.session_time = np.zeros(1024)  # by session index; grows by doubling
        self.members: dict[int, list[int]] = defaultdict(list)  # item -> sessions holding it
        self._arrays: dict[int, np.ndarray] = {}  # item -> members as an array, until the item joins a session
        self._item_arrays: dict[int, np.ndarray] = {}  # session -> its items as an array, until it gets one more
        events_of_item = np.zeros(len(self.items))
        for s in sorted(sessions, key=lambda s: (sessions[s][-1][0], s)):
            for t, item in sessions[s]:
                self.extend(s, item, t)
                events_of_item[self.index[item]] += 1
        self.idf = np.log(len(self.session_items) / np.maximum(events_of_item, 1))

    def extend(self, session_id: str, item_id: str, epoch: float) -> None:
        item = self.index.get(item_id)
        if item is None:
            return  # V-SKNN scores the items of its training data only
        j = self.session_index.get(session_id)
        if j is None:
            j = self.session_index[session_id] = len(self.session_items)
            self.session_items.append(set())
            if j == len(self.session_time):
                self.session_time = np.concatenate([self.session_time, np.zeros(len(self.session_time))])
            self.session_time[j] = epoch
        self.session_time[j] = max(self.session_time[j], epoch)
        if item not in self.session_items[j]:
            self.session_items[j].add(item)
            self.members[item].append(j)
            self._arrays.pop(item, None)
            self._item_arrays.pop(j, None)

    def recommend(self, prefix: Sequence[str], session_id: str | None = None) -> list[str]:
        items = [self.index[item] for item in prefix if item in self.index]
        if not items:
            return []
        length = len(items)
        position_weight = {item: (i / length) ** 2 for i, item in enumerate(items, 1)}
        similarity = np.zeros(len(self.session_items))
        for item, weight in position_weight.items():
            similarity[self._sessions_of(item)] += weight
        similarity /= len(position_weight)
        own = self.session_index.get(session_id) if session_id is not None else None
        if own is not None:
            similarity[own] = 0.0  # a session is not its own neighbour
        candidates = np.flatnonzero(similarity > 0)
        times = self.session_time[candidates]
        if len(candidates) > self.sample_size:
            recent = np.lexsort((-candidates, -times))[:self.sample_size]
            candidates, times = candidates[recent], times[recent]
        neighbours = candidates[np.lexsort((-times, -similarity[candidates]))[:self.k]]
        step = np.full(len(self.session_items), np.inf)
        for back, item in enumerate(reversed(items), 1):
            members = self._sessions_of(item)
            step[members] = np.minimum(step[members], back)
        scores = np.zeros(len(self.items))
        for j, weight in zip(neighbours, similarity[neighbours] / step[neighbours]):
            scores[self._items_of(j)] += weight
        scores *= 1.0 + self.idf_weighting * self.idf
        best = np.argsort(-scores, kind="stable")[:CUTOFF]
        return [self.items[i] for i in best if scores[i] > 0]

    def _items_of(self, session: int) -> np.ndarray:
        found = self._item_arrays.get(session)
        if found is None:
            found = self._item_arrays[session] = np.fromiter(self.session_items[session], dtype=np.int64)
        return found

    def _sessions_of(self, item: int) -> np.ndarray:
        found = self._arrays.get(item)
        if found is None:
            found = self._arrays[item] = np.asarray(self.members[item], dtype=np.int64)
        return found


# -- helpers -------------------------------------------------------------------------------------------


class _Stream:
    """Feeds events to the Ingestor as records of one shard, sequence numbers increasing."""

    def __init__(self, ingestor: Ingestor):
        self.ingestor = ingestor
        self.next_sequence = 10 ** 20

    def ingest(self, events: Sequence[dict]) -> None:
        records = []
        for event in events:
            records.append(StreamRecord(SHARD, str(self.next_sequence), json.dumps(event).encode(),
                                        partition_key=event["user_id"], arrival=epoch_of(event["timestamp"])))
            self.next_sequence += 1
        outcome = self.ingestor.ingest(records)
        if outcome.failed or outcome.quarantined:
            raise RuntimeError(f"ingest rejected {len(outcome.failed)} and quarantined {outcome.quarantined} records")


def _session_candidates(state: SessionState, rows: Callable[[Sequence[str]], dict[str, Partners]],
                        factors: IntentFactors, vectors: ItemVectors | None = None,
                        blends: Sequence[EmbeddingBlend] = (DEFAULT_BLEND,), n: int = CUTOFF
                        ) -> list[list[tuple[str, float]]]:
    """The API's session candidates (SessionSource, as the feed route runs it, with the item `vectors`), under each
    of `blends`, for a shopper whose session is `state` and who has no other history: the rows it asks for are read
    until it asks for no new one (they do not depend on the blend)."""
    ctx = RankingContext(Request("feed", session_id=state.session_id), state.last_seen, session=state, factors=factors)
    sources = [SessionSource(vectors=lambda: vectors, blend=blend) for blend in blends]
    asked: set[str] = set()
    while True:
        keys = [key for _, key in sources[0].keys(ctx) if key not in asked]
        if not keys:
            return [list(source.propose(ctx, n).items()) for source in sources]
        asked.update(keys)
        ctx.associations.update(rows(keys))
        ctx.version += 1  # as the pipeline marks every read that brings association rows


def _fold_vector(online: OnlineVectors, state: SessionState, event: Any, recent: Sequence[str]) -> None:
    """`state`'s vector after `event`, as Ingest's fold keeps it in the session's row (`recent`: the session's items
    before the event)."""
    batch = online.batch()
    if batch is not None:
        batch.note(SimpleNamespace(state=state), recent, "0", event)
        batch.apply()


class _Associations:
    """Parsed association rows read from the in-memory store; a row is parsed again only after it was written
    (its watermark moved). Rows are read in place, never changed."""

    def __init__(self, store: MemoryStateStore):
        self.rows = store.tables["associations"]
        self.watermark = f"wm:{SHARD}"
        self.parsed: dict[str, tuple[Any, Partners]] = {}

    def __call__(self, keys: Sequence[str]) -> dict[str, Partners]:
        found = {}
        for key in keys:
            row = self.rows.get(key)
            if row is None:
                continue
            cached = self.parsed.get(key)
            if cached is None or cached[0] != row.get(self.watermark):
                cached = (row.get(self.watermark), partners(key, row))
                self.parsed[key] = cached
            found[key] = cached[1]
        return found


def _cold_start(split: NextItemSplit, points: Sequence[tuple[str, int]], targets: Sequence[str],
                test_sessions: Mapping[str, list[dict]], train_sessions: Mapping[str, Sequence[tuple[float, str]]],
                reciprocal: Mapping[str, np.ndarray], categories: Mapping[str, str] | None) -> dict[str, Any]:
    """Every method on the points whose target had fewer than COLD_SUPPORT training interactions, beside category
    popularity: the most viewed training items of the category of the session's last item (all items' when
    categories are unknown)."""
    support = Counter(item for events in train_sessions.values() for _, item in events)
    cold = np.array([support[target] < COLD_SUPPORT for target in targets], dtype=bool)
    by_category: dict[str | None, Counter] = defaultdict(Counter)
    for item, count in support.items():
        by_category[(categories or {}).get(item)][item] += count
    ranked = {category: _top(counts.items()) for category, counts in by_category.items()}
    overall = _top(support.items())
    baseline = []
    for (session_id, position), is_cold in zip(points, cold):
        if is_cold:
            category = (categories or {}).get(test_sessions[session_id][position]["item_id"])
            baseline.append(ranked.get(category, overall) if categories and category is not None else overall)
    rr = _reciprocal_ranks(baseline, [t for t, c in zip(targets, cold) if c])
    figures = {name: {"hr": float((values[cold] > 0).mean()) if cold.any() else 0.0,
                      "mrr": float(values[cold].mean()) if cold.any() else 0.0} for name, values in reciprocal.items()}
    figures[CATEGORY_POPULARITY] = {"hr": float((rr > 0).mean()) if len(rr) else 0.0,
                                    "mrr": float(rr.mean()) if len(rr) else 0.0}
    return {"points": int(cold.sum()), "support_below": COLD_SUPPORT, "categories": bool(categories),
            "methods": figures}


def _reciprocal_ranks(lists: Sequence[Sequence[str]], targets: Sequence[str]) -> np.ndarray:
    """Per evaluation point: 1/rank of the target in the top CUTOFF, 0 if it is not there."""
    out = np.zeros(len(targets))
    for i, (recommended, target) in enumerate(zip(lists, targets)):
        for rank, item in enumerate(recommended[:CUTOFF], 1):
            if item == target:
                out[i] = 1.0 / rank
                break
    return out


def _relative(ours: np.ndarray, theirs: np.ndarray, session_of_point: np.ndarray) -> dict[str, dict[str, float]]:
    """Relative difference of HR and MRR, with a 95% interval from resampling test sessions."""
    n_sessions = int(session_of_point.max()) + 1
    # Each bootstrap sample draws the test sessions with replacement: weights = how often each was drawn.
    draws = np.random.default_rng(7).multinomial(n_sessions, np.full(n_sessions, 1.0 / n_sessions),
                                                 size=BOOTSTRAP_SAMPLES)
    out = {}
    for metric, value in (("hr", lambda rr: (rr > 0).astype(float)), ("mrr", lambda rr: rr)):
        a = np.bincount(session_of_point, weights=value(ours), minlength=n_sessions)
        b = np.bincount(session_of_point, weights=value(theirs), minlength=n_sessions)
        ratios = (draws @ a) / np.maximum(draws @ b, 1e-12) - 1
        out[metric] = {"relative": float(a.sum() / b.sum() - 1) if b.sum() else math.inf,
                       "low": float(np.percentile(ratios, 2.5)), "high": float(np.percentile(ratios, 97.5))}
    return out


def _write_recommendations(path: Path, split: NextItemSplit, points: Sequence[tuple[str, int]],
                           lists: Mapping[tuple[str, int], list[tuple[str, float]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=";", lineterminator="\n")
        writer.writerow(["SessionId", "Position", "Recommendations", "Scores"])
        for session_id, position in points:
            ranked = lists[(session_id, position)]
            writer.writerow([split.label(session_id), position, ",".join(item for item, _ in ranked),
                             ",".join(f"{score:.6g}" for _, score in ranked)])


def _item_sequences(events: Iterable[dict]) -> dict[str, list[tuple[float, str]]]:
    return {s: [(epoch_of(e["timestamp"]), e["item_id"]) for e in group] for s, group in _group(events).items()}


def _group(events: Iterable[dict]) -> dict[str, list[dict]]:
    sessions: dict[str, list[dict]] = defaultdict(list)
    for event in events:  # already in time order
        sessions[event["session_id"]].append(event)
    return dict(sessions)


def _sessions_of_two(events: list[dict]) -> list[dict]:
    lengths = Counter(e["session_id"] for e in events)
    return [e for e in events if lengths[e["session_id"]] > 1]


def _top(pairs: Iterable[tuple[str, float]]) -> list[str]:
    return [item for item, _ in sorted(pairs, key=lambda kv: (-kv[1], kv[0]))[:CUTOFF]]


def _natural(label: str) -> tuple[int, str]:
    return (int(label), "") if label.isdigit() else (sys.maxsize, label)


if __name__ == "__main__":
    raise SystemExit(main())
