"""Persona adjustment vectors from the persona-weighted item counters: per item and persona, how much more (or
less) that persona views, clicks, buys and dwells on the item than shoppers at large, shrunk toward zero where
the evidence is thin.

Every lift compares a persona's rate on an item with the item's own site-wide rate, so what the item is
(its position in listings, its popularity) cancels out and what is left is the persona's taste:
* views: the persona's share of the item's views over its share of all views (Poisson-Gamma);
* CTR: clicks per impression, conversion: units bought per view or click (Beta-binomial);
* dwell: seconds per dwell event, shrunk toward the item's mean.
Two levels of priors: a group of like items (category and price band) pools its items' counters, and its
persona lift shrinks toward none; an item's own lift shrinks toward its group's. Each prior's strength is
estimated from the counters themselves (empirical Bayes, by the method of moments): the more personas' rates
really differ between groups, and items' from their group's, the weaker the prior and the sooner evidence
counts. The adjustment is a weighted sum of the log lifts, clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tailor.personas.online import DWELL_EVENTS

__all__ = ["LIFT_WEIGHTS", "CounterTable", "build_adjustments", "read_counters"]

LIFT_WEIGHTS = {"views": 0.5, "ctr": 1.0, "conversion": 0.5, "dwell": 0.3}
MAX_ADJUSTMENT = 1.0
MIN_KEPT = 0.005  # items whose every adjustment is smaller are left out (they get none, not exploration)
MIN_MOMENT_TRIALS = 10.0  # pairs with fewer (weighted) trials leave the prior's moments alone
MIN_MOMENT_PAIRS = 4  # (group, persona) pairs with enough trials for a prior's moments; fewer: a strong prior
WEAKEST_PRIOR, STRONGEST_PRIOR = 1.0, 1e4  # bounds of an estimated prior strength (trials or expected counts)
_METRICS = ("pi", "pv", "pc", "pa", "pp", "pd", DWELL_EVENTS)


class CounterTable:
    """Counters as arrays: items x personas per metric."""

    def __init__(self, items: list[str], ids: Sequence[int], values: dict[str, np.ndarray],
                 groups: np.ndarray | None = None, group_count: int = 1):
        self.items, self.ids, self.values = items, list(ids), values
        self.groups = np.zeros(len(items), dtype=np.int64) if groups is None else groups  # item -> group index
        self.group_count = max(group_count, 1)

    def pooled(self, values: np.ndarray) -> np.ndarray:
        """Counters summed over each group's items: (groups, K)."""
        out = np.zeros((self.group_count, values.shape[1]))
        np.add.at(out, self.groups, values)
        return out

    @property
    def pairs(self) -> int:
        """(persona, item) counter rows with any count."""
        total = sum(v for v in self.values.values())
        return int(np.count_nonzero(total))


def read_counters(rows: Iterable[Mapping[str, Any]], ids: Sequence[int],
                  group_of: Callable[[Mapping[str, Any]], str] = lambda row: "") -> CounterTable:
    """The persona-weighted counters (tailor.personas.online) of items rows, for the personas `ids`; counters of
    personas the model no longer has are left out. `group_of` names each item's group of like items (its
    category and price band), whose pooled counters are what an item's own are shrunk toward."""
    column = {str(pid): k for k, pid in enumerate(ids)}
    groups: list[str] = []
    metric_index = {m: j for j, m in enumerate(_METRICS)}
    items: list[str] = []
    chunks: list[np.ndarray] = []
    block = np.zeros((4096, len(ids), len(_METRICS)), dtype=np.float32)
    used = 0
    for row in rows:
        filled = False
        target = block[used]
        for name, value in row.items():
            if len(name) > 3 and name[2] == ":":
                j = metric_index.get(name[:2])
                k = column.get(name[3:])
                if j is not None and k is not None:
                    target[k, j] = value
                    filled = True
        if filled:
            items.append(str(row.get("item_id")))
            groups.append(group_of(row))
            used += 1
            if used == len(block):
                chunks.append(block)
                block = np.zeros_like(block)
                used = 0
    chunks.append(block[:used])
    stacked = np.concatenate(chunks) if chunks else np.zeros((0, len(ids), len(_METRICS)), dtype=np.float32)
    values = {m: stacked[:, :, j].astype(np.float64) for m, j in metric_index.items()}
    names, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True) if groups else ([], np.zeros(0, int))
    return CounterTable(items, ids, values, np.asarray(codes, dtype=np.int64), len(names))


