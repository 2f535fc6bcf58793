"""Validate the experiment statistics on simulated experiments whose truth is known, and on the Open Bandit Dataset.

    tailor evaluate experiments [--aa-runs 500] [--ab-runs 500] [--units 20000] [--days 14] [--seed 17]
                                [--srm-runs 2000] [--srm-units 400000] [--interleaving-runs 2000]
                                [--obd DIR | --no-obd] [--only PART ...] [--json FILE]

Shoppers. The closed-loop simulator's choice model (tailor_lab.simulator, as `tailor simulate online` serves feeds
to its shoppers) on a pool of its shoppers (--pool): each visit to a feed draws the session's category from the
shopper's tastes, looks down the feed with the feed surface's examination probability, clicks an examined item with
the probability its utility gives (the intent bonus for the session's category included), goes on down after a
click with probability feed_continue, carts a clicked item by its utility and dearness, and pays at checkout by the
shopper's propensity; all drawn with numpy for every visit of a run at once. A run's exposed units are drawn from
the pool in proportion to the chance that a shopper visits in the experiment's --days (at the simulator's visit
rates), with their visits spread over the days; the pre-exposure covariate is each unit's revenue over the 28 days
before (simulated the same way on the control feed); the predicted LTV is the shopper's expected yearly revenue
times a log-normal error (sd 0.5); the realized revenue is the unit's revenue in the REVENUE_DAYS (28) after its
first visit, those past the experiment's end on the control's feed (the rows get one more day, the window's last,
with what came after the end). Repeat purchases of one item are not penalised here (few units buy twice).

Each run's per-unit totals as of each day go through the product's code: SufficientStatistics of the units
(tailor.experiments.statistics), daily rows as differences of those, and tailor.experiments.report.build_report,
whose daily cumulative comparisons (CUPED-adjusted, confidence sequences tightest at --units) are what is checked.
The first run also builds its rows one unit change at a time with statistics.increments, and must agree.

Validations (alpha 0.05):
* A/A: --aa-runs experiments of the same feed in both arms; the share whose last day's 95% interval of the relative
  lift excludes 0 (fixed horizon, per metric) and whose confidence sequence excludes 0 on any day (looked at daily).
* A/B: the treatment's click probabilities are the control's times the factor that lifts the expected CTR by
  exactly 5% (the true relative lifts of CTR and revenue per unit follow exactly from the choice model, as
  expectations over the pool); coverage of the 95% intervals and
  the power to find the lift (interval above 0), fixed horizon and sequential, at --units.
* SRM: --srm-runs 50/50 assignments of --srm-units units, intact or with 2% of one variant's exposures lost; the
  share flagged (p < 0.001). At the default size too, for what it can tell.
* Interleaving: two rankers that re-rank the shop's best-sellers for each shopper by its utility plus noise (one
  noisier than the other). A run draws its shoppers as an experiment's units are drawn, each visiting as often as
  it would in --days, one query a visit. Interleaved: every visit gets the rankers' team draft
  (tailor.experiments.interleaving; vectorised here and checked against the product's on the first run's first
  200 queries), and the test is the product's shopper_test, Student's t-test of each shopper's credits summed over
  their visits: the centred rank credit (rank_credit: a clicked item's rank in B minus its rank in A, less its
  slot's expectation over team draft's coins, slot_baselines, vectorised here by all 1,024 coin sequences and
  checked against the product's; a list served live carries the same credit, rounded without bias to whole
  multiples of 1/CREDIT_SCALE), and, beside it, team draft's own (clicks on A's items minus B's). A/B: each
  shopper in one arm (a fair coin), every visit gets its arm's ranking, and the test is the product's A/B test of
  CTR (tailor.experiments.stats.compare: clicks / impressions per unit by the delta method, z-test), as reports
  compute it. A run is right when its test names the better ranker (the higher expected CTR) at p < 0.05; for
  each, the fewest shoppers at which 95% of --interleaving-runs runs are right (doubling, then halving the gap down
  to 3%, fresh runs at every size), their ratio, and at that size how often the test names a winner between a
  ranker and itself, and (interleaved) when each visit's clicks are another visit's of the run, so that they
  depend on the slot and not on the item (both should be at most 5%). The two rankers' errors are independent, so
  they put the same item in few slots; beside them, candidates that agree more with ranker A, as a new ranker does
  with the one it would replace: B scoring by utility plus a share of A's own error (CANDIDATE_ERRORS), the first
  by the same runs, the others by the normal approximation alone. Beside each normal approximation, the ceiling of
  such credits: the most sensitive function of a clicked item's ranks in A and in B that is centred as the rank
  credit is and antisymmetric (swapping the rankers negates it, as fidelity asks), its weights fitted on half of the
  approximation's shoppers and scored on the other half; and the rank credit on another design's lists, optimized
  interleaving's (Radlinski and Craswell 2013): lists each of whose prefixes is a prefix of A's ranking together with
  a prefix of B's, served with the probabilities a linear program chooses among a sample of them, every slot's
  expected rank difference 0 as near as the sample allows (each slot's credit centred by its exact expectation).
* Open Bandit Dataset (--obd, default ../shared/data/obd; README of ../shared/data): per campaign and pooled, the CTR
  of uniform random and Bernoulli Thompson sampling (BTS), BTS's relative lift with its 95% interval and the SRM
  check of the impressions; and BTS's CTR estimated from the random logs by DM, IPW, SNIPW and DR
  (tailor.experiments.offpolicy), BTS's action distribution being each item's share of BTS's logged impressions at
  each position, the reward model a logistic regression on the user features, the user-item affinity, the item and
  the position (cross-fitted in 3 folds); relative error against BTS's logged CTR beside zr-obp's.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from tailor.experiments.attribution import DEFAULT_REVENUE_DAYS as REVENUE_DAYS
from tailor.experiments.interleaving import A, B, shopper_test, slot_baselines, team_draft
from tailor.experiments.offpolicy import estimate_all
from tailor.experiments.report import build_report
from tailor.experiments.statistics import QUANTITIES, SufficientStatistics, UnitTotals, increments
from tailor.experiments.stats import ALPHA, compare, sample_ratio_mismatch
from tailor_lab import report_json

from ..datasets import SHARED_DATA
from ..simulator.catalog import Catalog
from ..simulator.choices import Draws, ItemChoice
from ..simulator.parameters import DEFAULT_PARAMETERS, Parameters
from ..simulator.shoppers import make_shoppers

__all__ = ["Population", "main", "run"]

DEFAULT_OBD = SHARED_DATA / "obd"
FEED_LENGTH = 20
PRE_DAYS = 28
LIFT = 0.05
SRM_LOSS = 0.02
# The interleaved rankers re-rank the best-sellers by each shopper's utility plus noise of these sds.
NOISE = (3.0, 1.5)
# Candidates beside the main pair: ranker B scores by utility plus this share of ranker A's own error.
CANDIDATE_ERRORS = (0.5, 0.8)
APPROXIMATION_SHOPPERS = 100_000  # simulated shoppers behind each normal approximation
# Optimized interleaving's lists of a pair: this many sampled (and both rankings), its LP choosing among them.
OPTIMIZED_SAMPLES = 600
# Interleaving and the A/B test each need enough shoppers to name the better ranker (p < ALPHA) in this share of runs.
INTERLEAVING_TARGET = 0.95
# The random streams of the interleaved runs: the real pair, a ranker against itself, clicks moved between visits.
_NULL_STREAMS = {None: 52, "itself": 55, "slot clicks": 58}
_NORMAL = NormalDist()
_COIN_SEQUENCES = 2 ** (FEED_LENGTH // 2)  # team draft's equally likely coin sequences for a list of FEED_LENGTH
# zr-obp's examples: relative errors estimating BTS's CTR from the random logs of `all` (small version).
ZR_OBP_ERRORS = {"DM": 0.157, "IPW": 0.311, "SNIPW": 0.312, "DR": 0.292}
GOALS = {"aa_fpr_fixed": (0.03, 0.07), "aa_fpr_sequential": (0.0, 0.05), "coverage": (0.93, 1.0),
         "srm_detection": (0.95, 1.0), "srm_false_alarm": (0.0, 0.01), "interleaving_ratio": (10.0, math.inf)}
METRIC_LIST = ("ctr", "conversion", "aov", "revenue", "ltv", "realized")
# What --only can pick: the A/A and A/B experiments, the SRM check, interleaving, the Open Bandit Dataset.
PARTS = ("experiments", "srm", "interleaving", "obd")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor evaluate experiments", description=__doc__.split("\n")[0])
    parser.add_argument("--aa-runs", type=int, default=500, help="A/A experiments (500)")
    parser.add_argument("--ab-runs", type=int, default=500, help="A/B experiments with a known lift (500)")
    parser.add_argument("--units", type=int, default=20_000, help="exposed shoppers per experiment (20000)")
    parser.add_argument("--days", type=int, default=14, help="days per experiment (14)")
    parser.add_argument("--pool", type=int, default=3000, help="simulated shoppers the units are drawn from (3000)")
    parser.add_argument("--srm-runs", type=int, default=2000, help="assignments per SRM case (2000)")
    parser.add_argument("--srm-units", type=int, default=400_000, help="units per SRM assignment (400000)")
    parser.add_argument("--interleaving-runs", type=int, default=2000,
                        help="runs per interleaving and A/B size (2000)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--obd", type=Path, default=DEFAULT_OBD, help="Open Bandit Dataset folder (%(default)s)")
    parser.add_argument("--no-obd", action="store_true", help="skip the Open Bandit Dataset")
    parser.add_argument("--only", action="append", choices=PARTS,
                        help="run only this part (repeatable; default: all)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    for name in ("aa_runs", "ab_runs", "units", "days", "pool", "srm_runs", "srm_units", "interleaving_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    started = time.perf_counter()
    report = run(aa_runs=args.aa_runs, ab_runs=args.ab_runs, units=args.units, days=args.days, pool=args.pool,
                 srm_runs=args.srm_runs, srm_units=args.srm_units, interleaving_runs=args.interleaving_runs,
                 seed=args.seed, obd=None if args.no_obd else args.obd, parts=tuple(args.only or PARTS),
                 echo=lambda text: print(text, file=sys.stderr))
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write(args.json, report)
        print(f"\nwritten to {args.json}")
    return 0


def run(*, aa_runs: int = 500, ab_runs: int = 500, units: int = 20_000, days: int = 14, pool: int = 3000,
        srm_runs: int = 2000, srm_units: int = 400_000, interleaving_runs: int = 2000,
        approximation_shoppers: int = APPROXIMATION_SHOPPERS, seed: int = 17,
        obd: Path | None = DEFAULT_OBD, parts: Sequence[str] = PARTS,
        echo: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every validation in `parts`; the figures as a JSON-ready dict."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown part {sorted(unknown)[0]!r}: one of {', '.join(PARTS)}")
    population = Population.simulated(pool, seed, days)
    echo(f"pool of {pool} simulated shoppers; expected feed CTR {population.expected_ctr(population.best_sellers):.4f}")
    report: dict[str, Any] = {"units": units, "days": days, "pool": pool, "seed": seed, "parts": list(parts)}
    if "experiments" in parts:
        _simulated_experiments(report, population, aa_runs, ab_runs, units, days, seed, echo)
    if "srm" in parts:
        report["srm"] = _srm(srm_runs, srm_units, units, seed)
        report["srm_detection"] = report["srm"]["detection"]
        report["srm_false_alarm"] = report["srm"]["false_alarm"]
    if "interleaving" in parts:
        started = time.perf_counter()
        report["interleaving"] = _interleaving(population, interleaving_runs, days, seed, echo,
                                               approximation_shoppers)
        report["interleaving"]["seconds"] = round(time.perf_counter() - started, 1)
        report["interleaving_ratio"] = report["interleaving"]["ratio"]
    if "obd" in parts:
        if obd is not None and Path(obd).is_dir():
            report["obd"] = evaluate_obd(Path(obd), seed)
        else:
            reason = "--no-obd" if obd is None else f"{obd} not found"
            echo(f"Open Bandit Dataset skipped: {reason}")
            report["obd"] = {"skipped": reason}
    report["goals"] = {key: {"value": report[key], "range": list(bounds), "met": bounds[0] <= report[key] <= bounds[1]}
                       for key, bounds in GOALS.items() if report.get(key) is not None}
    return report


def _simulated_experiments(report: dict[str, Any], population: Population, aa_runs: int, ab_runs: int, units: int,
                           days: int, seed: int, echo: Callable[[str], None]) -> None:
    started = time.perf_counter()
    aa = _experiments(population, aa_runs, units, days, seed, lift=0.0, echo=echo)
    report["product_path_check"] = aa.pop("product_path_check")
    report["aa"] = aa | {"seconds": round(time.perf_counter() - started, 1)}
    report["aa_fpr_fixed"] = aa["fpr_fixed"]["ctr"]
    report["aa_fpr_sequential"] = aa["fpr_sequential"]["ctr"]
    echo(f"A/A: {aa_runs} runs in {report['aa']['seconds']} s")
    started = time.perf_counter()
    ab = _experiments(population, ab_runs, units, days, seed + 1, lift=LIFT, echo=echo)
    ab.pop("product_path_check")
    report["ab"] = ab | {"seconds": round(time.perf_counter() - started, 1)}
    report["coverage"] = ab["coverage"]["ctr"]
    report["power"] = ab["power_fixed"]["ctr"]
    echo(f"A/B: {ab_runs} runs in {report['ab']['seconds']} s")


# -- the simulated shoppers --------------------------------------------------------------------------------------------

@dataclass
class Population:
    """A pool of the simulator's shoppers as arrays: how often they visit and how they act on a feed's items."""

    rate: np.ndarray  # feed visits per day
    weight: np.ndarray  # chance of being exposed in the experiment's days, normalised: how units are drawn
    affinity_cum: np.ndarray  # shoppers x categories, cumulative shares of session categories
    take_in: np.ndarray  # shoppers x items: click probability of an examined item, session in its category
    take_out: np.ndarray  # ... in another category
    cart: np.ndarray  # shoppers x items: carting probability after a click
    pay: np.ndarray  # checkout pays
    price: np.ndarray
    category_of: np.ndarray
    examination: np.ndarray  # per feed position
    go_on: float
    utility: np.ndarray  # shoppers x items
    available: np.ndarray  # items the shop can sell
    best_sellers: np.ndarray  # the shop's feed: best-selling available items
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def simulated(cls, count: int, seed: int, days: int, params: Parameters = DEFAULT_PARAMETERS) -> Population:
        catalog = Catalog(np.random.default_rng([seed, 0]), 1200, params)
        choice = ItemChoice(catalog, Draws(np.random.default_rng([seed, 1])), params)
        shoppers = make_shoppers(np.random.default_rng([seed, 2]), count, f"x{seed}", params)
        utility = np.array([choice.utility(s) for s in shoppers])
        available = np.asarray(catalog.available, dtype=float)
        take = utility - params.click_threshold
        cart = _sigmoid((utility - np.asarray(choice.dearness)[None, :] - params.cart_threshold)
                        / params.click_temperature) * available[None, :]
        rate = np.array([s.sessions_per_day for s in shoppers])
        exposed = 1.0 - np.exp(-rate * days)
        order = np.argsort(-np.asarray(catalog.popularity), kind="stable")
        best = np.array([i for i in order if catalog.available[i]][:FEED_LENGTH])
        return cls(rate=rate, weight=exposed / exposed.sum(),
                   affinity_cum=np.cumsum([s.affinity for s in shoppers], axis=1),
                   take_in=_sigmoid((take + params.intent_bonus) / params.click_temperature).astype(np.float32),
                   take_out=_sigmoid(take / params.click_temperature).astype(np.float32),
                   cart=cart.astype(np.float32),
                   pay=np.minimum(0.85, params.pay_rate * np.array([s.propensity for s in shoppers]) + 0.05),
                   price=np.asarray(catalog.price), category_of=catalog.category_of,
                   examination=np.asarray(choice.examination["feed"][:FEED_LENGTH]), go_on=params.feed_continue,
                   utility=utility, available=available > 0, best_sellers=best)

    def visits(self, shoppers: np.ndarray, feeds: np.ndarray, rng: np.random.Generator, scale: float = 1.0
               ) -> dict[str, np.ndarray]:
        """One visit per entry of `shoppers` to its feed (visits x FEED_LENGTH items, or one feed for all): clicks
        per position, orders (0/1) and revenue. `scale` multiplies every click probability (an injected lift)."""
        count = len(shoppers)
        category = (self.affinity_cum[shoppers] < rng.random(count)[:, None] * self.affinity_cum[shoppers, -1:]).sum(1)
        if feeds.ndim == 1:  # one feed for all: its columns once, then rows by shopper
            take_in, take_out, cart = (self._columns(feeds)[i][shoppers] for i in range(3))
            feeds = np.broadcast_to(feeds, (count, FEED_LENGTH))
        else:
            rows = shoppers[:, None]
            take_in, take_out, cart = self.take_in[rows, feeds], self.take_out[rows, feeds], self.cart[rows, feeds]
        take = np.where(self.category_of[feeds] == category[:, None], take_in, take_out)
        chance = np.minimum(1.0, self.examination[None, :] * take * scale)
        draws = rng.random((3, count, FEED_LENGTH), dtype=np.float32)
        clicked = draws[0] < chance
        stops = clicked & (draws[1] >= self.go_on)
        # the shopper leaves after the first click it does not go on from: nothing below it is seen
        first_stop = np.where(stops.any(axis=1), stops.argmax(axis=1), FEED_LENGTH)
        clicked &= np.arange(FEED_LENGTH)[None, :] <= first_stop[:, None]
        carted = clicked & (draws[2] < cart)
        paid = carted.any(axis=1) & (rng.random(count) < self.pay[shoppers])
        revenue = np.where(paid, (carted * self.price[feeds]).sum(axis=1), 0.0)
        return {"clicked": clicked, "clicks": clicked.sum(axis=1), "orders": paid.astype(float), "revenue": revenue}

    def _columns(self, feed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = feed.tobytes()
        if key not in self._cache:
            self._cache[key] = (self.take_in[:, feed], self.take_out[:, feed], self.cart[:, feed])
        return self._cache[key]

    def expected_per_visit(self, feeds: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Each pool shopper's expected clicks and revenue per visit to its feed (one feed for all, or shoppers x
        FEED_LENGTH), exactly: over the session's categories, the reach of each position and carting."""
        count = len(self.rate)
        feeds = np.broadcast_to(feeds, (count, FEED_LENGTH))
        rows = np.arange(count)[:, None]
        clicks = np.zeros(count)
        revenue = np.zeros(count)
        shares = np.diff(self.affinity_cum, axis=1, prepend=0.0) / self.affinity_cum[:, -1:]
        cart_value = self.cart[rows, feeds] * self.price[feeds]
        for category in range(shares.shape[1]):
            same = self.category_of[feeds] == category
            take = np.where(same, self.take_in[rows, feeds], self.take_out[rows, feeds])
            chance = np.minimum(1.0, self.examination[None, :] * take * scale)
            # reach of position k: no click before it that the shopper did not go on from
            leave = chance * (1.0 - self.go_on)
            reach = np.cumprod(np.column_stack([np.ones(count), 1.0 - leave[:, :-1]]), axis=1)
            clicks += shares[:, category] * (reach * chance).sum(axis=1)
            revenue += shares[:, category] * (reach * chance * cart_value).sum(axis=1)
        return clicks, revenue * self.pay

    def yearly_revenue(self, feed: np.ndarray) -> np.ndarray:
        """Each pool shopper's expected revenue in a year of visits to `feed`."""
        key = ("yearly", feed.tobytes())
        if key not in self._cache:
            self._cache[key] = self.expected_per_visit(feed)[1] * self.rate * 365.0
        return self._cache[key]

    def expected_ctr(self, feed: np.ndarray) -> float:
        clicks, _ = self.expected_per_visit(feed)
        visits = self.rate  # visits are in proportion to the rate
        return float((visits * clicks).sum() / (visits.sum() * len(feed)))

    def exposed_visits(self, days: int) -> np.ndarray:
        """Expected visits of a unit of each pool shopper in the experiment, given that it is exposed."""
        mean = self.rate * days
        return mean / (1.0 - np.exp(-mean))


