"""Business filters: which candidates a response may show at all (availability, price, category, bought)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tailor.ranking.limits import check_price_range
from tailor.ranking.rows import ITEM_FIELDS

__all__ = ["Filters", "filter_mask"]

_AVAILABLE = ITEM_FIELDS.index("available")
_PRICE = ITEM_FIELDS.index("price")


@dataclass(frozen=True)
class Filters:
    """An item passes when it is not known to be unavailable (`available_only`), its known price lies in
    [min_price, max_price] (an unknown price fails a price bound), its category is one of `categories`
    (when given), and, with `exclude_purchased`, the shopper has not bought it."""

    available_only: bool = True
    min_price: float | None = None
    max_price: float | None = None
    categories: tuple[str, ...] = ()
    exclude_purchased: bool = False

    def __post_init__(self) -> None:
        check_price_range(self.min_price, self.max_price)


class FilteredCandidates(Protocol):
    """What the filters read of the candidates (tailor.ranking.candidates.Candidates): one row per candidate."""

    ids: Sequence[str]
    values: np.ndarray  # (n, len(ITEM_FIELDS))
    categories: Sequence[str | None]

    def __len__(self) -> int: ...


class PurchaseHistory(Protocol):
    """What the filters ask of the request's context (tailor.ranking.context.RankingContext)."""

    def purchased_items(self) -> set[str]: ...


def filter_mask(filters: Filters, ctx: PurchaseHistory, candidates: FilteredCandidates) -> np.ndarray:
    """True for each candidate the filters let through."""
    values = candidates.values
    keep = np.ones(len(candidates), dtype=bool)
    if filters.available_only:
        keep &= values[:, _AVAILABLE] != 0.0  # NaN (unknown) passes
    price = values[:, _PRICE]
    with np.errstate(invalid="ignore"):
        if filters.min_price is not None:
            keep &= price >= filters.min_price
        if filters.max_price is not None:
            keep &= price <= filters.max_price
    if filters.categories:
        wanted = set(filters.categories)
        keep &= np.fromiter((c in wanted for c in candidates.categories), dtype=bool, count=len(candidates))
    if filters.exclude_purchased:
        bought = ctx.purchased_items()
        if bought:
            keep &= np.fromiter((i not in bought for i in candidates.ids), dtype=bool, count=len(candidates))
    return keep
