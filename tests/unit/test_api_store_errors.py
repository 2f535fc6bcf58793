"""The API's answer when a store call fails after its tries, or a catalog load keeps giving way to others: 503 at
once, not the invocation's error (a 502)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from botocore.exceptions import ClientError, ReadTimeoutError

from tests.helpers.events import load_event

ERRORS = Path(__file__).resolve().parents[2] / "functions" / "api" / "errors.py"


def _errors_module():
    spec = importlib.util.spec_from_file_location("api_errors_under_test", ERRORS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("failure", [
    ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "BatchGetItem"),
    ReadTimeoutError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"),
])
def test_a_store_that_fails_after_its_tries_is_answered_503_with_a_retry_after(failure):
    app = APIGatewayRestResolver(enable_validation=True)
    _errors_module().register(app)

    @app.get("/users/<user_id>/feed")
    def feed(user_id: str) -> dict:
        raise failure

    answer = app.resolve(load_event("api-get-feed.json"), None)
    assert answer["statusCode"] == 503
    assert answer["multiValueHeaders"]["Retry-After"] == ["1"]
    assert json.loads(answer["body"])["message"] == "Tailor's state could not be read just now; try again"


def test_a_catalog_load_that_keeps_giving_way_to_others_is_answered_503_to_send_again():
    from tailor.catalog import CatalogBusy

    app = APIGatewayRestResolver(enable_validation=True)
    _errors_module().register(app)

    @app.post("/items")
    def load_items() -> dict:
        raise CatalogBusy("item 'i-1': its catalog fields changed under 5 writes in a row")

    answer = app.resolve(load_event("api-post-items.json"), None)
    assert answer["statusCode"] == 503
    assert answer["multiValueHeaders"]["Retry-After"] == ["1"]
    assert "send the request again" in json.loads(answer["body"])["message"]
