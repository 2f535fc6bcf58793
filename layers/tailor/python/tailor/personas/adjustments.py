"""Persona adjustment vectors from the persona-weighted item counters: per item and persona, how much more (or
less) that persona views, clicks, buys and dwells on the item than shoppers at large, shrunk toward zero where
the evidence is thin.

Every lift compares a persona's rate on an item with the item's own site-wide rate, so what the item is
(its position in listings, its popularity) cancels out and what is left is the persona's taste:
* views: the persona's share of the item's views over its share of all views (Poisson-Gamma);
* CTR: clicks per impression, conversion: units bought per view or click (Beta-binomial);
* dwell: seconds per dwell event (shrunk toward the item's mean with a fixed prior weight).
Each prior's strength is estimated from the counters themselves (empirical Bayes, by the method of moments):
the more personas' rates really differ, the weaker the prior and the sooner evidence counts. The adjustment
is a weighted sum of the log lifts, clipped.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from tailor.personas.online import DWELL_EVENTS

__all__ = ["LIFT_WEIGHTS", "CounterTable", "build_adjustments", "read_counters"]

LIFT_WEIGHTS = {"views": 0.5, "ctr": 1.0, "conversion": 0.5, "dwell": 0.3}
MAX_ADJUSTMENT = 1.0
MIN_KEPT = 0.005  # items whose every adjustment is smaller are left out (they get none, not exploration)
DWELL_PRIOR = 5.0  # dwell events' worth of the item's mean every persona's dwell starts from
MIN_MOMENT_TRIALS = 10.0  # pairs with fewer (weighted) trials leave the prior's moments alone
MIN_MOMENT_PAIRS = 4  # (group, persona) pairs with enough trials for a prior's moments; fewer: a strong prior
ITEM_PRIOR = 20.0  # trials (or expected counts) of its group's lift an item's own lift starts from
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
    lifts["views"], stats["views_prior"] = _share_lift(table, v["pv"] + v["pc"])
    lifts["ctr"], stats["ctr_prior"], stats["site_ctr"] = _rate_lift(table, v["pc"], v["pi"])
    lifts["conversion"], stats["conversion_prior"], stats["site_conversion"] = _rate_lift(
        table, v["pp"], v["pv"] + v["pc"])
    lifts["dwell"] = _mean_lift(v["pd"], v[DWELL_EVENTS], DWELL_PRIOR)
    adjustment = sum(LIFT_WEIGHTS[name] * lift for name, lift in lifts.items())
    adjustment = np.clip(adjustment, -MAX_ADJUSTMENT, MAX_ADJUSTMENT)
    keep = np.abs(adjustment).max(axis=1) >= MIN_KEPT
    stats.update({"items": len(table.items), "pairs": table.pairs, "items_kept": int(keep.sum())})
    return [item for item, k in zip(table.items, keep) if k], adjustment[keep], stats


def _share_lift(table: CounterTable, counts: np.ndarray) -> tuple[np.ndarray, float]:
    """log of the persona's count over its expected count (the item's total times the persona's share of all
    counts). Two levels: a group's ratio (Gamma prior at 1, strength by moments) shrinks toward 1, and an item's
    ratio shrinks toward its group's with ITEM_PRIOR expected counts' worth of weight."""
    persona_share = counts.sum(axis=0, keepdims=True) / max(counts.sum(), 1e-9)
    group_counts = table.pooled(counts)
    group_expected = group_counts.sum(axis=1, keepdims=True) * persona_share
    informative = group_expected >= MIN_MOMENT_TRIALS
    if informative.sum() >= MIN_MOMENT_PAIRS:
        # E[(c - e)^2 / e] = 1 + e / m for a Gamma(m, m) ratio: the excess over Poisson noise, weighted by e.
        e, c = group_expected[informative], group_counts[informative]
        excess = float((np.sum((c - e) ** 2 / e) - len(e)) / np.sum(e))
        prior = float(np.clip(1.0 / max(excess, 1e-3), 0.5, 1000.0))
    else:
        prior = 1000.0
    group_ratio = (group_counts + prior) / (group_expected + prior)
    expected = counts.sum(axis=1, keepdims=True) * persona_share
    ratio = (counts + ITEM_PRIOR * group_ratio[table.groups]) / (expected + ITEM_PRIOR)
    return np.log(ratio), round(prior, 3)


def _rate_lift(table: CounterTable, successes: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, float, float]:
    """log of the persona's rate over the item's site-wide rate. Two levels: a group's persona rates (Beta prior
    at the group's site-wide rate, strength by moments) shrink toward that rate, and an item's toward its
    group's lift applied to the item's own rate, with ITEM_PRIOR trials' worth of weight; 0 without trials."""
    successes = np.minimum(successes, trials)  # purchases of items not viewed where the views went uncounted
    site = float(successes.sum() / trials.sum()) if trials.sum() > 0 else 0.0
    if site <= 0:
        return np.zeros_like(trials), 0.0, 0.0
    group_s, group_t = table.pooled(successes), table.pooled(trials)
    group_rate = np.clip((group_s.sum(axis=1, keepdims=True) + 2.0 * site) / (group_t.sum(axis=1, keepdims=True) + 2.0),
                         1e-6, 1 - 1e-6)
    informative = group_t >= MIN_MOMENT_TRIALS  # weighted counts: fractional trials follow no binomial
    if informative.sum() >= MIN_MOMENT_PAIRS:
        # E[n (r - p)^2] = p (1 - p) + n tau^2 for a rate r of n trials around p: the spread tau^2 of true rates,
        # weighted by trials; a Beta prior of that spread has strength p (1 - p) / tau^2 - 1.
        p = np.broadcast_to(group_rate, group_t.shape)[informative]
        n = group_t[informative]
        observed = np.clip(group_s[informative] / n, 0, 1)
        spread = float((np.sum(n * (observed - p) ** 2) - np.sum(p * (1 - p))) / np.sum(n))
        prior = float(np.clip(np.average(p * (1 - p), weights=n) / max(spread, 1e-8) - 1.0, 1.0, 1e4))
    else:
        prior = 1e4
    group_lift = ((group_s + prior * group_rate) / (group_t + prior)) / group_rate
    item_rate = np.clip((successes.sum(axis=1, keepdims=True) + 2.0 * site) / (trials.sum(axis=1, keepdims=True) + 2.0),
                        1e-6, 1 - 1e-6)
    target = np.clip(item_rate * group_lift[table.groups], 1e-6, 1.0)
    shrunk = (successes + ITEM_PRIOR * target) / (trials + ITEM_PRIOR)
    return np.log(shrunk / item_rate), round(prior, 3), round(site, 6)


def _mean_lift(total: np.ndarray, events: np.ndarray, prior: float) -> np.ndarray:
    item_mean = total.sum(axis=1, keepdims=True) / np.maximum(events.sum(axis=1, keepdims=True), 1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        shrunk = (total + prior * item_mean) / (events + prior)
        lift = np.where(item_mean > 0, np.log(np.maximum(shrunk, 1e-9) / np.maximum(item_mean, 1e-9)), 0.0)
    return lift
