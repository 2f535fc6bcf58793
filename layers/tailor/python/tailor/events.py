"""Shopper event schemas: one pydantic model per event type, and parsing with readable errors."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from itertools import accumulate
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "EARLIEST_TIMESTAMP",
    "EVENT_TYPES",
    "ID_PATTERN",
    "ITEM_EVENT_TYPES",
    "LATEST_TIMESTAMP",
    "MAX_CART_VALUE",
    "MAX_CLOCK_SKEW_SECONDS",
    "MAX_DURATION_MS",
    "MAX_EVENT_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_LINE_VALUE",
    "MAX_LIST_ITEMS",
    "MAX_POSITION",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "MAX_QUERY_LENGTH",
    "MAX_ZOOM_LEVEL",
    "AddToCart",
    "CategoryBrowse",
    "CheckoutView",
    "Click",
    "Dwell",
    "Event",
    "EventError",
    "Id",
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
    "event_from_json",
    "load_json",
    "parse_event",
    "plausible_date",
]

# What an event may say. Every number Ingest folds is bounded by what a shop can mean, so that sums over a shopper's
# lifetime stay finite, exact to the cent, and storable (DynamoDB holds 38 significant digits, no NaN or infinity),
# and every date is one that date arithmetic (trend rows, expiry times, purchase days) handles.
MAX_ID_LENGTH = 256
MAX_QUERY_LENGTH = 512
MAX_LIST_ITEMS = 500  # ids in one impression or search result list: a page of results, never a catalog
MAX_COMPARED = 50  # items in one spec comparison, interests in one profile
MAX_PRICE = 1_000_000.0  # per unit, in the shop's currency: above any retail item
MAX_QUANTITY = 10_000  # units in one cart change or order line
MAX_LINE_VALUE = 100_000_000.0  # price x quantity of one order line; a lifetime of them stays exact to the cent
MAX_CART_VALUE = MAX_LINE_VALUE
MAX_DWELL_MS = 86_400_000  # a day: longer is a tab left open, not attention
MAX_DURATION_MS = MAX_DWELL_MS
MAX_ZOOM_LEVEL = 100.0
MAX_POSITION = 10_000  # slots in a served list
MIN_AGE, MAX_AGE = 13, 120
# Backfills of old events are welcome, from before any web shop on; no event is dated near the end of what dates
# can hold (year 9999), where adding a retention period to it overflows.
EARLIEST_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
# Events are sent as they happen: a timestamp later than this past the moment Tailor receives the event is a wrong
# clock, and would make sessions and trends live in the future.
MAX_CLOCK_SKEW_SECONDS = 300
# Events are flat objects with a few lists; deeper JSON is refused before it is decoded, so no nesting exhausts
# the stack.
MAX_EVENT_DEPTH = 8

# Ids (shoppers, sessions, items, ...) go into row keys, log lines, archive lines and URLs: text without control
# characters (C0, DEL, C1: a null byte, a newline, an escape), which would cut or garble them there. Format
# characters such as a right-to-left mark are text, and stay allowed.
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
Money = Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


class EventError(ValueError):
    """An event that cannot be accepted; `reason` says which field and why, for the quarantine."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _EventBase(BaseModel):
    # Validated through _EVENT_ADAPTER, which builds one validator for every event type: a validator of each model's
    # own would be built at import for nothing.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True, defer_build=True)

    event_id: Id
    user_id: Id
    session_id: Id
    timestamp: AwareDatetime
    # Set on events that act on something Tailor served, so the action is attributed to it.
    feed_id: Id | None = None
    position: Annotated[int, Field(ge=0, le=MAX_POSITION)] | None = None

    @field_validator("timestamp")
    @classmethod
    def _plausible_date(cls, value: datetime) -> datetime:
        return plausible_date(value)

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
    quantity: Quantity = 1


class RemoveFromCart(_ItemEvent):
    event_type: Literal["remove_from_cart"]
    quantity: Quantity = 1