# -- A/A and A/B experiments -----------------------------------------------------------------------------------------

def _experiments(population: Population, runs: int, units: int, days: int, seed: int, *, lift: float,
                 echo: Callable[[str], None]) -> dict[str, Any]:
    feed = population.best_sellers
    scale = _scale_for(population, feed, days, lift)
    truth = _true_lifts(population, feed, days, scale)
    experiment = {"experiment_id": "simulated", "variants": [{"name": "control", "share": 0.5},
                                                             {"name": "treatment", "share": 0.5}],
                  "planned_units": units}
    fixed = {m: 0 for m in METRIC_LIST}
    sequential = {m: 0 for m in METRIC_LIST}
    covered = {m: 0 for m in truth}
    covered_cs = {m: 0 for m in truth}
    power_fixed = {m: 0 for m in METRIC_LIST}
    power_sequential = {m: 0 for m in METRIC_LIST}
    widths = {"cuped": [], "plain": []}
    check = None
    for r in range(runs):
        rng = np.random.default_rng([seed, 31, r])
        rows, unit_totals = _simulate_rows(population, feed, units, days, rng, scale)
        if r == 0:
            check = _product_path_check(rows, unit_totals)
        report = build_report(experiment, rows)
        for metric in METRIC_LIST:
            final = report["metrics"][metric]["comparisons"]["treatment"]
            daily = report["metrics"][metric]["daily"]["treatment"]
            if final["relative_ci"] is None:
                continue
            low, high = final["relative_ci"]
            fixed[metric] += not low <= 0.0 <= high
            power_fixed[metric] += low > 0.0
            sequential[metric] += any(p["relative_cs"] is not None and not p["relative_cs"][0] <= 0 <= p["relative_cs"][1]
                                      for p in daily)
            power_sequential[metric] += daily[-1]["relative_cs"] is not None and daily[-1]["relative_cs"][0] > 0
            if metric in truth:
                covered[metric] += low <= truth[metric] <= high
                cs_low, cs_high = daily[-1]["relative_cs"]
                covered_cs[metric] += cs_low <= truth[metric] <= cs_high
            if metric == "revenue":
                widths["cuped"].append(high - low)
                plain_low, plain_high = final["unadjusted"]["relative_ci"]
                widths["plain"].append(plain_high - plain_low)
        if (r + 1) % 100 == 0:
            echo(f"  {'A/B' if lift else 'A/A'} run {r + 1}/{runs}")
    share = lambda counts: {m: round(c / runs, 4) for m, c in counts.items()}  # noqa: E731
    out: dict[str, Any] = {"runs": runs, "fpr_fixed": share(fixed), "fpr_sequential": share(sequential),
                           "product_path_check": check,
                           "cuped_revenue_interval_width_ratio": round(float(np.mean(widths["cuped"])
                                                                             / np.mean(widths["plain"])), 4)}
    if lift:
        out |= {"click_probability_scale": round(scale, 6), "true_relative_lift": {m: round(v, 5) for m, v in truth.items()},
                "coverage": share(covered), "coverage_sequential": share(covered_cs),
                "power_fixed": share(power_fixed), "power_sequential": share(power_sequential)}
        del out["fpr_fixed"], out["fpr_sequential"]
    return out


