"""The API's request and response models, and its path and query parameters: what the OpenAPI document shows."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from tailor.catalog import MAX_CATALOG_ENTRIES, CatalogEntry
from tailor.events import ID_PATTERN, Event
from tailor.producer import MAX_EVENTS_PER_SEND
from tailor.ranking.limits import (
    MAX_ITEMS,
    MAX_N,
    MAX_SESSION_EVENTS,
    RequestError,
    check_base_scores,
    check_price_range,
)

MAX_PAGE = 100  # items one feed, search or related answer holds at most
MAX_CATEGORIES = 20  # categories one request may filter by

Id = Annotated[str, Field(min_length=1, max_length=256, pattern=ID_PATTERN)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=MAX_PAGE)]


class ScoredItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: str
    score: float = Field(allow_inf_nan=False)
    sources: list[str] = Field(description="candidate sources that proposed the item: popular, session, query, ...")
    parts: dict[str, float] | None = Field(None, description="the score's parts; only with explain=true")
    cluster: dict[str, Any] | None = Field(
        None, description="in an adaptive feed, with explain=true: the cluster the item came from, why (prior, clicks, "
                          "ignores, near clusters clicked) and the slot's probability")
    search: str | None = Field(
        None, description="with explain=true, for an item the embedding source proposed: how it searched the item "
                          "vectors (\"exact\", or \"index, N probes\" on their inverted file index)")


class RankingOut(BaseModel):
    """Built from the domain's Ranking: `RankingOut.model_validate(ranking, from_attributes=True)`."""

    model_config = ConfigDict(from_attributes=True)

    feed_id: str = Field(description="echo it, with the item's position, in events that act on these items")
    model: str = Field(description="name:version of the ranking model used")
    items: list[ScoredItem]
    intent: dict[str, float] | None = Field(
        None, description="the session's intent probabilities (exploratory, comparative, intent_to_purchase, research) "
                          "that weighed the ranking, when a session is known")


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available_only: bool = True
    min_price: Price | None = None
    max_price: Price | None = None
    categories: Annotated[list[Id], Field(max_length=MAX_CATEGORIES)] = []
    exclude_purchased: bool = False

    @field_validator("max_price")
    @classmethod
    def _price_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        _checked(check_price_range, info.data.get("min_price"), value)
        return value


class RerankIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[Id], Field(min_length=1, max_length=MAX_ITEMS, description="the caller's item ids")]
    base_scores: Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(max_length=MAX_ITEMS)] | None = Field(
        None, description="the caller's own score for each item, in the same order")
    user_id: Id | None = None
    session_id: Id | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = Field(None, description="default: every item")
    explain: bool = False

    @field_validator("base_scores")
    @classmethod
    def _one_score_per_item(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        items = info.data.get("items")  # absent when the items are at fault themselves
        if items is not None:
            _checked(check_base_scores, len(items), value)
        return value


class RelatedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_data: Annotated[list[Event], Field(max_length=MAX_SESSION_EVENTS)] = Field(
        [], description="the session's events so far (as sent to /events); they need not be ingested yet")
    user_id: Id | None = None
    n: Count = 20
    filters: FiltersIn = FiltersIn()
    explain: bool = False


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Any JSON in the list: an element that is not an event object is refused on its own, as any bad event is.
    events: Annotated[list[Any], Field(min_length=1, max_length=MAX_EVENTS_PER_SEND,
                                       description="event objects; each is accepted or refused with its reason")]


class Failure(BaseModel):
    index: int = Field(description="position of the event in the request")
    event_id: str | None
    error: str = Field(description="the field at fault and why, or the stream's error code")
    retryable: bool = Field(description="sending the same event again may succeed")


class EventStatus(BaseModel):
    index: int = Field(description="position of the event in the request")
    event_id: str | None
    status: Literal["accepted", "refused"] = Field(
        description="accepted: on the event stream, Ingest applies it; refused: not on the stream, see error")
    error: str | None = Field(None, description="why it was refused: the field at fault, or the stream's error")
    retryable: bool | None = Field(None, description="when refused: sending the same event again may succeed")


class EventsOut(BaseModel):
    accepted: int
    failed: int
    failures: list[Failure]
    events: list[EventStatus] = Field(description="every event's status, in request order")


class CatalogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[CatalogEntry], Field(min_length=1, max_length=MAX_CATALOG_ENTRIES,
                                               description="catalog entries; an item's fields left out stay")]


