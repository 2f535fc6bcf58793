"""Sticky assignment of shoppers to experiments and variants: salted hashes, no state.

A shopper's unit is their user id (their session id when anonymous), so the assignment is the same in every session
and on every container. Two hashes decide it:

* the layer's: the unit's place in [0, 1) of the layer (surface and layer name). Each running experiment of the layer
  claims a disjoint slot of it when it starts (`claim_slot`), so two experiments of one layer never share a shopper;
* the experiment's, salted with the experiment's own salt: where in the experiment the unit falls, holdout first,
  then the variants by their shares. Salts differ per experiment, so assignments are independent between
  experiments (of different layers) and from the layer's slots.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b

from tailor.experiments.definitions import Experiment, ExperimentError, Variant
from tailor.experiments.feed_ids import INTERLEAVED

__all__ = ["HOLDOUT", "SESSION_UNIT", "USER_UNIT", "Assignment", "assign", "claim_slot", "unit_hash"]

HOLDOUT = "holdout"
USER_UNIT, SESSION_UNIT = "u", "s"  # what a unit is: a user id, or an anonymous shopper's session id
_SCALE = float(1 << 64)


@dataclass(frozen=True)
class Assignment:
    experiment: Experiment
    variant: Variant | None  # None: the unit is held out (served the default, not counted)
    unit: str
    unit_kind: str  # USER_UNIT: a user id, SESSION_UNIT: a session id

    @property
    def interleaved(self) -> bool:
        """Served the team draft of the experiment's two variants (an interleaving experiment, not held out)."""
        return self.variant is not None and self.experiment.interleaving

    @property
    def variant_name(self) -> str:
        if self.variant is None:
            return HOLDOUT
        return INTERLEAVED if self.experiment.interleaving else self.variant.name


def unit_hash(salt: str, unit: str) -> float:
    """A uniform number in [0, 1) from `salt` and `unit`, the same everywhere and always."""
    digest = blake2b(f"{salt}\x1f{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign(experiments: Iterable[Experiment], surface: str, *, user_id: str | None,
           session_id: str | None) -> Assignment | None:
    """The experiment and variant of the shopper on `surface` among the live `experiments`, or None (in none)."""
    unit, kind = (user_id, USER_UNIT) if user_id else (session_id, SESSION_UNIT)
    if not unit:
        return None
    places: dict[str, float] = {}
    for experiment in experiments:
        if experiment.surface != surface or experiment.slot is None:
            continue
        layer = experiment.layer_name
        place = places.get(layer)
        if place is None:
            place = places[layer] = unit_hash(layer, unit)
        low, high = experiment.slot
        if not low <= place < high:
            continue
        return Assignment(experiment, pick_variant(experiment, unit), unit, kind)
    return None


def pick_variant(experiment: Experiment, unit: str) -> Variant | None:
    """The unit's variant within the experiment (None: held out)."""
    x = unit_hash(experiment.salt or experiment.experiment_id, unit)
    if x < experiment.holdout:
        return None
    x = (x - experiment.holdout) / (1.0 - experiment.holdout)
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.share
        if x < edge:
            return variant
    return experiment.variants[-1]  # shares add up to 1 within rounding


def claim_slot(experiment: Experiment, running: Iterable[Experiment]) -> tuple[float, float]:
    """The slot of its layer's hash space an experiment takes when it starts: the lowest free run of `traffic`
    width beside the running experiments of the same layer; ExperimentError (409) when none is free."""
    taken = sorted(e.slot for e in running if e.slot is not None and e.layer_name == experiment.layer_name
                   and e.experiment_id != experiment.experiment_id)
    low = 0.0
    for start, end in taken:
        if start - low >= experiment.traffic - 1e-9:
            break
        low = max(low, end)
    if 1.0 - low < experiment.traffic - 1e-9:
        free = 1.0 - sum(end - start for start, end in taken)
        raise ExperimentError("traffic", f"layer {experiment.layer_name!r} has {free:.3g} of its shoppers free in "
                                         f"one run at most, not {experiment.traffic:g}: stop an experiment of it, "
                                         "take less traffic or another layer", 409)
    return (round(low, 9), round(min(1.0, low + experiment.traffic), 9))
