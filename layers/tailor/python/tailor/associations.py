"""Item-to-item associations: what an engagement adds to the association rows, and how a session ranks next items.

Write side (Ingest, through `tailor.ingest.derive`): when a shopper engages with item b, every
item a among the session's last ASSOCIATION_WINDOW other items gets a pair a -> b whose weight is
the event's weight (EVENT_WEIGHTS: a cart add says more than a view) divided by the gap, the
number of distinct items engaged between them plus one. A pair adds to two rows of the
associations table:

* a's row: "n:b" (near: engaged close to a, in either order) and "f:b" (follows: engaged after a);
* b's row: "n:a".

So "n:" stays symmetric (what ranking reads as co-occurrence) and "f:" keeps the direction. A pair
made by a commitment (a cart add or a purchase, COMMITMENTS) also adds to "c:b" in a's row and "c:a"
in b's: the part of "n:" that shoppers ready to buy made, which the read side weighs by the
request's intent (`intent_weighted`). Coming
back to an item already in the session adds "f:<itself>" to its own row, the weight of a return
to it. The decay is over the distance within the session; rows do not age, because aging
add-only counters would change the scale of the "n:" weights that ranking reads as counts.
Pair weights are rounded to multiples of 1/64: sums of such numbers are exact in binary floating
point, so a row is the same whichever batches its increments arrived in. The event weights are
a mapping so that the session's intent can scale them (WeightedEventScore = BaseEventScore x
IntentScalingFactor) without changing the rule; Ingest passes each event's weight scaled by its
session's intent (tailor.ingest.intent).

Read side: `parse_associations` turns a row into an `ItemAssociations` (`top` gives an item's
strongest associations); `rank_next_items` ranks what a session is likely to engage with next:
the associations of its recent items (the most recent counting most), one step further from
the strongest candidates, and the session's own items as reminders. A reminder is a constant
bonus decaying with the item's recency or, given a shop's `RevisitOdds` (how much likelier its
sessions came back to their r-th most recent item than moved on to a new one, by how many items
and engagements they had so far), those odds times the votes' total: a session comes back or moves
on as the shop's sessions did in its place. `NextItems` is that ranking in its two steps, for a
caller that reads rows between them. `intent_weighted` is the spec's
calculateItemAssociations(firstItem, weightedEventScores): an item's associations with engagement
pairs and commitment pairs scaled by the request's blended intent factors. `engagement_strength`
turns the session's events, when the caller has them, into how strongly each item votes.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

__all__ = [
    "ASSOCIATION_WINDOW",
    "COMMIT",
    "COMMITMENTS",
    "EVENT_WEIGHTS",
    "FOLLOWS",
    "NEAR",
    "DEFAULT_PARAMS",
    "ItemAssociations",
    "NextItemParams",
    "NextItems",
    "REVISIT_DEPTH",
    "RevisitOdds",
    "engagement_strength",
    "intent_weighted",
    "pair_increments",
    "parse_associations",
    "rank_next_items",
    "revisit_context",
]

ASSOCIATION_WINDOW = 10  # a newly engaged item is paired with this many of the session's previous items
NEAR = "n:"  # row a, "n:b": a and b were engaged close together, in either order
FOLLOWS = "f:"  # row a, "f:b": b was engaged after a
COMMIT = "c:"  # row a, "c:b": the part of "n:b" made by cart adds and purchases
COMMITMENTS = frozenset({"add_to_cart", "purchase"})  # engagements that say the shopper means to buy
# What one engagement with an item says about its link to the items engaged before it.
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0, "click": 1.0, "review_read": 1.0, "spec_compare": 1.0, "wishlist": 2.0, "add_to_cart": 3.0,
    "purchase": 5.0,
}
WEIGHT_QUANTUM = 64  # pair weights are multiples of 1/64


def pair_increments(item_id: str, event_type: str, previous_items: Sequence[str],
                    weights: Mapping[str, float] = EVENT_WEIGHTS, *,
                    window: int = ASSOCIATION_WINDOW) -> dict[str, dict[str, float]]:
    """Association row -> attribute increments from engaging `item_id` by an `event_type` event.

    `previous_items` are the session's distinct engaged items before the event, most recent last
    (`SessionState.items`). An event type without a positive weight associates nothing."""
    weight = float(weights.get(event_type, 0.0))
    if weight <= 0:
        return {}
    rows: dict[str, dict[str, float]] = {}
    commits = event_type in COMMITMENTS
    others = [other for other in previous_items if other != item_id][-window:]
    for gap, other in enumerate(reversed(others), 1):
        amount = _quantize(weight / gap)
        if amount <= 0:
            continue
        row = rows.setdefault(other, {})
        row[NEAR + item_id] = row.get(NEAR + item_id, 0.0) + amount
        row[FOLLOWS + item_id] = row.get(FOLLOWS + item_id, 0.0) + amount
        own = rows.setdefault(item_id, {})
        own[NEAR + other] = own.get(NEAR + other, 0.0) + amount
        if commits:
            row[COMMIT + item_id] = row.get(COMMIT + item_id, 0.0) + amount
            own[COMMIT + other] = own.get(COMMIT + other, 0.0) + amount
    recent = list(previous_items[-window:])
    if item_id in recent:
        # A return to an item, weighed by how recently it was engaged (1 = it is the last one).
        amount = _quantize(weight / (len(recent) - recent.index(item_id)))
        if amount > 0:
            own = rows.setdefault(item_id, {})
            own[FOLLOWS + item_id] = own.get(FOLLOWS + item_id, 0.0) + amount
    return rows


@dataclass(frozen=True, slots=True)
class ItemAssociations:
    """One item's association row: near (either order) and follows (engaged after it) weights."""

    item_id: str
    near: Mapping[str, float]
    follows: Mapping[str, float]
    near_total: float
    follows_total: float
    commits: Mapping[str, float] = field(default_factory=dict)  # the part of `near` made by commitments

    def top(self, n: int = 20, *, follows: bool = False) -> list[tuple[str, float]]:
        """The item's `n` strongest associations (other items only), strongest first."""
        weights = self.follows if follows else self.near
        return _best(((k, v) for k, v in weights.items() if k != self.item_id), n)


