"""Simulated shoppers in a closed loop with a feed strategy: each asks for a feed, looks down it, clicks, buys.

    tailor simulate online [--strategy current --strategy popularity --strategy random --strategy oracle
                            --strategy embeddings --strategy embeddings-no-ignores --strategy ltv]
                           [--surface feed|search|related] [--shoppers 500] [--history-days 28] [--visits 3]
                           [--n 20] [--seed 7]
                           [--similarity-weight 1.0] [--unseen-share 0.25] [--json bench-results/online.json]

The shop's history is a default simulation of the shoppers (`--history-days`); then each shopper comes back
`--visits` times, a day apart, asks the strategy for a feed of `--n` items, sees it (an impression echoing the
feed's id) and acts on it as the choice model says (parameters.py): it looks down the feed with the feed surface's
examination probability, clicks an examined item by its utility to it (a click and a view echoing feed_id and
position), goes on down the feed after a click with probability `feed_continue`, carts what it likes enough and
pays at checkout as in the simulator.

Strategies: `current` is Tailor's feed (tailor.serving.Recommender, in process, on the state Ingest makes of the
history, with the shipped ranker; each round of visits is ingested before the next, so it learns from what it
served); `popularity` ranks items by their views and purchases in the history; `random` shuffles the catalog; the
`oracle` ranks by each shopper's true click probability in the moment (its utility, its session's category, what it
bought): under a position-based model no order gets more expected clicks. `embeddings` is `current` with item vectors
(trained on the history, then again on all that was seen after each round, as the scheduled training retrains them):
the feed's embedding source queries with the shopper's vector Ingest keeps, and the feed's blend weighs each
candidate's cosine with it (`--similarity-weight`); `embeddings-no-ignores` is the same with
ignored impressions counting neither in the training nor in Ingest. `ltv` is `current` served through a strategy
that weighs the purchase-probability term by the shopper's predicted LTV (spec 004; off in the default feed), with
RebuildLtv scoring every shopper on the shipped LTV model after the history and after each round. When both of a
pair ran, the report gives `current` less `popularity` (Tailor against the shop's own order), `embeddings` less
`current` and less `embeddings-no-ignores`, and `ltv` less `current`, in CTR and revenue per shopper, with 95%
intervals.

Surfaces (`--surface`): what each visit asks for. `feed` (the default) is the shopper's feed, as above. `search`:
the shopper searches for a kind of item of their session's category and the shop's search returns its results
(tailor_lab.simulator.catalog's search, the shop's own order); `current` is that list re-ranked for the shopper by
Tailor's rerank route (POST /rerank, as a shop's search page would ask), `popularity` the shop's own order, `random`
the results shuffled and the oracle the results by true click probability; the shopper looks down it as down a
listing. `related`: the shopper views one of their category's best-sellers and the item page's widget shows
related items; `current` is Tailor's related route (GET /items/{id}/related), `popularity` the category's other
best-sellers, `random` any items, the oracle the items by true click probability; the shopper looks at it as at the
shop's recommendation widget. The search or view comes first in the events each visit sends.

Common random numbers: a shopper's visit draws the same numbers under every strategy (its session's category, and
per slot whether it looks, whether it clicks, carts and pays), so strategies differ only by what they show.
Figures per strategy: CTR (clicks / items shown), conversion (visits with an order), average order value, revenue
per shopper, each with a 95% interval from a bootstrap over shoppers (the same resamples for every strategy), and
each strategy's share of the oracle's CTR lift over random.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tailor.embeddings import DEFAULT_UPDATE
from tailor.experiments.strategies import DEFAULT_LTV_STRENGTH, Strategy
from tailor.ranking.similarity import FEED_WEIGHT
from tailor_lab import report_json
from tailor_lab.stream import epoch_of

from .catalog import CATEGORIES
from .simulation import Simulation, World, simulate

__all__ = ["STRATEGIES", "SURFACES", "Ask", "FeedVisit", "VectorStrategy", "act_on_feed", "main", "run"]

STRATEGIES = ("current", "popularity", "random", "oracle", "embeddings", "embeddings-no-ignores", "ltv")
SURFACES = ("feed", "search", "related")
EXAMINATION = {"feed": "feed", "search": "listing", "related": "widget"}  # how a shopper looks down each surface
DEFAULT_STRATEGIES = ("current", "popularity", "random", "oracle")
# Differences reported with their interval when both strategies ran: (strategy, against).
DIFFERENCES = (("current", "popularity"), ("embeddings", "current"), ("embeddings", "embeddings-no-ignores"),
               ("ltv", "current"))
BOOTSTRAP = 1000


@dataclass(frozen=True)
class VectorStrategy:
    """What the embeddings strategies need: `train(events, ignores)` learns item vectors from events (with ignored
    impressions as negatives or not), the feed's cosine weight, and what Ingest counts of an impression's item not
    above a click (a share of an ignore)."""

    train: Callable[[list[dict], bool], Any]
    similarity_weight: float = FEED_WEIGHT
    unseen_share: float = DEFAULT_UPDATE.unseen_share


def main(argv: list[str] | None = None, *, train_vectors: Callable[[list[dict], bool], Any] | None = None) -> int:
    """The command; `train_vectors(events, ignores)` trains item vectors for the embeddings strategies (the lab's
    training, which the simulator does not import: tailor_lab.evaluation.closed_loop gives it)."""
    parser = argparse.ArgumentParser(prog="tailor simulate online", description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", action="append", choices=STRATEGIES, dest="strategies",
                        help="a strategy to serve feeds (repeat it; default: "
                             f"{', '.join(DEFAULT_STRATEGIES)})")
    parser.add_argument("--surface", choices=SURFACES, default="feed",
                        help="what each visit asks for: the feed, a search's results or an item's related items (feed)")
    parser.add_argument("--shoppers", type=int, default=500, help="simulated shoppers (500)")
    parser.add_argument("--history-days", type=float, default=28.0, help="days of history before the visits (28)")
    parser.add_argument("--visits", type=int, default=3, help="visits per shopper (3)")
    parser.add_argument("--n", type=int, default=20, help="items per list served (20)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--similarity-weight", type=float, default=FEED_WEIGHT,
                        help="the feed's cosine term's weight in the embeddings strategies (%(default)s)")
    parser.add_argument("--unseen-share", type=float, default=DEFAULT_UPDATE.unseen_share,
                        help="what Ingest counts of an impression's item not above a click, as a share of an ignore, "
                             "in the embeddings strategy (%(default)s)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/online.json"))
    args = parser.parse_args(argv)
    for name in ("shoppers", "visits", "n"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    strategies = list(dict.fromkeys(args.strategies or DEFAULT_STRATEGIES))
    if any(name.startswith("embeddings") for name in strategies) and train_vectors is None:
        parser.error("the embeddings strategies need item-vector training: run them with tailor simulate online")
    with_vectors = None if train_vectors is None else VectorStrategy(train_vectors, args.similarity_weight,
                                                                     args.unseen_share)
    report = run(strategies, shoppers=args.shoppers, history_days=args.history_days, visits=args.visits, n=args.n,
                 seed=args.seed, vectors=with_vectors, surface=args.surface,
                 echo=lambda text: print(text, file=sys.stderr))
    print(format_table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report_json.write(args.json, report)
    print(f"\nwritten to {args.json}")
    return 0


@dataclass
class Outcome:
    """What one strategy's feeds led to, per shopper."""

    impressions: np.ndarray
    clicks: np.ndarray
    orders: np.ndarray
    revenue: np.ndarray
    visits: int
    seconds: float = 0.0
    events: list[dict] = field(default_factory=list)


