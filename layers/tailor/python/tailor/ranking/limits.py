"""What one ranking request may ask for, checked here for the pipeline and the API alike, and the error naming the
field that asks for what cannot be served."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["MAX_ITEMS", "MAX_N", "MAX_SESSION_EVENTS", "RequestError", "check_base_scores", "check_price_range"]

MAX_N = 1000  # items one response may hold
MAX_ITEMS = 1000  # items a caller may hand over to be re-ranked
MAX_SESSION_EVENTS = 200  # events a caller may describe its session with (related)


class RequestError(ValueError):
    """A request the ranking cannot serve: `field` names the argument at fault, `message` says why, and `kind` is a
    stable code for the rule it breaks."""

    def __init__(self, field: str, message: str, kind: str = "value_error"):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.kind = kind


def check_price_range(min_price: float | None, max_price: float | None) -> None:
    """Each bound, when given, a non-negative number, and max_price not below min_price."""
    for name, value in (("min_price", min_price), ("max_price", max_price)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise RequestError(name, "must be a non-negative number")
    if min_price is not None and max_price is not None and max_price < min_price:
        raise RequestError("max_price", "max_price is below min_price", "price_range")


def check_base_scores(items: int, base_scores: Sequence[float] | None) -> None:
    """A caller's own scores, when given: one finite number for each of its `items` items, in their order."""
    if base_scores is None:
        return
    if len(base_scores) != items:
        raise RequestError("base_scores", f"base_scores needs one score per item ({items} items)", "length_mismatch")
    if not all(math.isfinite(score) for score in base_scores):
        raise RequestError("base_scores", "must be finite numbers")

