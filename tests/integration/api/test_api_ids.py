"""Ids with control characters are refused at the door, wherever the API takes an id: queries, bodies and
paths (checked once decoded)."""

import time
from urllib.parse import quote

import pytest


@pytest.mark.parametrize(("path", "field"), [
    ("/users/u-1001/feed?session_id=s%00x", "query session_id"),
    ("/users/u-1001/feed?session_id=s-1%0A", "query session_id"),
    ("/users/u-1001/feed?category=books&category=b%7F", "query category.1"),
    ("/search?q=shoes&user_id=u%C2%85x", "query user_id"),
])
def test_a_control_character_in_an_id_of_the_query_gets_a_422_naming_it(api, path, field):
    answer = api.get(path)
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert any(f"{field}:" in part for part in answer.json["message"].split("; ")), answer.json["message"]


def test_a_control_character_in_an_id_of_a_body_gets_a_422_naming_it(api):
    answer = api.post("/rerank", {"items": ["i-101", "i-1\u0000"]})
    assert answer.status_code == 422, answer.json
    assert "body items.1:" in answer.json["message"]


def test_an_event_with_a_control_character_in_an_id_is_refused_naming_it_and_its_neighbours_are_accepted(api):
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    base = {"session_id": "s-7007", "item_id": "i-101", "event_type": "view", "timestamp": at}
    events = [{**base, "event_id": "evt-7001", "user_id": "u-7007"},
              {**base, "event_id": "evt-7002", "user_id": "u-70\u000007"},
              {**base, "event_id": "evt-7003", "user_id": "u-7007", "item_id": "i-\u001b101"}]
    answer = api.post("/events", {"events": events})
    assert answer.status_code == 200, answer.json
    statuses = answer.json["events"]
    assert [s["status"] for s in statuses] == ["accepted", "refused", "refused"]
    assert statuses[1]["error"].startswith("user_id: a control character (U+0000 at position 4)")
    assert statuses[2]["error"].startswith("item_id: a control character (U+001B at position 2)")


def test_ids_in_any_script_with_format_characters_are_taken(api):
    answer = api.get("/users/u-1001/feed?session_id=" + quote("ü-用户-😀-\u202eevil", safe=""))
    assert answer.status_code == 200, answer.json


@pytest.mark.parametrize("path", ["/users/u%00x/feed", "/users/u-1001%0A/profile", "/items/i%1B1/related"])
def test_a_control_character_percent_encoded_in_an_id_of_the_path_gets_a_422_naming_it(api, path):
    answer = api.get(path)
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert "path " in answer.json["message"], answer.json["message"]
