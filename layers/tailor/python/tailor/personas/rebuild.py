"""The scheduled persona jobs: rebuild (re-cluster shoppers, re-learn the feature space) and refine (move the
personas toward recent shoppers, mini-batch style); both recompute the adjustment vectors from the counters.

Rebuild: every shopper row becomes a feature vector (tailor.personas.features, the function Ingest uses) and
its recent items (what Ingest weighs the personas' item distributions with); mixtures of k = K_RANGE personas
are fitted, from fresh starts and from the previous personas, and the k whose fits explain held-out shoppers best
kept; personas take the ids of the nearest previous ones, so the counters Ingest keeps under persona ids keep
their meaning. Refine: shoppers
seen since the model was last built or refined pull their personas' means toward them, each persona at the
rate of 1 / the shoppers it has absorbed. Either publishes a new version (tailor.personas.storage) that
Ingest and the API pick up within minutes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tailor.personas.adjustments import build_adjustments, read_counters
from tailor.personas.clustering import (
    MAX_ITEMS,
    ItemCounts,
    best_fit,
    choose_k,
    cold_start_tables,
    feature_space,
    match_ids,
    persona_labels,
    refine,
    standardization,
    starts_near,
)
from tailor.personas.features import batch_features
from tailor.personas.model import PersonaModel, persona_evidence
from tailor.personas.storage import current_model, persona_version, publish_model
from tailor.shopper import ShopperState
from tailor.store.port import BlobStore, StateStore, every_row

__all__ = ["K_RANGE", "MODES", "k_choice", "run_job"]

logger = logging.getLogger(__name__)

K_RANGE = tuple(range(2, 13))
MODES = ("rebuild", "refine")
PRICE_BANDS = 5
MIN_SHOPPERS = 20  # fewer shoppers with events than this: no model yet
CHOOSE_K_SHOPPERS = 3_000  # shoppers k is chosen on (the held-out criterion was validated on some 1,700)
FIT_SHOPPERS = 20_000  # shoppers the chosen k is fitted on; every shopper is then assigned to the fit
# erased_at tells ShopperState.from_row which rows are the tombstones of erased shoppers.
SHOPPER_FIELDS = ("user_id", "first_seen", "last_seen", "events", "counts", "sessions", "category_affinity",
                  "purchases", "profile", "referral_sources", "personas", "erased_at", "recent_items")
ITEM_FIELDS_READ = ("item_id", "price", "category")


def run_job(mode: str, store: StateStore, blobs: BlobStore, *, ks: Sequence[int] = K_RANGE, seed: int = 0,
            clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Run the `mode` job; returns what it did (for the logs and the caller)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    started = time.perf_counter()
    previous = current_model(blobs)
    if mode == "refine" and previous is None:
        mode = "rebuild"  # nothing to refine yet
    items = list(every_row(store, "items"))
    if mode == "rebuild":
        shoppers = _shoppers(store)
        if len(shoppers) < MIN_SHOPPERS:
            return {"mode": mode, "published": None, "shoppers": len(shoppers), "reason": "too few shoppers"}
        model = _cluster(shoppers, items, list(every_row(store, "queries")), previous, ks, seed, clock())
    else:
        assert previous is not None
        # Shoppers with events past the newest the model has seen (event time, so a replay of history works too).
        since = float(previous.info.get("data_through", 0.0))
        recent = [s for s in _shoppers(store) if s.last_seen > since]
        model = _refined(previous, recent, clock())
    counters = read_counters(items, model.ids, group_of=_price_band(model))
    model.adjustment_items, model.adjustments, adjustment_stats = build_adjustments(counters)
    model.info["adjustments"] = adjustment_stats
    model.version = persona_version(model.to_bytes(), clock())
    model.__post_init__()
    key = publish_model(blobs, model)
    summary = {"mode": mode, "published": key, "version": model.version, "k": model.k, "ids": model.ids,
               "labels": model.labels, "adjustments": adjustment_stats, "seconds": round(time.perf_counter() - started, 3)}
    if mode == "rebuild":
        summary.update(bic=model.info["bic"], shoppers=model.info["shoppers"], k_choice=model.info["k_choice"],
                       fitted_on=model.info["fitted_on"])
    else:
        summary["refined_with"] = model.info.get("refined_with", 0)
    logger.info("persona job done", extra=summary)
    return summary


def k_choice(k: int, ks: Sequence[int], bics: dict[int, float], passed_over: dict[int, str], shoppers: int,
             criterion: str = "BIC") -> str:
    """How k was chosen, in a sentence: among which k, on how many shoppers, and why the others were left out."""
    tried = _ks_text(ks)
    if k not in ks:  # no k of the range could be kept: one persona for everyone
        text = f"k={k}: none of k={tried} could be fitted to {shoppers} shoppers"
    else:
        text = f"k={k}, the lowest {criterion} among k={_ks_text(sorted(bics))} on {shoppers} shoppers"
        runner_up = min((other for other in bics if other != k), key=bics.__getitem__, default=None)
        if runner_up is not None:
            text += f" (next: k={runner_up}, {criterion} +{bics[runner_up] - bics[k]:.1f})"
        if len(bics) < len(ks):
            text += f", of k={tried}"
    by_reason: dict[str, list[int]] = {}
    for left_out, reason in sorted(passed_over.items()):
        by_reason.setdefault(reason, []).append(left_out)
    return "; ".join([text] + [f"k={_ks_text(group)} left out: {reason}" for reason, group in by_reason.items()])


def _ks_text(ks: Sequence[int]) -> str:
    """2..12 for a run of k, else 2, 5, 7."""
    ks = sorted(ks)
    if len(ks) > 2 and ks == list(range(ks[0], ks[-1] + 1)):
        return f"{ks[0]}..{ks[-1]}"
    return ", ".join(str(k) for k in ks)


def _shoppers(store: StateStore) -> list[ShopperState]:
    out = []
    for row in every_row(store, "shoppers", SHOPPER_FIELDS):
        state = ShopperState.from_row(row)
        if state is not None and state.events > 0:
            out.append(state)
    # The fit depends on the order of its rows: the same shoppers give the same personas whatever order a scan has.
    return sorted(out, key=lambda s: s.user_id)


def _cluster(shoppers: list[ShopperState], items: list[dict], queries: list[dict], previous: PersonaModel | None,
             ks: Sequence[int], seed: int, now: float) -> PersonaModel:
    space = feature_space(shoppers, items, queries)
    x = batch_features(shoppers, space)
    center, scale = standardization(x, space)
    z = (x - center) / scale
    evidence = [persona_evidence(s) for s in shoppers]  # recent items, then signals
    taste_items = sorted(token for token, _ in Counter(t for own in evidence for t in own).most_common(MAX_ITEMS))
    items = ItemCounts(evidence, taste_items)
    passed_over: dict[int, str] = {}
    # k is chosen on at most CHOOSE_K_SHOPPERS shoppers and the chosen k fitted on at most FIT_SHOPPERS: every k's fits
    # and their held-out folds on every shopper would outgrow the function's 15 minutes in a shop of some 25,000.
    # The previous personas, moved to today's shoppers, are one more start: the fit keeps them unless fresh starts
    # explain the shoppers better, so personas (and the ids the counters are kept under) hold from day to day.
    start = previous.responsibilities(batch_features(shoppers, previous.space), evidence) \
        if previous is not None and previous.k >= 2 else None
    chosen_on = _sample(len(z), CHOOSE_K_SHOPPERS, seed)
    fit, bics = choose_k(z[chosen_on], ks, seed=seed, passed_over=passed_over, items=items.take(chosen_on),
                         start=None if start is None else start[chosen_on])
    fitted_on = _sample(len(z), FIT_SHOPPERS, seed)
    if len(fitted_on) > len(chosen_on):
        fit = best_fit(z[fitted_on], len(fit.weights), seed=seed, items=items.take(fitted_on),
                       starts=starts_near(None if start is None else start[fitted_on], z[fitted_on], len(fit.weights)))
    means_raw = fit.means * scale + center
    ids = match_ids(previous, means_raw, space.names)
    order = np.argsort(ids)
    responsibilities = fit.responsibilities(z, items)[:, order]
    weights, means, variances = fit.weights[order], fit.means[order], fit.variances[order]
    model = PersonaModel(
        version="", space=space, ids=sorted(ids), labels=persona_labels(means_raw[order], space), weights=weights,
        means=means, variances=variances, center=center, scale=scale, counts=responsibilities.sum(axis=0),
        cold_start=cold_start_tables(shoppers, responsibilities, weights), taste_items=taste_items,
        item_log=fit.item_log[order] if fit.item_log is not None else np.zeros((0, 0)),
        info={"built_at": now, "refined_at": now, "shoppers": len(shoppers), "bic": bics, "k": len(ids),
              "k_choice": k_choice(len(ids), list(ks), bics, passed_over, len(chosen_on), "held-out deviance"),
              "fitted_on": len(fitted_on),
              "data_through": max(s.last_seen for s in shoppers),
              "built": datetime.fromtimestamp(now, tz=UTC).isoformat()})
    return model


def _sample(n: int, at_most: int, seed: int) -> np.ndarray:
    """Row indices of at most `at_most` of `n` shoppers, ascending: all of them, or a draw the seed repeats."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, n]).choice(n, size=at_most, replace=False))


def _refined(previous: PersonaModel, recent: list[ShopperState], now: float) -> PersonaModel:
    x = batch_features(recent, previous.space)
    means, counts, weights = refine(previous, x, [persona_evidence(s) for s in recent])
    info = {**previous.info, "refined_at": now, "refined_with": len(recent),
            "data_through": max([s.last_seen for s in recent], default=previous.info.get("data_through", 0.0))}
    return PersonaModel(version="", space=previous.space, ids=list(previous.ids),
                        labels=persona_labels(means * previous.scale + previous.center, previous.space),
                        weights=weights, means=means, variances=previous.variances, center=previous.center,
                        scale=previous.scale, counts=counts, cold_start=previous.cold_start, info=info,
                        taste_items=list(previous.taste_items), item_log=previous.item_log)


def _price_band(model: PersonaModel) -> Callable[[dict], str]:
    """An item's group for pooling counters: its category and its price fifth within it."""

    def group(row: dict) -> str:
        category, price = str(row.get("category") or ""), row.get("price")
        q = model.space.price_percentile(category, float(price)) if isinstance(price, (int, float)) else None
        return f"{category}|{'' if q is None else min(int(q * PRICE_BANDS), PRICE_BANDS - 1)}"

    return group
