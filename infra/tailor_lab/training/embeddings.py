"""Learn item vectors from what shoppers engaged with together and what they passed over, plus item metadata;
export them as a vectors file (tailor.embeddings.ItemVectors) and publish it to the model registry.

Objective. Skip-gram with negative sampling (word2vec's contrastive objective: an item against the items
engaged near it in a session, and against random items as negatives) is, at its optimum, a factorisation of
the shifted pointwise mutual information matrix (Levy and Goldberg 2014). This job builds that matrix
directly and factorises it with a randomized SVD, which needs no GPU and no epochs: co-interaction counts of
item pairs within WINDOW events of each other in a session, each pair weighted by the later event's weight
(a cart add says more than a view) over its gap raised to `gap_power`; PMI with the context counts smoothed
by `context_power` (word2vec's 0.75), minus log(`shift`) (the number of negatives), clipped at zero. An item's
vector is its row of U S^`singular_power`.

Ignored impressions. Only what the shop can know was seen counts as passed over: the items of an impression above
the last position an engagement of the session echoes in it (its feed_id, or, without one, the latest impression
holding the engaged item at that position), never engaged in the session: lower slots are mostly never looked at,
and counting them would push apart items that only shared a page. Ignores then say how much an engagement with one
item raises the chance that another, when seen, is engaged too, against that item's own rate of being engaged when
seen (which takes out how often the shop's lists put it in front of shoppers): each pair of a session's engaged
item a and item b engaged or passed over in it adds `ignore_weight` x log(((C + p_b) / (C + N + 1)) / p_b) to
their PMI (both ways, halved), C the sessions engaging both, N those engaging a and passing over b, p_b =
(engaged_b + 1) / (engaged_b + passed_b + 1) b's rate of engagement when seen. Items passed over beside one
another move apart, and items engaged together though mostly passed over move together.

Metadata. A ridge regression from the items' metadata (category, brand, price band, name tokens) to the
learned vectors of well-observed items gives every item a metadata vector; an item's vector is its learned
vector blended toward its metadata vector by `prior` / (`prior` + its interactions), so an item nobody has
touched yet gets the metadata vector alone.

Index. Spherical k-means over the vectors (about sqrt(n) centroids) makes the inverted file index
ItemVectors.nearest probes for approximate search. The job then measures the index's recall@20 against exact search
on queries folded from its own sessions' first items, as the feed folds a session's (tailor.embeddings.ranking.
query_vector), and writes the fewest probes of PROBES that reach tailor.embeddings.RECALL_TARGET as the vectors'
"probes" (the most of them when none does), which serving probes above tailor.embeddings.EXACT_UP_TO items.

Revisits. The same sessions say how often a session came back to its r-th most recent distinct item rather than
move on to a new one, by how far it had come (tailor.associations.revisit_context): `revisit_odds` counts it, and
the vectors carry the odds in their metadata ("revisits"), which set the next-item ranking's reminders
(tailor.associations.RevisitOdds).

The scheduled TrainEmbeddings function runs `retrain_from_archive` on the event archive's last weeks: its build
carries this module alone from the lab (functions/train_embeddings/Makefile), so it imports nothing from the lab,
only the domain library, scipy and scikit-learn. `tailor train embeddings` (tailor_lab.training.embeddings_command)
trains on a data file, events or the archive.
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tailor.archive import archived_events
from tailor.associations import EVENT_WEIGHTS, REVISIT_DEPTH, RevisitOdds, revisit_context
from tailor.embeddings import ARTIFACT, FORMAT, MODEL_NAME, RECALL_TARGET, ItemVectors, VectorFilters, unit
from tailor.embeddings.ranking import query_vector
from tailor.models import ModelRegistry, model_version
from tailor.session import ENGAGEMENTS, RECENT_ITEMS
from tailor.store.port import BlobStore
from tailor.text import remember

__all__ = ["EmbeddingParams", "Interactions", "index_recall", "index_search", "interactions_from_events",
           "interactions_from_sessions", "inverted_file", "publishable", "read_item_metadata", "retrain_from_archive",
           "revisit_odds", "seen_passed_over", "serving_probes", "session_queries", "train_item_vectors"]

TOKEN = re.compile(r"[a-z0-9]+")
PRICE_BANDS = 8  # price quantile bands as metadata features
MAX_INDEX_ITERATIONS = 10
INDEX_SAMPLE_PER_LIST = 40  # k-means learns the lists from this many items per list, then places every item
PROBES = (4, 8, 16, 32, 64)  # the probes whose recall the job measures, fewest first
RECALL_QUERIES = 300  # sessions whose folded query the recall is measured on
RECALL_K = 20
REVISIT_PRIOR = 10.0  # pseudo-engagements a context's revisit odds are shrunk toward every context's with


@dataclass(frozen=True)
class EmbeddingParams:
    """The job's parameters; the defaults were chosen on validation splits (see the README's next-item section)."""

    dim: int = 256
    window: int = 5
    gap_power: float = 1.0
    context_power: float = 0.75
    shift: float = 1.0
    singular_power: float = 0.5
    ignore_weight: float = 1.0
    prior: float = 5.0  # interactions at which an item's learned vector and its metadata vector weigh alike
    ridge: float = 10.0
    min_learned: int = 5  # interactions an item needs for the metadata regression to learn from it
    index_lists: int | None = None  # inverted file lists; default about sqrt(items)
    seed: int = 0


@dataclass
class Interactions:
    """Sessions as sequences of (item, event type), in time order, and the items each session was seen to pass over
    (shown above a position it engaged at, never engaged)."""

    sessions: list[list[tuple[str, str]]]
    ignored: list[set[str]] = field(default_factory=list)  # per session, parallel to `sessions` (may be empty)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)  # item -> category/brand/price/name/available
    window: tuple[str | None, str | None] = (None, None)  # first and last event time seen (ISO)

    @property
    def events(self) -> int:
        return sum(map(len, self.sessions))


def interactions_from_sessions(sessions: Iterable[Sequence[str]]) -> Interactions:
    """Plain item sequences (item views), e.g. a session-rec file's sessions."""
    return Interactions([[(item, "view") for item in items] for items in sessions if items])