def _scale_for(population: Population, feed: np.ndarray, days: int, lift: float) -> float:
    """The factor on every click probability that lifts the expected CTR by `lift` (the cascade damps it)."""
    if lift == 0:
        return 1.0
    low, high = 1.0, 1.0 + 3.0 * lift
    for _ in range(40):
        middle = (low + high) / 2
        if _true_lifts(population, feed, days, middle)["ctr"] < lift:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _true_lifts(population: Population, feed: np.ndarray, days: int, scale: float) -> dict[str, float]:
    """The true relative lifts of CTR and revenue per unit when the treatment's click probabilities are the
    control's times `scale`: expectations over the units' distribution."""
    visits = population.weight * population.exposed_visits(days)
    control = population.expected_per_visit(feed)
    treated = population.expected_per_visit(feed, scale)
    # impressions per visit are the same in both arms, so CTR's lift is that of clicks per unit
    return {"ctr": float((visits * treated[0]).sum() / (visits * control[0]).sum() - 1.0),
            "revenue": float((visits * treated[1]).sum() / (visits * control[1]).sum() - 1.0)}


def _simulate_rows(population: Population, feed: np.ndarray, units: int, days: int, rng: np.random.Generator,
                   scale: float) -> tuple[list[tuple[str, str, SufficientStatistics]], dict]:
    """One experiment: its daily statistics rows per arm, and each unit's totals per day (for the product check)."""
    shopper = rng.choice(len(population.rate), size=units, p=population.weight)
    arm = rng.random(units) < 0.5
    mean = population.rate[shopper] * days
    visits = rng.poisson(mean)
    while (missing := visits == 0).any():  # exposed units visit at least once
        visits[missing] = rng.poisson(mean[missing])
    unit_of_visit = np.repeat(np.arange(units), visits)
    day = np.floor(rng.random(len(unit_of_visit)) * days).astype(int)
    outcome = {"clicks": np.zeros(len(unit_of_visit)), "orders": np.zeros(len(unit_of_visit)),
               "revenue": np.zeros(len(unit_of_visit))}
    for treated, factor in ((False, 1.0), (True, scale)):
        rows = np.flatnonzero(arm[unit_of_visit] == treated)
        result = population.visits(shopper[unit_of_visit[rows]], feed, rng, factor)
        for key in outcome:
            outcome[key][rows] = result[key]
    pre_visits = rng.poisson(population.rate[shopper] * PRE_DAYS)
    pre_unit = np.repeat(np.arange(units), pre_visits)
    pre = population.visits(shopper[pre_unit], feed, rng)
    pre_revenue = np.bincount(pre_unit, weights=pre["revenue"], minlength=units)
    yearly = population.yearly_revenue(feed)
    predicted_ltv = yearly[shopper] * rng.lognormal(0.0, 0.5, units)
    first = np.full(units, days)
    np.minimum.at(first, unit_of_visit, day)
    # realized revenue: the unit's revenue in REVENUE_DAYS after its first visit, those past the experiment's end on
    # the control's feed (the experiment over, every shopper gets it)
    in_window = outcome["revenue"] * (day < first[unit_of_visit] + REVENUE_DAYS)
    realized_in = np.bincount(unit_of_visit, weights=in_window, minlength=units)
    follow = np.maximum(0, first + REVENUE_DAYS - days)
    later_unit = np.repeat(np.arange(units), rng.poisson(population.rate[shopper] * follow))
    later = population.visits(shopper[later_unit], feed, rng)
    realized_after = np.bincount(later_unit, weights=later["revenue"], minlength=units)
    # each unit's running totals as of each day: units x days
    slot = unit_of_visit * days + day
    running = {name: np.bincount(slot, weights=weights, minlength=units * days).reshape(units, days).cumsum(axis=1)
               for name, weights in (("impressions", np.full(len(slot), float(FEED_LENGTH))),
                                     ("clicks", outcome["clicks"]), ("orders", outcome["orders"]),
                                     ("revenue", outcome["revenue"]), ("realized", in_window))}
    totals_by_day = []
    rows: list[tuple[str, str, SufficientStatistics]] = []
    previous = {False: SufficientStatistics(), True: SufficientStatistics()}
    # the experiment's days, then one row on the last day of the realized-revenue window with what came after
    for d in [*range(days), days + REVENUE_DAYS - 1]:
        last = min(d, days - 1)
        orders = running["orders"][:, last]
        realized = running["realized"][:, d] if d < days else realized_in + realized_after
        values = np.column_stack([running["impressions"][:, last], running["clicks"][:, last], orders,
                                  running["revenue"][:, last], orders > 0, predicted_ltv, pre_revenue, realized,
                                  np.zeros(len(orders))])  # no interleaving credit in an A/B test
        exposed = first <= d
        totals_by_day.append((_day_name(d), values, exposed))
        for treated, name in ((False, "control"), (True, "treatment")):
            cumulative = SufficientStatistics.of_values(values[exposed & (arm == treated)])
            rows.append((name, _day_name(d), _difference(cumulative, previous[treated])))
            previous[treated] = cumulative
    return rows, {"arm": arm, "totals": totals_by_day}


