"""Does the adaptive feed follow shoppers whose interests drift within a session? (spec 001, issue 19)

    tailor evaluate adaptation [--seed 202] [--shoppers 1500] [--visits 2] [--drift 0.35] [--clusters 24] [--json F]
    tailor evaluate adaptation --tune [--seed 101]      # the validation simulation: the bandit's knobs
    tailor evaluate adaptation --seed 101 --history-weight 0.1   # one knob set otherwise
    tailor evaluate adaptation --ab-test [--ab-visits 2] # and an A/B test of adaptive against static

The closed-loop simulator (tailor_lab.simulator.online) with sessions of feed pages: a shopper opens a feed of
`--page` items, acts on it as the choice model says (looks down it, clicks, carts, pays), and comes back for the next
page with probability `--continue` (at most `--pages`). What they are after is the session's category (its intent
bonus), which moves to another of their categories with probability `--drift` at each page
(tailor_lab.simulator.drift). Three feeds serve the same shoppers on the same random numbers:

* static: the persona feed, items ranked by their cluster's prior appeal to the shopper's traits
  (tailor.clusters.prior_appeal) and then by their popularity in the history, the same all session;
* adaptive: each slot's cluster drawn by the session's bandit (tailor.clusters.select_clusters) from the shopper's
  prior (the same traits, and the categories of their history as Ingest keeps them in their row: the
  shopper's category affinity) and the clicks and ignores of the session's earlier pages, the best item of the
  cluster not yet shown in it;
* oracle: knows the shopper's current interest and ranks as the static feed does with a bonus (ORACLE_BONUS) for
  items of that category (on seed 101 a bonus of 1 gave the oracle its highest CTR: 0.5, 2, 4 and a page of the
  category alone gave less);
* ideal: the most that learning the interest from clicks can give here, a bound rather than a feed: a Bayes filter
  over the session's category that knows what no feed knows (the shopper's true category affinity, their click
  model's utilities, the examination probabilities and the drift rate), updated by every click and unclicked slot
  of the session's pages, ranking as the oracle does with the bonus weighed by its belief.

Clusters are rebuilt from the history (tailor_lab.training.clusters, from metadata: category and price, no learned
vectors); a shopper's trait posteriors are the simulator's traits read as ten events' worth of evidence (the same for
the three feeds). The cost part: a 20-item adaptive slate's latency in process, Ingest's fold per event with and
without the clusters, the session state's size. Figures: CTR and revenue per session
per feed, over sessions of at least 10 impressions; `share_of_oracle` = (adaptive - static) / (oracle - static) CTR
with a 95% bootstrap interval over sessions (paired: a resample takes a session under every feed), beside the ideal
learner's (`ideal_share_of_oracle`: how much of the oracle's lift clicks can reveal at all); CTR per page of the
session (and both shares from the second page on, where the session has shown something); the regret curve (the
oracle's cumulative clicks minus each feed's over a session's first 20 impressions);
and the same shoppers without drift, where `no_drift_difference` is adaptive - static CTR with its interval.

With `--ab-test`, the same drifting shoppers in an A/B test through the experiment framework: an experiment on the
feed with variants static (strategy default, control) and adaptive (strategy adaptive), each shopper assigned by
tailor.experiments.assignment and served their variant's feed under its feed ids, every page's events through Ingest
(tailor.ingest.service, with attribution and the session's cluster posteriors: the adaptive pages read the
posteriors Ingest kept in the session row, as the API's adaptive feed does) and the report built from the
statistics rows attribution wrote (tailor.experiments.storage): CTR per variant, the relative lift with its interval,
and whether its direction agrees with the evaluation's adaptive - static CTR. Its shoppers are the same but each sees
one feed, so it needs more of their sessions than the paired evaluation to see the same difference (`--ab-visits`);
its salt is the seed's, so a seed assigns the same shoppers every run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tailor.clusters import BanditParams, ClusterPosteriors, ItemClusters, prior_appeal
from tailor.clusters.bandit import encoded_size
from tailor.clusters.slate import adaptive_slate
from tailor.events import parse_event
from tailor.shopper import ShopperState, fold_shopper
from tailor_lab import report_json
from tailor_lab.simulator import simulate
from tailor_lab.simulator.drift import interest_path
from tailor_lab.simulator.online import act_on_feed
from tailor_lab.simulator.simulation import Simulation
from tailor_lab.training.clusters import ClusterParams, build_clusters

__all__ = ["FEEDS", "main", "run"]

FEEDS = ("static", "adaptive", "oracle", "ideal")
TUNED_FEEDS = FEEDS[:3]  # what --tune compares (the ideal learner's figure does not move with the bandit's knobs)
BOOTSTRAP = 1000
MIN_IMPRESSIONS = 10
REGRET_IMPRESSIONS = 20
TRAIT_EVIDENCE = 10.0
POPULARITY_WEIGHT = 0.3  # the ranking's weight of an item's log popularity beside its cluster's log appeal
ORACLE_BONUS = 1.0  # the oracle's weight of the current interest, in the same units
# The validation grid --tune searches (on its own seed); the defaults below are its choice.
GRID = {"prior_strength": (5.0, 10.0), "sharpness": (16.0, 64.0), "expansion": (0.0, 0.5), "click_weight": (1.0, 2.0),
        "ignore_weight": (0.15,), "decay": (0.8,), "floor": (0.01,)}


@dataclass(frozen=True)
class Setting:
    shoppers: int = 1500
    history_days: float = 28.0
    visits: int = 2
    page: int = 5
    pages: int = 8
    keep_going: float = 0.85
    drift: float = 0.35
    novelty: float = 0.0
    clusters: int = 24
    seed: int = 202


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor evaluate adaptation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="simulation seed (202 to report, 101 with --tune)")
    parser.add_argument("--shoppers", type=int, default=Setting.shoppers)
    parser.add_argument("--visits", type=int, default=Setting.visits, help="sessions per shopper")
    parser.add_argument("--page", type=int, default=Setting.page, help="items per feed page")
    parser.add_argument("--pages", type=int, default=Setting.pages, help="most pages a session asks for")
    parser.add_argument("--continue", dest="keep_going", type=float, default=Setting.keep_going,
                        help="chance of asking for the next page")
    parser.add_argument("--drift", type=float, default=Setting.drift, help="chance the interest moves, per page")
    parser.add_argument("--clusters", type=int, default=Setting.clusters, help="clusters the rebuild makes")
    parser.add_argument("--novelty", type=float, default=Setting.novelty,
                        help="share of an even spread in where a drifting interest goes")
    parser.add_argument("--history-weight", type=float, default=BanditParams.history_weight,
                        help="the power of the shopper's category lift in the adaptive feed's prior (default: %(default)s)")
    parser.add_argument("--tune", action="store_true", help="search the bandit's knobs on this (validation) seed")
    parser.add_argument("--ab-test", action="store_true",
                        help="also run an A/B test of adaptive against static through the experiment framework")
    parser.add_argument("--ab-visits", type=int, default=None,
                        help="sessions per shopper in the A/B test (default: --visits)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    for name in ("shoppers", "visits", "page", "pages", "clusters"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.history_weight < 0:
        parser.error("--history-weight must not be negative")
    if args.ab_visits is not None and args.ab_visits < 1:
        parser.error("--ab-visits must be at least 1")
    for name in ("keep_going", "drift", "novelty"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('keep_going', 'continue')} must be in [0, 1]")
    seed = args.seed if args.seed is not None else (101 if args.tune else Setting.seed)
    setting = Setting(shoppers=args.shoppers, visits=args.visits, page=args.page, pages=args.pages,
                      keep_going=args.keep_going, drift=args.drift, novelty=args.novelty,
                      clusters=args.clusters, seed=seed)
    echo = lambda text: print(text, file=sys.stderr)  # noqa: E731
    params = BanditParams(history_weight=args.history_weight)
    report = tune(setting, echo=echo) if args.tune else run(setting, params, echo=echo, ab=args.ab_test,
                                                             ab_visits=args.ab_visits)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write(args.json, report)
        print(f"\nwritten to {args.json}")
    return 0


def run(setting: Setting = Setting(), params: BanditParams = BanditParams(), *,
        echo: Callable[[str], None] = lambda _: None, world: _World | None = None, ab: bool = False,
        ab_visits: int | None = None) -> dict[str, Any]:
    """The feeds on drifting shoppers and on the same shoppers without drift; figures with 95% intervals; with `ab`,
    the A/B test through the experiment framework too."""
    started = time.perf_counter()
    world = world or _World.build(setting, echo)
    drifting = _simulate(world, setting, params, setting.drift)
    steady = _simulate(world, setting, params, 0.0)
    cost = _cost(world, params, drifting.events)
    drift_figures = _figures(drifting, setting.seed)
    steady_figures = _figures(steady, setting.seed)
    ab_report = None
    if ab:
        ab_report = ab_test(world, setting, params, ab_visits)
        ab_report["agrees"] = bool(np.sign(ab_report["difference"]) == np.sign(drift_figures["difference"]))
        low, high = ab_report["relative_lift"]["low"], ab_report["relative_lift"]["high"]
        ab_report["significant"] = low is not None and (low > 0 or high < 0)
    return {"seed": setting.seed, "setting": vars(setting) | {}, "params": vars(params) | {}, "ab_test": ab_report,
            "clusters": len(world.clusters.ids), "sessions": len(drifting.sessions),
            "long_sessions": drift_figures["long_sessions"],
            "share_of_oracle": drift_figures["share_of_oracle"],
            "share_of_oracle_interval": drift_figures["share_of_oracle_interval"],
            "ideal_share_of_oracle": drift_figures["ideal_share_of_oracle"],
            "ideal_share_of_oracle_interval": drift_figures["ideal_share_of_oracle_interval"],
            "no_drift_difference": steady_figures["difference"],
            "no_drift_difference_interval": steady_figures["difference_interval"],
            "drift": drift_figures, "no_drift": steady_figures,
            "cost": cost,
            "session_state_bytes": {"mean": round(float(np.mean(drifting.state_bytes)), 1),
                                    "max": int(np.max(drifting.state_bytes))},
            "seconds": round(time.perf_counter() - started, 1)}


def tune(setting: Setting, *, echo: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every point of GRID on the validation seed, ranked by share_of_oracle with drift (ties: no-drift difference)."""
    world = _World.build(setting, echo)
    rows = []
    names = list(GRID)
    for values in itertools.product(*(GRID[n] for n in names)):
        params = replace(BanditParams(), **dict(zip(names, values)))
        share = _point(_simulate(world, setting, params, setting.drift, feeds=TUNED_FEEDS))["share"]
        rows.append({"params": dict(zip(names, values)), "share_of_oracle": share})
        echo(f"{dict(zip(names, values))}: share {share:.3f}")
    rows.sort(key=lambda r: -r["share_of_oracle"])
    for row in rows[:3]:  # the leaders must cost shoppers without drift nothing too
        params = replace(BanditParams(), **row["params"])
        row["no_drift_difference"] = _point(_simulate(world, setting, params, 0.0, feeds=TUNED_FEEDS))["difference"]
    return {"seed": setting.seed, "tuned": True, "grid": rows, "best": rows[0]}


