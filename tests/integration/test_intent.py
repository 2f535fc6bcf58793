"""Session intent through the real handlers on moto: Ingest keeps every touched session's intent and weighs its
association pairs by it; the related route answers an exploratory and a purchase-minded session differently, and
says why."""

import json
import os
from types import SimpleNamespace

import boto3
import pytest

from tailor.intent import INTENTS, IntentFactors, dominant_intent
from tailor.ranking.scoring import DEFAULT_WEIGHTS
from tailor.store.aws import from_dynamo

from tests.helpers.events import load_event
from tests.helpers.lambdas import functions_on_moto, kinesis_batch

SHOPPERS = 20  # browsing sessions: item i-101 viewed with i-201 and i-202
BUYERS = 2  # buying sessions: i-101 carted and bought with i-301


@pytest.fixture(scope="module")
def handlers():
    """The Ingest and API handlers on moto, after Ingest applied a crowd of browsing and buying sessions and the merge
    its counters. AppConfig is named as deployed and out of reach here (moto has no AppConfig data plane): the
    shipped factors apply."""
    with functions_on_moto() as functions:
        assert functions.invoke("IngestFunction", kinesis_batch(_crowd())) == {"batchItemFailures": []}
        functions.invoke("MergeCountersFunction", load_event("merge-counters-schedule.json"))  # its schedule's work
        api = functions.handler("ApiFunction")
        yield SimpleNamespace(api=lambda event: functions.invoke("ApiFunction", event, handler=api),
                              dynamodb=boto3.client("dynamodb"))


def test_ingest_keeps_each_touched_sessions_intent_probabilities(handlers):
    rows = _scan(handlers.dynamodb, "SessionsTable")
    assert len(rows) == SHOPPERS + BUYERS + 1
    for row in rows.values():
        assert set(row["intent"]) == set(INTENTS)
        assert sum(row["intent"].values()) == pytest.approx(1.0, abs=1e-3)
    buying = [r for k, r in rows.items() if k.startswith("s-buy")]
    browsing = [r for k, r in rows.items() if k.startswith("s-browse")]
    assert all(dominant_intent(r["intent"]) == "intent_to_purchase" for r in buying)
    assert all(r["intent"]["intent_to_purchase"] < 0.5 for r in browsing)


def test_ingest_weighs_pairs_by_intent_and_keeps_the_part_commitments_made(handlers):
    row = _scan(handlers.dynamodb, "AssociationsTable")["i-101"]
    # Cart adds and purchases of i-301 after i-101 made part of their pair: kept apart as "c:".
    assert 0 < row["c:i-301"] < row["n:i-301"]
    assert "c:i-201" not in row
    # Twenty browsing sessions viewed i-201 right after i-101: each view weighs 1 x the session's blended view
    # factor, which the shipped factors put between 1 and 1.5; without intent it would be exactly 20.
    factors = IntentFactors.default()
    assert SHOPPERS * 1.0 < row["n:i-201"] <= SHOPPERS * max(f.get("view", 1.0) for f in factors.factors.values())
    assert row["n:i-201"] != SHOPPERS


def test_related_answers_an_exploratory_and_a_purchase_minded_session_differently_and_says_why(handlers):
    buying = _related(handlers.api, "api-post-related-purchase-intent.json")
    browsing = _related(handlers.api, "api-post-related-exploratory.json")
    assert dominant_intent(buying["intent"]) == "intent_to_purchase"
    assert dominant_intent(browsing["intent"]) == "exploratory"

    bought = [i["item_id"] for i in buying["items"]]
    viewed = [i["item_id"] for i in browsing["items"]]
    assert bought != viewed
    # Ready to buy: what others carted and bought with i-101 comes first. Exploring: what they viewed with it.
    assert bought[0] == "i-301"
    assert viewed.index("i-201") < viewed.index("i-301")
    # The explanation: the relevance each list ranks by, and the blend weights the intent moved.
    part = {r["item_id"]: r["parts"] for r in buying["items"]}
    assert part["i-301"]["relevance"] == 1.0 > part["i-201"]["relevance"]
    part = {r["item_id"]: r["parts"] for r in browsing["items"]}
    assert part["i-201"]["relevance"] == 1.0 > part["i-301"]["relevance"]
    assert buying["items"][0]["parts"]["weight_probability"] > browsing["items"][0]["parts"]["weight_probability"]
    assert buying["items"][0]["parts"]["weight_commercial"] > browsing["items"][0]["parts"]["weight_commercial"]
    assert browsing["items"][0]["parts"]["weight_diversity"] > buying["items"][0]["parts"]["weight_diversity"]


