"""What the API serves: feeds, re-ranked searches and lists, related items and profiles, from live state.

`Recommender` is built once per container (`Recommender.start` in Lambda): it holds the store, the
ranking model loaded from the registry (or the shipped default) and the pipeline with its row
cache, and answers each request with one pass through tailor.ranking.Pipeline.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tailor.catalog import field_sources
from tailor.clusters import AdaptiveFeed, ClusterPosteriors, ItemClusters, load_item_clusters
from tailor.clusters.bandit import shopper_appeal
from tailor.embeddings import ItemVectors, load_item_vectors
from tailor.events import Event, parse_event
from tailor.experiments.assignment import Assignment, assign
from tailor.experiments.definitions import Experiment
from tailor.experiments.feed_ids import CREDIT_SLOTS, new_feed_id
from tailor.experiments.interleaving import CREDIT_SCALE, interleave
from tailor.experiments.strategies import BUILT_IN, Strategy
from tailor.intent import MODEL_NAME as INTENT_MODEL
from tailor.intent import IntentFactors, IntentModel
from tailor.models import LazyModel, ModelRegistry, ReadAgain, ReadAgainModel, RegistryUnreadable, load_model
from tailor.ranking import (
    DEFAULT_ROUTES,
    MODEL_NAME,
    CommercialPerformance,
    ConversionPrior,
    Filters,
    Gathered,
    Pipeline,
    PurchaseProbability,
    RankedItem,
    RankingModel,
    Relevance,
    Request,
    Route,
    RowCache,
    Scorer,
)
from tailor.ranking.candidates import EmbeddingSource, SessionSource
from tailor.ranking.context import SESSION_GAP_SECONDS
from tailor.ranking.limits import MAX_N, RequestError
from tailor.ranking.rows import COUNT_FIELDS, item_record
from tailor.ranking.scoring import ProbabilityModel
from tailor.ranking.similarity import FEED_WEIGHT, Similarity
from tailor.session import SessionState
from tailor.shopper import ShopperState, predicted_ltv
from tailor.store.port import StateStore

__all__ = ["Ranking", "Recommender"]

logger = logging.getLogger(__name__)

PROFILE_RECENT_ITEMS = 20
PROFILE_CATEGORIES = 20
PROFILE_CLUSTERS = 3  # the clusters of highest prior appeal a profile describes
ADAPTIVE_POOL = 10  # an adaptive feed's bandit draws from this many ranked candidates per slot asked for
EXPERIMENT_SURFACES = ("feed", "search", "related")  # the routes experiments serve strategies on
STRATEGY_RANKER_RETRY_SECONDS = 300.0  # a strategy ranker the store failed to give is read again this long after


@dataclass
class Ranking:
    feed_id: str  # unique per response; clients echo it with the position in later events
    items: list[RankedItem]
    model: str  # "<name>:<version>" of the model that scored it
    round_trips: int  # DynamoDB round trips this request made
    intent: dict[str, float] | None = None  # the session intent the ranking was weighed by, if any
    assignment: Assignment | None = None  # the experiment and variant it was served in, if any
    strategy: str | None = None  # the strategy it was ranked by, when in an experiment
    probabilities: list[float] | None = None  # each slot's chance of its pick, when drawn (adaptive, interleaved)
    teams: list[str] | None = None  # an interleaved list's: the ranker ("A", "B") that put each slot's item there


class Recommender:
    def __init__(self, store: StateStore, model: ProbabilityModel, *, clock: Callable[[], float] = time.time,
                 max_candidates: int = 500, read_waves: int | None = 2, cache: RowCache | None = None,
                 weights: Mapping[str, Mapping[str, float]] | None = None, scorers: Sequence[Scorer] = (),
                 intent_model: IntentModel | None = None, factors: Callable[[], IntentFactors] | None = None,
                 profile_sections: Mapping[str, Callable[[ShopperState, SessionState | None], Any]] | None = None,
                 experiments: Callable[[float], Sequence[Experiment]] | None = None,
                 strategies: Callable[[], Mapping[str, Strategy]] | None = None,
                 rankers: Callable[[str], ProbabilityModel] | None = None,
                 exposures: Callable[[str, Ranking], None] | None = None,
                 item_vectors: Callable[[], ItemVectors | None] | None = None,
                 item_clusters: Callable[[], ItemClusters | None] | None = None):
        """`weights` overrides routes' blend weights ({"feed": {"commercial": .5, ...}}); `scorers` adds
        scorers beside the built-in commercial, probability and relevance ones (give them a weight).
        `intent_model` infers the intent of a request's session data and `factors` gives the intent scaling
        factors (default: the shipped ones) that weigh a session's related items and feed candidates.
        `profile_sections` adds sections to profiles: name -> function of the shopper and their current session.
        `experiments(now)` gives the live experiments: a request on their surface is served its shopper's variant's
        strategy (an interleaving experiment's shopper the team draft of its two variants' lists; strategies by
        name from `strategies()`, the built-in ones by default; `rankers(version)` loads a strategy's ranker
        version), and `exposures(feed_id, ranking)` logs what such a list held. `item_vectors()` gives the
        item vectors the routes' embedding sources search (None: they propose nothing) and their session sources
        blend with and take the revisit odds from. `item_clusters()` gives the
        published item clusters an adaptive strategy's feed draws its slots from (None: it serves the feed as ranked)
        and profiles describe."""
        self.store = store
        self.model = model
        self.clock = clock
        routes = dict(DEFAULT_ROUTES)
        for route, override in (weights or {}).items():
            if route not in routes:
                raise ValueError(f"unknown route {route!r} in weights")
            routes[route] = replace(routes[route], weights=dict(override))
        self._item_vectors = item_vectors
        if item_vectors is not None:
            routes = self._with_vectors(routes)
            # The feed weighs each candidate's cosine with the session's and shopper's vectors (0 without vectors).
            scorers = [*scorers, Similarity(item_vectors)]
            if "feed" not in (weights or {}):
                routes["feed"] = replace(routes["feed"], weights={**routes["feed"].weights, "similarity": FEED_WEIGHT})
        if factors is None:
            shipped = IntentFactors.default()
            factors = lambda: shipped  # noqa: E731
        self.intent_model = intent_model
        # Extra sections of a profile, each computed from the shopper and their current session (personas, ...).
        self.profile_sections = dict(profile_sections or {})
        self.pipeline = Pipeline(store, [CommercialPerformance(), PurchaseProbability(model), Relevance(), *scorers],
                                 routes=routes, cache=cache, max_candidates=max_candidates, read_waves=read_waves,
                                 intent_model=intent_model, factors=factors)
        self.experiments = experiments
        self.strategies = strategies or (lambda: BUILT_IN)
        self.rankers = rankers
        self.exposures = exposures
        self._extra_scorers = list(scorers)
        self.item_clusters = item_clusters or (lambda: None)
        self._adaptive: tuple[ItemClusters, AdaptiveFeed] | None = None
        # Per strategy version: its pipeline, the ranker it ranks with, and where the store failed to give its own
        # ranker, the read again that will (the current ranker stands in meanwhile).
        self._strategy_pipelines: dict[tuple[str, str], tuple[Pipeline, ProbabilityModel, ReadAgain | None]] = {}
        self._coin = random.Random()  # team draft's: which ranker picks first in each round of an interleaved list

    @classmethod
    def start(cls, store: StateStore, registry: ModelRegistry | None, *, warm: bool = True,
              **kwargs: Any) -> Recommender:
        """The current ranker and intent model from `registry` (or the shipped defaults without one). Build it
        once per container: it loads the ranker, reads the intent factors and, with `warm`, reads the popular
        items into its cache before the first request. The ranker's registry reads and the factors' read wait on
        threads of their own while the popular items are read, so that a cold start waits for the longest of them
        rather than their sum. The intent model, which only requests that describe their session (POST
        /items/{id}/related) use, is loaded by the first of them."""
        kwargs.setdefault("intent_model", LazyModel(INTENT_MODEL, registry, build=IntentModel.from_stored))
        vectors: Future[ReadAgain] | None = None  # each a callable giving the item vectors or None
        clusters: Future[ReadAgain] | None = None
        if registry is not None:
            kwargs.setdefault("rankers", functools.cache(
                lambda version: RankingModel.from_stored(registry.fetch(MODEL_NAME, version))))
        factors = kwargs.get("factors")
        strategies = kwargs.get("strategies")
        with ThreadPoolExecutor(max_workers=5, thread_name_prefix="recommender-start") as pool:
            # A registry that cannot be read at the start is read again a few minutes on (ReadAgain), rather than leave
            # the container on the shipped ranker, without item vectors or clusters, for its life.
            ranker = pool.submit(ReadAgainModel, lambda: load_model(MODEL_NAME, registry, build=RankingModel.from_stored,
                                                                    unreadable_raises=True),
                                 lambda: load_model(MODEL_NAME, build=RankingModel.from_stored))
            read = pool.submit(factors) if factors is not None else None  # read at start, not in a request
            # The feed strategies likewise: the first request served in an experiment need not wait for AppConfig.
            configured = pool.submit(strategies) if strategies is not None else None
            experiments = kwargs.get("experiments")
            live = pool.submit(experiments, time.time()) if experiments is not None else None
            if "item_vectors" not in kwargs:  # the published item vectors, for the embedding source
                vectors = pool.submit(ReadAgain, lambda: load_item_vectors(registry, unreadable_raises=True), _none)
            if "item_clusters" not in kwargs:  # the published item clusters, for adaptive feeds
                clusters = pool.submit(ReadAgain, lambda: load_item_clusters(registry, unreadable_raises=True), _none)
            if warm:
                # Warming reads rows, not scores: a recommender on the untrained prior fills the cache this one keeps.
                warming = cls(store, ConversionPrior(), **kwargs)
                kwargs["cache"] = warming.pipeline.cache
                try:
                    warming.pipeline.warm(warming.clock())
                except Exception:  # an empty or unreachable table must not stop the container from starting
                    logger.exception("could not warm the ranking cache")
            model = ranker.result()
            if model.read:  # the registry answered: the model itself, no stand-in on every request's path
                model = model.value
            if read is not None:
                read.result()
            if configured is not None:
                configured.result()
            if live is not None:
                live.result()
            if vectors is not None:
                kwargs["item_vectors"] = vectors.result()
            if clusters is not None:
                kwargs["item_clusters"] = clusters.result()
        return cls(store, model, **kwargs)

    # -- routes ---------------------------------------------------------------------------------------

    def feed(self, user_id: str, *, session_id: str | None = None, n: int = 20, filters: Filters = Filters(),
             explain: bool = False) -> Ranking:
        """The shopper's feed; an unknown shopper gets the popular items (cold start)."""
        return self._run(Request("feed", user_id=user_id, session_id=session_id, n=_n(n), filters=filters,
                                 explain=explain))

    def search(self, query: str, *, user_id: str | None = None, session_id: str | None = None, n: int = 20,
               filters: Filters = Filters(), explain: bool = False) -> Ranking:
        """The items shoppers engaged with after this search, re-ranked for the shopper; an unknown
        query has no such items and gets an empty list."""
        return self._run(Request("search", user_id=user_id, session_id=session_id, query=query, n=_n(n),
                                 filters=filters, explain=explain))

    def rerank(self, items: list[str], *, base_scores: list[float] | None = None, user_id: str | None = None,
               session_id: str | None = None, n: int | None = None, explain: bool = False) -> Ranking:
        """The caller's items re-ranked for the shopper (all of them unless `n`); no filters apply."""
        distinct = list(dict.fromkeys(items))
        return self._run(Request("rerank", user_id=user_id, session_id=session_id, items=tuple(items),
                                 base_scores=None if base_scores is None else tuple(float(s) for s in base_scores),
                                 n=len(distinct) if n is None else _n(n),
                                 filters=Filters(available_only=False), explain=explain))

    def related(self, item_id: str, *, user_id: str | None = None,
                session_events: Sequence[Event | dict[str, Any] | str | bytes] | None = None, n: int = 20,
                filters: Filters = Filters(), explain: bool = False) -> Ranking:
        """Items engaged with in the same sessions as `item_id`, ranked for the shopper and, when given,
        the session the caller describes (tailor.events events, or their JSON to be parsed here; folded here
        and never stored). The session's intent, inferred from those events, weighs the associations (a
        purchase-minded session gets the items bought and carted with `item_id`, an exploring one those
        viewed with it) and the blend. Where its co-occurrences are fewer than `n`, popular items of its category
        fill the list; an item Tailor never saw gets none."""
        events = tuple(parse_event(e) if isinstance(e, (dict, str, bytes)) else e for e in session_events or ())
        return self._run(Request("related", user_id=user_id, item_id=item_id, session_events=events, n=_n(n),
                                 filters=filters, explain=explain))

    def profile(self, user_id: str) -> dict[str, Any] | None:
        """What Tailor knows about a shopper, JSON-ready; None if it knows nothing."""
        row = self.store.read_many({"shoppers": [user_id]})["shoppers"].get(user_id)
        shopper = ShopperState.from_row(row) if row else None
        if shopper is None:
            return None
        now = self.clock()
        session = None
        if shopper.last_session_id:
            found = self.store.read_many({"sessions": [shopper.last_session_id]})["sessions"].get(shopper.last_session_id)
            session = SessionState.from_row(found) if found else None
        profile = _profile(shopper, row, session, now)
        profile.update({name: section(shopper, session) for name, section in self.profile_sections.items()})
        item_clusters = self.item_clusters()
        if item_clusters is not None:
            profile["clusters"] = _profile_clusters(item_clusters, shopper, session)
        return profile

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An item as the ranking serves it, JSON-ready: each catalog field and where it comes from, the counts
        popularity reads, its cluster and its vector's kind; None if Tailor holds nothing about it."""
        row = self.store.read_many({"items": [item_id]})["items"].get(item_id)
        if row is None:
            return None
        record = item_record(item_id, row)
        clusters = self.item_clusters()
        vectors = self._item_vectors() if self._item_vectors is not None else None
        at = vectors.row(item_id) if vectors is not None else None
        return {"item_id": item_id, "fields": field_sources(row),
                "counts": {name: float(record.values[i]) for i, name in enumerate(COUNT_FIELDS)},
                "cluster": clusters.cluster_of(item_id) if clusters is not None else None,
                "vector": None if at is None else "metadata" if vectors.metadata_only[at] else "engagements"}

    def _run(self, request: Request) -> Ranking:
        now = self.clock()
        assignment = None
        if self.experiments is not None and request.route in EXPERIMENT_SURFACES:
            assignment = assign(self.experiments(now), request.route, user_id=request.user_id,
                                session_id=request.session_id)
        if assignment is not None and assignment.interleaved:
            ranking = self._interleaved(request, now, assignment)
        else:
            strategy = None
            if assignment is not None:
                strategy = self._strategy(assignment.variant.strategy if assignment.variant is not None else "default",
                                          assignment.experiment.experiment_id)
            feed_id = (new_feed_id() if assignment is None else
                       new_feed_id(assignment.experiment.experiment_id, assignment.variant_name, assignment.unit_kind))
            gathered, items, probabilities, model = self._ranked(request, now, strategy, feed_id)
            ranking = Ranking(feed_id, items, model.label, gathered.ctx.round_trips, gathered.ctx.intent_mixture(),
                              assignment, None if strategy is None else strategy.name, probabilities)
        if assignment is not None and self.exposures is not None:
            try:
                self.exposures(ranking.feed_id, ranking)
            except Exception:  # the shopper gets their list; the exposure log misses one, which the log says
                logger.exception("exposure not logged", extra={"feed_id": ranking.feed_id})
        return ranking

    def _ranked(self, request: Request, now: float, strategy: Strategy | None, feed_id: str,
                gathered: Gathered | None = None
                ) -> tuple[Gathered, list[RankedItem], list[float] | None, ProbabilityModel]:
        """The request's list as `strategy` ranks it (None: the default pipeline): what was gathered (or `gathered`,
        what a pipeline that gathers alike gathered for it), the items, each slot's probability when a bandit drew
        them (an adaptive feed), and the ranker."""
        pipeline, model = (self.pipeline, self.model) if strategy is None else self._pipeline(strategy)
        if gathered is None:
            gathered = pipeline.gather(request, now)
        adaptive = self._adaptive_feed(strategy, request.route)
        if adaptive is None:
            return gathered, pipeline.rank(gathered), None, model
        # The best eligible candidates ranked; the session's bandit fills the slots from them. The clusters the
        # bandit draws are the list's variety: ranked without the diversity term, every candidate takes its score
        # alone rather than one greedy pick after another.
        ctx = gathered.ctx
        weights = {term: w for term, w in pipeline.weights(ctx).items() if term != "diversity"}
        items, probabilities = adaptive.order(
            pipeline.rank(gathered, n=ADAPTIVE_POOL * request.n, weights=weights), request.n,
            traits=ctx.shopper.personas.get("traits") if ctx.shopper is not None else None,
            categories=ctx.shopper.category_affinity if ctx.shopper is not None else None,
            session_clusters=ctx.session.clusters if ctx.session is not None else None, feed_id=feed_id,
            explain=request.explain)
        return gathered, items, probabilities, model

    def _interleaved(self, request: Request, now: float, assignment: Assignment) -> Ranking:
        """The team draft of the interleaving experiment's two variants' lists (A: the first variant), what a click
        on each slot earns carried in the feed id; each slot's probability is its item's there over team draft's
        coins."""
        experiment = assignment.experiment
        strategies = [self._strategy(variant.strategy, experiment.experiment_id) for variant in experiment.variants]
        first = self._ranked(request, now, strategies[0], "")
        # Strategies that differ only in how they score (weights, ranker, terms) rank one gathering of candidates.
        alike = self._pipeline(strategies[0])[0].gathers_like(self._pipeline(strategies[1])[0], request.route)
        ranked = [first, self._ranked(request, now, strategies[1], "", gathered=first[0] if alike else None)]
        by_id = {item.item_id: item for _, items, _, _ in reversed(ranked) for item in items}
        ranking_a, ranking_b = ([item.item_id for item in items] for _, items, _, _ in ranked)
        served = interleave(ranking_a, ranking_b, request.n, self._coin, CREDIT_SLOTS)
        teams = [team for _, team in served.merged]
        feed_id = new_feed_id(experiment.experiment_id, unit_kind=assignment.unit_kind, credits=served.credits,
                              scale=CREDIT_SCALE)
        labels = list(dict.fromkeys(model.label for _, _, _, model in ranked))
        gathered = ranked[0][0]
        return Ranking(feed_id, [by_id[item_id] for item_id, _ in served.merged], " / ".join(labels),
                       gathered.ctx.round_trips + (0 if alike else ranked[1][0].ctx.round_trips),
                       gathered.ctx.intent_mixture(), assignment,
                       " / ".join(strategy.name for strategy in strategies),
                       [round(p, 6) for p in served.probabilities], teams)

    def _strategy(self, name: str, experiment_id: str) -> Strategy:
        """The strategy of that name; the default when the configuration no longer defines it."""
        strategy = self.strategies().get(name)
        if strategy is None:  # a strategy taken out of the configuration: its shoppers get the default
            logger.warning("strategy %r of experiment %r is not defined; serving the default", name, experiment_id)
            strategy = BUILT_IN["default"]
        return strategy

    def _adaptive_feed(self, strategy: Strategy | None, route: str) -> AdaptiveFeed | None:
        """The adaptive feed a strategy serves `route` with: None unless the strategy is adaptive, the route is a
        feed it changes and clusters are published."""
        if strategy is None or not strategy.adaptive or route != "feed" or route not in strategy.surfaces:
            return None
        clusters = self.item_clusters()
        if clusters is None:
            return None
        if self._adaptive is None or self._adaptive[0] is not clusters:
            self._adaptive = (clusters, AdaptiveFeed(clusters))
        return self._adaptive[1]

    def _with_vectors(self, routes: dict[str, Route]) -> dict[str, Route]:
        """`routes` with the item vectors in their embedding and session sources (as they are: without item
        vectors). A route whose sources have them already is kept as it is, so that a strategy serving the default's
        sources gathers as the default does (Pipeline.gathers_like)."""
        vectors = self._item_vectors
        if vectors is None:
            return routes

        def sourced(source: Any) -> Any:
            if isinstance(source, EmbeddingSource | SessionSource) and source.vectors is not vectors:
                return replace(source, vectors=vectors)
            return source

        out = {}
        for name, route in routes.items():
            sources = tuple(map(sourced, route.sources))
            kept = all(new is old for new, old in zip(sources, route.sources))
            out[name] = route if kept else replace(route, sources=sources)
        return out

    def _pipeline(self, strategy: Strategy) -> tuple[Pipeline, ProbabilityModel]:
        """The pipeline a strategy ranks with (its routes, its ranker) and its ranker: one per strategy version,
        sharing the store and the row cache with the default one. A pipeline ranks with one ranker throughout, so a
        list is scored by the ranker it is labelled with."""
        key = (strategy.name, repr(strategy.describe()))
        found = self._strategy_pipelines.get(key)
        if found is not None:
            pipeline, model, pending = found
            if pending is None or pending() is model:  # calling it starts the read again once it is due
                return pipeline, model
            model, pending = pending.value, None  # its own ranker, read again: ranked with from this request on
        elif strategy.ranker is None or self.rankers is None:
            model = self.model
            pending = None
        else:
            model, pending = self._strategy_ranker(strategy)
        base = self.pipeline
        routes = self._with_vectors({route: strategy.route(route, base.routes[route]) for route in base.routes})
        pipeline = Pipeline(self.store, [CommercialPerformance(), PurchaseProbability(model), Relevance(),
                                         *self._extra_scorers],
                            routes=routes, cache=base.cache, max_candidates=base.max_candidates,
                            read_waves=base.read_waves, intent_model=base.intent_model, factors=base.factors,
                            ltv_strength=strategy.ltv_strength_given(base.ltv_strength))
        self._strategy_pipelines[key] = (pipeline, model, pending)
        return pipeline, model

    def _strategy_ranker(self, strategy: Strategy) -> tuple[ProbabilityModel, ReadAgain | None]:
        """The ranker a strategy names, or the current one: for good where that version cannot be used, and where
        the store failed to give it, until the read again it comes with (ReadAgain: off the request, 300 s on and
        again while the store fails) has it."""
        def load() -> ProbabilityModel:
            try:
                return self.rankers(strategy.ranker)
            except (LookupError, ValueError):  # no such version, or not one this code reads: reading again won't mend it
                raise
            except Exception as exc:  # the store, now
                raise RegistryUnreadable(f"ranker {strategy.ranker!r} of strategy {strategy.name!r} not loaded: "
                                         f"{exc}") from exc

        try:
            ranker = ReadAgain(load, lambda: self.model, retry_seconds=STRATEGY_RANKER_RETRY_SECONDS,
                               clock=self.clock)
        except (LookupError, ValueError):
            logger.exception("ranker %r of strategy %r cannot be used; ranking with the current one",
                             strategy.ranker, strategy.name)
            return self.model, None
        return ranker.value, None if ranker.read else ranker


