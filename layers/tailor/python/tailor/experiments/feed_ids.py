"""Feed ids: what a served list is called, and what Ingest reads from an event that echoes one.

A list served in an experiment is named `<experiment>.<variant>.<unit kind><random>`: Ingest attributes an event
that echoes it to its experiment and variant without a lookup, and the unit kind (u: user id, s: session id) says
which of the event's ids the shopper is counted by. A list interleaved from two rankers carries, in place of the
variant, what a click on each of its first CREDIT_SLOTS slots earns (tailor.experiments.interleaving.live_credits):
`~<scale>-<credits>`, each credit times `scale` as four base-36 digits, offset to be positive (variant names cannot
start with ~). Any other list's id is a bare random hex, as before.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["CREDIT_SLOTS", "INTERLEAVED", "FeedId", "new_feed_id", "parse_feed_id"]

INTERLEAVED = "interleaved"  # the variant an interleaved list's events count under
CREDIT_SLOTS = 32  # the slots of an interleaved list whose clicks earn credit: ids stay within events' 256 characters
_WIDTH = 4
_OFFSET = 36 ** _WIDTH // 2
_CREDITS = re.compile(rf"~([1-9][0-9]{{0,3}})-((?:[0-9a-z]{{{_WIDTH}}}){{1,{CREDIT_SLOTS}}})")


@dataclass(frozen=True)
class FeedId:
    experiment_id: str
    variant: str
    unit_kind: str
    credits: tuple[float, ...] | None = None  # an interleaved list's: what a click on each slot earns (> 0: A)


def new_feed_id(experiment_id: str | None = None, variant: str | None = None, unit_kind: str = "u",
                credits: Sequence[int] | None = None, scale: int = 1) -> str:
    """A new list's id; with `credits` (whole numbers, each slot's credit times `scale`) an interleaved list's."""
    token = uuid.uuid4().hex
    if experiment_id is None or (variant is None and credits is None):
        return token
    if credits is not None:
        if not 1 <= scale <= 9999 or any(abs(c) >= _OFFSET for c in credits):
            raise ValueError(f"credits must lie within +-{_OFFSET - 1} and scale in 1..9999")
        variant = f"~{scale}-" + "".join(np.base_repr(int(c) + _OFFSET, 36).lower().zfill(_WIDTH)
                                          for c in list(credits)[:CREDIT_SLOTS])
    return f"{experiment_id}.{variant}.{unit_kind}{token}"


@lru_cache(maxsize=4096)  # a served list's id comes back with each of its impressions, clicks and carts
def parse_feed_id(feed_id: str | None) -> FeedId | None:
    """The experiment, variant and unit kind a feed id names (an interleaved list's variant is INTERLEAVED, with its
    credits), or None (not an experiment's, or not well formed)."""
    if not feed_id or feed_id.count(".") != 2:
        return None
    experiment_id, variant, rest = feed_id.split(".")
    if not experiment_id or not variant or len(rest) < 2 or rest[0] not in "us":
        return None
    if not variant.startswith("~"):
        return FeedId(experiment_id, variant, rest[0])
    found = _CREDITS.fullmatch(variant)
    if found is None:
        return None
    scale, digits = int(found[1]), found[2]
    credits = tuple((int(digits[k:k + _WIDTH], 36) - _OFFSET) / scale for k in range(0, len(digits), _WIDTH))
    return FeedId(experiment_id, INTERLEAVED, rest[0], credits)

