"""The local API Gateway in front of fake functions: the template's routes, the usage plan's key, proxy events built from
real requests, CORS preflight, and the answers API Gateway gives itself."""

import base64
import json
import urllib.error
import urllib.request

import pytest
from werkzeug.test import Client

from tailor_local.aws import plan_resources
from tailor_local.http import ApiGateway, ApiRoute, Cors, LocalApiServer, RestApi, new_api_key, rest_apis
from tailor_local.runtime import LocalFunction
from tailor_local.template import Template

from tests.helpers import ROOT

KEY = new_api_key()


class Recorder:
    """A function that answers every event with what it was asked to, and remembers the events."""

    def __init__(self, answer=None):
        self.events = []
        self.answer = answer

    def __call__(self, event, context):
        self.events.append(event)
        if callable(self.answer):
            return self.answer(event)
        return self.answer or {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                               "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": json.dumps({"ok": True})}


def gateway(answer=None, *, cors=None, preflight_key=False, routes=None):
    recorder = Recorder(answer)
    function = LocalFunction.from_handler("Fn", recorder)
    api = RestApi("Api", "dev", routes or (
        ApiRoute("/users/{user_id}/feed", "GET", "Fn", True),
        ApiRoute("/users/{user_id}", "DELETE", "Fn", True),
        ApiRoute("/files/{proxy+}", "ANY", "Fn", True),
        ApiRoute("/docs", "GET", "Fn", False),
    ), cors, preflight_key)
    return Client(ApiGateway(api, lambda _, event: function.invoke(event), api_key=KEY)), recorder


def test_the_template_api_routes_every_function_event_with_its_key_requirement_and_cors():
    template = Template.load(ROOT / "template.yaml")
    apis = rest_apis(template, plan_resources(template, "http://127.0.0.1:1"))
    api = apis["ServingApi"]
    assert api.stage == "dev" and not api.key_required_on_preflight
    assert api.cors == Cors("*", "GET,POST,DELETE,OPTIONS", "Content-Type,X-Api-Key", "600")
    routes = {(r.method, r.resource): r for r in api.routes}
    events = template.functions()["ApiFunction"].events_of_type("Api")
    assert set(routes) == {(e["Method"].upper(), e["Path"]) for e in events.values()}
    assert all(r.function_id == "ApiFunction" for r in routes.values())
    # The pages a browser opens (the explorer, the console) need no key; what they fetch does.
    assert sorted(r.resource for r in routes.values() if not r.api_key_required) == ["/console", "/docs"]


def test_without_the_right_key_the_answer_is_forbidden_and_the_function_is_not_called():
    client, recorder = gateway()
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": KEY[:-1]}):
        response = client.get("/users/u1/feed", headers=headers)
        assert (response.status_code, response.json) == (403, {"message": "Forbidden"})
    assert recorder.events == []
    assert client.get("/docs").status_code == 200
    assert client.get("/users/u1/feed", headers={"X-API-Key": KEY}).status_code == 200


def test_paths_and_methods_the_api_lacks_get_missing_authentication_token():
    client, recorder = gateway()
    for method, path in (("GET", "/nowhere"), ("GET", "/users/u1"), ("POST", "/users/u1/feed"), ("GET", "/users//feed"),
                         ("GET", "/files")):
        response = client.open(path, method=method, headers={"x-api-key": KEY})
        assert (response.status_code, response.json) == (403, {"message": "Missing Authentication Token"}), path
    assert recorder.events == []