def format_report(report: dict[str, Any]) -> str:
    if report.get("tuned"):
        lines = [f"Validation (seed {report['seed']}): the bandit's knobs by share of the oracle's CTR lift"]
        for row in report["grid"][:10]:
            no_drift = row.get("no_drift_difference")
            lines.append(f"  {row['params']}  share {row['share_of_oracle']:.3f}"
                         + ("" if no_drift is None else f"  no-drift difference {no_drift:+.4f}"))
        return "\n".join(lines)
    lines = [f"Adaptation (seed {report['seed']}): {report['sessions']} sessions, {report['long_sessions']} of "
             f">= {MIN_IMPRESSIONS} impressions; {report['clusters']} clusters; 95% intervals, bootstrap over sessions"]
    for label, part in (("drifting interests", report["drift"]), ("no drift", report["no_drift"])):
        lines.append(f"{label}:")
        lines.append(f"  {'feed':<9} {'CTR':>24} {'revenue/session':>26}")
        for name in FEEDS:
            f = part["feeds"][name]
            lines.append(f"  {name:<9} {_interval(f['ctr'], 4):>24} {_interval(f['revenue_per_session'], 2):>26}")
        lines.append(f"  share of oracle lift {_interval(part['share_of_oracle_figure'], 3)} (the ideal learner's "
                     f"{_interval(part['ideal_share_of_oracle_figure'], 3)}); adaptive - static CTR "
                     f"{_interval(part['difference_figure'], 4)}")
        after = part["after_first_page"]
        lines.append(f"  from the second page on: share of oracle lift {after['share_of_oracle']}, the ideal "
                     f"learner's {after['ideal_share_of_oracle']}")
        lines.append("  CTR by page: " + "; ".join(
            f"{name} " + "/".join("-" if v is None else f"{v:.3f}" for v in part["ctr_by_page"][name])
            for name in FEEDS))
        lines.append("  regret (oracle's clicks - feed's) after impressions 5/10/15/20: "
                     + "; ".join(f"{name} " + "/".join(f"{part['regret'][name][t - 1]:.3f}" for t in (5, 10, 15, 20))
                                 for name in ("static", "adaptive", "ideal")))
    ab = report.get("ab_test")
    if ab:
        lift = ab["relative_lift"]
        lines.append(f"A/B test through the experiment framework ({ab['units']['static']} + {ab['units']['adaptive']} "
                     f"shoppers, {ab['visits']} sessions each, drifting): CTR static {ab['ctr']['static']:.4f}, adaptive {ab['ctr']['adaptive']:.4f};"
                     f" relative lift {_fmt(lift['value'])} [{_fmt(lift['low'])}, {_fmt(lift['high'])}], p "
                     f"{ab['p_value']:.3g}{'' if ab['significant'] else ', not significant'}; "
                     f"{'agrees' if ab['agrees'] else 'disagrees'} with the evaluation's direction (the framework's "
                     "CTR: clicks per feed page's impression event)")
    cost = report["cost"]
    lines.append(f"session state: {report['session_state_bytes']['mean']} bytes on average "
                 f"(max {report['session_state_bytes']['max']}); a 20-item adaptive slate: p50 "
                 f"{cost['slate_ms_p50']} ms, p99 {cost['slate_ms_p99']} ms; Ingest's fold per event "
                 f"{cost['fold_us_per_event']} us without clusters, {cost['fold_us_per_event_with_clusters']} us with "
                 f"({cost['fold_increase']:+.1%}); {report['seconds']} s")
    return "\n".join(lines)