def interactions_from_events(events: Iterable[Mapping[str, Any]]) -> Interactions:
    """Tailor events (dicts as tailor.events.parse_event takes them), in any order: engagements with items per
    session in time order; the items a session was seen to pass over (`seen_passed_over`); items' category, brand
    and price where events carry them."""
    from tailor.events import ITEM_EVENT_TYPES

    engaged: dict[str, list[tuple[float, str, str]]] = defaultdict(list)  # session -> (epoch, item, type)
    listed: dict[str, list[tuple[float, Mapping[str, Any]]]] = defaultdict(list)  # session -> (epoch, event)
    attributes: dict[str, dict[str, Any]] = defaultdict(dict)
    first = last = None  # (epoch, ISO text) of the earliest and latest event
    for event in events:
        kind, session, text = event.get("event_type"), event.get("session_id"), event.get("timestamp")
        when = _epoch(text)
        if not session or when is None:
            continue
        first = (when, text) if first is None or when < first[0] else first
        last = (when, text) if last is None or when > last[0] else last
        if kind == "impression":
            listed[session].append((when, event))
        elif kind in ITEM_EVENT_TYPES and event.get("item_id"):
            item = event["item_id"]
            engaged[session].append((when, item, kind))
            if event.get("position") is not None:
                listed[session].append((when, event))
            for name in ("category", "brand", "price"):
                if event.get(name) is not None:
                    attributes[item][name] = event[name]
    sessions, ignored = [], []
    for session, found in engaged.items():
        found.sort(key=lambda e: e[0])
        sessions.append([(item, kind) for _, item, kind in found])
        ignored.append(_passed_over(listed.get(session, [])) - {item for _, item, _ in found})
    return Interactions(sessions, ignored, dict(attributes), (first and first[1], last and last[1]))


