"""Candidate sources: each proposes items for a request from the rows it asks the pipeline to read.

A source is a small object with a `name`, the share of the candidate budget it may take alone, the
rows it needs given what the context knows so far (`keys`), and its proposals (`propose`: item ->
strength, best first). The pipeline asks every source of a route for keys before each read, so a
source may need rows that depend on other rows (co-occurrences of the shopper's recent items, say),
and merges the proposals under the candidate budget. A source whose proposals depend on the items
rows read so far says so with `uses_items = True`. New capabilities add a source here and list it
in a route; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import numpy as np

from tailor.associations import ItemAssociations, NextItems, RevisitOdds, intent_weighted
from tailor.embeddings import ItemVectors, Search, VectorFilters
from tailor.embeddings.online import stored_vector
from tailor.embeddings.ranking import DEFAULT_BLEND, EmbeddingBlend, blend_next_items, query_vector
from tailor.ranking.context import RankingContext
from tailor.ranking.rows import ITEM_FIELDS, ItemRecord, Partners
from tailor.session import ENGAGEMENTS

__all__ = ["CallerSource", "CandidateSource", "Candidates", "CategoryPopularSource", "EmbeddingSource", "PopularSource",
           "QuerySource", "RelatedSource", "SessionSource", "cooccurrence", "embedding_query", "gather_candidates",
           "merge_proposals"]

SESSION_CANDIDATES = 2000  # most next items the session source ranks (a route's candidate budget takes a share)
SHOPPER_VECTOR_WEIGHT = 0.5  # the shopper's lasting vector beside the session's (each of length 1) in a query


class CandidateSource(Protocol):
    name: str
    share: float  # at most this share of the candidate budget comes from this source alone

    def keys(self, ctx: RankingContext) -> Iterable[tuple[str, str]]:
        """(table, key) rows this source needs now; items rows of proposals are read by the pipeline."""
        ...

    def propose(self, ctx: RankingContext, limit: int) -> dict[str, float]:
        """Up to `limit` items, best first, with the source's strength for each (> 0)."""
        ...


@dataclass
class PopularSource:
    """The most popular items now: trend counters with time decay."""

    name: str = "popular"
    share: float = 1.0

    def keys(self, ctx: RankingContext) -> Iterable[tuple[str, str]]:
        return ()  # the pipeline reads the trend rows for every request

    def propose(self, ctx: RankingContext, limit: int) -> dict[str, float]:
        if ctx.popularity is None:
            return {}
        scores = ctx.popularity.scores
        return {item: scores[item] for item in ctx.popularity.ranked[:limit]}


@dataclass
class SessionSource:
    """What the shopper likely engages with next: tailor.associations.rank_next_items over the associations of
    their session's and recent items (the strongest candidates' own associations one step further), the
    recent items themselves as reminders, the pairs weighed by the session's intent. With the shop's item vectors
    (`vectors`), the reminders follow the revisit odds the vectors carry, by how far the session has come (without
    them a reminder is a constant bonus), and the ranking's best items are reordered by their cosine with the
    session's vector, the items nearest it joining them (tailor.embeddings.ranking.blend_next_items, as `blend`
    says). The next-item evaluation (tailor evaluate next-item) measures this ranking."""

    name: str = "session"
    share: float = 0.5
    vectors: Callable[[], ItemVectors | None] = field(default=lambda: None, repr=False, compare=False)
    blend: EmbeddingBlend = DEFAULT_BLEND
    _memo: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _blend_memo: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def keys(self, ctx: RankingContext) -> Iterable[tuple[str, str]]:
        # The anchors' rows first; once they are read, the rows of the candidates the ranking expands from.
        return [("associations", item) for item in self._first_step(ctx).keys]

    def propose(self, ctx: RankingContext, limit: int) -> dict[str, float]:
        vectors = self.vectors()
        odds = None if vectors is None else vectors.revisit_odds
        ranked = self._first_step(ctx).ranked(partial(_association_rows, ctx), SESSION_CANDIDATES,
                                              revisits=None if odds is None else _session_odds(ctx, odds))
        if ranked and vectors is not None and self.blend.weight > 0:  # nothing to go on from: nothing to blend
            ranked = self._blended(ctx, vectors, ranked)
        return dict(ranked[:limit])

    def _blended(self, ctx: RankingContext, vectors: ItemVectors, ranked: list[tuple[str, float]]
                 ) -> list[tuple[str, float]]:
        """`ranked` with its best `blend.reorders` items and the items nearest the session's vector in the blend's
        order, then the rest in theirs (as shares of the reordered items' total, the blend's scale)."""
        head = ranked[:self.blend.reorders]
        query, made_of = _embedding_query(ctx, vectors)
        filters = _vector_filters(ctx)
        # The pipeline asks for proposals after every read; the blend runs again only when its inputs changed.
        key = (id(vectors), made_of, filters, head)
        if self._blend_memo is not None and self._blend_memo[0] == key:
            blended = self._blend_memo[1]
        else:
            blended = blend_next_items(head, query, vectors, len(head) + self.blend.pool, blend=self.blend,
                                       filters=filters, probes=vectors.search.probes)
            self._blend_memo = (key, blended)
        total = sum(score for _, score in head)
        if len(ranked) == len(head) or total <= 0:
            return blended
        placed = {item for item, _ in blended}
        return blended + [(item, score / total) for item, score in ranked[len(head):] if item not in placed]

    def _first_step(self, ctx: RankingContext) -> NextItems:
        """The ranking's first step (the anchors' votes), taken again only when what it read changed: the
        session's items, its intent factors or the anchors' rows. The pipeline asks for keys and proposals
        after every read, and most reads bring other rows (the items', the expansion's)."""
        session_items, factors = _session_items(ctx), ctx.event_factors()
        memo = self._memo
        if memo is not None and memo[0] == session_items and memo[1] == factors and \
                all(ctx.associations.get(anchor) is row for anchor, row in zip(memo[2].anchors, memo[3])):
            return memo[2]
        first = NextItems(session_items, partial(_association_rows, ctx), factors=factors)
        # Rows are never changed in place: a row read again is a new object, so identity says "the same row".
        self._memo = (session_items, factors, first, [ctx.associations.get(anchor) for anchor in first.anchors])
        return first


