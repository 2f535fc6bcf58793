"""API: feeds, re-ranked search results, related items and profiles for a shop's backend; events in, shoppers erased.

Every ranking route calls the one ranking pipeline (tailor.serving). The OpenAPI document is served at /docs
(?format=json for the JSON).
"""

import functools
import os
import warnings
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal, Optional
from urllib.parse import quote, unquote

from aws_lambda_powertools import Logger, Metrics, Tracer, event_handler
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from tailor.aws_clients import client
from tailor.erasure import NOTHING_TO_ERASE, erasure_status, request_erasure
from tailor.events import MAX_EVENT_DEPTH, Event, load_json
from tailor.intent_config import FactorsSource
from tailor.models import ModelRegistry
from tailor.personas.rerank import describe_personas, persona_ranking
from tailor.personas.storage import ModelSource
from tailor.producer import MAX_EVENTS_PER_SEND, EventProducer
from tailor.ranking import DEFAULT_ROUTES
from tailor.serving import Filters, Ranking, Recommender
from tailor.settings import ApiSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore, SqsQueue

Id = Annotated[str, Field(min_length=1, max_length=256)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=100)]
MAX_CANDIDATES = 1000  # items a caller may hand to /rerank
MAX_SESSION_EVENTS = 200
# A body nests an event list in an object; the room beyond that lets an event nested too deep be refused on its own
# (POST /events), and anything deeper is refused before it is decoded, so no nesting exhausts the stack.
MAX_BODY_DEPTH = 4 * MAX_EVENT_DEPTH


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(allow_inf_nan=False)
    sources: list[str] = Field(description="candidate sources that proposed the item: popular, session, query, ...")
    parts: Optional[dict[str, float]] = Field(None, description="the score's parts; only with explain=true")


class RankingOut(BaseModel):
    feed_id: str = Field(description="echo it, with the item's position, in events that act on these items")
    model: str = Field(description="name:version of the ranking model used")
    items: list[ScoredItem]
    intent: Optional[dict[str, float]] = Field(
        None, description="the session's intent probabilities (exploratory, comparative, intent_to_purchase, research) "
                          "that weighed the ranking, when a session is known")


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available_only: bool = True
    min_price: Optional[Price] = None
    max_price: Optional[Price] = None
    categories: Annotated[list[Id], Field(max_length=20)] = []
    exclude_purchased: bool = False

    @field_validator("max_price")
    @classmethod
    def _not_below_min_price(cls, value: Optional[float], info: Any) -> Optional[float]:
        low = info.data.get("min_price")
        if value is not None and low is not None and value < low:
            raise PydanticCustomError("price_range", "max_price is below min_price")
        return value


class RerankIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[Id], Field(min_length=1, max_length=MAX_CANDIDATES, description="the caller's item ids")]
    base_scores: Optional[Annotated[list[Annotated[float, Field(allow_inf_nan=False)]],
                                    Field(max_length=MAX_CANDIDATES)]] = Field(
        None, description="the caller's own score for each item, in the same order")
    user_id: Optional[Id] = None
    session_id: Optional[Id] = None
    n: Optional[Annotated[int, Field(ge=1, le=MAX_CANDIDATES)]] = Field(None, description="default: every item")
    explain: bool = False

    @field_validator("base_scores")
    @classmethod
    def _one_score_per_item(cls, value: Optional[list[float]], info: Any) -> Optional[list[float]]:
        items = info.data.get("items")
        if value is not None and items is not None and len(value) != len(items):
            raise PydanticCustomError("length_mismatch", "base_scores needs one score per item ({items} items)",
                                      {"items": len(items)})
        return value


class RelatedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_data: Annotated[list[Event], Field(max_length=MAX_SESSION_EVENTS)] = Field(
        [], description="the session's events so far (as sent to /events); they need not be ingested yet")
    user_id: Optional[Id] = None
    n: Count = 20
    filters: FiltersIn = FiltersIn()
    explain: bool = False


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_EVENTS_PER_SEND)]


class Failure(BaseModel):
    index: int = Field(description="position of the event in the request")
    event_id: Optional[str]
    error: str = Field(description="the field at fault and why, or the stream's error code")
    retryable: bool = Field(description="sending the same event again may succeed")


class EventStatus(BaseModel):
    index: int = Field(description="position of the event in the request")
    event_id: Optional[str]
    status: Literal["accepted", "refused"] = Field(
        description="accepted: on the event stream, Ingest applies it; refused: not on the stream, see error")
    error: Optional[str] = Field(None, description="why it was refused: the field at fault, or the stream's error")
    retryable: Optional[bool] = Field(None, description="when refused: sending the same event again may succeed")


