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

A rebuild holds at most FIT_SHOPPERS shoppers, whatever the shop's size: a first scan of the shoppers table keeps
the category totals and item counts the feature space and the item term need, and the FIT_SHOPPERS shoppers of the
lowest hash of their id (all of them in a smaller shop); the personas are fitted on those, and where there were
more, a second scan takes each shopper's responsibilities (the personas' sizes and the cold-start tables) a chunk at
a time. A refine likewise takes the shoppers seen since a chunk at a time, summing what each brings.

Told the time it has left (`time_left`, the function's), a rebuild still publishes however large the shop: it ends
its first scan SURVEY_KEEPS_SECONDS before the deadline (then it fits on the shoppers that scan reached, in the
table's hash order a sample of it, and makes no second scan), and its second scan FINISH_SECONDS before it (then the
personas' sizes are those of the shoppers it reached, scaled to the first scan's count); the model's info says which.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tailor.catalog import catalog_view
from tailor.personas.adjustments import build_adjustments, read_counters
from tailor.personas.clustering import (
    MAX_ITEMS,
    ItemCounts,
    best_fit,
    choose_k,
    cold_start_tables,
    feature_space_of,
    match_ids,
    persona_labels,
    refine_sums,
    refined,
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
FIT_SHOPPERS = 20_000  # shoppers the chosen k is fitted on (and the most a rebuild holds); every shopper is then
# assigned to the fit
ASSIGN_CHUNK = 5_000  # shoppers assigned to the fit at a time in the second scan
SCAN_SEGMENTS = 4  # parts of the shoppers table a scan reads at once (a DynamoDB parallel scan)
FINISH_SECONDS = 120.0  # what a rebuild keeps, of the time it has left, for the counters, adjustments and publishing
SURVEY_KEEPS_SECONDS = 300.0  # and past its first scan: the fit on FIT_SHOPPERS besides (a minute or two)
# erased_at tells ShopperState.from_row which rows are the tombstones of erased shoppers.
SHOPPER_FIELDS = ("user_id", "first_seen", "last_seen", "events", "counts", "sessions", "category_affinity",
                  "purchases", "profile", "referral_sources", "personas", "erased_at", "recent_items")
ITEM_FIELDS_READ = ("item_id", "price", "category")


def run_job(mode: str, store: StateStore, blobs: BlobStore, *, ks: Sequence[int] = K_RANGE, seed: int = 0,
            clock: Callable[[], float] = time.time, time_left: Callable[[], float] | None = None) -> dict[str, Any]:
    """Run the `mode` job; returns what it did (for the logs and the caller). `time_left`: the seconds the caller
    has left (a Lambda context's remaining time), which bound a rebuild's second scan."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    started = time.perf_counter()
    previous = current_model(blobs)
    if mode == "refine" and previous is None:
        mode = "rebuild"  # nothing to refine yet
    items = [catalog_view(row) for row in every_row(store, "items")]
    if mode == "rebuild":
        survey = _survey(store, seed, None if time_left is None else (lambda: time_left() < SURVEY_KEEPS_SECONDS))
        if survey.shoppers < MIN_SHOPPERS:
            return {"mode": mode, "published": None, "shoppers": survey.shoppers, "reason": "too few shoppers"}
        model = _cluster(survey, store, items, list(every_row(store, "queries")), previous, ks, seed, clock(),
                         time_left)
    else:
        assert previous is not None
        # Shoppers with events past the newest the model has seen (event time, so a replay of history works too).
        since = float(previous.info.get("data_through", 0.0))
        model = _refined(previous, (s for s in _each_shopper(store) if s.last_seen > since), clock())
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
        if "assigned" in model.info:  # by the second scan, which counts the table as it was then
            summary["assigned"] = model.info["assigned"]
        if model.info.get("survey_cut"):
            logger.warning("the first scan stopped before the deadline: personas fitted on the shoppers it reached",
                           extra={"shoppers": model.info["shoppers"]})
            summary["survey_cut"] = True
        if model.info.get("assignment_cut"):
            logger.warning("the second scan stopped before the deadline: persona sizes from the shoppers it reached",
                           extra={"assigned": model.info["assigned"], "shoppers": model.info["shoppers"]})
            summary["assignment_cut"] = True
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


def _each_shopper(store: StateStore) -> Iterator[ShopperState]:
    """Every shopper with events, as the table's scan gives them (SCAN_SEGMENTS parts at once: in no set order)."""
    for row in every_row(store, "shoppers", SHOPPER_FIELDS, segments=SCAN_SEGMENTS):
        state = ShopperState.from_row(row, owned=True)  # a scan's rows are its own: no copy
        if state is not None and state.events > 0:
            yield state


@dataclass
class _Survey:
    """What a rebuild keeps of its first scan: how many shoppers, the newest event, every shopper's category
    engagements and recent items and signals summed, and the shoppers the fit is made on (by id)."""

    shoppers: int = 0
    cut: bool = False  # the scan stopped before the table's end (near the deadline)
    data_through: float = 0.0
    categories: Counter = field(default_factory=Counter)
    tokens: Counter = field(default_factory=Counter)
    sample: list[ShopperState] = field(default_factory=list)

    @property
    def everyone(self) -> bool:
        """Whether the sample holds every shopper of the scan."""
        return len(self.sample) == self.shoppers


def _survey(store: StateStore, seed: int, ending: Callable[[], bool] | None = None) -> _Survey:
    """The first scan: the totals and the FIT_SHOPPERS shoppers of the lowest hash of (seed, id), sorted by id (every
    shopper, where there are no more), whatever order the scan gives them in; it stops early (`cut`) once
    `ending()` says so, asked every ASSIGN_CHUNK shoppers."""
    survey = _Survey()
    at_most = FIT_SHOPPERS
    kept: list[tuple[int, str, ShopperState]] = []  # a max-heap (negated hashes) of the lowest hashes
    for shopper in _each_shopper(store):
        if survey.shoppers and survey.shoppers % ASSIGN_CHUNK == 0 and ending is not None and ending():
            survey.cut = True
            break
        survey.shoppers += 1
        survey.data_through = max(survey.data_through, shopper.last_seen)
        survey.categories.update(shopper.category_affinity)
        survey.tokens.update(persona_evidence(shopper))
        entry = (-_draw(seed, shopper.user_id), shopper.user_id, shopper)
        if len(kept) < at_most:
            heapq.heappush(kept, entry)
        elif entry > kept[0]:
            heapq.heapreplace(kept, entry)
    survey.sample = sorted((shopper for _, _, shopper in kept), key=lambda s: s.user_id)
    return survey


def _draw(seed: int, user_id: str) -> int:
    """A shopper's place in the fit's sample: the same in every scan, for the seed."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{user_id}".encode(), digest_size=8).digest(), "big")


def _cluster(survey: _Survey, store: StateStore, items: list[dict], queries: list[dict],
             previous: PersonaModel | None, ks: Sequence[int], seed: int, now: float,
             time_left: Callable[[], float] | None = None) -> PersonaModel:
    shoppers = survey.sample
    space = feature_space_of(survey.categories, items, queries)
    x = batch_features(shoppers, space)
    center, scale = standardization(x, space)
    z = (x - center) / scale
    evidence = [persona_evidence(s) for s in shoppers]  # recent items, then signals
    # The most frequent tokens, ties by name: the same vocabulary whatever order the scan counted them in.
    taste_items = sorted(token for token, _ in sorted(survey.tokens.items(), key=lambda t: (-t[1], t[0]))[:MAX_ITEMS])
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
    if len(z) > len(chosen_on):
        fit = best_fit(z, len(fit.weights), seed=seed, items=items,
                       starts=starts_near(start, z, len(fit.weights)))
    means_raw = fit.means * scale + center
    ids = match_ids(previous, means_raw, space.names)
    order = np.argsort(ids)

    def assigned(chunk: list[ShopperState]) -> np.ndarray:
        own = ItemCounts([persona_evidence(s) for s in chunk], taste_items)
        return fit.responsibilities((batch_features(chunk, space) - center) / scale, own)[:, order]

    weights, means, variances = fit.weights[order], fit.means[order], fit.variances[order]
    # Every shopper's responsibilities: the sample's at hand when it is every shopper (or all the time left allows,
    # the first scan having been cut), else a second scan's.
    if survey.everyone or survey.cut:
        responsibilities = fit.responsibilities(z, items)[:, order]
        counts, second_scan = responsibilities.sum(axis=0), {}
        cold_start = cold_start_tables(zip(shoppers, responsibilities), weights)
        if survey.cut:
            counts = counts * (survey.shoppers / len(shoppers))
            second_scan = {"survey_cut": True}
    else:
        ending = None if time_left is None else (lambda: time_left() < FINISH_SECONDS)
        assignment = _Assignment(store, assigned, len(ids), ending)
        cold_start = cold_start_tables(assignment, weights)
        counts = assignment.counts  # once every shopper has gone through, or the scan was cut
        second_scan = {"assigned": assignment.shoppers}
        if assignment.cut:
            counts = counts * (survey.shoppers / max(assignment.shoppers, 1))
            second_scan["assignment_cut"] = True
    model = PersonaModel(
        version="", space=space, ids=sorted(ids), labels=persona_labels(means_raw[order], space), weights=weights,
        means=means, variances=variances, center=center, scale=scale, counts=counts,
        cold_start=cold_start, taste_items=taste_items,
        item_log=fit.item_log[order] if fit.item_log is not None else np.zeros((0, 0)),
        info={"built_at": now, "refined_at": now, "shoppers": survey.shoppers, **second_scan, "bic": bics,
              "k": len(ids),
              "k_choice": k_choice(len(ids), list(ks), bics, passed_over, len(chosen_on), "held-out deviance"),
              "fitted_on": len(z),
              "data_through": survey.data_through,
              "built": datetime.fromtimestamp(now, tz=UTC).isoformat()})
    return model


class _Assignment:
    """The second scan: each shopper with their responsibilities, ASSIGN_CHUNK shoppers at a time, and as it goes,
    the responsibilities summed (the personas' sizes) and the shoppers counted. The scan is the table as it is then:
    shoppers who came or went since the first one are counted here and not there. It ends early (`cut`) once
    `ending()` says so, checked between chunks."""

    def __init__(self, store: StateStore, assigned: Callable[[list[ShopperState]], np.ndarray], k: int,
                 ending: Callable[[], bool] | None = None):
        self.store, self.assigned, self.ending = store, assigned, ending
        self.counts = np.zeros(k)
        self.shoppers = 0
        self.cut = False

    def __iter__(self) -> Iterator[tuple[ShopperState, np.ndarray]]:
        for chunk in _chunks(_each_shopper(self.store), ASSIGN_CHUNK):
            if self.shoppers and self.ending is not None and self.ending():
                self.cut = True
                return
            responsibilities = self.assigned(chunk)
            self.counts += responsibilities.sum(axis=0)
            self.shoppers += len(chunk)
            yield from zip(chunk, responsibilities)
            del chunk, responsibilities  # before the next is read: one chunk held at a time


def _sample(n: int, at_most: int, seed: int) -> np.ndarray:
    """Row indices of at most `at_most` of `n` shoppers, ascending: all of them, or a draw the seed repeats."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, n]).choice(n, size=at_most, replace=False))


def _refined(previous: PersonaModel, recent: Iterable[ShopperState], now: float) -> PersonaModel:
    """The previous personas moved toward the `recent` shoppers, taken ASSIGN_CHUNK at a time (each chunk by id)."""
    mass, moved = np.zeros(previous.k), np.zeros(previous.means.shape)
    count, data_through = 0, None
    for chunk in _chunks(recent, ASSIGN_CHUNK):
        chunk.sort(key=lambda s: s.user_id)
        more_mass, more_moved = refine_sums(previous, batch_features(chunk, previous.space),
                                            [persona_evidence(s) for s in chunk])
        mass += more_mass
        moved += more_moved
        count += len(chunk)
        newest = max(s.last_seen for s in chunk)
        data_through = newest if data_through is None else max(data_through, newest)
        del chunk  # before the next is read: one chunk held at a time
    means, counts, weights = refined(previous, mass, moved) if count else (
        previous.means, previous.counts, previous.weights)
    info = {**previous.info, "refined_at": now, "refined_with": count,
            "data_through": previous.info.get("data_through", 0.0) if data_through is None else data_through}
    return PersonaModel(version="", space=previous.space, ids=list(previous.ids),
                        labels=persona_labels(means * previous.scale + previous.center, previous.space),
                        weights=weights, means=means, variances=previous.variances, center=previous.center,
                        scale=previous.scale, counts=counts, cold_start=previous.cold_start, info=info,
                        taste_items=list(previous.taste_items), item_log=previous.item_log)


def _chunks(shoppers: Iterable[ShopperState], size: int) -> Iterator[list[ShopperState]]:
    chunk: list[ShopperState] = []
    for shopper in shoppers:
        chunk.append(shopper)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _price_band(model: PersonaModel) -> Callable[[dict], str]:
    """An item's group for pooling counters: its category and its price fifth within it."""

    def group(row: dict) -> str:
        category, price = str(row.get("category") or ""), row.get("price")
        q = model.space.price_percentile(category, float(price)) if isinstance(price, (int, float)) else None
        return f"{category}|{'' if q is None else min(int(q * PRICE_BANDS), PRICE_BANDS - 1)}"

    return group