# -- the simulation -------------------------------------------------------------------------------------------------

@dataclass
class _World:
    history: Simulation
    clusters: ItemClusters
    item_cluster: np.ndarray  # cluster row per catalog item (-1: unavailable)
    popularity: np.ndarray  # log(1 + views + 10 purchases) in the history
    cluster_items: list[list[int]]  # each cluster's available items, most popular first
    index_of: dict[str, int]  # catalog index by item id
    category_affinity: dict[str, dict[str, float]]  # each shopper's row's, after the history

    @classmethod
    def build(cls, setting: Setting, echo: Callable[[str], None]) -> _World:
        started = time.perf_counter()
        history = simulate(shoppers=setting.shoppers, days=setting.history_days, seed=setting.seed)
        clusters = build_clusters(history.catalog, history.events, params=ClusterParams(clusters=setting.clusters, seed=setting.seed))
        index = clusters.index
        catalog = history.world.catalog
        item_cluster = np.array([index[clusters.members[item]] if catalog.available[i] else -1
                                 for i, item in enumerate(catalog.item_ids)])
        counts: Counter = Counter()
        for event in history.events:
            if event["event_type"] in ("view", "purchase"):
                counts[event["item_id"]] += 10 if event["event_type"] == "purchase" else 1
        popularity = np.log1p(np.array([counts[item] for item in catalog.item_ids], dtype=float))
        echo(f"history of {len(history.events):,} events and {len(clusters.ids)} clusters in "
             f"{time.perf_counter() - started:.1f} s")
        cluster_items: list[list[int]] = [[] for _ in clusters.ids]
        for i in np.argsort(-popularity, kind="stable"):
            if item_cluster[i] >= 0:
                cluster_items[item_cluster[i]].append(int(i))
        return cls(history, clusters, item_cluster, popularity, cluster_items,
                   {item: i for i, item in enumerate(catalog.item_ids)}, _category_affinity(history.events))