class EventsOut(BaseModel):
    accepted: int
    failed: int
    failures: list[Failure]
    events: list[EventStatus] = Field(description="every event's status, in request order")


class ErasureRemoved(BaseModel):
    shopper_state: bool = Field(description="the shopper's row held state (or counters other shoppers' events added)")
    sessions: int
    archive_objects_rewritten: int = Field(description="objects of the event archive rewritten without their events")
    archive_events: int = Field(description="their events taken out of the event archive")


class ErasureOut(BaseModel):
    erasure_id: str
    user_id: str
    status: Literal["pending", "done", "nothing_to_erase"] = Field(
        description="pending: the shopper's state is gone and their events are refused, their sessions and archived "
                    "events are being removed; done: removed; nothing_to_erase: Tailor had never seen them")
    status_url: str = Field(description="where to GET the erasure's status")
    requested_at: str
    erased_until: str = Field(description="the shopper's events timestamped up to then are erased, those still on "
                                          "their way included; later ones start a new shopper")
    finished_at: str | None
    removed: ErasureRemoved
    archive_days_searched: int
    archive_days_left: int = Field(description="days (or months, years) of the event archive still to rewrite")
    message: str | None = None


UserId = Annotated[str, Path(min_length=1, max_length=256, description="the shopper's id")]
ItemId = Annotated[str, Path(min_length=1, max_length=256, description="the item's id")]
N = Annotated[int, Query(ge=1, le=100, description="how many items to answer")]
SessionId = Annotated[Optional[Id], Query(description="the shopper's current session")]
AvailableOnly = Annotated[bool, Query(description="leave out items known to be unavailable")]
MinPrice = Annotated[Optional[Price], Query()]
MaxPrice = Annotated[Optional[Price], Query(description="at least min_price")]
Category = Annotated[Optional[list[Id]], Query(max_length=20, description="keep items of these categories (repeat)")]
ExcludePurchased = Annotated[bool, Query(description="leave out items the shopper has bought")]
Explain = Annotated[bool, Query(description="add each score's parts")]

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Some routes count nothing (the document, profiles); that is no reason for a warning on every such request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

settings = ApiSettings.read(os.environ)
app = APIGatewayRestResolver(enable_validation=True,
                             cors=(CORSConfig(allow_origin=settings.cors_allow_origin, max_age=600)
                                   if settings.cors_allow_origin else None),
                             # NaN and Infinity reach the request models, which refuse them naming the field (an
                             # event's, one by one); a body nested too deep is refused before it is decoded.
                             json_body_deserializer=functools.partial(load_json, max_depth=MAX_BODY_DEPTH,
                                                                      allow_nan=True))

# A request has API Gateway's 29 seconds: a call gets a few, tries three times, and the request fails rather than wait.
_aws = {"connect_timeout": 2, "read_timeout": 5, "max_attempts": 3}
_dynamodb = client("dynamodb", **_aws)
_bucket = S3BlobStore(client("s3", **_aws), settings.data_bucket)
personas = ModelSource(_bucket, refresh_seconds=settings.persona_model_refresh_seconds)
recommender = Recommender.start(DynamoStateStore(_dynamodb, settings.tables), ModelRegistry(_bucket),
                                factors=FactorsSource(settings.intent_config),
                                profile_sections={"personas": describe_personas(personas)},
                                **persona_ranking(personas, DEFAULT_ROUTES, weight=settings.persona_weight,
                                                  mode=settings.persona_mode))
producer = EventProducer(client("kinesis", **_aws), settings.event_stream)
state = DynamoStateStore(_dynamodb, settings.tables)
erasures = SqsQueue(client("sqs", **_aws), settings.erasure_queue_url)


@app.get("/users/<user_id>/feed", summary="A shopper's feed", tags=["ranking"])
def feed(user_id: UserId, n: N = 20, session_id: SessionId = None, available_only: AvailableOnly = True,
         min_price: MinPrice = None, max_price: MaxPrice = None, category: Category = None,
         exclude_purchased: ExcludePurchased = False, explain: Explain = False) -> RankingOut:
    filters = _filters(available_only, min_price, max_price, category, exclude_purchased)
    return _answer(recommender.feed(user_id, session_id=session_id, n=n, filters=filters, explain=explain))