class Purchase(_ItemEvent):
    event_type: Literal["purchase"]
    price: Money  # unit price; revenue is price x quantity
    quantity: Quantity = 1
    order_id: Id | None = None

    @field_validator("quantity")
    @classmethod
    def _line_value_bounded(cls, value: int, info: ValidationInfo) -> int:
        price = info.data.get("price")  # absent when the price itself was refused
        if price is not None and price * value > MAX_LINE_VALUE:
            raise PydanticCustomError("line_value", f"price x quantity is {price * value:.2f}, above "
                                      f"{MAX_LINE_VALUE:.0f}, the most one order line may be worth")
        return value


class Wishlist(_ItemEvent):
    event_type: Literal["wishlist"]


class ReviewRead(_ItemEvent):
    event_type: Literal["review_read"]
    duration_ms: Annotated[int, Field(ge=0, le=MAX_DURATION_MS)] | None = None


class SpecCompare(_ItemEvent):
    event_type: Literal["spec_compare"]
    compared_with: Annotated[list[Id], Field(min_length=1, max_length=MAX_COMPARED)]


class Dwell(_ItemEvent):
    event_type: Literal["dwell"]
    dwell_ms: Annotated[int, Field(ge=0, le=MAX_DWELL_MS)]


class Zoom(_ItemEvent):
    event_type: Literal["zoom"]
    level: Annotated[float, Field(gt=0, le=MAX_ZOOM_LEVEL, allow_inf_nan=False)] = 2.0


class Scroll(_EventBase):
    event_type: Literal["scroll"]
    depth: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    item_id: Id | None = None


class Search(_EventBase):
    event_type: Literal["search"]
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_LENGTH)]
    results: Annotated[list[Id], Field(max_length=MAX_LIST_ITEMS)] = []


class CategoryBrowse(_EventBase):
    event_type: Literal["category_browse"]
    category: Id


class CheckoutView(_EventBase):
    event_type: Literal["checkout_view"]
    cart_value: Annotated[float, Field(ge=0, le=MAX_CART_VALUE, allow_inf_nan=False)] | None = None


class Impression(_EventBase):
    event_type: Literal["impression"]
    item_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_LIST_ITEMS)]


class Referral(_EventBase):
    event_type: Literal["referral"]
    source: Id  # e.g. "search_engine", "social", "affiliate", "email", "friend"
    campaign: Id | None = None
    referrer_user_id: Id | None = None


class Profile(_EventBase):
    event_type: Literal["profile"]
    age: Annotated[int, Field(ge=MIN_AGE, le=MAX_AGE)] | None = None
    location: Id | None = None
    interests: Annotated[list[Id], Field(max_length=MAX_COMPARED)] = []