def seen_passed_over(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """The items of a session's impressions shown above the last position an engagement echoes in the impression,
    given its impressions and its engagements that echo a position (any order): an engagement belongs to the latest
    impression before it of its feed_id, or, without one, to the latest holding its item at its position. The
    session's engaged items are among them; the caller takes them out."""
    return _passed_over([(when, event) for event in events if (when := _epoch(event.get("timestamp"))) is not None])


def _passed_over(timed: list[tuple[float, Mapping[str, Any]]]) -> set[str]:
    """seen_passed_over of events with their times already read (epoch seconds, event)."""
    ordered = [event for _, event in sorted(timed, key=lambda e: (e[0], e[1].get("event_type") != "impression"))]
    shown: list[tuple[list[str], Any]] = []  # (items, feed_id) per impression, in time order
    reached: dict[int, int] = {}  # impression -> the last position engaged at in it
    for event in ordered:
        if event.get("event_type") == "impression":
            shown.append((list(event.get("item_ids") or ()), event.get("feed_id")))
            continue
        position, feed = event.get("position"), event.get("feed_id")
        if not isinstance(position, int) or position < 0:
            continue
        for k in range(len(shown) - 1, -1, -1):
            items, shown_feed = shown[k]
            if (shown_feed == feed if feed is not None else
                    position < len(items) and items[position] == event.get("item_id")):
                reached[k] = max(reached.get(k, 0), position)
                break
    return {item for k, position in reached.items() for item in shown[k][0][:position]}


def read_item_metadata(path: str | Path) -> dict[str, dict[str, Any]]:
    """Item attributes from a CSV (`,` or `;`) whose header names item_id (or itemId) and any of category
    (categoryId), brand, price, name, available."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as fh:
        sample = fh.readline()
        fh.seek(0)
        reader = csv.DictReader(fh, delimiter=";" if sample.count(";") > sample.count(",") else ",")
        columns = {re.sub(r"[^a-z]", "", (name or "").lower()): name for name in reader.fieldnames or ()}
        key = columns.get("itemid")
        if key is None:
            raise ValueError(f"{path}: the header names no item_id column ({reader.fieldnames})")
        out: dict[str, dict[str, Any]] = {}
        for lineno, row in enumerate(reader, 2):
            item = (row.get(key) or "").strip()
            if not item:
                raise ValueError(f"{path}:{lineno}: item_id is empty")
            found: dict[str, Any] = {}
            for field_name, column in (("category", columns.get("category") or columns.get("categoryid")),
                                       ("brand", columns.get("brand")), ("name", columns.get("name"))):
                value = (row.get(column) or "").strip() if column else ""
                if value:
                    found[field_name] = value
            for field_name in ("price", "available"):
                column = columns.get(field_name)
                value = (row.get(column) or "").strip() if column else ""
                if value:
                    try:
                        found[field_name] = float(value) if field_name == "price" else value.lower() in ("1", "true", "yes")
                    except ValueError:
                        raise ValueError(f"{path}:{lineno}: {field_name} is not a number: {value!r}") from None
            out[item] = found
    return out


def train_item_vectors(data: Interactions, params: EmbeddingParams = EmbeddingParams(), *,
                       attributes: Mapping[str, Mapping[str, Any]] | None = None, index: bool = True,
                       echo: Any = None) -> ItemVectors:
    """Item vectors for every item engaged with in `data` or described in its or the given attributes, except an
    item nobody engaged with that they say is off sale (it is never served)."""
    say = echo or (lambda message: None)
    attributes = {**data.attributes, **(attributes or {})}
    items = sorted({item for s in data.sessions for item, _ in s}
                   | {item for item, found in attributes.items() if found.get("available") is not False})
    if not items:
        raise ValueError("no items: the data holds no engagement with an item and no item metadata")
    row = {item: i for i, item in enumerate(items)}
    n = len(items)
    t = time.perf_counter()
    counts = np.bincount([row[item] for s in data.sessions for item, _ in s], minlength=n).astype(np.float64)
    matrix = _pmi(data, row, n, params)
    say(f"  PMI matrix: {n} items, {matrix.nnz} pairs in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    dim = max(1, min(params.dim, n - 1))
    learned = _factorise(matrix, dim, params) if matrix.nnz else np.zeros((n, dim))
    say(f"  factorised to {dim} dimensions in {time.perf_counter() - t:.1f}s")
    vectors = unit(learned.astype(np.float32))
    features = _metadata_features(items, attributes)
    metadata_only = counts == 0
    if features is not None:
        prior = _metadata_vectors(features, vectors, counts >= params.min_learned, params.ridge)
        weight = (counts / (counts + params.prior))[:, None].astype(np.float32)
        vectors = unit(weight * vectors + (1 - weight) * prior)
    vectors[~metadata_only & (np.linalg.norm(vectors, axis=1) == 0)] = 0.0
    out = ItemVectors.build(items, vectors, attributes=attributes, metadata_only=metadata_only,
                            metadata={"params": asdict(params), "items": n, "metadata_features":
                                      0 if features is None else int(features.shape[1]),
                                      "revisits": revisit_odds(data).to_json()})
    if index and n > 1:
        t = time.perf_counter()
        lists = params.index_lists or max(1, int(round(math.sqrt(n))))
        out.centroids, out.list_offsets, out.list_items = inverted_file(out.vectors, lists, params.seed)
        say(f"  index of {lists} lists in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        out.metadata.update(index_search(out, data, params.seed))
        if "probes" in out.metadata:
            say(f"  recall@{RECALL_K} of the index on session queries: "
                f"{', '.join(f'{p} probes {r:.3f}' for p, r in out.metadata['index_recall'].items())}; serving "
                f"probes {out.metadata['probes']} ({time.perf_counter() - t:.1f}s)")
    return out


def revisit_odds(data: Interactions, prior: float = REVISIT_PRIOR) -> RevisitOdds:
    """After each engagement of each session, which of its REVISIT_DEPTH most recent distinct items (most recent
    first) the next engagement was with, or a new item, counted by the session's context then; each context's
    odds against a new item shrunk toward every context's by `prior` pseudo-engagements."""
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(REVISIT_DEPTH + 1))  # [new, r = 1..DEPTH]
    for session in data.sessions:
        items = [item for item, kind in session if kind in ENGAGEMENTS]
        recent: list[str] = []  # distinct items, most recent last, kept as the session row keeps them
        for step, (item, following) in enumerate(zip(items, items[1:]), 1):
            recent = remember(recent, item, RECENT_ITEMS)
            latest = recent[::-1][:REVISIT_DEPTH]
            counts[revisit_context(len(recent), step)][latest.index(following) + 1 if following in latest else 0] += 1
    total = sum(counts.values(), np.zeros(REVISIT_DEPTH + 1))
    share = (total + 1.0) / (total.sum() + REVISIT_DEPTH + 1)  # every context's, one pseudo-count per outcome

    def odds(found: np.ndarray) -> tuple[float, ...]:
        shrunk = found + prior * share
        return tuple(round(float(v), 6) for v in shrunk[1:] / shrunk[0])

    return RevisitOdds({key: odds(found) for key, found in sorted(counts.items())}, odds(total))


