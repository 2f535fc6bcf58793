"""The rule that keeps a shopper's or a session's vector current: a pure function of the vector so far and one
interaction, so Ingest's fold, the ranking pipeline and the evaluation apply the same rule.

A vector is an exponentially weighted sum of the unit vectors of the items engaged with: each engagement first
decays what is there by `decay` (older interest counts less), then adds the item's vector times the event's
weight (EVENT_WEIGHTS: a cart add says more than a view) and, when the session's intent is known, its intent
factor. An ignored impression (an item the shop knows was seen and not clicked: shown above the last click,
or with an impression event) subtracts `ignore_weight` times the item's vector instead, without decaying.
The sum is kept unnormalised, so a long history is not overturned by one event; cosine search normalises it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from tailor.associations import EVENT_WEIGHTS

__all__ = ["DEFAULT_UPDATE", "VectorUpdate", "fold_vector", "update_vector"]


@dataclass(frozen=True)
class VectorUpdate:
    """The rule's parameters, chosen on validation splits (tailor evaluate next-item --validation-days)."""

    decay: float = 0.5  # what an engagement leaves of the vector so far
    ignore_weight: float = 0.1  # how far an ignored impression pushes away, relative to a view's pull
    # What an item of an impression counts, as a share of a full ignore, when it was never engaged with and no
    # click came below it: rendered, but perhaps never looked at (tailor.embeddings.online).
    unseen_share: float = 0.25
    event_weights: Mapping[str, float] | None = None  # default: tailor.associations.EVENT_WEIGHTS

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], not {self.decay}")
        if self.ignore_weight < 0:
            raise ValueError(f"ignore_weight must be at least 0, not {self.ignore_weight}")
        if not 0.0 <= self.unseen_share <= 1.0:
            raise ValueError(f"unseen_share must lie in [0, 1], not {self.unseen_share}")


DEFAULT_UPDATE = VectorUpdate()


def update_vector(current: np.ndarray | None, item_vector: np.ndarray | None, event_type: str, *,
                  rule: VectorUpdate = DEFAULT_UPDATE, intent_factor: float = 1.0) -> np.ndarray | None:
    """The vector after one interaction with an item whose vector is `item_vector`: `event_type` is an
    engagement ("view", "add_to_cart", ...) or "ignore" (an impression the shopper passed over). `intent_factor`
    scales the interaction's weight: the session intent's factor for an engagement, the share of a full ignore
    for an ignore. An item without a vector, or an event type of no weight, leaves the vector as it is
    (`current`, not a copy)."""
    if item_vector is None:
        return current
    if event_type == "ignore":
        if rule.ignore_weight == 0 or intent_factor <= 0 or current is None:
            return current  # nothing to push away from yet
        return current - (rule.ignore_weight * intent_factor) * np.asarray(item_vector, dtype=np.float32)
    weights = EVENT_WEIGHTS if rule.event_weights is None else rule.event_weights
    weight = float(weights.get(event_type, 0.0)) * intent_factor
    if weight <= 0:
        return current
    pulled = weight * np.asarray(item_vector, dtype=np.float32)
    return pulled if current is None else rule.decay * current + pulled


def fold_vector(interactions: Iterable[tuple[np.ndarray | None, str]], *, rule: VectorUpdate = DEFAULT_UPDATE,
                start: np.ndarray | None = None) -> np.ndarray | None:
    """`update_vector` over (item vector, event type) pairs in the order they happened."""
    vector = start
    for item_vector, event_type in interactions:
        vector = update_vector(vector, item_vector, event_type, rule=rule)
    return vector