@app.get("/search", summary="Items for a search query, ranked for the shopper", tags=["ranking"])
def search(q: Annotated[str, Query(min_length=1, max_length=512, pattern=r"\S", description="the query")],
           user_id: Annotated[Optional[Id], Query()] = None, session_id: SessionId = None, n: N = 20,
           available_only: AvailableOnly = True, min_price: MinPrice = None, max_price: MaxPrice = None,
           category: Category = None, explain: Explain = False) -> RankingOut:
    filters = _filters(available_only, min_price, max_price, category, False)
    return _answer(recommender.search(q, user_id=user_id, session_id=session_id, n=n, filters=filters,
                                      explain=explain))


@app.post("/rerank", summary="The caller's items, re-ranked for the shopper", tags=["ranking"])
def rerank(body: Annotated[RerankIn, Body()]) -> RankingOut:
    return _answer(recommender.rerank(body.items, base_scores=body.base_scores, user_id=body.user_id,
                                      session_id=body.session_id, n=body.n, explain=body.explain))


@app.get("/items/<item_id>/related", summary="Items related to an item", tags=["ranking"])
def related(item_id: ItemId, n: N = 20, user_id: Annotated[Optional[Id], Query()] = None,
            available_only: AvailableOnly = True, min_price: MinPrice = None, max_price: MaxPrice = None,
            category: Category = None, explain: Explain = False) -> RankingOut:
    filters = _filters(available_only, min_price, max_price, category, False)
    return _answer(recommender.related(item_id, user_id=user_id, n=n, filters=filters, explain=explain))


@app.post("/items/<item_id>/related", summary="Items related to an item, given the session so far", tags=["ranking"])
def related_in_session(item_id: ItemId, body: Annotated[RelatedIn, Body()]) -> RankingOut:
    session_events = [event.model_dump(mode="json", exclude_none=True) for event in body.session_data]
    f = body.filters
    filters = _filters(f.available_only, f.min_price, f.max_price, f.categories, f.exclude_purchased)
    return _answer(recommender.related(item_id, user_id=body.user_id, session_events=session_events, n=body.n,
                                       filters=filters, explain=body.explain))


@app.get("/users/<user_id>/profile", summary="What Tailor knows about a shopper", tags=["shoppers"],
         responses={200: {"description": "The shopper's profile"}, 404: {"description": "Tailor knows nothing of them"}})
def profile(user_id: UserId) -> dict[str, Any]:
    found = recommender.profile(user_id)
    if found is None:
        raise NotFoundError(f"no shopper {user_id!r}")
    return found


@app.post("/events", summary="Shopper events onto the event stream (at most 500)", tags=["events"])
def put_events(body: Annotated[EventsIn, Body()]) -> EventsOut:
    outcome = producer.send(body.events)
    metrics.add_metric(name="EventsRefused", unit=MetricUnit.Count, value=len(outcome.refused))
    return outcome.to_json()


@app.delete("/users/<user_id>", summary="Erase a shopper everywhere Tailor keeps them", tags=["shoppers"],
            responses={202: {"description": "Their state is gone and their events are refused from now on; their "
                                            "sessions and archived events follow (see status_url)",
                             "content": {"application/json": {"model": ErasureOut}}},
                       404: {"description": "Tailor has never seen them; their events are refused from now on all "
                                            "the same", "content": {"application/json": {"model": ErasureOut}}}})
def erase(user_id: UserId) -> Response[ErasureOut]:
    erasure = {**request_erasure(state, erasures, user_id), "status_url": _erasure_url(user_id)}
    logger.info("erasure requested", extra={"erasure_id": erasure["erasure_id"], "status": erasure["status"]})
    if erasure["status"] == NOTHING_TO_ERASE:
        erasure["message"] = (f"Tailor has never seen shopper {user_id!r}: there is nothing to erase. Any of their "
                              "events still on their way are refused all the same.")
        return Response(status_code=404, content_type=content_types.APPLICATION_JSON, body=erasure)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=erasure)


@app.get("/users/<user_id>/erasure", summary="Where the erasure of a shopper is", tags=["shoppers"],
         responses={200: {"description": "The latest erasure of the shopper"},
                    404: {"description": "No erasure of them on record (never erased, or longer ago than the "
                                         "record is kept)"}})
def erasure(user_id: UserId) -> ErasureOut:
    found = erasure_status(state, user_id)
    if found is None:
        raise NotFoundError(f"no erasure of shopper {user_id!r} on record")
    return {**found, "status_url": _erasure_url(user_id)}


@app.get("/docs", include_in_schema=False)
def docs():
    """The OpenAPI document with ?format=json, else a page to explore and try the API with."""
    document = _openapi_document(_base_path())
    if app.current_event.get_query_string_value("format") == "json":
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=document)
    return Response(status_code=200, content_type="text/html", body=_explorer(document))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    return app.resolve(event, context)


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response:
    """422 naming each field at fault and why (the resolver's default leaves out the why)."""
    return _unprocessable([_readable(e) for e in error.errors()])


