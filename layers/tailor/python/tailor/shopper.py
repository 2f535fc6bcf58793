"""A shopper's lasting state: counters, category affinity and the RFM inputs, folded one event at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tailor.archive import ANY_SHARD, archive_day, periods_between, with_period, with_shard
from tailor.events import Event
from tailor.evidence import note_evidence
from tailor.rows import RowState
from tailor.session import ENGAGEMENTS
from tailor.text import event_digest, remember

__all__ = ["AFFINITY_WEIGHTS", "ERASED_FIELD", "EXPIRY_FIELD", "LTV_FIELD", "LTV_STAMP_FIELD", "ShopperState",
           "category_engagement", "erased_at", "fold_shopper", "predicted_ltv"]

RECENT_EVENTS = 128  # event-id digests kept to drop a producer's duplicate sends
RECENT_SESSIONS = 50
RECENT_ITEMS = 30
PURCHASE_HISTORY = 24  # transactions kept with their day, value and units, most recent last
PURCHASED_ITEMS = 100  # distinct items bought, so a feed can leave them out

# An erased shopper's row is a tombstone, {user_id, erased_at, expires_at} (tailor.erasure): ingest drops their
# events timestamped up to `erased_at`, and the table's TTL removes the tombstone at `expires_at`. A shopper who came
# back afterwards has a row folded only from later events, which keeps `erased_at` and clears `expires_at`.
ERASED_FIELD = "erased_at"
EXPIRY_FIELD = "expires_at"
# What the LTV rebuild (tailor.ltv.rebuild) keeps in a shopper's row beside the state Ingest folds, and as of when.
LTV_FIELD = "ltv"
LTV_STAMP_FIELD = "ltv_as_of"

# How much one event says about a shopper's interest in its item's category.
AFFINITY_WEIGHTS: dict[str, float] = {
    "view": 1.0, "click": 1.0, "dwell": 0.5, "zoom": 0.5, "review_read": 1.0, "spec_compare": 1.0,
    "wishlist": 2.0, "add_to_cart": 3.0, "purchase": 5.0, "category_browse": 0.5,
}


@dataclass
class ShopperState(RowState):
    STATE_FIELD = "first_seen"

    user_id: str
    first_seen: float
    last_seen: float
    events: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    last_session_id: str | None = None
    session_ids: list[str] = field(default_factory=list)  # the last sessions, most recent last
    recent_items: list[str] = field(default_factory=list)  # distinct engaged items, most recent last
    category_affinity: dict[str, float] = field(default_factory=dict)
    # RFM inputs. A transaction is a day with purchases, as in the classic CLV models.
    purchases: int = 0
    units: int = 0
    revenue: float = 0.0
    transactions: int = 0
    first_purchase_at: float | None = None
    last_purchase_at: float | None = None
    last_purchase_day: str | None = None
    purchase_history: list[list] = field(default_factory=list)  # [[day, value, units], ...] per transaction
    purchased_items: list[str] = field(default_factory=list)  # distinct items bought, most recent last
    referral_sources: dict[str, int] = field(default_factory=dict)
    # Whether another shopper referred them, not who: a row naming another shopper would outlive that shopper's
    # erasure. `referrer_user_id` is what rows kept before; it is cleared as each row is next written.
    referred_by_shopper: bool = False
    referrer_user_id: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    personas: dict[str, Any] = field(default_factory=dict)  # persona mixture, traits and their evidence (tailor.personas)
    # Where their events are in the event archive, for erasure: the days (older ones merged into months, years, ...)
    # and the stream shards (tailor.archive's index).
    archive_days: list[str] = field(default_factory=list)
    archive_shards: list[str] = field(default_factory=list)
    # The shopper's units in experiments and their running totals (tailor.experiments.attribution).
    experiments: dict[str, list] = field(default_factory=dict)
    vector: dict[str, Any] = field(default_factory=dict)  # the shopper's vector, compact (tailor.embeddings.online)

    @classmethod
    def from_row(cls, row: dict[str, Any], *, owned: bool = False) -> ShopperState | None:
        """The shopper kept in `row`; None if it holds no state: counters only, or a tombstone. State from events
        up to an erasure (written beside a tombstone by a batch that read the row before it) is no shopper either:
        a shopper who came back after their erasure was first seen after it."""
        erased = erased_at(row)
        if erased is not None and not row.get(cls.STATE_FIELD, erased) > erased:
            return None
        state = super().from_row(row, owned=owned)
        if state is not None and state.referrer_user_id:
            state.referred_by_shopper, state.referrer_user_id = True, None
        return state


def category_engagement(event_type: str, quantity: float = 1) -> float:
    """What one event adds to a shopper's affinity for its category: its type's weight times its quantity."""
    return AFFINITY_WEIGHTS.get(event_type, 0.0) * quantity


def erased_at(row: dict[str, Any] | None) -> float | None:
    """When the shopper of a shoppers-table row was last erased (epoch seconds); None if never."""
    value = None if row is None else row.get(ERASED_FIELD)
    return None if value is None else float(value)


def fold_shopper(state: ShopperState | None, event: Event, *, shard: str | None = None) -> ShopperState:
    """The shopper after `event`, which came on stream shard `shard` (None: not known); a duplicate of a recent event
    leaves them as they were but for the archive index, as Ingest archives every copy."""
    t = event.epoch
    if state is None:
        state = ShopperState(user_id=event.user_id, first_seen=t, last_seen=t)
    elif state.events and not state.archive_days:
        # Folded before shopper rows kept an archive index: their earlier events may be on any day they were active.
        state.archive_days, state.archive_shards = periods_between(state.first_seen, state.last_seen), [ANY_SHARD]
    state.archive_days = with_period(state.archive_days, archive_day(t))
    state.archive_shards = with_shard(state.archive_shards, shard)
    if state.has_seen(event.event_id):
        return state
    state.seen = remember(state.seen, event_digest(event.event_id), RECENT_EVENTS)
    state.events += 1
    state.counts[event.event_type] = state.counts.get(event.event_type, 0) + 1
    note_evidence(state.personas, event)
    state.first_seen = min(state.first_seen, t)
    state.last_seen = max(state.last_seen, t)
    if event.session_id != state.last_session_id:
        state.sessions += 1
        state.last_session_id = event.session_id
        state.session_ids = remember(state.session_ids, event.session_id, RECENT_SESSIONS)
    item_id = getattr(event, "item_id", None)
    if item_id and event.event_type in ENGAGEMENTS:
        state.recent_items = remember(state.recent_items, item_id, RECENT_ITEMS)

    category = getattr(event, "category", None)
    engaged = category_engagement(event.event_type, getattr(event, "quantity", 1))
    if category and engaged:
        state.category_affinity[category] = round(state.category_affinity.get(category, 0.0) + engaged, 6)

    match event.event_type:
        case "purchase":
            state.purchases += 1
            state.units += event.quantity
            state.purchased_items = remember(state.purchased_items, event.item_id, PURCHASED_ITEMS)
            state.revenue = round(state.revenue + event.price * event.quantity, 6)
            day = datetime.fromtimestamp(t, tz=UTC).date().isoformat()
            value = round(event.price * event.quantity, 6)
            if day != state.last_purchase_day:
                state.transactions += 1
                state.last_purchase_day = day
            if not state.purchase_history or state.purchase_history[-1][0] != day:
                state.purchase_history = (state.purchase_history + [[day, 0.0, 0]])[-PURCHASE_HISTORY:]
            last = state.purchase_history[-1]
            last[1], last[2] = round(last[1] + value, 6), last[2] + event.quantity
            state.first_purchase_at = t if state.first_purchase_at is None else min(state.first_purchase_at, t)
            state.last_purchase_at = t if state.last_purchase_at is None else max(state.last_purchase_at, t)
        case "referral":
            state.referral_sources[event.source] = state.referral_sources.get(event.source, 0) + 1
            if event.referrer_user_id and event.referrer_user_id != event.user_id:
                state.referred_by_shopper = True
        case "profile":
            state.profile.update(event.model_dump(include={"age", "location", "interests"}, exclude_none=True))
    return state


def predicted_ltv(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The LTV a rebuild last kept in a shoppers-table row, with the moment it is as of ("as_of"); None before one
    scored the shopper. What reads a shopper's predicted value (the profile, the feed's LTV weighting, experiment
    reports) reads it here: Ingest's fold never writes these fields, so the state it writes leaves them be."""
    ltv = None if row is None else row.get(LTV_FIELD)
    return None if not ltv else {**ltv, "as_of": row.get(LTV_STAMP_FIELD)}
