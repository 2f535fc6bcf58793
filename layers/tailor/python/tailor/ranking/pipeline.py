"""The ranking pipeline every route runs: read state -> candidates -> features -> scores -> filters ->
diversity -> top N.

Reads. A request reads in waves: each wave is one BatchGetItem (at most `wave_keys` keys) over every
table it needs, planned from what earlier waves returned: first the shopper, the session and the
trend rows, with whatever the request itself names (its query, the caller's items, related's item);
then the rows those point to (co-occurrences of the shopper's recent items, the candidates' items
rows). Items, associations and queries rows, and the decayed popularity, come from a short-lived
in-container cache (tailor.ranking.rows.RowCache) when they can. With `read_waves` = 2 a request
never makes more than two round trips: candidates whose items rows would need a third are left out
of this response (a caller's list is kept, ranked as items without history) and remembered, and
later requests read them with the spare room of their own waves. Training runs the same pipeline
without a budget, so every candidate is read.

Routes. A route lists its candidate sources (tailor.ranking.candidates), fallback sources whose items
follow theirs when they propose fewer than the request asks for, and its blend weights
(tailor.ranking.scoring). Capabilities extend the pipeline by adding sources, feature groups and
scorers, not by writing another pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailor.intent import IntentFactors
from tailor.popularity import trend_keys
from tailor.ranking.candidates import (
    CallerSource,
    Candidates,
    CandidateSource,
    CategoryPopularSource,
    EmbeddingSource,
    PopularSource,
    QuerySource,
    RelatedSource,
    SessionSource,
    gather_candidates,
    merge_proposals,
)
from tailor.ranking.context import RankingContext, Request
from tailor.ranking.diversity import diversify
from tailor.ranking.features import candidate_features
from tailor.ranking.filters import filter_mask
from tailor.ranking.rows import RowCache, item_record, partners, popularity, query_counts
from tailor.ranking.scoring import DEFAULT_WEIGHTS, Scorer, intent_adjusted, ltv_adjusted
from tailor.session import SessionState
from tailor.shopper import ShopperState, predicted_ltv
from tailor.store.port import StateStore

__all__ = ["DEFAULT_ROUTES", "Gathered", "Pipeline", "RankedItem", "Route"]

BATCH_KEYS = 100  # keys one BatchGetItem call takes
TREND_DAYS = 7
HALF_LIFE_DAYS = 2.0
CACHE_TTL_SECONDS: dict[str, float] = {"items": 120.0, "associations": 120.0, "queries": 120.0, "popularity": 120.0}
_PARSERS = {"items": item_record, "associations": partners, "queries": lambda key, row: query_counts(row)}


@dataclass(frozen=True)
class Route:
    sources: tuple[CandidateSource, ...]
    weights: Mapping[str, float]
    fallback: tuple[CandidateSource, ...] = ()


DEFAULT_ROUTES: dict[str, Route] = {
    "feed": Route((SessionSource(), QuerySource(share=0.3), EmbeddingSource(), PopularSource()), DEFAULT_WEIGHTS["feed"]),
    "search": Route((QuerySource(share=1.0),), DEFAULT_WEIGHTS["search"]),
    "rerank": Route((CallerSource(),), DEFAULT_WEIGHTS["rerank"]),
    "related": Route((RelatedSource(),), DEFAULT_WEIGHTS["related"], fallback=(CategoryPopularSource(),)),
}


@dataclass
class RankedItem:
    item_id: str
    score: float
    sources: list[str]
    parts: dict[str, float] | None = None  # with explain: the blend's terms, weights and raw values
    cluster: dict[str, Any] | None = None  # with explain, in an adaptive feed: its cluster and why (tailor.clusters)
    search: str | None = None  # with explain, for an item a searching source proposed: its search ("exact", ...)


@dataclass
class Gathered:
    """A request's candidates with their features, before scoring."""

    ctx: RankingContext
    candidates: Candidates
    features: np.ndarray
    left_out: list[str] = field(default_factory=list)  # proposed, but their rows did not fit the read budget