def embedding_query(ctx: RankingContext, vectors: ItemVectors) -> np.ndarray | None:
    """The vector a request's nearest items are sought for, as the embedding source seeks them: the session's and
    the shopper's kept vectors, else the anchors' folded (see EmbeddingSource); None when there is none."""
    return _embedding_query(ctx, vectors)[0]


@dataclass
class EmbeddingSource:
    """The items nearest by cosine to the session's and the shopper's vectors as Ingest keeps them in their rows
    (tailor.embeddings.online; the shopper's weighing SHOPPER_VECTOR_WEIGHT of the session's), with the request's
    availability, price and category filters applied inside the search. Without such vectors (rows not yet folded
    with these item vectors, a session the caller describes, an item's related items), the query is folded from the
    anchors (related's item, the session's and the shopper's recent items; most recent weighing most).
    `vectors` gives the item vectors (loaded once per container); without them the source proposes nothing. It searches
    them as they say (ItemVectors.search: exact for few items, else their index), unless given a `search`."""

    name: str = "embedding"
    share: float = 0.05  # every candidate costs the feed its row and its features: few, the nearest
    vectors: Callable[[], ItemVectors | None] = field(default=lambda: None, repr=False, compare=False)
    search: Search | None = None  # how to search, whatever the vectors say (a benchmark compares searches)
    _memo: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def keys(self, ctx: RankingContext) -> Iterable[tuple[str, str]]:
        return ()

    def propose(self, ctx: RankingContext, limit: int) -> dict[str, float]:
        vectors = self.vectors()
        if vectors is None:
            return {}
        # Only its share of the budget can be taken, less what other sources also proposed: twice that suffices.
        limit = min(limit, max(1, 2 * int(limit * self.share)))
        filters = _vector_filters(ctx)
        # The pipeline asks for proposals after every read; the search runs again only when its inputs changed.
        query, made_of = _embedding_query(ctx, vectors)
        key = (id(vectors), made_of, filters, limit)
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        found: dict[str, float] = {}
        if query is not None:
            found = dict(vectors.nearest(query, limit, filters, probes=self.searching(vectors).probes))
        self._memo = (key, found)
        return found

    def explain(self) -> str | None:
        """The search the source runs, as explanations name it ("exact", "index, 16 probes"); None without vectors."""
        vectors = self.vectors()
        return None if vectors is None else str(self.searching(vectors))

    def searching(self, vectors: ItemVectors) -> Search:
        return self.search if self.search is not None else vectors.search


@dataclass
class QuerySource:
    """Items shoppers clicked, carted or bought after the same search (the request's or the session's)."""

    name: str = "query"
    share: float = 0.5

    def keys(self, ctx: RankingContext) -> Iterable[tuple[str, str]]:
        query = ctx.active_query()
        return [("queries", query)] if query else ()

    def propose(self, ctx: RankingContext, limit: int) -> dict[str, float]:
        query = ctx.active_query()
        found = ctx.queries.get(query) if query else None
        if found is None:
            return {}
        return {item: found.weights[item] for item in found.ranked[:limit]}