@app.exception_handler(UnicodeDecodeError)
def _undecodable_body(error: UnicodeDecodeError) -> Response:
    # The resolver decodes a base64 body as UTF-8 before it validates anything.
    return _unprocessable([{"loc": ["body"], "msg": "not UTF-8 text", "type": "unicode_decode"}])


@app.exception_handler(ValueError)
def _multipart_without_boundary(error: ValueError) -> Response:
    # The resolver parses multipart bodies before it validates, and fails when the boundary is missing.
    if not app.current_event.headers.get("content-type", "").lower().startswith("multipart/"):
        raise error
    return _unprocessable([{"loc": ["body"], "msg": "send JSON (multipart without a boundary)", "type": "multipart"}])


def _decoded_path_parameters(app: APIGatewayRestResolver, next_middleware: Any) -> Response:
    """The REST API passes the path as it was sent, percent-encoded, and the resolver takes path parameters from it:
    decode them, as API Gateway decodes its own pathParameters."""
    app.context["_route_args"] = {k: unquote(v) if isinstance(v, str) else v
                                  for k, v in app.context.get("_route_args", {}).items()}
    return next_middleware(app)


app.use(middlewares=[_decoded_path_parameters])


def _filters(available_only: bool, min_price: Optional[float], max_price: Optional[float],
             category: Optional[list[str]], exclude_purchased: bool) -> Filters:
    if min_price is not None and max_price is not None and max_price < min_price:
        raise RequestValidationError([{"loc": ("query", "max_price"), "type": "price_range",
                                       "msg": "max_price is below min_price"}])
    return Filters(available_only=available_only, min_price=min_price, max_price=max_price,
                   categories=tuple(dict.fromkeys(category or ())), exclude_purchased=exclude_purchased)


def _erasure_url(user_id: str) -> str:
    return f"{_base_path()}/users/{quote(user_id, safe='')}/erasure"


def _answer(ranking: Ranking) -> dict[str, Any]:
    metrics.add_metric(name="DynamoRoundTrips", unit=MetricUnit.Count, value=ranking.round_trips)
    return {"feed_id": ranking.feed_id, "model": ranking.model, "intent": ranking.intent,
            "items": [{"item_id": i.item_id, "score": i.score, "sources": i.sources, "parts": i.parts}
                      for i in ranking.items]}


@functools.lru_cache(maxsize=4)
def _openapi_document(base_path: str) -> str:
    # Built on first use, not at import: the resolver's OpenAPI models take a fifth of a second to load, which a
    # cold start should not pay for a page few requests ask for.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server

    return app.get_openapi_json_schema(
        title="Tailor", version="1", servers=[Server(url=base_path or "/")],
        description="Personalized feeds, search re-ranking and related items for a shop's backend.",
        security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)}, security=[{"apiKey": []}],
    )


def _explorer(document: str) -> str:
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    assets = FilePath(event_handler.__file__).parent / "openapi" / "swagger_ui"  # shipped with the resolver
    return generate_swagger_html(document.replace("</", "<\\/"), (assets / "swagger-ui-bundle.min.js").read_text(),
                                 (assets / "swagger-ui.min.css").read_text(), "", None)


def _base_path() -> str:
    """The stage in the URL the request came by (/dev), or nothing when it came by a custom domain or locally."""
    context = app.current_event.request_context
    stage = context.stage
    return f"/{stage}" if stage and stage != "$default" and (context.path or "").startswith(f"/{stage}/") else ""


def _unprocessable(detail: list[dict[str, Any]]) -> Response:
    message = "; ".join(f"{_field(d['loc'])}: {d['msg']}" for d in detail)
    return Response(status_code=422, content_type=content_types.APPLICATION_JSON,
                    body={"statusCode": 422, "message": f"invalid request: {message}", "detail": detail})


def _readable(error: dict[str, Any]) -> dict[str, Any]:
    if error["type"] == "json_invalid":  # located at a character of the body, not at a field
        position = error["loc"][-1]
        reason = (error.get("ctx") or {}).get("error", "")
        return {"loc": ["body"], "msg": f"not valid JSON at character {position}: {reason}".rstrip(": "),
                "type": "json_invalid"}
    return {"loc": list(error["loc"]), "msg": error.get("msg", ""), "type": error["type"]}


def _field(loc: list[Any]) -> str:
    """Where a validation error is: `query n`, `body items.3`."""
    return " ".join([str(loc[0]), ".".join(str(part) for part in loc[1:])]).strip() if loc else "request"