def _day_name(day: int) -> str:
    return f"day-{day + 1:03d}"


def _difference(after: SufficientStatistics, before: SufficientStatistics) -> SufficientStatistics:
    return SufficientStatistics(after.n - before.n, tuple(a - b for a, b in zip(after.sums, before.sums)),
                                tuple(a - b for a, b in zip(after.products, before.products)))


def _product_path_check(rows: list[tuple[str, str, SufficientStatistics]], units: dict) -> dict[str, Any]:
    """The same rows built as attribution builds them: one statistics.increments per change of a unit's totals."""
    arm, totals = units["arm"], units["totals"]
    built: dict[tuple[str, str], SufficientStatistics] = {}
    before: dict[int, UnitTotals] = {}
    for day, values, exposed in totals:
        for unit in np.flatnonzero(exposed):
            row = values[unit]
            after = UnitTotals(int(row[0]), int(row[1]), int(row[2]), float(row[3]), float(row[5]), float(row[6]),
                               float(row[7]))
            if before.get(unit) != after:
                key = ("treatment" if arm[unit] else "control", day)
                built[key] = built.get(key, SufficientStatistics()) + increments(before.get(unit), after)
                before[unit] = after
    worst = 0.0
    for name, day, stats in rows:
        other = built.get((name, day), SufficientStatistics())
        if other.n != stats.n:
            raise AssertionError(f"{name} {day}: {other.n} units one by one, {stats.n} vectorised")
        for a, b in zip(stats.sums + stats.products, other.sums + other.products):
            worst = max(worst, abs(a - b) / max(1.0, abs(a)))
    if worst > 1e-6:
        raise AssertionError(f"vectorised rows differ from statistics.increments by {worst:.2e} (relative)")
    return {"rows": len(rows), "max_relative_difference": worst}


# -- sample-ratio mismatch -----------------------------------------------------------------------------------------------

def _srm(runs: int, units: int, default_units: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 41])

    def flagged(size: int, loss: float) -> float:
        control = rng.binomial(size, 0.5, runs)
        treatment = size - control
        kept = treatment - rng.binomial(treatment, loss)
        return sum(sample_ratio_mismatch([int(c), int(t)], [0.5, 0.5]).flagged
                   for c, t in zip(control, kept)) / runs

    return {"runs": runs, "units": units, "loss": SRM_LOSS, "detection": flagged(units, SRM_LOSS),
            "false_alarm": flagged(units, 0.0), "detection_at_default_units": flagged(default_units, SRM_LOSS),
            "default_units": default_units}


# -- interleaving --------------------------------------------------------------------------------------------------------

def _interleaving(population: Population, runs: int, days: int, seed: int, echo: Callable[[str], None],
                  approximation_shoppers: int = APPROXIMATION_SHOPPERS) -> dict[str, Any]:
    """The shop's best-sellers re-ranked for each shopper by two scorers, one noisier: the shoppers each method
    needs to pick the better one. Beside it, by the normal approximation alone, pairs of rankers that agree more:
    a candidate that keeps part of the current ranker's error (CANDIDATE_ERRORS)."""
    rng = np.random.default_rng([seed, 51])
    candidates = population.best_sellers
    utility = population.utility[:, candidates]
    errors = {team: rng.normal(0.0, noise, utility.shape) for team, noise in zip((A, B), NOISE)}
    rankings = {team: candidates[np.argsort(-(utility + errors[team]), axis=1)] for team in (A, B)}
    report = _compare_rankers(population, rankings, runs, days, seed, echo, approximation_shoppers) | {
        "noise": list(NOISE)}
    report["agreement"] = round(float((rankings[A] == rankings[B]).mean()), 4)
    report["candidates"] = []
    for k, kept in enumerate(CANDIDATE_ERRORS):
        pair = {A: rankings[A], B: candidates[np.argsort(-(utility + kept * errors[A]), axis=1)]}
        echo(f"interleaving, a candidate keeping {kept:.0%} of ranker A's error:")
        if k == 0:  # as the main pair: its CTR gap is about the same, so the A/B test needs about as many shoppers
            compared = _compare_rankers(population, pair, runs, days, seed, echo, approximation_shoppers)
        else:  # an A/B test would need many thousands of shoppers: the approximation alone
            ctr = _expected_ctrs(population, pair, days)
            compared = {"ctr": {team: round(value, 5) for team, value in ctr.items()},
                        "normal_approximation": _normal_approximation(
                            population, pair, _slot_baselines(pair[A], pair[B]), days, seed, ctr[B] - ctr[A],
                            approximation_shoppers)}
            echo(f"the normal approximation needs {compared['normal_approximation']['interleaving']:,.0f} shoppers "
                 f"interleaved and {compared['normal_approximation']['ab']:,.0f} in an A/B test")
        report["candidates"].append({"kept_error": kept, "agreement": round(float((pair[A] == pair[B]).mean()), 4),
                                     **compared})
    return report


def _expected_ctrs(population: Population, rankings: dict[str, np.ndarray], days: int) -> dict[str, float]:
    """Each ranking's expected CTR over the visits of an experiment's units."""
    visits = population.weight * population.exposed_visits(days)
    return {team: float((visits * population.expected_per_visit(rankings[team])[0]).sum() / visits.sum()) / FEED_LENGTH
            for team in (A, B)}