@dataclass
class _Outcome:
    sessions: list[tuple[int, int]] = field(default_factory=list)
    impressions: dict[str, list[int]] = field(default_factory=lambda: {f: [] for f in FEEDS})
    clicks: dict[str, list[int]] = field(default_factory=lambda: {f: [] for f in FEEDS})
    revenue: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in FEEDS})
    early: dict[str, list[np.ndarray]] = field(default_factory=lambda: {f: [] for f in FEEDS})
    # [session, page, clicks, shown] per page served
    by_page: dict[str, list[list[int]]] = field(default_factory=lambda: {f: [] for f in FEEDS})
    state_bytes: list[int] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)  # what the shoppers did on the adaptive feed


def _simulate(world: _World, setting: Setting, params: BanditParams, drift: float,
              oracle_bonus: float = ORACLE_BONUS, feeds: tuple[str, ...] = FEEDS) -> _Outcome:
    sim = world.history.world
    catalog, clusters = sim.catalog, world.clusters
    out = _Outcome()
    available = world.item_cluster >= 0
    category_of = catalog.category_of
    categories = int(category_of.max()) + 1
    for shopper in sim.shoppers:
        base, static_order = _static_ranking(world, shopper, params)
        prior = _adaptive_prior(world, shopper, params)
        bought = {f: set() for f in FEEDS}
        for visit in range(setting.visits):
            path = _interests(setting, shopper, visit, drift)
            pages = len(path)
            out.sessions.append((shopper.index, visit))
            for feed in feeds:
                shown: set[int] = set()
                posteriors = ClusterPosteriors()
                belief = _IdealBelief(sim, shopper, categories, drift) if feed == "ideal" else None
                choose = np.random.default_rng([setting.seed, 23, shopper.index, visit])
                clicks, revenue, early = 0, 0.0, np.zeros(REGRET_IMPRESSIONS)
                t_ms = sim.end_ms + visit * 86_400_000
                for page in range(pages):
                    category = path[page]
                    if feed == "static":
                        served = list(itertools.islice((i for i in static_order if i not in shown), setting.page))
                    elif feed in ("oracle", "ideal"):
                        bonus = (category_of == category) if belief is None else belief.probabilities[category_of]
                        order = np.argsort(-(base + oracle_bonus * bonus), kind="stable")
                        served = list(itertools.islice((int(i) for i in order if available[i] and i not in shown),
                                                       setting.page))
                    else:
                        served = _adaptive_page(world, prior, posteriors, shown, setting.page, choose, params)
                    shown.update(served)
                    act_rng = np.random.default_rng([setting.seed, 29, shopper.index, visit, page])
                    acted = act_on_feed(sim, shopper, served, f"f{page}", f"s-{shopper.index}-{visit}", category,
                                 bought[feed], act_rng, t_ms + page * 60_000)
                    positions = [e["position"] for e in acted.events if e["event_type"] == "click"]
                    for p in positions:
                        at = page * setting.page + p
                        if at < REGRET_IMPRESSIONS:
                            early[at] += 1
                    clicks += acted.clicks
                    revenue += acted.revenue
                    out.by_page[feed].append([len(out.sessions) - 1, page, acted.clicks, len(served)])
                    if belief is not None:
                        belief.observe(served, positions)
                    if feed == "adaptive":
                        out.events += _page_events(acted.events, page)
                        posteriors.observe(f"f{page}", [clusters.ids[world.item_cluster[i]] for i in served],
                                           positions, params)
                out.impressions[feed].append(len(shown))
                out.clicks[feed].append(clicks)
                out.revenue[feed].append(revenue)
                out.early[feed].append(early)
                if feed == "adaptive":
                    out.state_bytes.append(encoded_size(posteriors))
    return out


