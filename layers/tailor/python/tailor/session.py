"""A shopping session's state: what happened in it so far, folded one event at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tailor.events import Event
from tailor.evidence import note_evidence
from tailor.rows import RowState
from tailor.text import event_digest, normalize_query, remember

__all__ = ["IntentStep", "SessionState", "fold_session", "RECENT_ITEMS", "QUERY_ATTRIBUTION_SECONDS"]

RECENT_ITEMS = 50  # distinct items kept per session, most recent last
RECENT_CATEGORIES = 20
RECENT_EVENTS = 64  # event-id digests kept to drop a producer's duplicate sends
QUERY_ATTRIBUTION_SECONDS = 1800  # a click counts for the last search if it came within this time
RECENT_TYPES = 16  # event types kept per session, most recent last: what the shopper is doing now
RECENT_WEIGHT = 0.3  # weight of the newest value in a session's moving averages

# Events that mean the shopper engaged with an item (as opposed to being shown it).
ENGAGEMENTS = frozenset({"view", "click", "add_to_cart", "purchase", "wishlist", "review_read",
                         "spec_compare", "dwell", "zoom"})


@dataclass
class SessionState(RowState):
    STATE_FIELD = "started_at"

    session_id: str
    user_id: str
    started_at: float
    last_seen: float
    expires_at: int
    events: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    items: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    last_query: str | None = None
    last_query_at: float | None = None
    refinements: int = 0
    dwell_ms_total: int = 0
    dwell_ms_max: int = 0
    scroll_depth_max: float = 0.0
    zoom_level_max: float = 0.0
    cart_units: int = 0
    purchased_units: int = 0
    revenue: float = 0.0
    referral_source: str | None = None
    seen: list[str] = field(default_factory=list)
    recent_types: str = ""  # the last RECENT_TYPES event types, oldest first, space-separated (cheap to copy)
    dwell_ms_recent: float = 0.0  # moving average of dwell times, the newest counting RECENT_WEIGHT
    scroll_depth_recent: float = 0.0  # moving average of scroll depths, the newest counting RECENT_WEIGHT
    intent: dict[str, float] = field(default_factory=dict)  # intent probabilities as of Ingest's last batch (tailor.intent)
    intent_filter: str = ""  # the intent filter's posterior and page context after the last event (tailor.intent_filter)
    personas: dict[str, Any] = field(default_factory=dict)  # this session's traits and their evidence (tailor.personas)
    clusters: str | dict[str, Any] = ""  # clicks and ignores per cluster shown (ClusterPosteriors.encode; older rows: a map)
    vector: dict[str, Any] = field(default_factory=dict)  # the session's vector, compact (tailor.embeddings.online)

    def recent_items(self, n: int) -> list[str]:
        return self.items[-n:]


class IntentStep(Protocol):
    """What a session folds its intent filter with (tailor.intent_filter.IntentFilter): the filter's kept state
    after an event, from the session as it was before it."""

    def step(self, state: SessionState | None, event: Event) -> str: ...


def fold_session(state: SessionState | None, event: Event, *, ttl_seconds: int,
                 received_at: float = 0.0, intent_filter: IntentStep | None = None) -> SessionState:
    """The session after `event`; a duplicate of a recent event leaves it as it was.

    The session expires `ttl_seconds` after its last event or after the stream received it,
    whichever is later, so replaying old history does not write sessions that are already expired.
    With `intent_filter`, the session's intent filter takes the event (from the session as it was before it)."""
    t = event.epoch
    if state is None:
        state = SessionState(session_id=event.session_id, user_id=event.user_id, started_at=t,
                             last_seen=t, expires_at=0)
    elif state.has_seen(event.event_id):
        return state
    if intent_filter is not None:
        state.intent_filter = intent_filter.step(state if state.events else None, event)
    state.seen = remember(state.seen, event_digest(event.event_id), RECENT_EVENTS)
    state.events += 1
    state.counts[event.event_type] = state.counts.get(event.event_type, 0) + 1
    note_evidence(state.personas, event)
    state.recent_types = _recent_types(state.recent_types, event.event_type)
    state.started_at = min(state.started_at, t)
    state.last_seen = max(state.last_seen, t)
    state.expires_at = max(state.expires_at, int(max(state.last_seen, received_at)) + ttl_seconds)

    item_id = getattr(event, "item_id", None)
    if item_id and event.event_type in ENGAGEMENTS:
        state.items = remember(state.items, item_id, RECENT_ITEMS)
    category = getattr(event, "category", None)
    if category:
        state.categories = remember(state.categories, category, RECENT_CATEGORIES)

    match event.event_type:
        case "search":
            query = normalize_query(event.query)
            if state.last_query and query != state.last_query:
                state.refinements += 1
            state.last_query, state.last_query_at = query, t
        case "dwell":
            state.dwell_ms_total += event.dwell_ms
            state.dwell_ms_max = max(state.dwell_ms_max, event.dwell_ms)
            state.dwell_ms_recent = _moving(state.dwell_ms_recent, event.dwell_ms, state.counts["dwell"])
        case "scroll":
            state.scroll_depth_max = max(state.scroll_depth_max, event.depth)
            state.scroll_depth_recent = _moving(state.scroll_depth_recent, event.depth, state.counts["scroll"])
        case "zoom":
            state.zoom_level_max = max(state.zoom_level_max, event.level)
        case "add_to_cart":
            state.cart_units += event.quantity
        case "remove_from_cart":
            state.cart_units = max(0, state.cart_units - event.quantity)
        case "purchase":
            state.purchased_units += event.quantity
            state.revenue = round(state.revenue + event.price * event.quantity, 6)
            state.cart_units = max(0, state.cart_units - event.quantity)
        case "referral":
            state.referral_source = state.referral_source or event.source
    return state


def _recent_types(recent: str, event_type: str) -> str:
    """`recent` with `event_type` added last, keeping the last RECENT_TYPES."""
    if not recent:
        return event_type
    recent = f"{recent} {event_type}"
    return recent[recent.index(" ") + 1:] if recent.count(" ") >= RECENT_TYPES else recent


def _moving(average: float, value: float, count: int) -> float:
    """The moving average after `value`, the `count`-th value; the first one is taken as it is."""
    return round(float(value) if count <= 1 else (1 - RECENT_WEIGHT) * average + RECENT_WEIGHT * value, 6)