def index_search(vectors: ItemVectors, data: Interactions, seed: int) -> dict[str, Any]:
    """How serving should search `vectors`' index, as their metadata says it: the index's recall@RECALL_K against
    exact search at each of PROBES ("index_recall"), on RECALL_QUERIES queries folded from `data`'s sessions, and
    the probes serving takes ("probes", `serving_probes`); nothing when no session has an item of theirs."""
    queries = session_queries(vectors, data, RECALL_QUERIES, seed)
    if not len(queries):
        return {}
    recall = index_recall(vectors, queries, PROBES)  # the layout as given: no copy of every vector
    return {"probes": serving_probes(recall), "index_recall": {str(p): round(r, 4) for p, r in recall.items()}}


def session_queries(vectors: ItemVectors, data: Interactions, count: int, seed: int) -> np.ndarray:
    """Up to `count` query vectors (unit rows) as the feed folds a session's items: the first items, up to a random
    position, of sessions drawn at random (a session and position nothing has a vector for is passed over)."""
    rng = np.random.default_rng(seed)
    found = []
    for s in rng.permutation(len(data.sessions))[:4 * count].tolist():
        events = data.sessions[s]
        query = query_vector(vectors, events[:int(rng.integers(1, len(events) + 1))])
        if query is not None and np.any(query):
            found.append(query)
            if len(found) == count:
                break
    return unit(np.asarray(found, dtype=np.float32)) if found else np.zeros((0, vectors.dim), dtype=np.float32)