def _compare_rankers(population: Population, rankings: dict[str, np.ndarray], runs: int, days: int, seed: int,
                     echo: Callable[[str], None], approximation_shoppers: int = APPROXIMATION_SHOPPERS
                     ) -> dict[str, Any]:
    """Interleaving (the centred rank credit, and team draft's own) against an A/B test of two rankers (shoppers x
    FEED_LENGTH items each), shoppers visiting as they would in `days`: the fewest shoppers at which each test names
    the better ranker in INTERLEAVING_TARGET of runs, and how often each names a winner between a ranker and itself
    and, interleaved, when every visit's clicks are another visit's (they then depend on the slot, not the item)."""
    ctr = _expected_ctrs(population, rankings, days)
    better = A if ctr[A] > ctr[B] else B
    echo(f"interleaving: expected CTR of ranker A {ctr[A]:.4f}, B {ctr[B]:.4f}")
    between = _between_shopper_shares(population, rankings[A], days, seed)
    baselines = _slot_baselines(rankings[A], rankings[B])
    approximation = _normal_approximation(population, rankings, baselines, days, seed, ctr[B] - ctr[A],
                                          approximation_shoppers)

    def interleaved(shoppers: int, null: str | None, credit: str) -> float:
        """Share of runs whose per-shopper t-test names the better ranker (under a null: names any)."""
        named = 0
        for r in range(runs):
            run_rng = np.random.default_rng([seed, _NULL_STREAMS[null], shoppers, r])
            shopper, unit_of_visit = _window(population, shoppers, days, run_rng)
            visitor = shopper[unit_of_visit]
            other = rankings[A] if null == "itself" else rankings[B]
            coins = run_rng.random((len(visitor), FEED_LENGTH))
            items, from_a = _team_draft(rankings[A][visitor], other[visitor], coins)
            if r == 0 and null is None:
                _team_draft_check(rankings[A][visitor], other[visitor], coins, items, from_a)
            clicked = population.visits(visitor, items, run_rng)["clicked"]
            if null == "slot clicks":
                clicked = clicked[run_rng.permutation(len(clicked))]
            per_visit = _credits(credit, clicked, items, from_a, rankings[A][visitor], other[visitor],
                                 0.0 if null == "itself" else baselines[visitor])
            result = shopper_test(np.bincount(unit_of_visit, weights=per_visit, minlength=shoppers).tolist())
            named += result.preferred is not None if null else result.preferred == better
        return named / runs

    def ab(shoppers: int, null: str | None) -> float:
        """Share of runs whose A/B test of CTR names the better ranker (under the null: names any)."""
        named = 0
        for r in range(runs):
            run_rng = np.random.default_rng([seed, 56 if null else 53, shoppers, r])
            shopper, unit_of_visit = _window(population, shoppers, days, run_rng)
            arm = run_rng.random(shoppers) < 0.5  # True: ranker B (the treatment)
            visitor = shopper[unit_of_visit]
            treated = rankings[A] if null else rankings[B]
            feeds = np.where(arm[unit_of_visit][:, None], treated[visitor], rankings[A][visitor])
            clicks = np.bincount(unit_of_visit, weights=population.visits(visitor, feeds, run_rng)["clicks"],
                                 minlength=shoppers)
            values = np.zeros((shoppers, len(QUANTITIES)))
            values[:, QUANTITIES.index("impressions")] = np.bincount(unit_of_visit, minlength=shoppers) * FEED_LENGTH
            values[:, QUANTITIES.index("clicks")] = clicks
            result = compare(SufficientStatistics.of_values(values[~arm]), SufficientStatistics.of_values(values[arm]),
                             "ctr")
            if result.p_value is not None and result.p_value < ALPHA:
                named += True if null else (B if result.difference > 0 else A) == better
        return named / runs

    methods = {"interleaving": (lambda size, null: interleaved(size, null, "rank"), 16, ("itself", "slot clicks")),
               "team_draft": (lambda size, null: interleaved(size, null, "team"), 16, ("itself", "slot clicks")),
               "ab": (ab, 64, ("itself",))}
    needs, curves, nulls = {}, {}, {}
    for method, (right, start, null_kinds) in methods.items():
        needs[method], curves[method] = _fewest(lambda size, right=right: right(size, None), start)
        nulls[method] = {kind: right(needs[method], kind) for kind in null_kinds}
        echo(f"{method}: {INTERLEAVING_TARGET:.0%} of runs right at {needs[method]} shoppers; a winner named at that "
             f"size in " + ", ".join(f"{value:.3f} of runs ({kind})" for kind, value in nulls[method].items()))
    return {"runs": runs, "days": days, "target": INTERLEAVING_TARGET, "alpha": ALPHA,
            "between_shopper_variance_share": between["visit"], "between_shopper_variance_share_window": between["window"],
            "ctr": {team: round(value, 5) for team, value in ctr.items()}, "better": better,
            "interleaving_shoppers": needs["interleaving"], "team_draft_shoppers": needs["team_draft"],
            "ab_shoppers": needs["ab"], "ratio": round(needs["ab"] / needs["interleaving"], 2),
            "team_draft_ratio": round(needs["ab"] / needs["team_draft"], 2), "normal_approximation": approximation,
            "null_false_winner": {method: kinds["itself"] for method, kinds in nulls.items()},
            "slot_clicks_false_winner": {method: kinds["slot clicks"] for method, kinds in nulls.items()
                                         if "slot clicks" in kinds},
            "interleaving_right": curves["interleaving"], "team_draft_right": curves["team_draft"],
            "ab_right": curves["ab"]}


def _credits(credit: str, clicked: np.ndarray, items: np.ndarray, from_a: np.ndarray, ranking_a: np.ndarray,
             ranking_b: np.ndarray, baselines: np.ndarray | float) -> np.ndarray:
    """Each visit's credit (> 0 prefers A): team draft's clicks on A's items minus B's ("team"), or the centred rank
    credit ("rank", tailor.experiments.interleaving.rank_credit), its slots' baselines given."""
    if credit == "team":
        return (clicked & from_a).sum(axis=1) - (clicked & ~from_a).sum(axis=1)
    centred = _rank_differences(ranking_a, ranking_b, items) - baselines
    return (centred * clicked).sum(axis=1)


