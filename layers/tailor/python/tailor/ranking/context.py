"""One ranking request and what the pipeline has learned about it so far: state rows, parsed shared rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tailor.events import Event
from tailor.intent import IntentFactors
from tailor.ranking.filters import Filters
from tailor.ranking.limits import MAX_ITEMS, MAX_SESSION_EVENTS, RequestError, check_base_scores
from tailor.ranking.rows import ItemRecord, Partners, Popularity, QueryCounts
from tailor.session import QUERY_ATTRIBUTION_SECONDS, IntentStep, SessionState, fold_session
from tailor.shopper import ShopperState
from tailor.text import normalize_query

__all__ = ["ANCHORS", "ROUTES", "SESSION_GAP_SECONDS", "RankingContext", "Request"]

ROUTES = ("feed", "search", "rerank", "related")
ANCHORS = 10  # recent items whose co-occurrences propose candidates (as many as Ingest associates)
SESSION_GAP_SECONDS = 1800  # without a session id, the shopper's last session counts if this recent


@dataclass(frozen=True)
class Request:
    """What a caller asked for. `items`/`base_scores` are a rerank's list; `item_id` is related's anchor."""

    route: str
    user_id: str | None = None
    session_id: str | None = None
    query: str | None = None
    items: tuple[str, ...] = ()
    base_scores: tuple[float, ...] | None = None
    item_id: str | None = None
    session_events: tuple[Event, ...] = ()
    n: int = 20
    filters: Filters = Filters()
    explain: bool = False

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, not {self.route!r}")
        for name, limit in (("items", MAX_ITEMS), ("session_events", MAX_SESSION_EVENTS)):
            count = len(getattr(self, name))
            if count > limit:
                raise RequestError(name, f"at most {limit}, got {count}", "too_long")
        check_base_scores(len(self.items), self.base_scores)


@dataclass
class RankingContext:
    """The request's view of Tailor's state at `now` (epoch seconds), filled in as reads arrive."""

    request: Request
    now: float
    shopper_row: dict[str, Any] | None = None
    shopper: ShopperState | None = None
    session: SessionState | None = None
    popularity: Popularity | None = None
    items: dict[str, ItemRecord] = field(default_factory=dict)
    associations: dict[str, Partners] = field(default_factory=dict)
    queries: dict[str, QueryCounts] = field(default_factory=dict)
    resolved: set[tuple[str, str]] = field(default_factory=set)  # keys read or found cached
    round_trips: int = 0
    version: int = 0  # moves when a state, popularity, associations or queries row arrives (not items rows)
    chosen: Any = None  # the pipeline's candidates as of a version
    factors: IntentFactors | None = None  # the intent scaling factors in force (tailor.intent)
    intent: dict[str, float] | None = None  # intent inferred from the request's session data
    embedding_query: Any = None  # the embedding query and what it was made of (tailor.ranking.candidates)
    intent_filter: IntentStep | None = None  # what the request's session data is folded with for its intent

    def __post_init__(self) -> None:
        self.today = datetime.fromtimestamp(self.now, tz=UTC).date()
        if self.request.session_events:
            # A caller's session data stands for the session: folded here, never stored.
            session: SessionState | None = None
            for event in sorted(self.request.session_events, key=lambda e: e.epoch):
                session = fold_session(session, event, ttl_seconds=0, intent_filter=self.intent_filter)
            self.session = session

    @property
    def transient_session(self) -> bool:
        return bool(self.request.session_events)

    @property
    def session_id(self) -> str | None:
        """The session to read: the request's, else the shopper's last one if it is still going."""
        if self.transient_session:
            return None
        if self.request.session_id:
            return self.request.session_id
        shopper = self.shopper
        if shopper is not None and shopper.last_session_id and self.now - shopper.last_seen <= SESSION_GAP_SECONDS:
            return shopper.last_session_id
        return None

    def intent_mixture(self) -> dict[str, float] | None:
        """The session's intent probabilities: inferred from the request's session data, else as Ingest keeps them."""
        if self.intent:
            return self.intent
        if self.session is not None and self.session.intent:
            return dict(self.session.intent)
        return None

    def event_factors(self) -> dict[str, float] | None:
        """Event type -> the session's blended intent scaling factor; None without an intent or factors."""
        mixture = self.intent_mixture()
        if self.factors is None or not mixture:
            return None
        return self.factors.blend(mixture)

    def anchors(self) -> list[str]:
        """Items whose associations speak for the shopper's interest now, strongest first: related's
        item, then the session's items and the shopper's recent items, most recent first."""
        out: dict[str, None] = {}
        if self.request.route == "related" and self.request.item_id:
            out[self.request.item_id] = None
        if self.session is not None:
            out.update(dict.fromkeys(reversed(self.session.items)))
        if self.shopper is not None:
            out.update(dict.fromkeys(reversed(self.shopper.recent_items)))
        return list(out)[:ANCHORS]

    def seen_items(self) -> set[str]:
        """Items the shopper engaged with lately (this session and their recent items)."""
        seen: set[str] = set()
        if self.session is not None:
            seen.update(self.session.items)
        if self.shopper is not None:
            seen.update(self.shopper.recent_items)
        return seen

    def active_query(self) -> str | None:
        """The search being answered: search's query, else the session's last one if it is recent."""
        if self.request.route == "search":
            query = normalize_query(self.request.query or "")
            return query or None
        session = self.session
        if session is not None and session.last_query and session.last_query_at is not None \
                and self.now - session.last_query_at <= QUERY_ATTRIBUTION_SECONDS:
            return session.last_query
        return None

    def purchased_items(self) -> set[str]:
        """Items the shopper bought, as far as their row records them."""
        row = self.shopper_row or {}
        return set(row.get("purchased_items") or ())