def serving_probes(recall: Mapping[int, float]) -> int:
    """The fewest probes whose recall reaches RECALL_TARGET; the most measured when none does."""
    return min((p for p, r in recall.items() if r >= RECALL_TARGET), default=max(recall))


def index_recall(vectors: ItemVectors, queries: np.ndarray, probes: Sequence[int], k: int = RECALL_K,
                 filters: VectorFilters = VectorFilters()) -> dict[int, float]:
    """Per number of probes, the mean share of exact search's top `k` an index search finds, over `queries`."""
    exact = [{item for item, _ in vectors.nearest(q, k, filters)} for q in queries]
    return {p: float(np.mean([len(found & {item for item, _ in vectors.nearest(q, k, filters, probes=p)})
                              / max(1, len(found)) for q, found in zip(queries, exact)])) for p in probes}


# -- the scheduled training ----------------------------------------------------------------------------


def retrain_from_archive(blobs: BlobStore, now: float, *, history_days: float = 28.0,
                         params: EmbeddingParams = EmbeddingParams(), publish: bool = True,
                         catalog: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Train item vectors on the archived events of the last `history_days` before `now` (epoch seconds) and
    publish them as current: what the scheduled TrainEmbeddings function runs. The archive holds every valid event
    Ingest applied (impressions among them, whose ignored items are the objective's negatives); `catalog` holds the
    items' catalog fields as readers see them (tailor.catalog.catalog_attributes), so every item on sale gets a
    vector, from its metadata alone if no shopper engaged with it in the window. The report says what was trained
    on, or why nothing was (status "skipped": no engagement and no item metadata yet, and the current vectors
    stay)."""
    started = time.perf_counter()
    start = now - history_days * 86400
    since = datetime.fromtimestamp(start, tz=UTC).date().isoformat()
    until = datetime.fromtimestamp(now, tz=UTC).date().isoformat()
    first, last = _iso(start), _iso(now)
    data = interactions_from_events(e for e in archived_events(blobs, since=since, until=until)
                                    if first <= str(e.get("timestamp") or "") < last)
    report: dict[str, Any] = {"model": MODEL_NAME, "since": since, "as_of": last, "sessions": len(data.sessions),
                              "engagements": data.events, "ignored": sum(map(len, data.ignored)),
                              "items_described": len(catalog or {})}
    try:
        vectors = train_item_vectors(data, params, attributes=catalog)
    except ValueError as nothing:
        return {**report, "status": "skipped", "reason": str(nothing), "items": 0}
    payload, metadata = publishable(vectors, data, f"archive since {since}", started, trained_at=last)
    version = (ModelRegistry(blobs).publish(MODEL_NAME, payload, metadata, artifact=ARTIFACT) if publish
               else metadata["version"])
    return {**report, "status": "trained", "version": version, "items": len(vectors), "dim": vectors.dim,
            "metadata_only_items": int(vectors.metadata_only.sum()), "bytes": len(payload)}


def publishable(vectors: ItemVectors, data: Interactions, label: str, started: float, *,
                trained_at: str | None = None) -> tuple[bytes, dict[str, Any]]:
    """The vectors file and its registry metadata: format, version, when trained, on what data and window, metrics."""
    trained_at = trained_at or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    vectors.metadata.update({"format": FORMAT, "trained_at": trained_at, "data": label,
                             "data_window": {"first": data.window[0], "last": data.window[1]},
                             "metrics": {"sessions": len(data.sessions), "engagements": data.events,
                                         "ignored": sum(map(len, data.ignored)),
                                         "metadata_only_items": int(vectors.metadata_only.sum()),
                                         "seconds": round(time.perf_counter() - started, 1)}})
    vectors.metadata["version"] = model_version(vectors.to_npz(), trained_at)
    return vectors.to_npz(), dict(vectors.metadata)


# -- helpers --------------------------------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pmi(data: Interactions, row: Mapping[str, int], n: int, params: EmbeddingParams) -> sp.csr_matrix:
    """The shifted positive PMI of co-interactions, moved by ignored impressions (see the module doc)."""
    items, kinds, sessions = [], [], []
    for s, events in enumerate(data.sessions):
        for item, kind in events:
            items.append(row[item])
            kinds.append(EVENT_WEIGHTS.get(kind, 1.0))
            sessions.append(s)
    items_a, kinds_a, sessions_a = (np.asarray(items, dtype=np.int64), np.asarray(kinds, dtype=np.float64),
                                    np.asarray(sessions, dtype=np.int64))
    rows, cols, weights = [], [], []
    for gap in range(1, params.window + 1):
        same = (sessions_a[gap:] == sessions_a[:-gap]) & (items_a[gap:] != items_a[:-gap])
        a, b = items_a[:-gap][same], items_a[gap:][same]
        w = kinds_a[gap:][same] / gap ** params.gap_power
        rows += [a, b]
        cols += [b, a]
        weights += [w, w]
    if not rows or not sum(len(r) for r in rows):
        return sp.csr_matrix((n, n))
    pairs = sp.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    pairs.sum_duplicates()
    coo = pairs.tocoo()
    total = coo.data.sum()
    row_sum = np.asarray(pairs.sum(axis=1)).ravel()
    context = np.asarray(pairs.sum(axis=0)).ravel() ** params.context_power
    context *= total / context.sum()
    pmi = np.log(coo.data * total / (row_sum[coo.row] * context[coo.col])) - math.log(params.shift)
    keep = pmi > 0
    matrix = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n, n))
    if params.ignore_weight > 0:
        lift = _engagement_lift(data, row, n)
        if lift.nnz:
            matrix = (matrix + params.ignore_weight * lift).tocsr()
    return matrix


def _engagement_lift(data: Interactions, row: Mapping[str, int], n: int) -> sp.csr_matrix:
    """Per pair of an engaged item a and an item b engaged or passed over in the same session, the log of how much
    more often b is engaged when seen beside an engagement with a than when seen at all (see the module doc),
    symmetrised; empty when no session passed anything over."""
    engaged_rows, engaged_cols, passed_rows, passed_cols = [], [], [], []
    for s, (events, ignored) in enumerate(zip(data.sessions, data.ignored)):
        found = {row[item] for item, _ in events}
        engaged_rows += [s] * len(found)
        engaged_cols += found
        passed = [row[item] for item in ignored if item in row]
        passed_rows += [s] * len(passed)
        passed_cols += passed
    if not passed_cols:
        return sp.csr_matrix((n, n))
    shape = (len(data.sessions), n)
    engaged = sp.csr_matrix((np.ones(len(engaged_cols)), (engaged_rows, engaged_cols)), shape=shape)
    passed = sp.csr_matrix((np.ones(len(passed_cols)), (passed_rows, passed_cols)), shape=shape)
    engagements = np.asarray(engaged.sum(axis=0)).ravel()
    rate = (engagements + 1.0) / (engagements + np.asarray(passed.sum(axis=0)).ravel() + 1.0)
    both = (engaged.T @ engaged).tolil()
    both.setdiag(0)
    both = both.tocsr()
    both.eliminate_zeros()
    passed_over = (engaged.T @ passed).tocsr()
    pairs = (both + passed_over).tocoo()
    together = np.asarray(both[pairs.row, pairs.col]).ravel()
    apart = np.asarray(passed_over[pairs.row, pairs.col]).ravel()
    seen_rate = rate[pairs.col]
    lift = sp.csr_matrix((np.log((together + seen_rate) / (together + apart + 1.0) / seen_rate),
                          (pairs.row, pairs.col)), shape=(n, n))
    return ((lift + lift.T) * 0.5).tocsr()


def _factorise(matrix: sp.csr_matrix, dim: int, params: EmbeddingParams) -> np.ndarray:
    from sklearn.utils.extmath import randomized_svd

    u, s, _ = randomized_svd(matrix, dim, n_iter=5, random_state=params.seed)
    return u * s ** params.singular_power


def _metadata_features(items: Sequence[str], attributes: Mapping[str, Mapping[str, Any]]) -> sp.csr_matrix | None:
    """One-hot category, brand and price band, and name tokens, per item; None when no item has any."""
    prices = np.array([float(attributes.get(i, {}).get("price", np.nan)) for i in items])
    known = prices[~np.isnan(prices)]
    edges = np.quantile(known, np.linspace(0, 1, PRICE_BANDS + 1)[1:-1]) if len(known) else np.array([])
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for i, item in enumerate(items):
        found = attributes.get(item) or {}
        tokens = [f"{name}={found[name]}" for name in ("category", "brand") if found.get(name) is not None]
        if not np.isnan(prices[i]):
            tokens.append(f"price_band={int(np.searchsorted(edges, prices[i]))}")
        tokens += [f"word={w}" for w in TOKEN.findall(str(found.get("name") or "").lower())]
        for token in tokens:
            rows.append(i)
            cols.append(vocabulary.setdefault(token, len(vocabulary)))
    if not vocabulary:
        return None
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(items), len(vocabulary)))


def _metadata_vectors(features: sp.csr_matrix, vectors: np.ndarray, learn_from: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge regression of the well-observed items' vectors on their metadata, applied to every item."""
    x = features[learn_from]
    if x.shape[0] == 0:
        return np.zeros_like(vectors)
    gram = (x.T @ x).toarray() + ridge * np.eye(features.shape[1])
    weights = np.linalg.solve(gram, np.asarray(x.T @ vectors[learn_from]))
    return unit(np.asarray(features @ weights, dtype=np.float32))


def inverted_file(vectors: np.ndarray, lists: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spherical k-means centroids (fitted on a sample of INDEX_SAMPLE_PER_LIST items per list) and the items of
    each, grouped: (centroids, offsets, items)."""
    rng = np.random.default_rng(seed)
    lists = min(lists, len(vectors))
    sample = vectors[rng.choice(len(vectors), min(len(vectors), INDEX_SAMPLE_PER_LIST * lists), replace=False)]
    centroids = sample[rng.choice(len(sample), lists, replace=False)].copy()
    for _ in range(MAX_INDEX_ITERATIONS):
        assignment = _assign(sample, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assignment, sample)
        empty = np.linalg.norm(sums, axis=1) == 0
        sums[empty] = centroids[empty]
        centroids = unit(sums)
    assignment = _assign(vectors, centroids)
    order = np.argsort(assignment, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(assignment, minlength=lists))]).astype(np.int64)
    return centroids.astype(np.float32), offsets, order.astype(np.int64)


def _assign(vectors: np.ndarray, centroids: np.ndarray, batch: int = 8192) -> np.ndarray:
    return np.concatenate([np.argmax(vectors[s:s + batch] @ centroids.T, axis=1)
                           for s in range(0, len(vectors), batch)]) if len(vectors) else np.zeros(0, dtype=np.int64)


def _epoch(timestamp: Any) -> float | None:
    """An event's ISO 8601 timestamp in epoch seconds (None if it is not one): events are ordered by time, whatever
    offset each one's text was written with. Written here, not taken from tailor_lab.stream: TrainEmbeddings'
    build carries this module alone."""
    if not isinstance(timestamp, str):
        return None
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
