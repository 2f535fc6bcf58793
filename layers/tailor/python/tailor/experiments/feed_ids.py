"""Feed ids: what a served list is called, and what Ingest reads from an event that echoes one.

A list served in an experiment is named `<experiment>.<variant>.<unit kind><random>`: Ingest attributes an event
that echoes it to its experiment and variant without a lookup, and the unit kind (u: user id, s: session id) says
which of the event's ids the shopper is counted by. A list interleaved from two rankers names, in place of the
variant, which ranker put each slot's item there: `~<slots>-<hex>`, bit k of the hex set when ranker A put slot k's
(variant names cannot start with ~). Any other list's id is a bare random hex, as before.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["INTERLEAVED", "FeedId", "new_feed_id", "parse_feed_id"]

INTERLEAVED = "interleaved"  # the variant an interleaved list's events count under
_TEAMS = "~"
_TEAMS_PATTERN = re.compile(r"~([1-9][0-9]{0,2})-([0-9a-f]{1,250})")


@dataclass(frozen=True)
class FeedId:
    experiment_id: str
    variant: str
    unit_kind: str
    teams: str | None = None  # an interleaved list's: "A" or "B" per slot, the ranker that put its item there


def new_feed_id(experiment_id: str | None = None, variant: str | None = None, unit_kind: str = "u",
                teams: Sequence[str] | None = None) -> str:
    """A new list's id; with `teams` (the ranker, "A" or "B", of each slot) an interleaved list's."""
    token = uuid.uuid4().hex
    if experiment_id is None or (variant is None and teams is None):
        return token
    if teams is not None:
        bits = sum(1 << slot for slot, team in enumerate(teams) if team == "A")
        variant = f"{_TEAMS}{len(teams)}-{bits:x}"
    return f"{experiment_id}.{variant}.{unit_kind}{token}"


@lru_cache(maxsize=4096)  # a served list's id comes back with each of its impressions, clicks and carts
def parse_feed_id(feed_id: str | None) -> FeedId | None:
    """The experiment, variant and unit kind a feed id names (an interleaved list's variant is INTERLEAVED, with its
    teams), or None (not an experiment's, or not well formed)."""
    if not feed_id or feed_id.count(".") != 2:
        return None
    experiment_id, variant, rest = feed_id.split(".")
    if not experiment_id or not variant or len(rest) < 2 or rest[0] not in "us":
        return None
    if not variant.startswith(_TEAMS):
        return FeedId(experiment_id, variant, rest[0])
    found = _TEAMS_PATTERN.fullmatch(variant)
    if found is None:
        return None
    count, mask = int(found[1]), int(found[2], 16)
    if mask >> count:
        return None
    return FeedId(experiment_id, INTERLEAVED, rest[0], "".join("A" if mask >> k & 1 else "B" for k in range(count)))