def build_adjustments(table: CounterTable) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Items with an adjustment, their (items, K) adjustments, and the prior strengths and site-wide rates used."""
    v = table.values
    stats: dict[str, Any] = {}
    if not table.items:
        return [], np.zeros((0, len(table.ids))), {"items": 0}
    lifts: dict[str, np.ndarray] = {}
    lifts["views"], stats["views_prior"], stats["views_item_prior"] = _share_lift(table, v["pv"] + v["pc"])
    lifts["ctr"], stats["ctr_prior"], stats["ctr_item_prior"], stats["site_ctr"] = _rate_lift(table, v["pc"], v["pi"])
    (lifts["conversion"], stats["conversion_prior"], stats["conversion_item_prior"],
     stats["site_conversion"]) = _rate_lift(table, v["pp"], v["pv"] + v["pc"])
    lifts["dwell"], stats["dwell_prior"] = _mean_lift(v["pd"], v[DWELL_EVENTS])
    adjustment = sum(LIFT_WEIGHTS[name] * lift for name, lift in lifts.items())
    adjustment = np.clip(adjustment, -MAX_ADJUSTMENT, MAX_ADJUSTMENT)
    keep = np.abs(adjustment).max(axis=1) >= MIN_KEPT
    stats.update({"items": len(table.items), "pairs": table.pairs, "items_kept": int(keep.sum())})
    return [item for item, k in zip(table.items, keep) if k], adjustment[keep], stats


def _share_lift(table: CounterTable, counts: np.ndarray) -> tuple[np.ndarray, float, float]:
    """log of the persona's count over its expected count (the item's total times the persona's share of all
    counts). Two levels: a group's ratio (Gamma prior at 1) shrinks toward 1, and an item's toward its group's;
    each prior's strength by moments."""
    persona_share = counts.sum(axis=0, keepdims=True) / max(counts.sum(), 1e-9)
    group_counts = table.pooled(counts)
    group_expected = group_counts.sum(axis=1, keepdims=True) * persona_share
    prior = _gamma_strength(group_counts, group_expected, np.ones_like(group_expected))
    group_ratio = (group_counts + prior) / (group_expected + prior)
    expected = counts.sum(axis=1, keepdims=True) * persona_share
    item_prior = _gamma_strength(counts, expected, group_ratio[table.groups])
    ratio = (counts + item_prior * group_ratio[table.groups]) / (expected + item_prior)
    return np.log(ratio), round(prior, 3), round(item_prior, 3)