class StaleEntry(BaseModel):
    index: int = Field(description="position of the entry in the request")
    item_id: str
    fields: list[str] = Field(description="the entry's fields left as they were: the row holds them updated later")


class CatalogOut(BaseModel):
    written: int = Field(description="entries that set or cleared at least one field")
    stale: list[StaleEntry] = Field(description="entries with fields the row holds updated later, which stay as they "
                                                "were")


class ServedField(BaseModel):
    value: bool | float | str
    source: Literal["catalog", "events"] = Field(
        description="catalog: set by a catalog entry, which events no longer change; events: the latest item event "
                    "that carried it")
    updated_at: str | None = Field(None, description="when the catalog entry updated it (catalog fields)")


class ItemOut(BaseModel):
    item_id: str
    fields: dict[str, ServedField] = Field(
        description="the item's category, brand, price, name and availability as filters, ranking and training read "
                    "them, those Tailor holds")
    counts: dict[str, float] = Field(description="what shoppers' events have added up: views, clicks, carts, "
                                                 "purchases, wishlists, impressions, revenue")
    cluster: str | None = Field(description="the published item cluster the adaptive feed finds it in")
    vector: Literal["engagements", "metadata"] | None = Field(
        description="whether the published item vectors hold it: learned from engagements, or from its metadata "
                    "alone")


class ErasureRemoved(BaseModel):
    shopper_state: bool = Field(description="the shopper's row held state (or counters other shoppers' events added)")
    sessions: int
    exposures: int = Field(0, description="logs of the lists experiments served them")
    archive_objects_rewritten: int = Field(description="objects of the event archive rewritten without their events")
    archive_events: int = Field(description="their events taken out of the event archive")


class ErasureOut(BaseModel):
    erasure_id: str
    user_id: str
    status: Literal["pending", "done", "nothing_to_erase"] = Field(
        description="pending: the shopper's state is gone and their events are refused, their sessions and archived "
                    "events are being removed; done: removed; nothing_to_erase: Tailor holds nothing of them")
    status_url: str = Field(description="where to GET the erasure's status")
    requested_at: str
    erased_until: str = Field(description="the shopper's events timestamped up to then are erased, those still on "
                                          "their way included; later ones start a new shopper")
    finished_at: str | None
    removed: ErasureRemoved
    archive_days_searched: int
    archive_days_left: int = Field(description="days (or months, years) of the event archive still to rewrite")
    message: str | None = None


class NotFoundOut(BaseModel):
    statusCode: int = Field(404)  # noqa: N815 - the resolver's own error body
    message: str = Field(description="what was not found")


# The resolver validates path parameters as sent, percent-encoded; once decoded (app.py), they are checked again by this.
DECODED_PATH_ID = TypeAdapter(Id)
UserId = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN, description="the shopper's id")]
ItemId = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN, description="the item's id")]
N = Annotated[int, Query(ge=1, le=MAX_PAGE, description="how many items to answer")]
SessionId = Annotated[Id | None, Query(description="the shopper's current session")]
AvailableOnly = Annotated[bool, Query(description="leave out items known to be unavailable")]
MinPrice = Annotated[Price | None, Query()]
MaxPrice = Annotated[Price | None, Query(description="at least min_price")]
Category = Annotated[list[Id] | None, Query(max_length=MAX_CATEGORIES,
                                             description="keep items of these categories (repeat)")]
ExcludePurchased = Annotated[bool, Query(description="leave out items the shopper has bought")]
Explain = Annotated[bool, Query(description="add each score's parts")]


def _checked(check: Callable[..., None], *args: Any) -> None:
    """The domain's `check` run by a field validator: its RequestError becomes the error of the field being validated,
    which the model locates in the request (body filters.max_price)."""
    try:
        check(*args)
    except RequestError as error:
        raise PydanticCustomError(error.kind, error.message) from None
