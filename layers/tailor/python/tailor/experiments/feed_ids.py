"""Feed ids: what a served list is called, and what Ingest reads from an event that echoes one.

A list served in an experiment is named `<experiment>.<variant>.<unit kind><random>`: Ingest attributes an event
that echoes it to its experiment and variant without a lookup, and the unit kind (u: user id, s: session id) says
which of the event's ids the shopper is counted by. Any other list's id is a bare random hex, as before.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["FeedId", "new_feed_id", "parse_feed_id"]


@dataclass(frozen=True)
class FeedId:
    experiment_id: str
    variant: str
    unit_kind: str


def new_feed_id(experiment_id: str | None = None, variant: str | None = None, unit_kind: str = "u") -> str:
    token = uuid.uuid4().hex
    if experiment_id is None or variant is None:
        return token
    return f"{experiment_id}.{variant}.{unit_kind}{token}"


@lru_cache(maxsize=4096)  # a served list's id comes back with each of its impressions, clicks and carts
def parse_feed_id(feed_id: str | None) -> FeedId | None:
    """The experiment, variant and unit kind a feed id names, or None (not an experiment's, or not well formed)."""
    if not feed_id or feed_id.count(".") != 2:
        return None
    experiment_id, variant, rest = feed_id.split(".")
    if not experiment_id or not variant or len(rest) < 2 or rest[0] not in "us":
        return None
    return FeedId(experiment_id, variant, rest[0])
