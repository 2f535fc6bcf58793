"""API: feeds, re-ranked search results, related items and profiles for a shop's backend; events in, shoppers erased.

Every ranking route calls the one ranking pipeline (tailor.serving). Request and response models are in models.py,
the answers to invalid requests in errors.py, the OpenAPI document and its explorer (/docs) in docs.py.
"""

import gc

# Init allocates a few hundred thousand objects that live as long as the container (modules, schemas, clients, the
# ranking cache): the collector's passes over them during init find nothing to free, so it waits until they are
# frozen at the end of init.
gc.disable()

import functools
import os
import time
import warnings
from typing import Annotated, Any
from urllib.parse import quote, unquote

import docs
import errors
import experiments
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from models import (
    DECODED_PATH_ID,
    AvailableOnly,
    CatalogIn,
    CatalogOut,
    Category,
    ErasureOut,
    EventsIn,
    EventsOut,
    ExcludePurchased,
    Explain,
    Id,
    ItemId,
    ItemOut,
    MaxPrice,
    MinPrice,
    N,
    NotFoundOut,
    RankingOut,
    RelatedIn,
    RerankIn,
    SessionId,
    StaleEntry,
    UserId,
)
from pydantic import ValidationError

from tailor.after_response import AfterResponse
from tailor.aws_clients import client
from tailor.catalog import load_catalog
from tailor.erasure import NOTHING_TO_ERASE, erasure_status, request_erasure
from tailor.events import MAX_EVENT_DEPTH
from tailor.experiments.storage import ExperimentStore, LiveExperiments
from tailor.experiments.strategies import StrategySource
from tailor.intent_config import FactorsSource
from tailor.models import ModelRegistry
from tailor.personas.rerank import describe_personas, persona_ranking
from tailor.personas.storage import ModelSource
from tailor.producer import PUT_RECORDS_CLIENT, EventProducer
from tailor.ranking import DEFAULT_ROUTES
from tailor.serving import Filters, Ranking, Recommender
from tailor.settings import ApiSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore, SqsQueue

# A body nests an event list in an object; the room beyond that lets an event nested too deep be refused on its own
# (POST /events), and anything deeper is refused before it is decoded, so no nesting exhausts the stack.
MAX_BODY_DEPTH = 4 * MAX_EVENT_DEPTH

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
                             json_body_deserializer=functools.partial(errors.json_object, max_depth=MAX_BODY_DEPTH))

# A request has API Gateway's 29 seconds and makes a few calls one after another (the live experiments' read at
# most every half minute, then up to three rounds of batched reads): a DynamoDB call, which answers in milliseconds,
# gets 1 s to connect and 2 to answer and is tried twice, so a store that hangs fails the request well within them
# (answered 503, errors.py) rather than let the shop's page wait. S3 sends models of megabytes: it gets longer.
_aws = {"connect_timeout": 2, "read_timeout": 5, "max_attempts": 3}
_dynamodb = client("dynamodb", connect_timeout=1, read_timeout=2, max_attempts=2)
_bucket = S3BlobStore(client("s3", **_aws), settings.data_bucket)
personas = ModelSource(_bucket, refresh_seconds=settings.persona_model_refresh_seconds)
state = DynamoStateStore(_dynamodb, settings.tables)
experiment_store = ExperimentStore(state, _bucket, revenue_days=settings.realized_revenue_days)
live_experiments = LiveExperiments(experiment_store)
strategies = StrategySource(settings.strategy_config)


# Exposure logs are written once the response is on its way: a DynamoDB write is no part of the shopper's wait. A
# write gets two tries of 1 s to connect and 2 s a read, a second's backoff between (_dynamodb): 10 s, with room for
# what those timeouts do not bound (DNS, a read in several parts), are kept before the invocation's deadline.
after_response = AfterResponse.register(settings.runtime_api if settings.exposures_after_response else None,
                                        margin_seconds=10.0)


def _not_found(description: str) -> dict[str, Any]:
    """A route's 404 in the document: the resolver's error body, not the route's answer."""
    return {"description": description, "content": {"application/json": {"model": NotFoundOut}}}


def _log_exposure(feed_id: str, ranking: Ranking) -> None:
    """What a list served in an experiment held, with each slot's probability: drawn by an adaptive feed or by
    interleaving's coins, else 1 (a ranking is deterministic)."""
    items = [item.item_id for item in ranking.items]
    served_at = time.time()
    after_response.defer(lambda: experiment_store.log_exposure(
        feed_id, ranking.assignment, strategy=ranking.strategy or "default", items=items,
        probabilities=ranking.probabilities or [1.0] * len(items), served_at=served_at, teams=ranking.teams,
        ranker=ranking.model), "exposure log", feed_id=feed_id)