def _static_ranking(world: _World, shopper: Any, params: BanditParams) -> tuple[np.ndarray, list[int]]:
    """Each catalog item's static score (its cluster's log prior appeal to the shopper's traits, read as
    TRAIT_EVIDENCE events' worth, plus its log popularity; -inf: unavailable), and the available items by that
    score: the static feed's order."""
    prior = prior_appeal(world.clusters, _traits(shopper), params)
    available = world.item_cluster >= 0
    base = np.where(available, np.log(prior[np.maximum(world.item_cluster, 0)]) + POPULARITY_WEIGHT * world.popularity,
                    -np.inf)
    return base, [int(i) for i in np.argsort(-base, kind="stable") if available[i]]


def _adaptive_prior(world: _World, shopper: Any, params: BanditParams) -> np.ndarray:
    """The adaptive feed's prior appeal of each cluster: the shopper's traits, and the category affinity their row
    holds after the history."""
    return prior_appeal(world.clusters, _traits(shopper), params, world.category_affinity.get(shopper.user_id))


def _traits(shopper: Any) -> dict[str, list[float]]:
    """The simulator's traits of the shopper as trait posteriors of TRAIT_EVIDENCE events' worth."""
    return {name: [1.0 + TRAIT_EVIDENCE * m, 1.0 + TRAIT_EVIDENCE * (1.0 - m)] for name, m in shopper.traits.items()}


def _category_affinity(events: list[dict]) -> dict[str, dict[str, float]]:
    """Each shopper's category affinity as Ingest's fold of their events keeps it in their row."""
    rows: dict[str, ShopperState] = {}
    for raw in events:
        event = parse_event(raw)
        rows[event.user_id] = fold_shopper(rows.get(event.user_id), event)
    return {user: dict(row.category_affinity) for user, row in rows.items()}


def _interests(setting: Setting, shopper: Any, visit: int, drift: float) -> list[int]:
    """The session's category page by page: as many pages as the shopper asks for (each next one with probability
    `keep_going`, at most `pages`), drifting by `drift`; the same draws under every feed."""
    more = np.random.default_rng([setting.seed, 17, shopper.index, visit]).random(setting.pages)
    pages = 1 + int(np.argmin(np.append(more[1:] < setting.keep_going, False)))
    return interest_path(np.random.default_rng([setting.seed, 19, shopper.index, visit]), shopper, pages, drift,
                         setting.novelty if drift else 0.0)


class _IdealBelief:
    """The ideal learner's belief over the session's category: it starts at the shopper's true category affinity (the
    first page's interest is drawn from it), weighs each page's clicks and unclicked slots by the true click model
    (tailor_lab.simulator.online.act_on_feed: examination, then a click by utility plus the intent bonus; after a click the
    shopper goes on with probability feed_continue) and moves by the drift as the simulator does."""

    def __init__(self, sim: Any, shopper: Any, categories: int, drift: float):
        self.params = sim.params
        self.examination = np.asarray(sim.choice.examination["feed"])
        self.utility = np.asarray(sim.choice.utility(shopper))
        self.category_of = sim.catalog.category_of
        affinity = np.asarray(shopper.affinity, dtype=float)
        self.affinity = affinity / affinity.sum()
        self.drift = drift
        self.onehot = np.eye(categories)
        self.probabilities = self.affinity.copy()
        moved = np.tile(self.affinity, (categories, 1))
        np.fill_diagonal(moved, 0.0)  # the interest moves to another category, never the one it leaves
        self.moves = moved / np.maximum(moved.sum(axis=1, keepdims=True), 1e-12)

    def observe(self, served: list[int], clicks: list[int]) -> None:
        p = self.params
        last = max(clicks, default=-1)
        likelihood = np.ones(len(self.probabilities))
        for k, item in enumerate(served):
            examined = self.examination[min(k, len(self.examination) - 1)]
            logit = (self.utility[item] - p.click_threshold + p.intent_bonus * self.onehot[self.category_of[item]])
            click = examined / (1.0 + np.exp(-logit / p.click_temperature))
            if k in clicks:
                likelihood *= click
            elif k < last or last < 0:
                likelihood *= 1.0 - click
            else:  # below the last click: the shopper stopped there, or went on and passed this one by
                likelihood *= (1.0 - p.feed_continue) + p.feed_continue * (1.0 - click)
        posterior = self.probabilities * likelihood
        posterior /= max(float(posterior.sum()), 1e-300)
        self.probabilities = (1.0 - self.drift) * posterior + self.drift * posterior @ self.moves


