"""What one event adds to shared counters: items, trends, associations, query-item counts, referrers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC

from tailor.associations import ASSOCIATION_WINDOW, EVENT_WEIGHTS, pair_increments
from tailor.catalog import CATALOG_FIELDS
from tailor.contribution import Contribution
from tailor.events import Event
from tailor.popularity import TREND_WEIGHTS, trend_expiry, trend_key
from tailor.session import QUERY_ATTRIBUTION_SECONDS, SessionState
from tailor.text import normalize_query

__all__ = ["ASSOCIATION_WINDOW", "Contribution", "association_contributions", "contributions"]

# Item counter that each event type increments, and whether it counts units (quantity) or events.
ITEM_COUNTERS: dict[str, str] = {
    "view": "views", "click": "clicks", "add_to_cart": "carts", "remove_from_cart": "cart_removes",
    "purchase": "purchases", "wishlist": "wishlists", "review_read": "review_reads",
    "spec_compare": "spec_compares", "zoom": "zooms", "dwell": "dwells",
}
# Events after a search that credit the searched query with the item, and the counter prefix.
QUERY_OUTCOMES: dict[str, str] = {"click": "c:", "add_to_cart": "a:", "purchase": "p:"}


def contributions(event: Event, session: SessionState | None, *, associate: bool = True) -> list[Contribution]:
    """The shared-counter effects of `event`, given its session as it was just before the event. With
    `associate` False the association pairs are left out: Ingest adds them once it knows the event's intent
    weight (tailor.ingest.intent, through `association_contributions`)."""
    out: list[Contribution] = []
    kind = event.event_type
    values = vars(event)  # its fields: getattr with a default costs pydantic an exception per absent one
    item_id = values.get("item_id")

    if item_id:
        out.append(_item_contribution(event, item_id))
        if kind in TREND_WEIGHTS:
            day = event.timestamp.astimezone(UTC).date().isoformat()
            out.append(Contribution("trends", trend_key(day, item_id), {f"n:{item_id}": TREND_WEIGHTS[kind]},
                                    {"expires_at": trend_expiry(day)}))
    if kind == "spec_compare":
        out.extend(Contribution("items", other, {"spec_compares": 1}) for other in event.compared_with
                   if other != item_id)
    if kind == "impression":
        out.extend(Contribution("items", shown, {"impressions": 1}) for shown in dict.fromkeys(event.item_ids))

    if item_id and associate:
        # Pairs with the session's earlier items, weighted by event type and gap (tailor.associations).
        out.extend(association_contributions(item_id, kind, [] if session is None else session.items))

    if kind == "search":
        out.append(Contribution("queries", normalize_query(event.query), {"searches": 1}))
    elif kind in QUERY_OUTCOMES and session is not None and session.last_query is not None:
        if event.epoch - (session.last_query_at or 0.0) <= QUERY_ATTRIBUTION_SECONDS:
            amount = values.get("quantity", 1)
            out.append(Contribution("queries", session.last_query, {f"{QUERY_OUTCOMES[kind]}{item_id}": amount}))

    if kind == "referral" and event.referrer_user_id and event.referrer_user_id != event.user_id:
        out.append(Contribution("shoppers", event.referrer_user_id, {"referrals_sent": 1}))
    return out


def association_contributions(item_id: str, event_type: str, previous_items: Sequence[str],
                              weights: Mapping[str, float] = EVENT_WEIGHTS) -> list[Contribution]:
    """The association rows' increments from engaging `item_id` after `previous_items` (tailor.associations)."""
    return [Contribution("associations", key, increments)
            for key, increments in pair_increments(item_id, event_type, previous_items, weights).items()]


def _item_contribution(event: Event, item_id: str) -> Contribution:
    kind = event.event_type
    values = vars(event)
    increments: dict[str, float] = {}
    counter = ITEM_COUNTERS.get(kind)
    if counter:
        increments[counter] = values.get("quantity", 1)
    if kind == "purchase":
        increments["revenue"] = round(event.price * event.quantity, 6)
    elif kind == "dwell":
        increments["dwell_ms"] = event.dwell_ms
    # An item event carries some of the catalog's fields (a name only comes with a catalog entry).
    latest = {name: values[name] for name in CATALOG_FIELDS if values.get(name) is not None}
    latest["last_event_at"] = event.epoch
    return Contribution("items", item_id, increments, latest)