Event = Annotated[
    View | Click | Search | AddToCart | RemoveFromCart | Purchase | Wishlist | ReviewRead | SpecCompare
    | CategoryBrowse | CheckoutView | Impression | Dwell | Scroll | Zoom | Referral | Profile,
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


def plausible_date(value: datetime) -> datetime:
    """`value` if it lies between EARLIEST_TIMESTAMP and LATEST_TIMESTAMP; a field validator's error otherwise."""
    if value < EARLIEST_TIMESTAMP:
        raise PydanticCustomError("timestamp_too_early", "before {earliest}, the earliest date Tailor takes",
                                  {"earliest": EARLIEST_TIMESTAMP.date().isoformat()})
    if value >= LATEST_TIMESTAMP:
        raise PydanticCustomError("timestamp_too_late", "on or after {latest}, the latest date Tailor takes",
                                  {"latest": LATEST_TIMESTAMP.date().isoformat()})
    return value


def parse_event(raw: bytes | str | dict[str, Any], *, received_at: float | None = None) -> Event:
    """Validate one event from JSON text or a decoded object; raise EventError naming each bad field.

    With `received_at` (epoch seconds, when the event reached Tailor), an event dated more than
    MAX_CLOCK_SKEW_SECONDS after it is refused too."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventError(f"payload is not UTF-8 text: {exc}") from None
    if isinstance(raw, str):
        try:
            raw = load_json(raw, max_depth=MAX_EVENT_DEPTH)
        except json.JSONDecodeError as exc:
            raise EventError(f"payload is not valid JSON: {exc}") from None
    elif isinstance(raw, dict):
        problem = _unrepresentable(raw, MAX_EVENT_DEPTH)
        if problem is not None:
            raise EventError(problem)
    return event_from_json(raw, received_at=received_at)


def event_from_json(raw: Any, *, received_at: float | None = None) -> Event:
    """An event from what `load_json(text, max_depth=MAX_EVENT_DEPTH)` made of its text: parse_event after the
    decoding, for a reader that decoded the text itself (Ingest, which also archives it)."""
    if not isinstance(raw, dict):
        raise EventError(f"payload must be a JSON object, got {type(raw).__name__}")
    try:
        event = _EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise EventError(_describe(exc)) from None
    if received_at is not None and event.epoch > received_at + MAX_CLOCK_SKEW_SECONDS:
        ahead = event.epoch - received_at
        raise EventError(f"timestamp: {ahead:.0f} s after the event was received; at most "
                         f"{MAX_CLOCK_SKEW_SECONDS} s of clock skew is allowed")
    return event


def load_json(text: str, *, max_depth: int, allow_nan: bool = False) -> Any:
    """`json.loads` for text from outside, which raises json.JSONDecodeError for whatever Tailor does not take:
    nesting deeper than `max_depth` (found before decoding, so no depth exhausts the stack), integers too long to
    convert, and unless `allow_nan`, NaN and Infinity (not JSON; with `allow_nan` they are decoded, for a schema
    to refuse naming the field)."""
    too_deep = _too_deep_at(text, max_depth)
    if too_deep is not None:
        raise json.JSONDecodeError(f"nested deeper than {max_depth} levels", text, too_deep)
    try:
        return (_DECODER if allow_nan else _DECODER_WITHOUT_NAN).decode(text)
    except _NotANumber as exc:
        name = exc.args[0]
        raise json.JSONDecodeError(f"{name} is not a JSON number", text, max(text.find(name), 0)) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # an integer of more digits than Python converts
        raise json.JSONDecodeError(str(exc).split(":")[0], text, 0) from None


class _NotANumber(ValueError):
    """NaN, Infinity or -Infinity in a text that may not hold them."""


def _refuse_constant(name: str) -> Any:
    raise _NotANumber(name)


# Made once: json.loads with an argument makes a decoder per call, which costs more than decoding an event.
_DECODER = json.JSONDecoder()
_DECODER_WITHOUT_NAN = json.JSONDecoder(parse_constant=_refuse_constant)


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
        if err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == ID_PATTERN:
            parts.append(f"{field}: {_control_character(err['input'])}")
            continue
        parts.append(f"{field}: {err['msg']}")
    return "; ".join(parts)


def _control_character(value: str) -> str:
    found = _CONTROL_CHARACTER.search(value)
    where = f"U+{ord(found.group()):04X} at position {found.start()}" if found else "one"
    return f"a control character ({where}); an id is text without control characters"


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# A JSON string (escapes included), or one bracket outside strings.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r'[^\[\]{}]+')
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _too_deep_at(text: str, max_depth: int) -> int | None:
    """Where `text` opens a bracket more than `max_depth` deep (outside strings), or None; runs at C speed unless
    it is too deep."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) <= max_depth:
        return None
    depth = 0
    for token in _TOKEN.finditer(text):
        step = _STEP.get(token.group(), 0)
        depth += step
        if depth > max_depth:
            return token.start()
    return 0


def _unrepresentable(value: dict[str, Any], max_depth: int) -> str | None:
    """Why a decoded event cannot be taken as it is (nested deeper than `max_depth`, or a number that is not
    finite, anywhere in it, known fields or not), naming where; None if it can."""
    pending: list[tuple[Any, str, int]] = [(value, "", 1)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                return f"{path or 'payload'}: nested deeper than {max_depth} levels"
            children = item.items() if isinstance(item, dict) else enumerate(item)
            pending.extend((child, f"{path}.{key}" if path else str(key), depth + 1) for key, child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{path}: {item} is not a finite number"
    return None