recommender = Recommender.start(DynamoStateStore(_dynamodb, settings.tables), ModelRegistry(_bucket),
                                factors=FactorsSource(settings.intent_config),
                                experiments=live_experiments, strategies=strategies, exposures=_log_exposure,
                                profile_sections={"personas": describe_personas(personas)},
                                **persona_ranking(personas, DEFAULT_ROUTES, weight=settings.persona_weight,
                                                  mode=settings.persona_mode))
errors.register(app)
docs.register(app)
experiments.register(app, experiment_store, live_experiments, strategies, lambda: docs.base_path(app))
# What init built is frozen: the collector's full passes skip it, instead of walking it in the middle of a request.
gc.freeze()
gc.enable()


@app.get("/users/<user_id>/feed", summary="A shopper's feed", tags=["ranking"])
def feed(user_id: UserId, n: N = 20, session_id: SessionId = None, available_only: AvailableOnly = True,
         min_price: MinPrice = None, max_price: MaxPrice = None, category: Category = None,
         exclude_purchased: ExcludePurchased = False, explain: Explain = False) -> RankingOut:
    filters = _filters(available_only, min_price, max_price, category, exclude_purchased)
    return _answer(recommender.feed(user_id, session_id=session_id, n=n, filters=filters, explain=explain))


@app.get("/search", summary="Items for a search query, ranked for the shopper", tags=["ranking"])
def search(q: Annotated[str, Query(min_length=1, max_length=512, pattern=r"\S", description="the query")],
           user_id: Annotated[Id | None, Query()] = None, session_id: SessionId = None, n: N = 20,
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
def related(item_id: ItemId, n: N = 20, user_id: Annotated[Id | None, Query()] = None,
            available_only: AvailableOnly = True, min_price: MinPrice = None, max_price: MaxPrice = None,
            category: Category = None, explain: Explain = False) -> RankingOut:
    filters = _filters(available_only, min_price, max_price, category, False)
    return _answer(recommender.related(item_id, user_id=user_id, n=n, filters=filters, explain=explain))


@app.post("/items/<item_id>/related", summary="Items related to an item, given the session so far", tags=["ranking"])
def related_in_session(item_id: ItemId, body: Annotated[RelatedIn, Body()]) -> RankingOut:
    return _answer(recommender.related(item_id, user_id=body.user_id, session_events=body.session_data, n=body.n,
                                       filters=_filters(**body.filters.model_dump()), explain=body.explain))


@app.get("/users/<user_id>/profile", summary="What Tailor knows about a shopper", tags=["shoppers"],
         responses={200: {"description": "The shopper's profile"}, 404: _not_found("Tailor knows nothing of them")})
def profile(user_id: UserId) -> dict[str, Any]:
    found = recommender.profile(user_id)
    if found is None:
        raise NotFoundError(f"no shopper {user_id!r}")
    return found


@app.post("/events", summary="Shopper events onto the event stream (at most 500)", tags=["events"])
def put_events(body: Annotated[EventsIn, Body()]) -> EventsOut:
    outcome = _producer().send(body.events)
    metrics.add_metric(name="EventsRefused", unit=MetricUnit.Count, value=len(outcome.refused))
    return EventsOut.model_validate(outcome.to_json())


@app.post("/items", summary="Catalog entries: what items are and whether they can be sold (at most 500)",
          tags=["catalog"])
def load_items(body: Annotated[CatalogIn, Body()]) -> CatalogOut:
    loaded = load_catalog(_catalog_store(), body.items, received_at=time.time())
    metrics.add_metric(name="CatalogEntriesWritten", unit=MetricUnit.Count, value=loaded.written)
    return CatalogOut(written=loaded.written, stale=[StaleEntry(index=index, item_id=item, fields=fields)
                                                     for index, item, fields in loaded.stale])


@app.get("/items/<item_id>", summary="An item as Tailor serves it: each catalog field and where it comes from",
         tags=["catalog"], responses={200: {"description": "The item's fields, counts, cluster and vector"},
                                      404: _not_found("Tailor holds nothing about it")})
def item(item_id: ItemId) -> ItemOut:
    found = recommender.item(item_id)
    if found is None:
        raise NotFoundError(f"no item {item_id!r}")
    return ItemOut.model_validate(found)


@app.delete("/users/<user_id>", summary="Erase a shopper everywhere Tailor keeps them", tags=["shoppers"],
            responses={202: {"description": "Their state is gone and their events are refused from now on; their "
                                            "sessions and archived events follow (see status_url)",
                             "content": {"application/json": {"model": ErasureOut}}},
                       404: {"description": "Tailor has never seen them; their events are refused from now on all "
                                            "the same", "content": {"application/json": {"model": ErasureOut}}}})
def erase(user_id: UserId) -> Response[ErasureOut]:
    erasure = _erasure(request_erasure(state, _erasures(), user_id))
    logger.info("erasure requested", extra={"erasure_id": erasure.erasure_id, "status": erasure.status})
    never_seen = erasure.status == NOTHING_TO_ERASE
    if never_seen:
        erasure.message = (f"Tailor has never seen shopper {user_id!r}: there is nothing to erase. Any of their "
                           "events still on their way are refused all the same.")
    return Response(status_code=404 if never_seen else 202, content_type=content_types.APPLICATION_JSON, body=erasure)


@app.get("/users/<user_id>/erasure", summary="Where the erasure of a shopper is", tags=["shoppers"],
         responses={200: {"description": "The latest erasure of the shopper"},
                    404: _not_found("No erasure of them on record (never erased, or longer ago than the record is "
                                    "kept)")})
def erasure(user_id: UserId) -> ErasureOut:
    found = erasure_status(state, user_id)
    if found is None:
        raise NotFoundError(f"no erasure of shopper {user_id!r} on record")
    return _erasure(found)


@after_response.handler  # outermost: deferred work starts once the metrics, trace and log of the request are out
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    return app.resolve(event, context)


def _decoded_path_parameters(app: APIGatewayRestResolver, next_middleware: Any) -> Response:
    """The REST API passes the path as it was sent, percent-encoded, and the resolver takes path parameters from it:
    decode them, as API Gateway decodes its own pathParameters, and check them as decoded, as query ids are checked."""
    args = app.context.get("_route_args", {})
    decoded = {k: unquote(args[k]) for k in app.current_event.path_parameters or {} if isinstance(args.get(k), str)}
    refused = []
    for name, value in decoded.items():
        try:
            DECODED_PATH_ID.validate_python(value)
        except ValidationError as error:
            refused += [{**e, "loc": ("path", name)} for e in error.errors(include_url=False)]
    if refused:
        raise RequestValidationError(refused)
    app.context["_route_args"] = {**args, **decoded}
    return next_middleware(app)


app.use(middlewares=[_decoded_path_parameters])


# The Kinesis and SQS clients are made by the first request that sends events or queues an erasure: most containers
# only rank, and a client costs a cold start tens of milliseconds of service model loading.
@functools.cache
def _producer() -> EventProducer:
    return EventProducer(client("kinesis", **PUT_RECORDS_CLIENT), settings.event_stream)


@functools.cache
def _erasures() -> SqsQueue:
    return SqsQueue(client("sqs", **_aws), settings.erasure_queue_url)


# Catalog loads come from the shop's back office, not a shopper's page: a client of their own, with the time and the
# tries a batch of up to 500 writes may need when the table throttles, made by the first load.
@functools.cache
def _catalog_store() -> DynamoStateStore:
    return DynamoStateStore(client("dynamodb", connect_timeout=2, read_timeout=5, max_attempts=5), settings.tables)


def _filters(available_only: bool, min_price: float | None, max_price: float | None, categories: list[str] | None,
             exclude_purchased: bool) -> Filters:
    """The domain's filters, which refuse a price range upside down (a 422, errors.py)."""
    return Filters(available_only=available_only, min_price=min_price, max_price=max_price,
                   categories=tuple(dict.fromkeys(categories or ())), exclude_purchased=exclude_purchased)


def _erasure(found: dict[str, Any]) -> ErasureOut:
    """An erasure's status, with where to ask for it again."""
    return ErasureOut(**found, status_url=f"{docs.base_path(app)}/users/{quote(found['user_id'], safe='')}/erasure")


def _answer(ranking: Ranking) -> RankingOut:
    metrics.add_metric(name="DynamoRoundTrips", unit=MetricUnit.Count, value=ranking.round_trips)
    return RankingOut.model_validate(ranking, from_attributes=True)