def test_the_proxy_event_carries_the_request_as_api_gateway_passes_it():
    client, recorder = gateway()
    response = client.get("/dev/users/a%2Fb%20c/feed?n=5&category=x&category=y%26z&q=red+shoes&empty=",
                          headers={"x-api-key": KEY, "User-Agent": "test-agent"})
    assert response.status_code == 200 and response.json == {"ok": True}
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers["x-amzn-RequestId"]
    (event,) = recorder.events
    assert event["resource"] == "/users/{user_id}/feed" and event["httpMethod"] == "GET"
    # The path stays percent-encoded and without the stage; path parameters are decoded.
    assert event["path"] == "/users/a%2Fb%20c/feed"
    assert event["pathParameters"] == {"user_id": "a/b c"}
    assert event["requestContext"]["path"] == "/dev/users/a%2Fb%20c/feed"
    assert event["requestContext"]["stage"] == "dev"
    assert event["requestContext"]["identity"]["apiKey"] == KEY
    assert event["queryStringParameters"] == {"n": "5", "category": "y&z", "q": "red shoes", "empty": ""}
    assert event["multiValueQueryStringParameters"]["category"] == ["x", "y&z"]
    assert event["headers"]["User-Agent"] == "test-agent"
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert client.get("/users/u1/feed/", headers={"x-api-key": KEY}).status_code == 200
    assert recorder.events[-1]["path"] == "/users/u1/feed"


def test_bodies_pass_as_text_or_base64_and_greedy_paths_take_the_rest():
    client, recorder = gateway()
    client.put("/files/a/b.txt", data="héllo".encode(), headers={"x-api-key": KEY})
    client.post("/files/raw", data=b"\xff\x00", headers={"x-api-key": KEY})
    text, binary = recorder.events
    assert text["pathParameters"] == {"proxy": "a/b.txt"} and text["httpMethod"] == "PUT"
    assert (text["body"], text["isBase64Encoded"]) == ("héllo", False)
    assert (base64.b64decode(binary["body"]), binary["isBase64Encoded"]) == (b"\xff\x00", True)


def test_the_preflight_is_answered_from_the_template_without_the_key_unless_it_asks_for_one():
    cors = Cors("https://shop.example", "GET,OPTIONS", "Content-Type,X-Api-Key", "600")
    client, recorder = gateway(cors=cors)
    response = client.options("/users/u1/feed", headers={"Origin": "https://shop.example"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type,X-Api-Key"
    assert recorder.events == []
    strict, _ = gateway(cors=cors, preflight_key=True)
    assert strict.options("/users/u1/feed").status_code == 403
    uncors, _ = gateway()
    assert uncors.options("/users/u1/feed", headers={"x-api-key": KEY}).status_code == 403


@pytest.mark.parametrize(("answer", "status", "message"), [
    (RuntimeError("boom"), 502, "Internal server error"),
    ({"body": "no status"}, 502, "Internal server error"),
    ("not a response", 502, "Internal server error"),
    ({"statusCode": 200, "body": "!!", "isBase64Encoded": True}, 502, "Internal server error"),
])
def test_a_failing_or_malformed_function_gets_what_api_gateway_answers(answer, status, message):
    def respond(event):
        if isinstance(answer, Exception):
            raise answer
        return answer

    client, _ = gateway(respond)
    response = client.get("/users/u1/feed", headers={"x-api-key": KEY})
    assert (response.status_code, response.json) == (status, {"message": message})


def test_base64_responses_are_decoded_and_statuses_and_headers_pass_through():
    client, _ = gateway(lambda event: {"statusCode": 418, "headers": {"Content-Type": "image/png"},
                                       "body": base64.b64encode(b"\x89PNG").decode(), "isBase64Encoded": True})
    response = client.get("/users/u1/feed", headers={"x-api-key": KEY})
    assert (response.status_code, response.data, response.headers["Content-Type"]) == (418, b"\x89PNG", "image/png")


def test_the_server_answers_over_http_on_loopback():
    function = LocalFunction.from_handler("Fn", Recorder())
    api = RestApi("Api", "dev", (ApiRoute("/ping", "GET", "Fn", True),))
    server = LocalApiServer(ApiGateway(api, lambda _, event: function.invoke(event), api_key=KEY), port=0).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(server.url + "/ping", headers={"x-api-key": KEY})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == {"ok": True}
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(server.url + "/ping", timeout=10)
        assert denied.value.code == 403 and json.load(denied.value) == {"message": "Forbidden"}
    finally:
        server.stop()


def test_a_key_is_forty_letters_and_digits_and_new_each_time():
    keys = {new_api_key() for _ in range(20)}
    assert len(keys) == 20 and all(len(k) == 40 and k.isalnum() for k in keys)