def _adaptive_page(world: _World, prior: np.ndarray, posteriors: ClusterPosteriors, shown: set[int], size: int,
                   rng: np.random.Generator, params: BanditParams) -> list[int]:
    """A page of the adaptive feed (tailor.clusters.adaptive_slate): each cluster's best `size` items not yet shown
    are the candidates, scored as the static feed scores them within a cluster."""
    candidates: list[int] = []
    for items in world.cluster_items:
        candidates += list(itertools.islice((i for i in items if i not in shown), size))
    ids = world.history.world.catalog.item_ids
    slate = adaptive_slate([ids[i] for i in candidates], [POPULARITY_WEIGHT * world.popularity[i] for i in candidates],
                           size, world.clusters, prior, posteriors, rng, params)
    return [world.index_of[item] for item in slate.items]


def ab_test(world: _World, setting: Setting, params: BanditParams, visits: int | None = None) -> dict[str, Any]:
    """The drifting shoppers in an A/B test of adaptive (treatment) against static (control) through the experiment
    framework: assignment, feed ids, Ingest's attribution and cluster posteriors, the report from the statistics;
    each shopper comes `visits` times (the setting's by default: the evaluation's sessions first)."""
    visits = setting.visits if visits is None else visits
    from datetime import UTC, datetime, timedelta

    from tailor.clusters.session import SessionClusters
    from tailor.experiments.assignment import assign, claim_slot
    from tailor.experiments.attribution import Attribution
    from tailor.experiments.definitions import new_experiment
    from tailor.experiments.feed_ids import new_feed_id
    from tailor.experiments.storage import ExperimentStore
    from tailor.ingest.service import Ingestor, StreamRecord
    from tailor.store.memory import MemoryBlobStore, MemoryStateStore

    sim = world.history.world
    clusters = world.clusters
    store = MemoryStateStore()
    experiments = ExperimentStore(store)
    opened = datetime.fromtimestamp(sim.end_ms / 1000.0, tz=UTC)
    experiment = new_experiment({"experiment_id": "adaptive-vs-static", "surface": "feed",
                                 "start": opened.isoformat(), "days": visits + 1,
                                 "variants": [{"name": "static", "strategy": "default"},
                                              {"name": "adaptive", "strategy": "adaptive"}]},
                                now=opened, known_strategies={"default", "adaptive"})
    # The seed's salt rather than a random one (new experiments draw theirs), so a seed assigns the same shoppers.
    experiment = replace(experiment, salt=f"adaptation-{setting.seed}")
    experiment = experiments.create(experiment.started(opened, claim_slot(experiment, [])))
    ingestor = Ingestor(store, MemoryBlobStore(), max_workers=1, attribution=Attribution(),
                        clusters=SessionClusters(clusters, params))
    sequence = 0
    last_day = opened.date()
    for shopper in sim.shoppers:
        _, static_order = _static_ranking(world, shopper, params)
        prior = _adaptive_prior(world, shopper, params)
        bought: set[int] = set()
        for visit in range(visits):
            path = _interests(setting, shopper, visit, setting.drift)
            pages = len(path)
            session = f"s-{shopper.index}-{visit}"
            t_ms = sim.end_ms + 3_600_000 + visit * 86_400_000
            assignment = assign([experiment], "feed", user_id=shopper.user_id, session_id=session)
            variant = assignment.variant_name if assignment is not None else "static"
            choose = np.random.default_rng([setting.seed, 23, shopper.index, visit])
            shown: set[int] = set()
            for page in range(pages):
                if variant == "adaptive":
                    row = store.read("sessions", [session]).get(session) or {}
                    posteriors = ClusterPosteriors.decode(row.get("clusters"))
                    served = _adaptive_page(world, prior, posteriors, shown, setting.page, choose, params)
                else:
                    served = list(itertools.islice((i for i in static_order if i not in shown), setting.page))
                shown.update(served)
                feed_id = (new_feed_id(experiment.experiment_id, variant, assignment.unit_kind)
                           if assignment is not None else new_feed_id())
                act_rng = np.random.default_rng([setting.seed, 29, shopper.index, visit, page])
                acted = act_on_feed(sim, shopper, served, feed_id, session, path[page], bought, act_rng,
                             t_ms + page * 60_000)
                records = []
                for event in _page_events(acted.events, page):
                    records.append(StreamRecord("shardId-000000000000", str(49_000_000_000_000_000_000 + sequence),
                                                json.dumps(event).encode(), event["user_id"],
                                                parse_event(event).epoch))
                    sequence += 1
                if records:
                    outcome = ingestor.ingest(records)
                    if outcome.failed:
                        raise RuntimeError(f"Ingest failed {len(outcome.failed)} of the A/B test's records")
            last_day = max(last_day, datetime.fromtimestamp(t_ms / 1000.0, tz=UTC).date())
    report = experiments.build_report(experiments.get(experiment.experiment_id), through=last_day + timedelta(days=1))
    ctr = report["metrics"]["ctr"]
    comparison = ctr["comparisons"]["adaptive"]
    low, high = comparison["relative_ci"] or (None, None)
    return {"visits": visits, "units": report["units"],
            "pages": {name: int(sum(report["exposures"]["impressions"][name])) for name in ("static", "adaptive")},
            "ctr": {name: ctr["values"][name]["value"] for name in ("static", "adaptive")},
            "difference": comparison["difference"],
            "relative_lift": {"value": comparison["relative"], "low": low, "high": high},
            "p_value": comparison["p_value"], "srm_flagged": report["srm"]["flagged"]}


