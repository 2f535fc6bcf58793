"""Shopper event schemas: one pydantic model per event type, and parsing with readable errors."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "EVENT_TYPES",
    "ITEM_EVENT_TYPES",
    "AddToCart",
    "CategoryBrowse",
    "CheckoutView",
    "Click",
    "Dwell",
    "Event",
    "EventError",
    "Impression",
    "Profile",
    "Purchase",
    "Referral",
    "RemoveFromCart",
    "ReviewRead",
    "Scroll",
    "Search",
    "SpecCompare",
    "View",
    "Wishlist",
    "Zoom",
    "parse_event",
]

Id = Annotated[str, Field(min_length=1, max_length=256)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class EventError(ValueError):
    """An event that cannot be accepted; `reason` says which field and why, for the quarantine."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    event_id: Id
    user_id: Id
    session_id: Id
    timestamp: AwareDatetime
    # Set on events that act on something Tailor served, so the action is attributed to it.
    feed_id: Id | None = None
    position: Annotated[int, Field(ge=0)] | None = None

    @property
    def epoch(self) -> float:
        return self.timestamp.timestamp()


class _ItemEvent(_EventBase):
    """An event about one catalog item; the optional fields double as catalog data."""

    item_id: Id
    price: Money | None = None
    category: Id | None = None
    brand: Id | None = None
    available: bool | None = None


class View(_ItemEvent):
    event_type: Literal["view"]


class Click(_ItemEvent):
    event_type: Literal["click"]


class AddToCart(_ItemEvent):
    event_type: Literal["add_to_cart"]
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1


class RemoveFromCart(_ItemEvent):
    event_type: Literal["remove_from_cart"]
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1


class Purchase(_ItemEvent):
    event_type: Literal["purchase"]
    price: Money  # unit price; revenue is price x quantity
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1
    order_id: Id | None = None


class Wishlist(_ItemEvent):
    event_type: Literal["wishlist"]


class ReviewRead(_ItemEvent):
    event_type: Literal["review_read"]
    duration_ms: Annotated[int, Field(ge=0)] | None = None


class SpecCompare(_ItemEvent):
    event_type: Literal["spec_compare"]
    compared_with: Annotated[list[Id], Field(min_length=1, max_length=50)]


class Dwell(_ItemEvent):
    event_type: Literal["dwell"]
    dwell_ms: Annotated[int, Field(ge=0, le=86_400_000)]


class Zoom(_ItemEvent):
    event_type: Literal["zoom"]
    level: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 2.0


class Scroll(_EventBase):
    event_type: Literal["scroll"]
    depth: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    item_id: Id | None = None


class Search(_EventBase):
    event_type: Literal["search"]
    query: Annotated[str, Field(min_length=1, max_length=512)]
    results: Annotated[list[Id], Field(max_length=500)] = []


class CategoryBrowse(_EventBase):
    event_type: Literal["category_browse"]
    category: Id


class CheckoutView(_EventBase):
    event_type: Literal["checkout_view"]
    cart_value: Money | None = None


class Impression(_EventBase):
    event_type: Literal["impression"]
    item_ids: Annotated[list[Id], Field(min_length=1, max_length=500)]


class Referral(_EventBase):
    event_type: Literal["referral"]
    source: Id  # e.g. "search_engine", "social", "affiliate", "email", "friend"
    campaign: Id | None = None
    referrer_user_id: Id | None = None


class Profile(_EventBase):
    event_type: Literal["profile"]
    age: Annotated[int, Field(ge=13, le=120)] | None = None
    location: Id | None = None
    interests: Annotated[list[Id], Field(max_length=50)] = []


Event = Annotated[
    Union[
        View, Click, Search, AddToCart, RemoveFromCart, Purchase, Wishlist, ReviewRead,
        SpecCompare, CategoryBrowse, CheckoutView, Impression, Dwell, Scroll, Zoom, Referral,
        Profile,
    ],
    Field(discriminator="event_type"),
]

EVENT_TYPES: tuple[str, ...] = (
    "view", "click", "search", "add_to_cart", "remove_from_cart", "purchase", "wishlist",
    "review_read", "spec_compare", "category_browse", "checkout_view", "impression", "dwell",
    "scroll", "zoom", "referral", "profile",
)
ITEM_EVENT_TYPES: frozenset[str] = frozenset(
    t for t in EVENT_TYPES if t not in {"search", "category_browse", "checkout_view", "impression",
                                        "scroll", "referral", "profile"}
)

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: bytes | str | dict[str, Any]) -> Event:
    """Validate one event from JSON text or a decoded object; raise EventError naming each bad field."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventError(f"payload is not UTF-8 text: {exc}") from None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EventError(f"payload is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise EventError(f"payload must be a JSON object, got {type(raw).__name__}")
    try:
        return _EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise EventError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        if err["type"] == "union_tag_invalid":
            parts.append(f"event_type: unknown event type {err['input'].get('event_type')!r}" if isinstance(err["input"], dict) else f"event_type: {err['msg']}")
            continue
        if err["type"] == "union_tag_not_found":
            parts.append("event_type: field required")
            continue
        # The first location element is the union member's tag; the field path follows it.
        field = ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc)
        parts.append(f"{field}: {err['msg']}")
    return "; ".join(parts)