def _none() -> None:
    return None


def _n(n: int) -> int:
    if not 1 <= n <= MAX_N:
        raise RequestError("n", f"must be between 1 and {MAX_N}")
    return n


def _profile(shopper: ShopperState, row: Mapping[str, Any], session: SessionState | None, now: float) -> dict[str, Any]:
    affinity = sorted(shopper.category_affinity.items(), key=lambda kv: (-kv[1], kv[0]))[:PROFILE_CATEGORIES]
    last_purchase = shopper.last_purchase_at
    return {
        "user_id": shopper.user_id,
        "first_seen": _iso(shopper.first_seen),
        "last_seen": _iso(shopper.last_seen),
        "events": shopper.events,
        "counts": dict(sorted(shopper.counts.items())),
        "sessions": shopper.sessions,
        "category_affinity": {category: round(value, 3) for category, value in affinity},
        "rfm": {
            "recency_days": None if last_purchase is None else round(max(now - last_purchase, 0.0) / 86400.0, 3),
            "frequency": shopper.transactions,
            "monetary": round(shopper.revenue, 2),
            "purchases": shopper.purchases,
            "units": shopper.units,
            "first_purchase_at": _iso(shopper.first_purchase_at),
            "last_purchase_at": _iso(last_purchase),
        },
        "recent_items": list(reversed(shopper.recent_items))[:PROFILE_RECENT_ITEMS],
        "referral_sources": dict(sorted(shopper.referral_sources.items())),
        "referred_by_shopper": shopper.referred_by_shopper,
        "referrals_sent": int(row.get("referrals_sent", 0) or 0),
        "profile": dict(shopper.profile),
        "ltv": predicted_ltv(row),
        "current_session": None if session is None else {
            "session_id": session.session_id,
            "active": now - session.last_seen <= SESSION_GAP_SECONDS,
            "started_at": _iso(session.started_at),
            "last_seen": _iso(session.last_seen),
            "events": session.events,
            "counts": dict(sorted(session.counts.items())),
            "recent_items": list(reversed(session.items))[:PROFILE_RECENT_ITEMS],
            "categories": list(reversed(session.categories)),
            "last_query": session.last_query,
            "refinements": session.refinements,
            "cart_units": session.cart_units,
            "purchased_units": session.purchased_units,
            "revenue": round(session.revenue, 2),
            "referral_source": session.referral_source,
            "intent": dict(session.intent),
        },
    }


def _profile_clusters(clusters: ItemClusters, shopper: ShopperState, session: SessionState | None) -> dict[str, Any]:
    """The profile's "clusters" section: the clusters of highest prior appeal to the shopper (their traits against
    the clusters', and the categories they engage with), and the clusters the current session was shown, each with its clicks and ignores so far; each
    with its traits and top items."""
    prior = shopper_appeal(clusters, shopper.personas.get("traits"), categories=shopper.category_affinity)
    best = [{**clusters.describe(clusters.ids[i], items=5), "prior": round(float(prior[i]), 5)}
            for i in np.argsort(-prior, kind="stable")[:PROFILE_CLUSTERS]]
    evidence = ClusterPosteriors.read(session.clusters).evidence if session is not None else {}
    shown = []
    for cluster_id, counts in sorted(evidence.items(), key=lambda kv: (-float(kv[1][0]), float(kv[1][1]), kv[0])):
        if cluster_id not in clusters.index:
            continue  # a cluster a rebuild retired
        shown.append({**clusters.describe(cluster_id, items=5), "clicks": float(counts[0]),
                      "ignores": float(counts[1])})
    return {"clusters": len(clusters.ids), "best_for_shopper": best, "session": shown}


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")