def _page_events(events: list[dict], page: int) -> list[dict]:
    """A page's events with ids of their own: the simulator numbers each visit to a feed from 0, and Ingest would
    take the next page's events for the producer sending the first page's again."""
    return [dict(event, event_id=f"{event['event_id']}-p{page}") for event in events]


def _cost(world: _World, params: BanditParams, events: list[dict]) -> dict[str, Any]:
    """What adapting costs: a 20-item slate from each cluster's ten best candidates (its p50 and p99 over 500 feeds,
    in process), and Ingest's fold per event (CPU time, in batches of 100 as a stream delivers them) of what the
    shoppers did on the adaptive feed, without and with the clusters."""
    from tailor.clusters.session import SessionClusters
    from tailor.ingest.fold import fold_batch

    rng = np.random.default_rng(3)
    ids = world.history.world.catalog.item_ids
    candidates = [i for items in world.cluster_items for i in items[:10]]
    names, scores = [ids[i] for i in candidates], [POPULARITY_WEIGHT * world.popularity[i] for i in candidates]
    prior = prior_appeal(world.clusters, None, params)
    posteriors = ClusterPosteriors()
    posteriors.observe("f", [world.clusters.ids[0]] * 5 + [world.clusters.ids[1]] * 5, [2], params)
    timings = []
    for _ in range(500):
        started = time.perf_counter()
        adaptive_slate(names, scores, 20, world.clusters, prior, posteriors, rng, params)
        timings.append((time.perf_counter() - started) * 1000.0)
    parsed = [parse_event(e) for e in sorted(events, key=lambda e: (e["session_id"], e["timestamp"]))]
    per_event = {"without": math.inf, "with": math.inf}
    sessions = SessionClusters(world.clusters, params)
    for n in range(5):  # interleaved, the least of five: what the machine's other work added is not the fold's
        # Each first in turn, so that whatever the first run of a pair leaves the second counts against neither.
        for name, clusters in (("without", None), ("with", sessions))[::1 if n % 2 == 0 else -1]:
            rows: dict[str, dict] = {"sessions": {}, "shoppers": {}}
            started = time.process_time()
            for at in range(0, len(parsed), 100):
                accepted = [(f"{at + n:012d}", e) for n, e in enumerate(parsed[at:at + 100])]
                read = {"sessions": {e.session_id: rows["sessions"][e.session_id] for _, e in accepted
                                     if e.session_id in rows["sessions"]},
                        "shoppers": {e.user_id: rows["shoppers"][e.user_id] for _, e in accepted
                                     if e.user_id in rows["shoppers"]}}  # the batch's rows, as Ingest reads them
                folded = fold_batch(accepted, read, "shardId-000000000000", ttl=86400,
                                    arrivals={p: e.epoch for p, e in accepted}, clusters=clusters)
                for table, key, row in folded.changed_rows():
                    rows[table][key] = row.fields()
            per_event[name] = min(per_event[name], (time.process_time() - started) / max(len(parsed), 1) * 1e6)
    return {"slate_ms_p50": round(float(np.percentile(timings, 50)), 3),
            "slate_ms_p99": round(float(np.percentile(timings, 99)), 3),
            "fold_events": len(parsed), "fold_us_per_event": round(per_event["without"], 1),
            "fold_us_per_event_with_clusters": round(per_event["with"], 1),
            "fold_increase": round(per_event["with"] / per_event["without"] - 1.0, 4)}


# -- figures ---------------------------------------------------------------------------------------------------------

def _point(outcome: _Outcome) -> dict[str, float]:
    long = np.asarray(outcome.impressions["static"]) >= MIN_IMPRESSIONS
    ctr = {f: np.asarray(outcome.clicks[f])[long].sum() / max(np.asarray(outcome.impressions[f])[long].sum(), 1)
           for f in TUNED_FEEDS}
    gap = ctr["oracle"] - ctr["static"]
    return {"share": float((ctr["adaptive"] - ctr["static"]) / gap) if gap > 0 else float("nan"),
            "difference": float(ctr["adaptive"] - ctr["static"])}