@dataclass
class CallerSource:
    """The caller's own list, in its order; the strength is its base score (or its rank, without scores)."""

    name: str = "caller"
    share: float = 1.0

    def keys(self, ctx: RankingContext) -> Iterable[tuple[str, str]]:
        return ()

    def propose(self, ctx: RankingContext, limit: int) -> dict[str, float]:
        items = ctx.request.items
        base = ctx.request.base_scores
        if base is None:
            strengths = [1.0 / np.log2(2.0 + i) for i in range(len(items))]
        else:
            low, high = min(base, default=0.0), max(base, default=0.0)
            spread = high - low
            # Min-max to (0, 1]: the lowest base score still counts a little.
            strengths = [(0.05 + 0.95 * (s - low) / spread) if spread > 0 else 1.0 for s in base]
        out: dict[str, float] = {}
        for item, strength in zip(items, strengths):
            out.setdefault(item, float(strength))
        return out


@dataclass
class RelatedSource:
    """The items most often engaged with in the same sessions as the request's item; with a session intent,
    the pairs weighed by it (tailor.associations.intent_weighted)."""

    name: str = "related"
    share: float = 1.0

    def keys(self, ctx: RankingContext) -> Iterable[tuple[str, str]]:
        item = ctx.request.item_id
        return [("associations", item), ("items", item)] if item else ()

    def propose(self, ctx: RankingContext, limit: int) -> dict[str, float]:
        item = ctx.request.item_id
        found = ctx.associations.get(item) if item else None
        if found is None:
            return {}
        counts, ranked = _weighted_partners(found, ctx.event_factors())
        return {other: counts[other] for other in ranked[:limit]}


@dataclass
class CategoryPopularSource:
    """Related's fallback, for an item with fewer co-occurrences than the request asks for: popular items of its
    category (of all categories when its category is unknown). An item Tailor never saw gets nothing."""

    name: str = "popular"
    share: float = 1.0
    uses_items: bool = True  # its proposals depend on the items rows read so far

    def keys(self, ctx: RankingContext) -> Iterable[tuple[str, str]]:
        return ()

    def propose(self, ctx: RankingContext, limit: int) -> dict[str, float]:
        item = ctx.request.item_id
        anchor = ctx.items.get(item) if item else None
        if ctx.popularity is None or anchor is None or not anchor.found:
            return {}
        scores = ctx.popularity.scores
        out: dict[str, float] = {}
        for other in ctx.popularity.ranked[:limit]:
            record = ctx.items.get(other)
            # Unread items stay proposed so their rows are read; the category check follows then.
            if other != item and (anchor.category is None or record is None or record.category == anchor.category):
                out[other] = scores[other]
        return out


@dataclass
class Candidates:
    """The merged candidates with their item columns: plain arrays, one row per candidate."""

    ids: list[str]
    strengths: dict[str, np.ndarray]  # source -> strength per candidate (0 where it did not propose)
    values: np.ndarray  # (n, len(ITEM_FIELDS)) float64
    categories: list[str | None]
    category_codes: np.ndarray  # int index into category_names, per candidate
    category_names: list[str | None]  # the request's distinct categories, None for unknown
    popularity: np.ndarray  # decayed popularity per candidate

    def __len__(self) -> int:
        return len(self.ids)

    def sources_of(self, indices: Sequence[int]) -> list[list[str]]:
        """The sources that proposed each of the candidates at `indices`."""
        names = list(self.strengths)
        if not names:
            return [[] for _ in indices]
        proposed = np.column_stack([self.strengths[name][indices] > 0 for name in names]).tolist()
        return [[name for name, found in zip(names, row) if found] for row in proposed]


def merge_proposals(proposals: list[tuple[str, float, dict[str, float]]], limit: int) -> list[str]:
    """Candidates in source order, each source adding at most its share of `limit` new items and the
    union at most `limit` (a source with share 1.0 fills what the others left)."""
    chosen: dict[str, None] = {}
    for _, share, proposed in proposals:
        room = limit - len(chosen)
        allowance = room if share >= 1.0 else min(int(limit * share), room)
        if allowance <= 0:
            continue
        before = len(chosen)
        for item in proposed:
            if item not in chosen:
                chosen[item] = None
                if len(chosen) - before >= allowance:
                    break
    return list(chosen)


def gather_candidates(ctx: RankingContext, chosen: list[str], proposals: dict[str, dict[str, float]],
                      records: dict[str, ItemRecord]) -> Candidates:
    """The chosen candidates that have item records, as arrays; `proposals` is source -> item -> strength."""
    ids = [item for item in chosen if item in records]
    rows = [records[item] for item in ids]
    values = np.array([r.values for r in rows], dtype=np.float64) if rows else np.empty((0, len(ITEM_FIELDS)))
    categories = [r.category for r in rows]
    codes = {c: k for k, c in enumerate(dict.fromkeys(categories))}
    category_codes = np.fromiter(map(codes.__getitem__, categories), dtype=np.int64, count=len(categories))
    scores = ctx.popularity.scores if ctx.popularity is not None else {}
    popularity = np.fromiter(map(scores.get, ids, [0.0] * len(ids)), dtype=np.float64, count=len(ids))
    strengths = {name: np.fromiter(map(found.get, ids, [0.0] * len(ids)), dtype=np.float64, count=len(ids))
                 for name, found in proposals.items()}
    return Candidates(ids, strengths, values, categories, category_codes, list(codes), popularity)