def parse_associations(item_id: str, row: Mapping[str, Any] | None) -> ItemAssociations:
    """The association view of an associations row (None: an item with no associations yet)."""
    near: dict[str, float] = {}
    follows: dict[str, float] = {}
    commits: dict[str, float] = {}
    for name, value in (row or {}).items():
        if not value:
            continue
        if name.startswith(NEAR):
            if name[2:] != item_id:
                near[name[2:]] = float(value)
        elif name.startswith(FOLLOWS):
            follows[name[2:]] = float(value)
        elif name.startswith(COMMIT) and name[2:] != item_id:
            commits[name[2:]] = float(value)
    return ItemAssociations(item_id, near, follows, sum(near.values()), sum(follows.values()), commits)


@dataclass(frozen=True)
class NextItemParams:
    """How `rank_next_items` weighs its signals, chosen on validation splits of the training data alone
    (`tailor evaluate next-item --validation-days`: YooChoose's last training day, Diginetica's last 28
    training days), never on a test set."""

    anchors: int = 10  # recent session items whose associations propose candidates
    near_share: float = 0.7  # share of an anchor's vote cast by its near weights; the rest by follows
    smoothing: float = 10.0  # pseudo-weight added to a row's total: thin rows vote more softly
    reminder: float = 1.0  # without revisit odds: the most recent item's bonus; the r-th most recent gets 1/r^2 of it
    expand_from: int = 10  # strongest candidates whose own associations propose more candidates
    expansion: float = 1.0  # weight of those second-step proposals, relative to the candidate's score


DEFAULT_PARAMS = NextItemParams()
REVISIT_DEPTH = 10  # recent items whose revisit odds are kept: as many as the ranking's anchors
REVISIT_DISTINCT, REVISIT_ENGAGEMENTS = 6, 8  # a session's context caps: sessions past them share the last one


Lookup = Callable[[Sequence[str]], Mapping[str, ItemAssociations]]  # keys -> the rows of those that have one


def revisit_context(distinct: int, engagements: int) -> str:
    """The key a session's revisit odds are kept under: the distinct items it engaged with and its engagements so
    far, each capped."""
    return f"{min(max(distinct, 0), REVISIT_DISTINCT)},{min(max(engagements, 0), REVISIT_ENGAGEMENTS)}"