def _figures(outcome: _Outcome, seed: int) -> dict[str, Any]:
    rows = np.flatnonzero(np.asarray(outcome.impressions["static"]) >= MIN_IMPRESSIONS)
    # The same resamples for every feed and for the runs with and without drift (their sessions are the same).
    picks = rows[np.random.default_rng([seed, 5]).integers(0, len(rows), (BOOTSTRAP, len(rows)))]
    clicks = {f: np.asarray(outcome.clicks[f], dtype=float) for f in FEEDS}
    shown = {f: np.asarray(outcome.impressions[f], dtype=float) for f in FEEDS}
    revenue = {f: np.asarray(outcome.revenue[f], dtype=float) for f in FEEDS}
    ctr = {f: clicks[f][rows].sum() / shown[f][rows].sum() for f in FEEDS}
    boot = {f: clicks[f][picks].sum(axis=1) / shown[f][picks].sum(axis=1) for f in FEEDS}
    gap, boot_gap = ctr["oracle"] - ctr["static"], boot["oracle"] - boot["static"]
    share = (ctr["adaptive"] - ctr["static"]) / gap if gap > 0 else float("nan")
    boot_share = np.divide(boot["adaptive"] - boot["static"], boot_gap, out=np.full(len(boot_gap), np.nan),
                           where=boot_gap > 0)
    ideal = (ctr["ideal"] - ctr["static"]) / gap if gap > 0 else float("nan")
    boot_ideal = np.divide(boot["ideal"] - boot["static"], boot_gap, out=np.full(len(boot_gap), np.nan),
                           where=boot_gap > 0)
    difference = ctr["adaptive"] - ctr["static"]
    boot_difference = boot["adaptive"] - boot["static"]
    long = np.zeros(len(outcome.impressions["static"]), dtype=bool)
    long[rows] = True
    pages = {f: np.asarray(outcome.by_page[f], dtype=float).reshape(-1, 4) for f in FEEDS}
    pages = {f: rows_[long[rows_[:, 0].astype(int)]] for f, rows_ in pages.items()}  # the long sessions' pages
    by_page = {f: [_round(rows_[rows_[:, 1] == page, 2].sum() / max(rows_[rows_[:, 1] == page, 3].sum(), 1.0))
                   for page in range(int(pages["static"][:, 1].max()) + 1)] for f, rows_ in pages.items()}
    later = {f: rows_[rows_[:, 1] >= 1, 2].sum() / max(rows_[rows_[:, 1] >= 1, 3].sum(), 1.0)
             for f, rows_ in pages.items()}  # from the second page on: once the session has shown something
    later_gap = later["oracle"] - later["static"]
    after_first = {name: _round((later[name] - later["static"]) / later_gap) if later_gap > 0 else None
                   for name in ("adaptive", "ideal")}
    early = {f: np.cumsum(np.mean(outcome.early[f], axis=0)) for f in FEEDS}
    feeds = {}
    for f in FEEDS:
        feeds[f] = {"ctr": _ci(ctr[f], boot[f]),
                    "revenue_per_session": _ci(revenue[f][rows].mean(), revenue[f][picks].mean(axis=1)),
                    "clicks": int(clicks[f][rows].sum()), "impressions": int(shown[f][rows].sum())}
    return {"long_sessions": int(len(rows)), "feeds": feeds,
            "share_of_oracle": _round(share), "share_of_oracle_interval": _pct(boot_share),
            "share_of_oracle_figure": _ci(share, boot_share),
            "ideal_share_of_oracle": _round(ideal), "ideal_share_of_oracle_interval": _pct(boot_ideal),
            "ideal_share_of_oracle_figure": _ci(ideal, boot_ideal), "ctr_by_page": by_page,
            "after_first_page": {"share_of_oracle": after_first["adaptive"],
                                 "ideal_share_of_oracle": after_first["ideal"]},
            "difference": _round(difference), "difference_interval": _pct(boot_difference),
            "difference_figure": _ci(difference, boot_difference),
            "regret": {f: np.round(early["oracle"] - early[f], 4).tolist() for f in FEEDS}}


def _ci(value: float, samples: np.ndarray) -> dict[str, float | None]:
    low, high = _pct(samples)
    return {"value": _round(value), "low": low, "high": high}


def _pct(samples: np.ndarray) -> list[float | None]:
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return [None, None]
    return [_round(v) for v in np.percentile(finite, [2.5, 97.5])]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def _round(x: float) -> float | None:
    return round(float(x), 5) if np.isfinite(x) else None


def _interval(figure: dict[str, Any], digits: int) -> str:
    if figure["value"] is None or figure["low"] is None:
        return "-"
    return f"{figure['value']:.{digits}f} [{figure['low']:.{digits}f}, {figure['high']:.{digits}f}]"


if __name__ == "__main__":
    sys.exit(main())