class Pipeline:
    def __init__(self, store: StateStore, scorers: Sequence[Scorer], *, routes: Mapping[str, Route] = DEFAULT_ROUTES,
                 cache: RowCache | None = None, max_candidates: int = 500, read_waves: int | None = 2,
                 wave_keys: int | None = BATCH_KEYS, prefetch: bool = True, trend_days: int = TREND_DAYS,
                 half_life_days: float = HALF_LIFE_DAYS, intent_model: Any = None,
                 factors: Callable[[], IntentFactors] | None = None, ltv_strength: float = 0.0):
        """`intent_model` (tailor.intent.IntentModel) infers the intent of a request's session data; `factors`
        gives the intent scaling factors in force. With both, a session's intent weighs its association
        candidates and its route's blend weights (tailor.ranking.scoring.intent_adjusted). `ltv_strength` above 0
        weighs the purchase-probability term by the shopper's predicted LTV (tailor.ranking.scoring.ltv_adjusted;
        off by default)."""
        if max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")
        self.store = store
        self.scorers = list(scorers)
        self.routes = dict(routes)
        self.cache = cache if cache is not None else RowCache(CACHE_TTL_SECONDS)
        self.max_candidates = max_candidates
        self.read_waves = read_waves
        self.wave_keys = wave_keys
        self.prefetch = prefetch
        self.trend_days = trend_days
        self.half_life_days = half_life_days
        self.intent_model = intent_model
        self.factors = factors
        self.ltv_strength = ltv_strength

    # -- the stages ----------------------------------------------------------------------------------

    def gather(self, request: Request, now: float) -> Gathered:
        """Read what the request needs and return its candidates with their features."""
        # A request's session data is folded once, with the intent model's filter when its intent is wanted.
        scores_intent = self.factors is not None and self.intent_model is not None and bool(request.session_events)
        ctx = RankingContext(request, now, intent_filter=self.intent_model.filter if scores_intent else None)
        if self.factors is not None:
            ctx.factors = self.factors()
            if scores_intent and ctx.session is not None:
                ctx.intent = self.intent_model.probabilities(ctx.session)  # one model call per request
        route = self.routes[request.route]
        waves = 0
        while True:
            plan = self._plan(ctx, route)
            if not plan:
                break
            if self.read_waves is not None and waves >= self.read_waves:
                for table, key in plan:
                    if table in _PARSERS:
                        self.cache.want(table, key)
                break
            # Keys past one call's worth wait for the next wave (or, after the last, for later requests).
            self._read(ctx, plan if self.wave_keys is None else plan[:self.wave_keys])
            waves += 1
        chosen, proposals = self._choose(ctx, route)
        records = ctx.items
        if request.route == "rerank":
            # The caller's items stay in the answer even when their rows were not read in time.
            records = {**{item: item_record(item, None) for item in request.items}, **ctx.items}
        candidates = gather_candidates(ctx, chosen, proposals, records)
        left_out = [item for item in chosen if item not in records]
        return Gathered(ctx, candidates, candidate_features(ctx, candidates), left_out)

    def gathers_like(self, other: Pipeline, route: str) -> bool:
        """Whether `other` gathers a request on `route` as this pipeline does (the same sources, store, cache, reads
        and intent), so that one gathering serves both pipelines' rankings."""
        mine, theirs = self.routes[route], other.routes[route]
        return (mine.sources is theirs.sources and mine.fallback is theirs.fallback and self.store is other.store
                and self.cache is other.cache and self.intent_model is other.intent_model
                and self.factors is other.factors and _gathering_settings(self) == _gathering_settings(other))

    def blend(self, gathered: Gathered, *, weights: Mapping[str, float] | None = None,
              scorers: Sequence[Scorer] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Each candidate's weighted sum of scorer terms (diversity aside), and the terms and raw values."""
        ctx, candidates = gathered.ctx, gathered.candidates
        if weights is None:
            weights = self.weights(ctx)
        base = np.zeros(len(candidates))
        parts: dict[str, np.ndarray] = {}
        if len(candidates) == 0:
            return base, parts
        for scorer in self.scorers if scorers is None else scorers:
            weight = float(weights.get(scorer.name, 0.0))
            if weight == 0.0:
                continue
            term, raw = scorer.score(ctx, candidates, gathered.features)
            base += weight * term
            parts[scorer.name] = term
            parts.update(raw)
        return base, parts

    def rank(self, gathered: Gathered, *, n: int | None = None, weights: Mapping[str, float] | None = None,
             scorers: Sequence[Scorer] | None = None, explain: bool | None = None) -> list[RankedItem]:
        """Score, filter and diversify the gathered candidates; the top `n` (the request's by default)."""
        ctx, candidates = gathered.ctx, gathered.candidates
        request = ctx.request
        if weights is None:
            weights = self.weights(ctx)
        explain = request.explain if explain is None else explain
        n = request.n if n is None else n
        if len(candidates) == 0 or n <= 0:
            return []
        base, parts = self.blend(gathered, weights=weights, scorers=scorers)
        seen_items = ctx.seen_items()
        seen = np.fromiter(map(seen_items.__contains__, candidates.ids), dtype=bool, count=len(candidates))
        diversity_weight = float(weights.get("diversity", 0.0))
        order, diversity = diversify(base, candidates.category_codes, seen, diversity_weight, n,
                                     filter_mask(request.filters, ctx, candidates))
        route = self.routes[request.route]
        # Sources that search (the embedding source) name how, for explanations: "exact", "index, 16 probes".
        searches = {source.name: source.explain() for source in (*route.sources, *route.fallback)
                    if hasattr(source, "explain")} if explain else {}
        ranked = []
        scores = [round(score, 6) for score in (base[order] + diversity_weight * diversity).tolist()]
        for i, d, score, sources in zip(order.tolist(), diversity.tolist(), scores, candidates.sources_of(order)):
            explained = search = None
            if explain:
                search = next((searches[name] for name in sources if searches.get(name)), None)
                explained = {name: round(float(values[i]), 6) for name, values in parts.items()}
                if diversity_weight:
                    explained["diversity"] = round(d, 6)
                explained.update({f"weight_{name}": float(w) for name, w in weights.items() if w})
            ranked.append(RankedItem(candidates.ids[i], score, sources, explained, search=search))
        return ranked

    def weights(self, ctx: RankingContext) -> dict[str, float]:
        """The request's blend weights: its route's, for its session's intent and, if asked, its shopper's LTV."""
        weights = intent_adjusted(self.routes[ctx.request.route].weights, ctx.event_factors())
        if not self.ltv_strength:
            return weights
        return ltv_adjusted(weights, predicted_ltv(ctx.shopper_row), self.ltv_strength)

    def warm(self, now: float, items: int | None = None) -> int:
        """Fill the cache with the popularity and the most popular items' rows, outside any request;
        returns the round trips it took."""
        ctx = RankingContext(Request("feed"), now)
        plan = self._plan(ctx, self.routes["feed"])
        trends = [k for k in plan if k[0] == "trends"]
        if trends:
            self._read(ctx, trends, spare=False)
        if ctx.popularity is not None:
            wanted = [("items", i) for i in ctx.popularity.ranked[:items or self.max_candidates]]
            for start in range(0, len(wanted), BATCH_KEYS):
                self._read(ctx, wanted[start:start + BATCH_KEYS], spare=False)
        return ctx.round_trips

    # -- reads ---------------------------------------------------------------------------------------

    def _plan(self, ctx: RankingContext, route: Route) -> list[tuple[str, str]]:
        """The rows still to read, most needed first; rows found in the cache are taken from it."""
        plan: dict[tuple[str, str], None] = {}

        def need(table: str, key: str) -> None:
            if (table, key) in ctx.resolved or (table, key) in plan:
                return
            if table in _PARSERS:
                hit, value = self.cache.get(table, key, ctx.now)
                if hit:
                    _absorb(ctx, table, key, value)
                    return
            plan[(table, key)] = None

        request = ctx.request
        if request.user_id:
            need("shoppers", request.user_id)
        session_id = ctx.session_id
        if session_id:
            need("sessions", session_id)
        if ctx.popularity is None:
            hit, value = self.cache.get("popularity", ctx.today.isoformat(), ctx.now)
            if hit:
                ctx.popularity = value
                ctx.version += 1
            else:
                for key in trend_keys(ctx.today, self.trend_days):
                    need("trends", key)
        for source in (*route.sources, *route.fallback):
            for table, key in source.keys(ctx):
                need(table, key)
        # Items rows of the anchors (for their prices) and of the candidates, looked up in the cache at once.
        chosen, _ = self._choose(ctx, route)
        items = [i for i in dict.fromkeys([*ctx.anchors(), *chosen]) if i not in ctx.items and ("items", i) not in plan]
        cached, missing = self.cache.get_many("items", items, ctx.now)
        ctx.items.update(cached)
        ctx.resolved.update(("items", i) for i in cached)
        plan.update(dict.fromkeys(("items", i) for i in missing))
        return list(plan)

    def _read(self, ctx: RankingContext, keys: list[tuple[str, str]], *, spare: bool = True) -> None:
        wanted: dict[str, list[str]] = {}
        for table, key in keys:
            wanted.setdefault(table, []).append(key)
        extra: list[tuple[str, str]] = []
        if spare and self.prefetch and self.wave_keys is not None and len(keys) < self.wave_keys:
            # Room left in this call reads rows earlier requests could not; they only go to the cache.
            asked = set(keys)
            extra = [k for k in self.cache.take_wanted(self.wave_keys - len(keys)) if k not in asked]
            for table, key in extra:
                wanted.setdefault(table, []).append(key)
        calls = getattr(self.store, "calls", None)
        before = calls["read"] if calls is not None else 0
        rows = self.store.read_many(wanted)
        after = calls["read"] if calls is not None else 0
        ctx.round_trips += (after - before) if calls is not None else math.ceil(sum(map(len, wanted.values())) / BATCH_KEYS)

        trend_rows = {}
        for table, key in keys:
            ctx.resolved.add((table, key))
            row = rows.get(table, {}).get(key)
            if table == "trends":
                if row is not None:
                    trend_rows[key] = row
            elif table in _PARSERS:
                value = _PARSERS[table](key, row)
                self.cache.put(table, key, value, ctx.now, weight=len(row or ()))
                _absorb(ctx, table, key, value)
            else:
                _absorb(ctx, table, key, row)
        if any(table == "trends" for table, _ in keys):
            ctx.popularity = popularity(trend_rows, ctx.today, self.half_life_days)
            ctx.version += 1
            self.cache.put("popularity", ctx.today.isoformat(), ctx.popularity, ctx.now,
                           weight=sum(map(len, trend_rows.values())))
        for table, key in extra:
            row = rows.get(table, {}).get(key)
            self.cache.put(table, key, _PARSERS[table](key, row), ctx.now, weight=len(row or ()))

    def _choose(self, ctx: RankingContext, route: Route) -> tuple[list[str], dict[str, dict[str, float]]]:
        """The candidates given what the context holds now, and every source's proposals."""
        # Proposals change with the rows that arrive; items rows matter only to sources that say so.
        sources = route.sources + route.fallback
        version = (ctx.version, len(ctx.items) if any(getattr(s, "uses_items", False) for s in sources) else 0)
        if ctx.chosen is not None and ctx.chosen[0] == version:
            return ctx.chosen[1]
        limit = max(self.max_candidates, len(ctx.request.items))
        proposals = [(s.name, s.share, s.propose(ctx, limit)) for s in route.sources]
        if route.fallback and len({i for _, _, p in proposals for i in p} - {ctx.request.item_id}) < ctx.request.n:
            # Too few to fill the list asked for: the fallback's items follow the sources' own.
            proposals += [(s.name, s.share, s.propose(ctx, limit)) for s in route.fallback]
        anchor = ctx.request.item_id if ctx.request.route == "related" else None
        if anchor:
            proposals = [(name, share, {k: v for k, v in p.items() if k != anchor}) for name, share, p in proposals]
        by_source: dict[str, dict[str, float]] = {}
        for name, _, proposed in proposals:
            found = by_source.get(name)
            if found is None:
                by_source[name] = proposed
                continue
            merged = by_source[name] = dict(found)  # two sources of one name: keep each item's best strength
            for item, strength in proposed.items():
                if strength > merged.get(item, 0.0):
                    merged[item] = strength
        result = (merge_proposals(proposals, limit), by_source)
        ctx.chosen = (version, result)
        return result


def _absorb(ctx: RankingContext, table: str, key: str, value: Any) -> None:
    if table == "shoppers":
        ctx.shopper_row = value
        ctx.shopper = ShopperState.from_row(value) if value else None
    elif table == "sessions":
        if not ctx.transient_session:
            ctx.session = SessionState.from_row(value) if value else None
    elif table == "items":
        ctx.items[key] = value
        ctx.resolved.add((table, key))
        return
    elif table == "associations":
        ctx.associations[key] = value
    elif table == "queries":
        ctx.queries[key] = value
    ctx.resolved.add((table, key))
    ctx.version += 1


def _gathering_settings(pipeline: Pipeline) -> tuple:
    return (pipeline.max_candidates, pipeline.read_waves, pipeline.wave_keys, pipeline.prefetch, pipeline.trend_days,
            pipeline.half_life_days)