def _session_odds(ctx: RankingContext, odds: RevisitOdds) -> tuple[float, ...]:
    """The revisit odds of the request's session where it stands: its distinct items and engagements so far (a
    request without a session takes the odds over every context)."""
    session = ctx.session
    if session is None:
        return odds.overall
    return odds.of(len(session.items), sum(session.counts.get(kind, 0) for kind in ENGAGEMENTS))


def _vector_filters(ctx: RankingContext) -> VectorFilters:
    """The request's filters as a search of the item vectors applies them."""
    wanted = ctx.request.filters
    bought = frozenset(ctx.purchased_items()) if wanted.exclude_purchased else frozenset()
    return VectorFilters(available_only=wanted.available_only, min_price=wanted.min_price, max_price=wanted.max_price,
                         categories=wanted.categories, exclude=bought)


def _session_items(ctx: RankingContext) -> list[str]:
    """The anchors as tailor.associations.NextItems takes a session's items: most recent last."""
    return list(reversed(ctx.anchors()))


def _embedding_query(ctx: RankingContext, vectors: ItemVectors) -> tuple[np.ndarray | None, tuple]:
    """The embedding query and what it was made of (the rows' vectors' encodings, else the anchors, most recent
    last, as the update rule folds them), worked out again only when the session's or the shopper's row changed:
    the source asks after every read, and the similarity term asks again."""
    anchors = tuple(reversed(ctx.anchors()))
    # Rows are never changed in place: a row read again is a new object, so identity says "the same row".
    inputs = (vectors, ctx.session, ctx.shopper, getattr(ctx.session, "vector", None),
              getattr(ctx.shopper, "vector", None))
    memo = ctx.embedding_query
    if memo is not None and memo[0] == anchors and all(a is b for a, b in zip(memo[1], inputs)):
        return memo[2]
    kept = _kept_vectors(ctx, vectors)
    found = kept if kept is not None else (query_vector(vectors, ((item, "view") for item in anchors)), anchors)
    ctx.embedding_query = (anchors, inputs, found)
    return found


def _kept_vectors(ctx: RankingContext, vectors: ItemVectors) -> tuple[np.ndarray, tuple] | None:
    """The query from the session's and the shopper's rows' vectors, and what it was made of; None when neither row
    holds one of these item vectors' space, or the request's anchors are not the rows'."""
    if ctx.transient_session or ctx.request.route == "related":
        return None
    query, made_of = None, []
    for state, weight in ((ctx.session, 1.0), (ctx.shopper, SHOPPER_VECTOR_WEIGHT)):
        found = None if state is None else stored_vector(state.vector, vectors)
        if found is not None:
            part = (weight / float(np.linalg.norm(found))) * found
            query = part if query is None else query + part
            made_of.append(state.vector.get("v"))
    return None if query is None else (query, tuple(made_of))


def _association_rows(ctx: RankingContext, keys: Sequence[str]) -> dict[str, ItemAssociations]:
    """The association rows of `keys` read so far, as tailor.associations reads them."""
    out = {}
    for key in keys:
        found = ctx.associations.get(key)
        if found is not None:
            out[key] = ItemAssociations(key, found.counts, found.follows, found.total, found.follows_total,
                                        found.commits)
    return out


def _weighted_partners(found: Partners, factors: dict[str, float] | None) -> tuple[dict[str, float], Sequence[str]]:
    """An item's partners and their order, weighed by the session's blended intent factors when there are some."""
    if factors is None or not found.counts:
        return found.counts, found.ranked
    weighted = intent_weighted(found.counts, found.commits, factors)
    return weighted, sorted((k for k, v in weighted.items() if v > 0), key=lambda k: (-weighted[k], k))


def cooccurrence(ctx: RankingContext, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per item: its co-occurrence count with the anchors, each anchor weighted 1/(1 + recency rank),
    and its highest share of one anchor's co-occurrences."""
    weighted = np.zeros(len(ids))
    confidence = np.zeros(len(ids))
    zeros = [0.0] * len(ids)
    for rank, anchor in enumerate(ctx.anchors()):
        found = ctx.associations.get(anchor)
        if found is None or not found.counts:
            continue
        counts = np.fromiter(map(found.counts.get, ids, zeros), dtype=np.float64, count=len(ids))
        weighted += counts / (1.0 + rank)
        np.maximum(confidence, counts / found.total, out=confidence)
    return weighted, confidence