def test_related_without_session_data_is_not_weighed_by_any_intent(handlers):
    event = load_event("api-post-related.json")
    body = json.loads(event["body"])
    event["body"] = json.dumps({k: v for k, v in body.items() if k != "session_data"} | {"filters": {}})
    response = handlers.api(event)
    assert response["statusCode"] == 200, response["body"]
    answer = json.loads(response["body"])
    assert answer["intent"] is None
    parts = {r["item_id"]: r["parts"] for r in answer["items"]}
    assert parts["i-301"]["relevance"] == 1.0  # the partner with the most weight, commitments counted as they are
    assert {k[len("weight_"):]: v for k, v in parts["i-301"].items() if k.startswith("weight_")} == \
        DEFAULT_WEIGHTS["related"]


def test_ingest_and_the_api_load_the_registrys_current_intent_model(handlers):
    from tailor.ingest.intent import SessionIntent
    from tailor.models import ModelRegistry, default_model
    from tailor.serving import Recommender
    from tailor.store.aws import S3BlobStore
    from tailor.store.memory import MemoryStateStore

    shipped = default_model("intent")
    registry = ModelRegistry(S3BlobStore(boto3.client("s3"), os.environ["DATA_BUCKET"]))
    version = registry.publish("intent", shipped.onnx, {**shipped.metadata, "trained_at": "2026-11-03T00:00:00Z"})
    assert version != shipped.version
    assert SessionIntent.load(registry).model.version == version
    assert Recommender.start(MemoryStateStore(), registry, warm=False).intent_model.version == version


# -- helpers ----------------------------------------------------------------------------------------------------


def _related(api, sample: str) -> dict:
    event = load_event(sample)
    body = json.loads(event["body"])
    body["filters"] = {"available_only": False}  # the crowd's items carry no availability
    event["body"] = json.dumps(body)
    response = api(event)
    assert response["statusCode"] == 200, response["body"]
    return json.loads(response["body"])


def _crowd() -> list[dict]:
    events: list[dict] = []

    def add(session: str, user: str, minute: int, second: int, kind: str, **fields):
        events.append({"event_id": f"{session}-{len(events)}", "user_id": user, "session_id": session,
                       "timestamp": f"2026-11-02T09:{minute:02d}:{second:02d}Z", "event_type": kind, **fields})

    for k in range(SHOPPERS):
        session, user = f"s-browse-{k}", f"u-browse-{k}"
        add(session, user, k % 30, 0, "category_browse", category="electronics")
        add(session, user, k % 30, 5, "view", item_id="i-101", category="electronics", price=199.0)
        add(session, user, k % 30, 9, "dwell", item_id="i-101", dwell_ms=3000)
        add(session, user, k % 30, 12, "category_browse", category="audio")
        add(session, user, k % 30, 15, "view", item_id="i-201", category="audio", price=59.0)
        add(session, user, k % 30, 20, "view", item_id="i-202", category="audio", price=79.0)
    for k in range(BUYERS):
        session, user = f"s-buy-{k}", f"u-buy-{k}"
        add(session, user, 30 + k, 0, "view", item_id="i-101", category="electronics", price=199.0)
        add(session, user, 30 + k, 20, "add_to_cart", item_id="i-101", category="electronics", price=199.0)
        add(session, user, 30 + k, 30, "view", item_id="i-301", category="electronics", price=29.0)
        add(session, user, 30 + k, 40, "add_to_cart", item_id="i-301", category="electronics", price=29.0)
        add(session, user, 30 + k, 50, "checkout_view", cart_value=228.0)
        add(session, user, 30 + k, 55, "purchase", item_id="i-101", price=199.0)
        add(session, user, 30 + k, 56, "purchase", item_id="i-301", price=29.0)
    # Someone else bought i-201 on its own: it sells too.
    add("s-buy-alone", "u-buy-alone", 40, 0, "view", item_id="i-201", category="audio", price=59.0)
    add("s-buy-alone", "u-buy-alone", 40, 20, "add_to_cart", item_id="i-201", category="audio", price=59.0)
    add("s-buy-alone", "u-buy-alone", 40, 40, "purchase", item_id="i-201", price=59.0)
    return sorted(events, key=lambda e: e["timestamp"])


def _scan(dynamodb, table: str) -> dict[str, dict]:
    key = "session_id" if table == "SessionsTable" else "item_id"
    return {row[key]: row for page in dynamodb.get_paginator("scan").paginate(TableName=table)
            for row in map(from_dynamo, page["Items"])}