def _rank_differences(ranking_a: np.ndarray, ranking_b: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Each shown item's rank in B minus its rank in A (rows: queries; B's rows permutations of A's)."""
    return (_ranks(ranking_b, items) - _ranks(ranking_a, items)).astype(float)


def _ranks(ranking: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Each shown item's rank in its row's ranking (rows: queries)."""
    return (items[:, :, None] == ranking[:, None, :]).argmax(axis=2)


def _slot_baselines(ranking_a: np.ndarray, ranking_b: np.ndarray, chunk: int = 64, checked: int = 3) -> np.ndarray:
    """tailor.experiments.interleaving.slot_baselines of each row's pair (rows x FEED_LENGTH), by team draft under
    every one of its 2^(FEED_LENGTH / 2) equally likely coin sequences; checked against the product's on the first
    `checked` rows."""
    baselines = np.empty(ranking_a.shape)
    for rows, items in _every_team_draft(ranking_a, ranking_b, chunk):
        differences = _rank_differences(ranking_a[rows], ranking_b[rows], items)
        baselines[rows[0]:rows[-1] + 1] = differences.reshape(-1, _COIN_SEQUENCES, FEED_LENGTH).mean(axis=1)
    for row in range(min(checked, len(ranking_a))):
        product = slot_baselines(ranking_a[row].tolist(), ranking_b[row].tolist(), FEED_LENGTH)
        if not np.allclose(product, baselines[row], atol=1e-9):
            raise AssertionError(f"the vectorised slot baselines differ from the product's on row {row}")
    return baselines


def _every_team_draft(ranking_a: np.ndarray, ranking_b: np.ndarray, chunk: int
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Team draft's lists of each row's pair under every coin sequence, `chunk` rows at a time: the row of each list
    (each row's _COIN_SEQUENCES lists in turn) and the lists' items."""
    rounds = FEED_LENGTH // 2
    patterns = (np.arange(_COIN_SEQUENCES)[:, None] >> np.arange(rounds)[None, :]) & 1
    coins = np.zeros((_COIN_SEQUENCES, FEED_LENGTH))
    coins[:, 0::2] = np.where(patterns == 0, 0.25, 0.75)  # the coin is tossed at the start of each round
    for low in range(0, len(ranking_a), chunk):
        rows = np.repeat(np.arange(low, min(low + chunk, len(ranking_a))), _COIN_SEQUENCES)
        items, _ = _team_draft(ranking_a[rows], ranking_b[rows], np.tile(coins, (len(rows) // _COIN_SEQUENCES, 1)))
        yield rows, items


def _credit_ceiling(ranking_a: np.ndarray, ranking_b: np.ndarray, shopper: np.ndarray, unit_of_visit: np.ndarray,
                    items: np.ndarray, clicked: np.ndarray, chunk: int = 64) -> float:
    """The effect per shopper (mean over sd) of the most sensitive credit that is a function of a clicked item's
    ranks in A and in B, centred by its slot's expectation over team draft's coins as the rank credit is, and
    antisymmetric (swapping the rankers negates it, so two equally good rankers earn nothing in expectation): one
    weight per pair of ranks, fitted on the first half of the shoppers (the linear statistic of most power,
    covariance^-1 mean, ridged) and scored on the other half. Linear rank credit is one such function."""
    length = FEED_LENGTH
    upper, lower = (np.array(index) for index in zip(*((i * length + j, j * length + i) for i in range(length)
                                                       for j in range(i + 1, length))))
    feature = np.full(length * length, -1)  # a pair of ranks' weight, shared with its swap at the opposite sign
    feature[upper] = feature[lower] = np.arange(len(upper))
    sign = np.zeros(length * length, dtype=np.float32)
    sign[upper], sign[lower] = 1.0, -1.0
    visitor = shopper[unit_of_visit]
    pair = _ranks(ranking_a[visitor], items) * length + _ranks(ranking_b[visitor], items)
    visit, slot = np.nonzero(clicked)
    shoppers = len(shopper)
    features = np.zeros((shoppers, len(upper)), dtype=np.float32)
    clicked_pair = pair[visit, slot]
    apart = feature[clicked_pair] >= 0
    np.add.at(features, (unit_of_visit[visit][apart], feature[clicked_pair][apart]), sign[clicked_pair][apart])
    clicks_by_slot = np.zeros((shoppers, length), dtype=np.float32)
    np.add.at(clicks_by_slot, (unit_of_visit[visit], slot), 1.0)
    by_pool = np.argsort(shopper, kind="stable")
    starts = np.searchsorted(shopper[by_pool], np.arange(0, len(ranking_a) + chunk, chunk))
    for k, (rows, drafted) in enumerate(_every_team_draft(ranking_a, ranking_b, chunk)):
        low = rows[0]
        drafted_pair = _ranks(ranking_a[rows], drafted) * length + _ranks(ranking_b[rows], drafted)
        # each row's and slot's share of the coin sequences that put a pair of ranks there
        cell = ((rows - low)[:, None] * length + np.arange(length)[None, :]) * length * length + drafted_pair
        shares = np.bincount(cell.ravel(), minlength=(rows[-1] - low + 1) * length ** 3).reshape(
            -1, length, length * length) / _COIN_SEQUENCES
        units = by_pool[starts[k]:starts[k + 1]]
        expected = (shares[:, :, upper] - shares[:, :, lower]).astype(np.float32)
        features[units] -= np.einsum("us,usf->uf", clicks_by_slot[units], expected[shopper[units] - low])
    fit, scored = features[: shoppers // 2], features[shoppers // 2:]
    covariance = np.cov(fit, rowvar=False)
    ridge = 0.01 * np.trace(covariance) / len(upper)
    weights = np.linalg.lstsq(covariance + ridge * np.eye(len(upper)), fit.mean(axis=0, dtype=float), rcond=None)[0]
    credit = scored @ weights
    spread = credit.std()
    return float(abs(credit.mean()) / spread) if spread > 0 else 0.0


def _window(population: Population, shoppers: int, days: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Shoppers drawn by their chance of visiting in `days`, as an experiment's exposed units are, each visiting at
    least once: the pool shopper of each, and the shopper (0..shoppers-1) of each of their visits."""
    shopper = rng.choice(len(population.rate), size=shoppers, p=population.weight)
    mean = population.rate[shopper] * days
    count = rng.poisson(mean)
    while (missing := count == 0).any():
        count[missing] = rng.poisson(mean[missing])
    return shopper, np.repeat(np.arange(shoppers), count)


def _between_shopper_shares(population: Population, ranking: np.ndarray, days: int, seed: int) -> dict[str, float]:
    """The share of the variance of clicks that is between shoppers (what interleaving removes): of one visit's
    clicks, and of a shopper's clicks over `days`."""
    rng = np.random.default_rng([seed, 54])
    expected = population.expected_per_visit(ranking)[0]
    sample = rng.choice(len(expected), size=200_000, p=population.rate / population.rate.sum())
    drawn = population.visits(sample, ranking[sample], rng)["clicks"]
    shopper, unit_of_visit = _window(population, 100_000, days, rng)
    visitor = shopper[unit_of_visit]
    count = np.bincount(unit_of_visit, minlength=len(shopper))
    totals = np.bincount(unit_of_visit, weights=population.visits(visitor, ranking[visitor], rng)["clicks"],
                         minlength=len(shopper))
    # between shoppers: what their expected clicks per visit explain, given how often each visits
    return {"visit": round(float(np.var(expected[sample]) / np.var(drawn)), 4),
            "window": round(float(1.0 - np.mean(count * expected[shopper]) / np.var(totals)), 4)}


def _normal_approximation(population: Population, rankings: dict[str, np.ndarray], baselines: np.ndarray, days: int,
                          seed: int, difference: float, shoppers: int = APPROXIMATION_SHOPPERS) -> dict[str, float]:
    """The shoppers each test needs by the normal approximation, ((z_{1-alpha/2} + z_target) / effect)^2, the
    effect being per shopper: the interleaved shoppers' mean credit over its sd (centred rank credit, team draft's,
    and the ceiling of credits of a clicked item's two ranks, _credit_ceiling), and for the A/B test the exact CTR
    difference over the sd of the arms' delta-method influences (n/2 shoppers in each), measured on `shoppers`
    simulated shoppers (a cross-check of the runs' search)."""
    rng = np.random.default_rng([seed, 57])
    shopper, unit_of_visit = _window(population, shoppers, days, rng)
    visitor = shopper[unit_of_visit]
    impressions = np.bincount(unit_of_visit, minlength=shoppers) * float(FEED_LENGTH)
    spread = 0.0
    for team in (A, B):
        clicks = np.bincount(unit_of_visit, weights=population.visits(visitor, rankings[team][visitor], rng)["clicks"],
                             minlength=shoppers)
        spread += np.var((clicks - clicks.sum() / impressions.sum() * impressions) / impressions.mean())
    ranking_a, ranking_b = rankings[A][visitor], rankings[B][visitor]
    items, from_a = _team_draft(ranking_a, ranking_b, rng.random((len(visitor), FEED_LENGTH)))
    clicked = population.visits(visitor, items, rng)["clicked"]
    effects = {"ab": abs(difference) / math.sqrt(2 * spread)}
    for method, credit, centre in (("interleaving", "rank", baselines[visitor]), ("team_draft", "team", 0.0)):
        per_shopper = np.bincount(unit_of_visit, minlength=shoppers, weights=_credits(
            credit, clicked, items, from_a, ranking_a, ranking_b, centre))
        effects[method] = abs(per_shopper.mean()) / per_shopper.std()
    effects["credit_ceiling"] = _credit_ceiling(rankings[A], rankings[B], shopper, unit_of_visit, items, clicked)
    effects["optimized_interleaving"] = _optimized_effect(population, rankings, shopper, unit_of_visit, seed)
    z = _NORMAL.inv_cdf(1 - ALPHA / 2) + _NORMAL.inv_cdf(INTERLEAVING_TARGET)
    return {method: round(float(z / effect) ** 2, 1) for method, effect in effects.items()} | {
        "ratio": round(float(effects["interleaving"] / effects["ab"]) ** 2, 2),
        "credit_ceiling_ratio": round(float(effects["credit_ceiling"] / effects["ab"]) ** 2, 2),
        "optimized_interleaving_ratio": round(float(effects["optimized_interleaving"] / effects["ab"]) ** 2, 2),
        "shoppers": shoppers}


def _optimized_effect(population: Population, rankings: dict[str, np.ndarray], shopper: np.ndarray,
                      unit_of_visit: np.ndarray, seed: int) -> float:
    """The effect per shopper of the centred rank credit on optimized interleaving's lists (_optimized_lists) in
    place of team draft's (the shoppers' credits, _optimized_credits: their mean over their sd)."""
    per_shopper = _optimized_credits(population, rankings, shopper, unit_of_visit, seed)
    spread = per_shopper.std()
    return float(abs(per_shopper.mean()) / spread) if spread > 0 else 0.0


def _optimized_credits(population: Population, rankings: dict[str, np.ndarray], shopper: np.ndarray,
                       unit_of_visit: np.ndarray, seed: int) -> np.ndarray:
    """Each shopper's centred rank credits (> 0 prefers A) on optimized interleaving's lists: each visit served a
    list drawn from its pool shopper's distribution, each slot's credit centred by its expectation over it."""
    rng = np.random.default_rng([seed, 59])
    lists, probabilities, differences = _optimized_lists(rankings[A], rankings[B], rng)
    rows = np.arange(len(lists))[:, None, None]
    slot_credit = differences[rows, lists]  # pool shopper x list x slot
    baselines = np.einsum("sm,smk->sk", probabilities, slot_credit)
    visitor = shopper[unit_of_visit]
    drawn = _drawn(probabilities[visitor], rng.random(len(visitor)))
    served = lists[visitor, drawn]
    clicked = population.visits(visitor, rankings[A][visitor[:, None], served], rng)["clicked"]
    credit = ((slot_credit[visitor, drawn] - baselines[visitor]) * clicked).sum(axis=1)
    return np.bincount(unit_of_visit, weights=credit, minlength=len(shopper))


def _drawn(probabilities: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Each row's entry drawn by `uniform` (in [0, 1)) with its row's probabilities: the first whose cumulative sum
    passes the draw, scaled to the row's sum and kept below it, so that no entry of probability 0 is drawn however
    the sums round."""
    cumulative = np.cumsum(probabilities, axis=1)
    total = cumulative[:, -1:]
    return (cumulative <= np.minimum(uniform[:, None] * total, np.nextafter(total, 0.0))).sum(axis=1)


def _optimized_lists(ranking_a: np.ndarray, ranking_b: np.ndarray, rng: np.random.Generator,
                     samples: int = OPTIMIZED_SAMPLES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimized interleaving (Radlinski and Craswell 2013) of each row's pair, as far as a sample of its lists goes:
    lists each of whose prefixes is a prefix of A together with a prefix of B (half drawn by a fair coin at every
    slot, half by a coin of the list's own bias, and both rankings), and the probabilities over them a linear program
    chooses so that every slot's expected rank difference is 0 (as near as the sampled lists allow: a slot they
    cannot balance pays a penalty) and the
    rankers' disagreement is shown where it is seen most: the greatest expected sum, over slots weighed by DCG's
    discount, of the slot's rank difference times its item's DCG gain in A less its gain in B. The objective treats
    A and B alike (swapping them leaves it as it is), as a test must. Items are given by their place in A's
    ranking: the lists (rows x lists x FEED_LENGTH), their probabilities (rows x lists, 0 past a row's own lists)
    and each place's rank difference, its rank in B minus in A (rows x FEED_LENGTH)."""
    from scipy.optimize import linprog

    rows, length = ranking_a.shape
    if not (np.sort(ranking_a, axis=1) == np.sort(ranking_b, axis=1)).all():
        raise ValueError("each row's two rankings must order the same items")
    rank_in_b = (ranking_a[:, :, None] == ranking_b[:, None, :]).argmax(axis=2)  # by place in A
    order_b = np.argsort(rank_in_b, axis=1)  # B's ranking as places in A
    differences = (rank_in_b - np.arange(length)[None, :]).astype(float)
    discount = 1.0 / np.log2(np.arange(length) + 2.0)
    gain = discount[None, :] - discount[rank_in_b]  # each place's DCG gain in A less its gain in B
    # Both rankings order the same items, so a list's differences sum to 0 and the last slot's is the rest of the
    # others'. A slot the sampled lists cannot balance keeps a penalised remainder, which the credit's centring absorbs.
    constrained = length - 1
    penalty = np.full(2 * constrained, 1000.0)
    slack = np.vstack([np.zeros((1, 2 * constrained)), np.hstack([np.eye(constrained), -np.eye(constrained)])])
    chosen_lists, chosen = [], []
    for row in range(rows):
        bias = np.where(np.arange(samples) < samples // 2, 0.5, rng.random(samples))
        take_a = rng.random((samples, length)) < bias[:, None]
        lists = np.unique(np.vstack([_prefix_merged(order_b[row], take_a), np.arange(length)[None, :],
                                     order_b[row][None, :]]), axis=0)
        credit = differences[row][lists]
        objective = -(discount[None, :] * gain[row][lists] * credit).sum(axis=1)
        equal = np.hstack([np.vstack([np.ones(len(lists)), credit[:, :constrained].T]), slack])
        solved = linprog(np.concatenate([objective, penalty]), A_eq=equal,
                         b_eq=np.concatenate([[1.0], np.zeros(constrained)]), bounds=(0, None), method="highs")
        if not solved.success:
            raise RuntimeError(f"optimized interleaving's program failed for row {row}: {solved.message}")
        kept = solved.x[:len(lists)] > 1e-9
        chosen_lists.append(lists[kept])
        chosen.append(solved.x[:len(lists)][kept] / solved.x[:len(lists)][kept].sum())
    most = max(len(p) for p in chosen)
    lists_out = np.zeros((rows, most, length), dtype=int)
    probabilities = np.zeros((rows, most))
    for row, (lists, p) in enumerate(zip(chosen_lists, chosen)):
        lists_out[row, :len(p)], lists_out[row, len(p):] = lists, lists[0]
        probabilities[row, :len(p)] = p
    return lists_out, probabilities, differences


def _prefix_merged(order_b: np.ndarray, take_a: np.ndarray) -> np.ndarray:
    """Lists of places in A's ranking (A being 0, 1, 2, ...; B `order_b`): at slot k each list adds A's next
    unshown place where `take_a[list, k]`, else B's."""
    count, length = take_a.shape
    lists = np.arange(count)
    shown = np.zeros((count, length), dtype=bool)
    merged = np.empty((count, length), dtype=int)
    for k in range(length):
        next_a = (~shown).argmax(axis=1)
        next_b = order_b[(~shown[:, order_b]).argmax(axis=1)]
        place = np.where(take_a[:, k], next_a, next_b)
        shown[lists, place] = True
        merged[:, k] = place
    return merged


def _team_draft(ranking_a: np.ndarray, ranking_b: np.ndarray, coins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tailor.experiments.interleaving.team_draft of many queries at once (rankings: queries x FEED_LENGTH, each
    row of B a permutation of A's), `coins[q, k]` the coin of query q's round starting at slot k: the items and
    whether A put each there."""
    count, length = ranking_a.shape
    rows = np.arange(count)
    position_in_b = (ranking_a[:, :, None] == ranking_b[:, None, :]).argmax(axis=2)
    position_in_a = np.argsort(position_in_b, axis=1)
    shown_a = np.zeros((count, length), dtype=bool)  # by position in A's ranking
    shown_b = np.zeros((count, length), dtype=bool)
    picked_a = np.zeros(count, dtype=int)
    items = np.empty((count, length), dtype=ranking_a.dtype)
    from_a = np.empty((count, length), dtype=bool)
    for k in range(length):
        # the team behind picks; level, the coin decides (k is even then)
        a_picks = np.where(2 * picked_a == k, coins[:, k] < 0.5, 2 * picked_a < k)
        next_a = (~shown_a).argmax(axis=1)
        next_b = (~shown_b).argmax(axis=1)
        in_a = np.where(a_picks, next_a, position_in_a[rows, next_b])
        in_b = np.where(a_picks, position_in_b[rows, next_a], next_b)
        shown_a[rows, in_a] = True
        shown_b[rows, in_b] = True
        items[:, k] = ranking_a[rows, in_a]
        from_a[:, k] = a_picks
        picked_a += a_picks
    return items, from_a


def _team_draft_check(ranking_a: np.ndarray, ranking_b: np.ndarray, coins: np.ndarray, items: np.ndarray,
                      from_a: np.ndarray, queries: int = 200) -> None:
    """The vectorised team draft against the product's, query by query, with the same coins."""
    class Coins:
        def __init__(self, values: np.ndarray):
            self.values = iter(values[::2].tolist())  # the coin is tossed at the start of each round

        def random(self) -> float:
            return next(self.values)

    for q in range(min(queries, len(items))):
        merged = team_draft(ranking_a[q].tolist(), ranking_b[q].tolist(), FEED_LENGTH, Coins(coins[q]))
        if [item for item, _ in merged] != items[q].tolist() or [t == A for _, t in merged] != from_a[q].tolist():
            raise AssertionError(f"the vectorised team draft differs from the product's on query {q}")


def _fewest(right: Callable[[int], float], start: int, target: float = INTERLEAVING_TARGET
            ) -> tuple[int, dict[str, float]]:
    """The fewest shoppers (doubling, then halving the gap down to 3%) at which `right` reaches `target`."""
    curve: dict[int, float] = {}
    size = start
    while (curve.setdefault(size, right(size))) < target:
        size *= 2
        if size > 5_000_000:
            raise RuntimeError("the better ranker is not found even with 5 million shoppers")
    low, high = size // 2, size
    while high - low > max(1, math.ceil(0.03 * high)):
        middle = (low + high) // 2
        if curve.setdefault(middle, right(middle)) >= target:
            high = middle
        else:
            low = middle
    return high, {str(k): v for k, v in sorted(curve.items())}


# -- Open Bandit Dataset ---------------------------------------------------------------------------------------------

def evaluate_obd(folder: Path, seed: int) -> dict[str, Any]:
    """Random against BTS per campaign and pooled, and the off-policy estimates of BTS's CTR from random's logs."""
    logs = {(policy, campaign): _read_obd(folder / policy / campaign / f"{campaign}.csv")
            for policy in ("random", "bts") for campaign in ("all", "men", "women")}
    out: dict[str, Any] = {"campaigns": {}, "zr_obp_errors_all": ZR_OBP_ERRORS}
    for campaign in ("all", "men", "women", "pooled"):
        chosen = ("all", "men", "women") if campaign == "pooled" else (campaign,)
        clicks = {p: np.concatenate([logs[(p, c)]["click"] for c in chosen]) for p in ("random", "bts")}
        stats = {p: _impression_statistics(clicks[p]) for p in clicks}
        result = compare(stats["random"], stats["bts"], "ctr")
        srm = sample_ratio_mismatch([stats["random"].n, stats["bts"].n], [0.5, 0.5])
        entry: dict[str, Any] = {
            "impressions": {p: int(len(clicks[p])) for p in clicks},
            "clicks": {p: int(clicks[p].sum()) for p in clicks},
            "ctr": {p: float(clicks[p].mean()) for p in clicks},
            "lift": result.relative, "lift_ci": list(result.relative_ci), "p_value": result.p_value,
            "srm_p_value": srm.p_value, "srm_flagged": srm.flagged}
        if campaign != "pooled":
            entry["off_policy"] = _off_policy(logs[("random", campaign)], logs[("bts", campaign)], seed)
        out["campaigns"][campaign] = entry
    return out


def _impression_statistics(clicks: np.ndarray) -> SufficientStatistics:
    """An impression as the unit (OBD has no user ids to group by): one impression, 0 or 1 click."""
    values = np.zeros((len(clicks), len(QUANTITIES)))
    values[:, QUANTITIES.index("impressions")] = 1.0
    values[:, QUANTITIES.index("clicks")] = clicks
    return SufficientStatistics.of_values(values)


def _read_obd(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    column = {name: i for i, name in enumerate(header)}
    users = [name for name in header if name.startswith("user_feature_")]
    affinity = [name for name in header if name.startswith("user-item_affinity_")]
    return {"item": np.array([int(r[column["item_id"]]) for r in rows]),
            "position": np.array([int(r[column["position"]]) for r in rows]),
            "click": np.array([float(r[column["click"]]) for r in rows]),
            "propensity": np.array([float(r[column["propensity_score"]]) for r in rows]),
            "users": np.array([[r[column[name]] for name in users] for r in rows]),
            "affinity": np.array([[float(r[column[name]]) for name in affinity] for r in rows])}


def _off_policy(random: dict[str, np.ndarray], bts: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import OneHotEncoder

    actions = random["affinity"].shape[1]
    positions = sorted(set(random["position"].tolist()) | set(bts["position"].tolist()))
    # BTS's action distribution per position: each item's share of BTS's impressions there
    share = np.zeros((len(positions), actions))
    for p, position in enumerate(positions):
        at = bts["position"] == position
        share[p] = np.bincount(bts["item"][at], minlength=actions) / at.sum()
    slot = np.searchsorted(positions, random["position"])
    target = share[slot]
    users = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit_transform(random["users"])
    rows = len(random["item"])

    def features(items: np.ndarray, index: np.ndarray) -> np.ndarray:
        return np.column_stack([users[index], np.eye(actions)[items], np.eye(len(positions))[slot[index]],
                                random["affinity"][index, items]])

    predicted = np.zeros((rows, actions))
    for fit_rows, held in KFold(3, shuffle=True, random_state=seed).split(np.arange(rows)):
        model = LogisticRegression(C=1.0, max_iter=2000)
        model.fit(features(random["item"][fit_rows], fit_rows), random["click"][fit_rows])
        for a in range(actions):
            predicted[held, a] = model.predict_proba(features(np.full(len(held), a), held))[:, 1]
    truth = float(bts["click"].mean())
    estimates = estimate_all(random["item"], random["click"], random["propensity"], target, predicted)
    return {"bts_logged_ctr": truth,
            "estimates": {name: {"value": e.value, "ci": list(e.ci), "relative_error": e.relative_error(truth)}
                          for name, e in estimates.items()}}


# -- the table -------------------------------------------------------------------------------------------------------

def format_table(report: dict[str, Any]) -> str:
    lines = []
    if "aa" in report:
        aa, ab = report["aa"], report["ab"]
        lines += [f"Simulated experiments: {report['units']:,} exposed shoppers over {report['days']} days, 50/50, "
                  f"drawn from {report['pool']:,} simulated shoppers (seed {report['seed']})",
                  f"{'metric':<11} {'A/A FPR fixed':>14} {'A/A FPR daily CS':>17} {'A/B coverage':>13} "
                  f"{'power fixed':>12} {'power CS':>9}"]
        for metric in METRIC_LIST:
            coverage = ab["coverage"].get(metric)
            lines.append(f"{metric:<11} {aa['fpr_fixed'][metric]:>14.3f} {aa['fpr_sequential'][metric]:>17.3f} "
                         f"{'-' if coverage is None else f'{coverage:.3f}':>13} {ab['power_fixed'][metric]:>12.3f} "
                         f"{ab['power_sequential'][metric]:>9.3f}")
        lines.append(f"A/A {aa['runs']} runs ({aa['seconds']} s), A/B {ab['runs']} runs ({ab['seconds']} s): click "
                     f"probabilities x{ab['click_probability_scale']:.4f}, true lift CTR "
                     f"{ab['true_relative_lift']['ctr']:+.4f}, revenue/shopper {ab['true_relative_lift']['revenue']:+.4f}; "
                     f"CUPED narrows revenue's interval to {aa['cuped_revenue_interval_width_ratio']:.1%} of its width")
    if "srm" in report:
        srm = report["srm"]
        lines.append(f"SRM ({srm['runs']} runs of {srm['units']:,} units): 2% of one arm lost flagged "
                     f"{srm['detection']:.3f}, intact flagged {srm['false_alarm']:.3f}; at {srm['default_units']:,} "
                     f"units the loss is flagged {srm['detection_at_default_units']:.3f}")
    if "interleaving" in report:
        inter = report["interleaving"]
        null = inter["null_false_winner"]
        slot = inter["slot_clicks_false_winner"]
        approximation = inter["normal_approximation"]
        lines.append(f"Interleaving (ranker CTRs A {inter['ctr']['A']:.4f}, B {inter['ctr']['B']:.4f}; shoppers visiting "
                     f"as in {inter['days']} days; {inter['runs']} runs a size): the better ranker named (p < "
                     f"{inter['alpha']}) in {inter['target']:.0%} of runs with {inter['interleaving_shoppers']:,} "
                     f"shoppers interleaved (centred rank credit; team draft's own credit {inter['team_draft_shoppers']:,}"
                     f", ratio {inter['team_draft_ratio']:.2f}), {inter['ab_shoppers']:,} in an A/B test: ratio "
                     f"{inter['ratio']:.2f}; a ranker against itself named a winner in {null['interleaving']:.3f} "
                     f"(rank credit), {null['team_draft']:.3f} (team draft) and {null['ab']:.3f} (A/B) of runs, clicks "
                     f"moved between visits in {slot['interleaving']:.3f} and {slot['team_draft']:.3f}; the normal "
                     f"approximation needs {approximation['interleaving']:,.0f}, {approximation['team_draft']:,.0f} and "
                     f"{approximation['ab']:,.0f} (ratio {approximation['ratio']:.2f}), the best credit of a "
                     f"clicked item's two ranks "
                     f"{approximation['credit_ceiling']:,.0f} (ratio {approximation['credit_ceiling_ratio']:.2f}), "
                     f"the rank credit on optimized interleaving's lists {approximation['optimized_interleaving']:,.0f} "
                     f"(ratio {approximation['optimized_interleaving_ratio']:.2f}); "
                     f"{inter['between_shopper_variance_share']:.1%} of the variance of "
                     f"a visit's clicks is between shoppers, {inter['between_shopper_variance_share_window']:.1%} of a "
                     f"shopper's clicks over the days; the rankers put the same item in {inter['agreement']:.0%} of "
                     "slots")
        for pair in inter.get("candidates", ()):
            approximation = pair["normal_approximation"]
            runs = ("" if "ratio" not in pair else
                    f"{pair['interleaving_shoppers']:,} shoppers interleaved ({pair['team_draft_shoppers']:,} by team "
                    f"draft's credit) and {pair['ab_shoppers']:,} in an A/B test, ratio {pair['ratio']:.2f}; ")
            lines.append(f"  a candidate B keeping {pair['kept_error']:.0%} of A's error (CTRs A {pair['ctr']['A']:.4f}, "
                         f"B {pair['ctr']['B']:.4f}; same item in {pair['agreement']:.0%} of slots): {runs}the normal "
                         f"approximation needs {approximation['interleaving']:,.0f} shoppers interleaved, "
                         f"{approximation['team_draft']:,.0f} by team draft's credit, "
                         f"{approximation['credit_ceiling']:,.0f} by the best credit of the two ranks, "
                         f"{approximation['optimized_interleaving']:,.0f} on optimized interleaving's lists, "
                         f"{approximation['ab']:,.0f} in an A/B test (ratio {approximation['ratio']:.2f})")
    obd = report.get("obd")
    if obd is not None and "skipped" in obd:
        lines.append(f"Open Bandit Dataset: skipped ({obd['skipped']})")
    elif obd is not None:
        lines.append(f"Open Bandit Dataset: {'campaign':<8} {'CTR random':>10} {'CTR BTS':>8} {'lift [95% CI]':>24} "
                     f"{'SRM p':>7}   BTS CTR off-policy (relative error)")
        for campaign, entry in obd["campaigns"].items():
            low, high = entry["lift_ci"]
            off = entry.get("off_policy")
            estimates = "" if off is None else "  ".join(
                f"{name} {e['value']:.4f} ({e['relative_error']:.3f})" for name, e in off["estimates"].items())
            lines.append(f"{'':<21}{campaign:<8} {entry['ctr']['random']:>10.4f} {entry['ctr']['bts']:>8.4f} "
                         f"{entry['lift']:>+8.3f} [{low:+.3f}, {high:+.3f}] {entry['srm_p_value']:>7.3f}   {estimates}")
        lines.append(f"{'':<21}zr-obp's relative errors on `all`: "
                     + ", ".join(f"{k} {v}" for k, v in ZR_OBP_ERRORS.items()))
    lines.append("Goals: " + ", ".join(f"{key} {goal['value']} {'met' if goal['met'] else 'NOT met'}"
                                       for key, goal in report["goals"].items()))
    return "\n".join(lines)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


if __name__ == "__main__":
    sys.exit(main())