def run(strategies: list[str], *, shoppers: int = 500, history_days: float = 28.0, visits: int = 3, n: int = 20,
        seed: int = 7, vectors: VectorStrategy | None = None, surface: str = "feed",
        echo: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every strategy served to the same shoppers on the same draws, on `surface`; their figures with 95%
    intervals."""
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategy {', '.join(sorted(unknown))}: use {', '.join(STRATEGIES)}")
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}: use {', '.join(SURFACES)}")
    history = simulate(shoppers=shoppers, days=history_days, seed=seed)
    echo(f"history: {len(history.events):,} events of {shoppers} shoppers over {history_days:g} days")
    outcomes = {}
    for name in strategies:
        started = time.perf_counter()
        outcomes[name] = _serve(name, history, visits=visits, n=n, seed=seed, vectors=vectors, surface=surface,
                                echo=echo)
        outcomes[name].seconds = time.perf_counter() - started
        echo(f"{name}: {int(outcomes[name].clicks.sum())} clicks in {outcomes[name].seconds:.1f} s")
    resamples = np.random.default_rng([seed, 9]).integers(0, shoppers, (BOOTSTRAP, shoppers))
    figures = {name: _figures(outcome, resamples) for name, outcome in outcomes.items()}
    differences = {f"{a} - {b}": _difference(outcomes[a], outcomes[b], resamples)
                   for a, b in DIFFERENCES if a in outcomes and b in outcomes}
    if "oracle" in figures and "random" in figures:
        gap = figures["oracle"]["ctr"]["value"] - figures["random"]["ctr"]["value"]
        for name, f in figures.items():
            f["share_of_oracle_ctr_lift"] = (round((f["ctr"]["value"] - figures["random"]["ctr"]["value"]) / gap, 4)
                                             if gap > 0 else None)
    return {"surface": surface, "shoppers": shoppers, "history_days": history_days, "visits": visits, "feed_n": n,
            "seed": seed,
            "history_events": len(history.events), "bootstrap": BOOTSTRAP, "similarity_weight": None if vectors is None else vectors.similarity_weight,
            "unseen_share": None if vectors is None else vectors.unseen_share,
            "strategies": figures,
            "differences": differences}


def format_table(report: dict[str, Any]) -> str:
    surface = report.get("surface", "feed")
    lines = [f"Closed loop: {report['shoppers']} shoppers, {report['visits']} {surface} visits each of "
             f"{report['feed_n']} items, after {report['history_days']:g} days of history (seed {report['seed']}); "
             "95% intervals, bootstrap over shoppers",
             f"{'strategy':<11} {'CTR':>22} {'conversion':>22} {'AOV':>24} {'revenue/shopper':>22} {'oracle lift':>11}"]
    for name, f in report["strategies"].items():
        share = f.get("share_of_oracle_ctr_lift")
        lines.append(f"{name:<11} {_interval(f['ctr'], 4):>22} {_interval(f['conversion'], 4):>22} "
                     f"{_interval(f['aov'], 2):>24} {_interval(f['revenue_per_shopper'], 2):>22} "
                     f"{'-' if share is None else f'{share:.0%}':>11}")
    for pair, d in report.get("differences", {}).items():
        lines.append(f"{pair}: CTR {_interval(d['ctr'], 4)}, revenue/shopper {_interval(d['revenue_per_shopper'], 2)} "
                     "(same shoppers, same draws)")
    return "\n".join(lines)


# -- serving and acting --------------------------------------------------------------------------------------------

def _serve(name: str, history: Simulation, *, visits: int, n: int, seed: int, vectors: VectorStrategy | None = None,
           surface: str = "feed", echo: Callable[[str], None]) -> Outcome:
    world = history.world
    assert world is not None
    catalog = world.catalog
    count = len(world.shoppers)
    outcome = Outcome(np.zeros(count), np.zeros(count), np.zeros(count), np.zeros(count), visits)
    feed = _strategy(name, history, n, seed, echo, vectors)
    bought: list[set[int]] = [set() for _ in range(count)]
    for visit in range(visits):
        events: list[dict] = []
        for shopper in world.shoppers:
            rng = np.random.default_rng([seed, 11, shopper.index, visit])  # the same under every strategy
            t_ms = world.end_ms + visit * 86_400_000 + int(rng.random() * 80_000_000)
            session = f"s-online-{seed}-{shopper.index:05d}-{visit}"
            category = int(np.searchsorted(np.cumsum(shopper.affinity), rng.random() * shopper.affinity.sum(),
                                           side="right"))
            category = min(category, len(catalog.category_items) - 1)
            ask = _ask(world, shopper, surface, category, np.random.default_rng([seed, 12, shopper.index, visit]))
            served, feed_id = feed(shopper, session, category, bought[shopper.index], t_ms, ask)
            acted = act_on_feed(world, shopper, served, feed_id, session, category, bought[shopper.index], rng, t_ms,
                                EXAMINATION[surface])
            events += _asked(world, shopper, session, ask, t_ms)
            outcome.impressions[shopper.index] += len(served)
            outcome.clicks[shopper.index] += acted.clicks
            outcome.orders[shopper.index] += acted.revenue > 0
            outcome.revenue[shopper.index] += acted.revenue
            events += acted.events
        if hasattr(feed, "learn"):
            feed.learn(sorted(events, key=lambda e: e["timestamp"]))
    return outcome


@dataclass(frozen=True)
class Ask:
    """What a visit asks for: the feed; a search (its query and the shop's results); or an item page's related items."""

    surface: str = "feed"
    query: str | None = None
    results: tuple[int, ...] = ()
    item: int | None = None


def _ask(world: World, shopper, surface: str, category: int, rng: np.random.Generator) -> Ask:
    """The visit's request, drawn the same under every strategy: a search for a kind of the session's category (its
    brand named in a third of them), or a view of one of the category's ten best-sellers."""
    catalog = world.catalog
    if surface == "search":
        kinds = CATEGORIES[category].kinds
        words = [kinds[int(rng.integers(len(kinds)))]]
        brands = CATEGORIES[category].brands
        if rng.random() < 0.3:
            words.insert(0, brands[int(rng.integers(len(brands)))])
        return Ask("search", " ".join(words), tuple(catalog.search(category, words)))
    if surface == "related":
        best = [i for i in catalog.category_items[category] if catalog.available[i]][:10] or catalog.category_items[category]
        return Ask("related", item=int(best[int(rng.integers(len(best)))]))
    return Ask()


def _asked(world: World, shopper, session: str, ask: Ask, t_ms: int) -> list[dict]:
    """The event a shop's front end sends before the list: the search with its results, or the item page's view."""
    head = {"event_id": f"e-{session}-ask", "user_id": shopper.user_id, "session_id": session,
            "timestamp": _iso(t_ms - 500)}
    if ask.surface == "search":
        return [{**head, "event_type": "search", "query": ask.query, "results": world.catalog.ids(list(ask.results))}]
    if ask.surface == "related":
        return [{**head, "event_type": "view", **world.catalog.fields[ask.item]}]
    return []


@dataclass
class FeedVisit:
    """What a shopper did on one feed: clicks, revenue and the events a shop's front end would send."""

    clicks: int = 0
    revenue: float = 0.0
    events: list[dict] = field(default_factory=list)


def act_on_feed(world: World, shopper, served: list[int], feed_id: str, session: str, category: int,
                bought: set[int], rng: np.random.Generator, t_ms: int, examined_as: str = "feed") -> FeedVisit:
    """The shopper's visit to a list Tailor served (a feed, by default): the choice model's examination of the
    `examined_as` surface and its clicks, then carting and paying."""
    p, catalog, choice = world.params, world.catalog, world.choice
    # Drawn whole whatever the feed holds, so every strategy's slot k sees the same numbers.
    look, click, go_on, carting, pay = rng.random((5, max(len(served), 1)))
    examination = choice.examination[examined_as]
    utility = choice.utility(shopper)
    acted = FeedVisit()
    fields = catalog.fields

    def emit(event_type: str, extra: dict[str, Any]) -> None:
        nonlocal t_ms
        t_ms += 1000 + int(rng.random() * 4000)
        acted.events.append({"event_id": f"e-{session}-{len(acted.events):03d}", "user_id": shopper.user_id,
                             "session_id": session, "timestamp": _iso(t_ms), "event_type": event_type, **extra})

    if not served:
        return acted
    emit("impression", {"item_ids": catalog.ids(served), "feed_id": feed_id})
    cart: list[int] = []
    for pos, item in enumerate(served):
        if look[pos] >= examination[min(pos, len(examination) - 1)]:
            continue
        u = utility[item] - p.click_threshold + (p.intent_bonus if catalog.category[item] == category else 0.0)
        if item in bought:
            u -= p.bought_penalty
        if click[pos] * (1.0 + math.exp(-u / p.click_temperature)) >= 1.0:
            continue
        acted.clicks += 1
        emit("click", {**fields[item], "feed_id": feed_id, "position": pos})
        emit("view", {**fields[item], "feed_id": feed_id, "position": pos})
        liked = (utility[item] - choice.dearness[item] - p.cart_threshold) / p.click_temperature
        if catalog.available[item] and carting[pos] * (1.0 + math.exp(-liked)) < 1.0:
            cart.append(item)
            emit("add_to_cart", {**fields[item], "quantity": 1, "feed_id": feed_id, "position": pos})
        if go_on[pos] >= p.feed_continue:
            break
    if cart and pay[0] < min(0.85, p.pay_rate * shopper.propensity + 0.05):
        order = f"o-{session}"
        for item in cart:
            emit("purchase", {**fields[item], "quantity": 1, "order_id": order, "feed_id": feed_id,
                              "position": served.index(item)})
            acted.revenue += catalog.price[item]
            bought.add(item)
    return acted


def _strategy(name: str, history: Simulation, n: int, seed: int, echo: Callable[[str], None],
              vectors: VectorStrategy | None = None):
    world = history.world
    assert world is not None
    if name == "current":
        return _Current(history, n, echo)
    if name == "ltv":  # the current feed with its purchase-probability term weighed by the shopper's predicted LTV
        return _Current(history, n, echo, ltv_strength=DEFAULT_LTV_STRENGTH, label=name)
    if name.startswith("embeddings"):
        if vectors is None:
            raise ValueError(f"strategy {name} needs item-vector training (VectorStrategy)")
        return _Current(history, n, echo, vectors=vectors, ignores=name == "embeddings", label=name)
    if name == "popularity":
        return _Popularity(history, n)
    if name == "random":
        return _Random(world, n, seed)
    return _Oracle(world, n)


class _Random:
    def __init__(self, world: World, n: int, seed: int):
        self.items = np.asarray(world.catalog.available_list)
        self.n = n
        self.rng = np.random.default_rng([seed, 13])

    def __call__(self, shopper, session, category, bought, t_ms, ask: Ask = Ask()) -> tuple[list[int], str]:
        if ask.surface == "search":
            return self.rng.permutation(ask.results)[: self.n].tolist(), uuid.uuid4().hex
        items = self.items[self.items != ask.item]
        return self.rng.choice(items, size=min(self.n, len(items)), replace=False).tolist(), uuid.uuid4().hex


class _Popularity:
    """Best-sellers first: views and purchases in the history (a purchase counts as ten views)."""

    def __init__(self, history: Simulation, n: int):
        assert history.world is not None
        index = {record["item_id"]: i for i, record in enumerate(history.catalog)}
        counts: Counter = Counter()
        for event in history.events:
            if event["event_type"] in ("view", "purchase"):
                counts[index[event["item_id"]]] += 10 if event["event_type"] == "purchase" else 1
        catalog = history.world.catalog
        sellers = [i for i, _ in counts.most_common() if catalog.available[i]]
        self.ranked = sellers[:n]
        self.by_category: dict[int, list[int]] = {}  # each category's best-sellers, for related items
        for i in sellers:
            self.by_category.setdefault(int(catalog.category_of[i]), []).append(i)
        self.category_of = catalog.category_of
        self.n = n

    def __call__(self, shopper, session, category, bought, t_ms, ask: Ask = Ask()) -> tuple[list[int], str]:
        if ask.surface == "search":  # the shop's own order
            return list(ask.results[: self.n]), uuid.uuid4().hex
        if ask.surface == "related":  # the item's category's other best-sellers
            like = self.by_category.get(int(self.category_of[ask.item]), [])
            return [i for i in like if i != ask.item][: self.n], uuid.uuid4().hex
        return list(self.ranked), uuid.uuid4().hex


class _Oracle:
    """Each shopper's items by their true click probability in the moment: the best a feed can do here."""

    def __init__(self, world: World, n: int):
        self.world = world
        self.n = n
        self.items = np.asarray(world.catalog.available_list)

    def __call__(self, shopper, session, category, bought, t_ms, ask: Ask = Ask()) -> tuple[list[int], str]:
        p = self.world.params
        items = np.asarray(ask.results, dtype=np.int64) if ask.surface == "search" else self.items
        category_of = self.world.catalog.category_of[items]
        u = self.world.choice.utility(shopper)[items] + p.intent_bonus * (category_of == category)
        if bought:
            u = u - p.bought_penalty * np.isin(items, list(bought))
        if ask.item is not None:
            u = np.where(items == ask.item, -np.inf, u)
        best = np.argsort(-u, kind="stable")[: self.n]
        return [int(i) for i in items[best] if i != ask.item], uuid.uuid4().hex


class _Current:
    """Tailor's feed, in process: the Recommender on the state Ingest keeps of what the shoppers did. With `vectors`,
    item vectors trained on everything seen so far (the history, then again after each round, as the scheduled
    training retrains them) feed the embedding source and Ingest's session and shopper vectors; `ignores` says
    whether ignored impressions count, in the training and in Ingest, or neither. With `ltv_strength`, RebuildLtv
    scores every shopper (the shipped LTV model) after the history and after each round, as its schedule would, and
    the feed is served by a strategy that weighs the purchase-probability term by the predicted LTV, as an
    experiment's variant would serve it."""

    def __init__(self, history: Simulation, n: int, echo: Callable[[str], None], *,
                 vectors: VectorStrategy | None = None, ignores: bool = True, label: str = "current",
                 ltv_strength: float = 0.0):
        from tailor.ingest.intent import SessionIntent
        from tailor.ingest.service import Ingestor
        from tailor.models import load_model
        from tailor.ranking import MODEL_NAME, RankingModel
        from tailor.serving import Recommender
        from tailor.store.memory import MemoryBlobStore, MemoryStateStore

        started = time.perf_counter()
        self.n = n
        self.index = {record["item_id"]: i for i, record in enumerate(history.catalog)}
        self.catalog_ids = history.world.catalog.ids
        self.store = MemoryStateStore()
        self.seen: list[dict] = []
        self.vectors = None
        self.ignores = ignores
        self.train_vectors = None if vectors is None else vectors.train
        online = None
        if vectors is not None:
            from tailor.embeddings.online import OnlineVectors

            rule = replace(DEFAULT_UPDATE, unseen_share=vectors.unseen_share)
            online = OnlineVectors(lambda: self.vectors, rule if ignores else replace(rule, ignore_weight=0.0))
        self.ingestor = Ingestor(self.store, MemoryBlobStore(), max_workers=1, intent=SessionIntent.shipped(),
                                 vectors=online)
        self._sequence = 0
        self.ltv = None
        if ltv_strength:
            from tailor.ltv.rebuild import LtvRebuild
            from tailor.models import ModelRegistry

            self.ltv = LtvRebuild(self.store, ModelRegistry(MemoryBlobStore()), clock=lambda: self.scored_at,
                                  every_seconds=0.0)
        self.learn(history.events)
        echo(f"{label}: ingested the history in {time.perf_counter() - started:.1f} s")
        self.now = 0.0
        model = load_model(MODEL_NAME, None, build=RankingModel.from_stored)
        extra: dict[str, Any] = {}
        if vectors is not None:  # the Recommender weighs the cosine where it has vectors: here by this weight
            from tailor.ranking.scoring import DEFAULT_WEIGHTS

            extra = {"weights": {"feed": {**DEFAULT_WEIGHTS["feed"], "similarity": vectors.similarity_weight}},
                     "item_vectors": lambda: self.vectors}
        if ltv_strength:
            extra.update(_everyone_served(Strategy(label, ltv=True, ltv_strength=ltv_strength), history))
        self.recommender = Recommender(self.store, model, clock=lambda: self.now, **extra)

    def __call__(self, shopper, session, category, bought, t_ms, ask: Ask = Ask()) -> tuple[list[int], str]:
        self.now = t_ms / 1000.0
        if ask.surface == "search":  # the shop's results, re-ranked as its search page would ask (POST /rerank)
            ranking = self.recommender.rerank(self.catalog_ids(list(ask.results)), user_id=shopper.user_id,
                                              session_id=session, n=self.n)
        elif ask.surface == "related":
            ranking = self.recommender.related(self.catalog_ids([ask.item])[0], user_id=shopper.user_id, n=self.n)
        else:
            ranking = self.recommender.feed(shopper.user_id, session_id=session, n=self.n)
        return [self.index[item.item_id] for item in ranking.items if item.item_id in self.index], ranking.feed_id

    def learn(self, events: list[dict]) -> None:
        """What the shoppers did, through Ingest as a stream would deliver it; with vectors, trained again first on
        everything seen so far, so that the rows the events touch move to the new vectors' space."""
        from tailor.ingest.service import StreamRecord

        if self.train_vectors is not None:
            self._retrain(events)

        records = []
        for event in events:
            self._sequence += 1
            records.append(StreamRecord("shardId-000000000000", str(49_000_000_000_000_000_000 + self._sequence),
                                        json.dumps(event).encode(), event["user_id"], time.time()))
        for start in range(0, len(records), 100):
            outcome = self.ingestor.ingest(records[start:start + 100])
            if outcome.failed:
                raise RuntimeError(f"ingest refused simulated events: {outcome.failed[:3]}")
        if self.ltv is not None and events:
            self.scored_at = max(epoch_of(e["timestamp"]) for e in events)
            self.ltv.run()

    def _retrain(self, events: list[dict]) -> None:
        assert self.train_vectors is not None
        self.seen += events
        vectors = self.train_vectors(self.seen, self.ignores)
        vectors.metadata["version"] = f"simulated-{len(self.seen)}"  # a new space: rows start again in it
        self.vectors = vectors


def _everyone_served(strategy: Strategy, history: Simulation) -> dict[str, Any]:
    """The Recommender's arguments that serve `strategy` to every shopper's feed: a live experiment whose variants
    both run it, as a shop would roll a strategy out."""
    from tailor.experiments.assignment import claim_slot
    from tailor.experiments.definitions import new_experiment
    from tailor.experiments.strategies import BUILT_IN

    start = datetime.fromtimestamp(epoch_of(history.events[0]["timestamp"]), tz=UTC)
    experiment = new_experiment({"experiment_id": f"rollout-{strategy.name}", "surface": "feed",
                                 "start": start.isoformat(), "days": 366, "variants": [{"name": "a", "strategy": strategy.name, "share": 0.5},
                                                            {"name": "b", "strategy": strategy.name, "share": 0.5}]},
                                now=start, known_strategies={*BUILT_IN, strategy.name})
    experiment = experiment.started(start, claim_slot(experiment, []))
    return {"experiments": lambda now: [experiment], "strategies": lambda: {**BUILT_IN, strategy.name: strategy}}


# -- figures ---------------------------------------------------------------------------------------------------------

def _figures(outcome: Outcome, resamples: np.ndarray) -> dict[str, Any]:
    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> dict[str, Any]:
        num = numerator[resamples].sum(axis=1)
        den = denominator[resamples].sum(axis=1)
        values = np.divide(num, den, out=np.full(len(num), np.nan), where=den > 0)
        total = denominator.sum()
        value = float(numerator.sum() / total) if total else None
        low, high = (np.nanpercentile(values, [2.5, 97.5]).tolist() if np.isfinite(values).any() else (None, None))
        return {"value": value, "low": low, "high": high}

    visits = np.full(len(outcome.clicks), float(outcome.visits))
    ones = np.ones(len(outcome.clicks))
    return {"ctr": ratio(outcome.clicks, outcome.impressions),
            "conversion": ratio(outcome.orders, visits),
            "aov": ratio(outcome.revenue, outcome.orders),
            "revenue_per_shopper": ratio(outcome.revenue, ones),
            "clicks": int(outcome.clicks.sum()), "impressions": int(outcome.impressions.sum()),
            "orders": int(outcome.orders.sum()), "revenue": round(float(outcome.revenue.sum()), 2),
            "seconds": round(outcome.seconds, 2)}


def _difference(a: Outcome, b: Outcome, resamples: np.ndarray) -> dict[str, Any]:
    """Strategy a's CTR and revenue per shopper less b's, with 95% intervals over the same bootstrap resamples."""
    def ctr(o: Outcome, rows: np.ndarray | None = None) -> np.ndarray | float:
        if rows is None:
            return float(o.clicks.sum() / o.impressions.sum())
        return o.clicks[rows].sum(axis=1) / np.maximum(o.impressions[rows].sum(axis=1), 1)

    out = {}
    for name, value in (("ctr", ctr), ("revenue_per_shopper", lambda o, rows=None: float(o.revenue.mean()) if rows is None
                                        else o.revenue[rows].mean(axis=1))):
        spread = value(a, resamples) - value(b, resamples)
        low, high = np.percentile(spread, [2.5, 97.5]).tolist()
        out[name] = {"value": value(a) - value(b), "low": low, "high": high}
    return out


def _interval(figure: dict[str, Any], digits: int) -> str:
    if figure["value"] is None:
        return "-"
    return f"{figure['value']:.{digits}f} [{figure['low']:.{digits}f}, {figure['high']:.{digits}f}]"


def _iso(t_ms: int) -> str:
    stamp = np.datetime_as_string(np.datetime64(int(t_ms), "ms"), unit="ms")
    return f"{stamp}Z"


if __name__ == "__main__":
    sys.exit(main())