def _rate_lift(table: CounterTable, successes: np.ndarray,
               trials: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """log of the persona's rate over the item's site-wide rate. Two levels: a group's persona rates (Beta prior
    at the group's site-wide rate) shrink toward that rate, and an item's toward its group's lift applied to the
    item's own rate; each prior's strength by moments; 0 without trials."""
    successes = np.minimum(successes, trials)  # purchases of items not viewed where the views went uncounted
    site = float(successes.sum() / trials.sum()) if trials.sum() > 0 else 0.0
    if site <= 0:
        return np.zeros_like(trials), 0.0, 0.0, 0.0
    group_s, group_t = table.pooled(successes), table.pooled(trials)
    group_rate = np.clip((group_s.sum(axis=1, keepdims=True) + 2.0 * site) / (group_t.sum(axis=1, keepdims=True) + 2.0),
                         1e-6, 1 - 1e-6)
    prior = _beta_strength(group_s, group_t, np.broadcast_to(group_rate, group_t.shape))
    group_lift = ((group_s + prior * group_rate) / (group_t + prior)) / group_rate
    item_rate = np.clip((successes.sum(axis=1, keepdims=True) + 2.0 * site) / (trials.sum(axis=1, keepdims=True) + 2.0),
                        1e-6, 1 - 1e-6)
    target = np.clip(item_rate * group_lift[table.groups], 1e-6, 1 - 1e-6)
    item_prior = _beta_strength(successes, trials, target)
    shrunk = (successes + item_prior * target) / (trials + item_prior)
    return np.log(shrunk / item_rate), round(prior, 3), round(item_prior, 3), round(site, 6)


def _beta_strength(successes: np.ndarray, trials: np.ndarray, expected: np.ndarray) -> float:
    """Strength (in trials) of the Beta prior around the `expected` rates that the spread of the observed rates
    says: E[n (r - p)^2] = p (1 - p) + n tau^2 for a rate r of n trials around p, so tau^2, the spread of true
    rates, is the excess over binomial noise per trial; a Beta prior of that spread has strength
    p (1 - p) / tau^2 - 1. Too few cells with enough trials: the strongest prior."""
    informative = trials >= MIN_MOMENT_TRIALS  # weighted counts: fractional trials follow no binomial
    if informative.sum() < MIN_MOMENT_PAIRS:
        return STRONGEST_PRIOR
    p, n = expected[informative], trials[informative]
    observed = np.clip(successes[informative] / n, 0, 1)
    spread = float((np.sum(n * (observed - p) ** 2) - np.sum(p * (1 - p))) / np.sum(n))
    strength = np.average(p * (1 - p), weights=n) / max(spread, 1e-8) - 1.0
    return float(np.clip(strength, WEAKEST_PRIOR, STRONGEST_PRIOR))


def _gamma_strength(counts: np.ndarray, expected: np.ndarray, ratio: np.ndarray) -> float:
    """Strength (in expected counts) of the Gamma prior around the `ratio`s that the spread of the counts says:
    E[(c - e g)^2 / (e g)] = 1 + e g / m for counts c of expected e g under a Gamma(m, m / g) ratio, so the
    excess over Poisson noise, weighted by e g, is 1 / m. Too few cells with enough expected: the strongest."""
    mean = expected * ratio
    informative = mean >= MIN_MOMENT_TRIALS
    if informative.sum() < MIN_MOMENT_PAIRS:
        return STRONGEST_PRIOR
    e, c = mean[informative], counts[informative]
    excess = float((np.sum((c - e) ** 2 / e) - len(e)) / np.sum(e))
    return float(np.clip(1.0 / max(excess, 1e-8), WEAKEST_PRIOR, STRONGEST_PRIOR))


def _mean_lift(total: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, float]:
    """log of the persona's mean over the item's, the persona's shrunk toward the item's with a prior worth as
    many events as the spread of the means says: a persona's mean of n events, relative to the item's, spreads
    by s^2 / n (the events' own noise) + t^2 (how much personas really differ), both estimated by moments."""
    item_mean = total.sum(axis=1, keepdims=True) / np.maximum(events.sum(axis=1, keepdims=True), 1e-9)
    prior = STRONGEST_PRIOR
    cells = (events >= 1.0) & (item_mean > 0)
    if cells.sum() >= MIN_MOMENT_PAIRS:
        n = events[cells]
        relative = (total[cells] / n) / np.broadcast_to(item_mean, events.shape)[cells] - 1.0
        # E[r^2] = s^2 / n + t^2, summed unweighted and weighted by n: two equations in s^2 and t^2.
        a = np.array([[np.sum(1.0 / n), len(n)], [len(n), np.sum(n)]])
        b = np.array([np.sum(relative ** 2), np.sum(n * relative ** 2)])
        try:
            noise, spread = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            noise, spread = 0.0, 0.0
        if spread > 0 and noise > 0:
            prior = float(np.clip(noise / spread, WEAKEST_PRIOR, STRONGEST_PRIOR))
    with np.errstate(invalid="ignore", divide="ignore"):
        shrunk = (total + prior * item_mean) / (events + prior)
        lift = np.where(item_mean > 0, np.log(np.maximum(shrunk, 1e-9) / np.maximum(item_mean, 1e-9)), 0.0)
    return lift, round(prior, 3)