@dataclass(frozen=True)
class RevisitOdds:
    """How much likelier a shop's sessions engaged next with their r-th most recent distinct item than with a new
    one, by context (`revisit_context`): `odds[key][r - 1]`, r = 1..REVISIT_DEPTH. `overall` holds the same over
    every context, for a context the shop's sessions never reached."""

    odds: Mapping[str, tuple[float, ...]]
    overall: tuple[float, ...]

    def of(self, distinct: int, engagements: int) -> tuple[float, ...]:
        """The odds of a session with `distinct` items and `engagements` so far, most recent item first."""
        return self.odds.get(revisit_context(distinct, engagements), self.overall)

    def to_json(self) -> dict[str, Any]:
        return {"odds": {key: list(values) for key, values in self.odds.items()}, "overall": list(self.overall)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RevisitOdds:
        return cls({str(key): tuple(float(v) for v in values) for key, values in data["odds"].items()},
                   tuple(float(v) for v in data["overall"]))


def rank_next_items(session_items: Sequence[str], lookup: Lookup, n: int = 20, *,
                    params: NextItemParams = DEFAULT_PARAMS, anchor_strength: Mapping[str, float] | None = None,
                    factors: Mapping[str, float] | None = None,
                    revisits: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """The `n` items the session most likely engages with next, with their scores, best first.

    `session_items` are its distinct items, most recent last. `lookup(keys)` returns the parsed
    association rows of those keys that have one; it is called twice, for the session's recent
    items and for the strongest candidates. `anchor_strength` scales an item's vote (default 1),
    e.g. by what the shopper did with it. `factors` (the session's blended intent factors) weigh
    each row's near pairs as `intent_weighted` does. `revisits` (a `RevisitOdds` entry for the session) makes the
    reminders that share of the votes rather than constant bonuses."""
    return NextItems(session_items, lookup, params=params, anchor_strength=anchor_strength,
                     factors=factors).ranked(lookup, n, revisits=revisits)


class NextItems:
    """`rank_next_items` in its two steps. Made, it has looked up the session's recent items (the anchors) and
    added up their votes; `keys` are the rows the ranking reads, `ranked` takes the step one further from
    the strongest candidates. A caller that plans its reads from the keys (the ranking pipeline) can so ask
    for them without ranking, and rank from the same first step once the strongest candidates' rows arrive."""

    def __init__(self, session_items: Sequence[str], lookup: Lookup, *, params: NextItemParams = DEFAULT_PARAMS,
                 anchor_strength: Mapping[str, float] | None = None, factors: Mapping[str, float] | None = None):
        self.params = params
        self.factors = factors
        self.anchors = list(dict.fromkeys(reversed(session_items)))[:params.anchors]
        self.rows = self._lookup(lookup, self.anchors) if self.anchors else {}
        self.scores: dict[str, float] = defaultdict(float)
        for rank, anchor in enumerate(self.anchors, 1):
            found = self.rows.get(anchor)
            if found is not None:
                strength = anchor_strength.get(anchor, 1.0) if anchor_strength else 1.0
                _vote(found, strength / rank ** 2, params, self.scores)
        # The strongest candidates, whose own associations reach items the session's never met.
        self.seeds = _best(self.scores.items(), params.expand_from) if params.expansion > 0 and self.scores else []

    @property
    def keys(self) -> list[str]:
        """The association rows the ranking reads: the anchors', then the seeds' that are not among them."""
        return list(dict.fromkeys([*self.anchors, *self._unread_seeds()]))

    def ranked(self, lookup: Lookup, n: int, *, revisits: Sequence[float] | None = None) -> list[tuple[str, float]]:
        """The `n` best next items, with the seeds' rows `lookup` finds now; the r-th anchor's reminder is
        `revisits[r - 1]` times the votes' total where given (the odds of coming back to it against moving on to
        an item the votes share out), else the constant reminder / r^2."""
        if not self.anchors:
            return []
        rows = self.rows
        unread = self._unread_seeds()
        if unread:
            rows = {**rows, **self._lookup(lookup, unread)}
        further: dict[str, float] = defaultdict(float)
        for seed, strength in self.seeds:
            found = rows.get(seed)
            if found is not None:
                _vote(found, self.params.expansion * strength, self.params, further)
        scores = defaultdict(float, self.scores)  # the first step's votes stay as they are, for a later ranking
        for item, extra in further.items():
            scores[item] += extra
        if revisits is None:
            for rank, item in enumerate(self.anchors, 1):
                scores[item] += self.params.reminder / rank ** 2
        else:
            votes = sum(scores.values()) or 1.0  # no votes: the session's items alone, in their odds' order
            for item, odds in zip(self.anchors, revisits):
                scores[item] += votes * odds
        return _best(scores.items(), n)

    def _unread_seeds(self) -> list[str]:
        return [item for item, _ in self.seeds if item not in self.rows]

    def _lookup(self, lookup: Lookup, keys: Sequence[str]) -> dict[str, ItemAssociations]:
        found = lookup(keys)
        if not self.factors:
            return dict(found)
        return {key: _intent_view(row, self.factors) for key, row in found.items()}


def intent_weighted(near: Mapping[str, float], commits: Mapping[str, float],
                    factors: Mapping[str, float] | None) -> dict[str, float]:
    """An item's association weights re-weighted for a request's intent: the pairs engagements made (views,
    clicks, reads, ...) times the blended "view" factor, the pairs commitments made (`commits`, a part of
    `near`) times the blended "add_to_cart" factor. Without factors, `near` as it is."""
    if not factors:
        return dict(near)
    engaged, committed = factors.get("view", 1.0), factors.get("add_to_cart", 1.0)
    return {item: (weight - commits.get(item, 0.0)) * engaged + commits.get(item, 0.0) * committed
            for item, weight in near.items()}


def engagement_strength(events: Iterable[Any], weights: Mapping[str, float] = EVENT_WEIGHTS) -> dict[str, float]:
    """Item -> its strongest engagement in `events` relative to a view (a carted item votes 3x); only
    items engaged more strongly than by a view are listed, as `rank_next_items` counts the rest as 1."""
    base = weights.get("view") or 1.0
    strength: dict[str, float] = {}
    for event in events:
        item = getattr(event, "item_id", None)
        weight = float(weights.get(event.event_type, 0.0)) / base
        if item and weight > max(strength.get(item, 1.0), 1.0):
            strength[item] = weight
    return strength


def _intent_view(found: ItemAssociations, factors: Mapping[str, float]) -> ItemAssociations:
    """`found` with its near pairs weighed by the intent factors, its near total their sum."""
    near = intent_weighted(found.near, found.commits, factors)
    return ItemAssociations(found.item_id, near, found.follows, sum(near.values()), found.follows_total, found.commits)


def _vote(found: ItemAssociations, strength: float, params: NextItemParams, scores: dict[str, float]) -> None:
    """Add an item's associations to `scores`, each row's weights as shares of its (smoothed) total."""
    near_scale = strength * params.near_share / (found.near_total + params.smoothing)
    follow_scale = strength * (1.0 - params.near_share) / (found.follows_total + params.smoothing)
    for item, weight in found.near.items():
        scores[item] += weight * near_scale
    for item, weight in found.follows.items():
        scores[item] += weight * follow_scale


def _best(pairs: Iterable[tuple[str, float]], n: int) -> list[tuple[str, float]]:
    """The `n` pairs of highest weight (ties: item id), positive weights only."""
    if n <= 0:
        return []
    best = [p for p in pairs if p[1] > 0]
    if len(best) > 4 * n:
        # Only pairs at least as heavy as the n-th heaviest can make it: sort those alone.
        floor = heapq.nlargest(n, map(itemgetter(1), best))[-1]
        best = [p for p in best if p[1] >= floor]
    # Two sorts on plain fields instead of one on a built key (a serving request ranks thousands of pairs):
    # by item, then by weight, which keeps the item order among equal weights.
    best.sort(key=itemgetter(0))
    best.sort(key=itemgetter(1), reverse=True)
    return best[:n]


def _quantize(weight: float) -> float:
    return round(weight * WEIGHT_QUANTUM) / WEIGHT_QUANTUM
