"""Event schemas: every type parses, and every malformed event is refused with the field and the reason."""

import json

import pytest

from tailor.events import EVENT_TYPES, EventError, parse_event
from conftest import kinesis_payloads, load_event

BASE = {"event_id": "e1", "user_id": "u1", "session_id": "s1", "timestamp": "2026-11-02T10:00:00Z"}


def test_sample_batch_covers_every_event_type():
    parsed = []
    for payload in kinesis_payloads(load_event("ingest-kinesis-batch.json")):
        try:
            parsed.append(parse_event(payload))
        except EventError:
            pass
    assert {e.event_type for e in parsed} == set(EVENT_TYPES)


@pytest.mark.parametrize(
    "payload, field, words",
    [
        (b"{not json", "JSON", "not valid JSON"),
        (json.dumps({**BASE, "event_type": "view"}).encode(), "item_id", "Field required"),
        (json.dumps({k: v for k, v in {**BASE, "event_type": "view", "item_id": "i"}.items() if k != "user_id"}), "user_id", "Field required"),
        (json.dumps({**BASE, "event_type": "teleport"}), "event_type", "unknown event type 'teleport'"),
        (json.dumps({**BASE, "event_type": "purchase", "item_id": "i", "price": -5}), "price", "greater than or equal to 0"),
        (json.dumps({**BASE, "event_type": "add_to_cart", "item_id": "i", "quantity": "two"}), "quantity", "valid integer"),
        (json.dumps({**BASE, "event_type": "view", "item_id": 42}), "item_id", "valid string"),
        (json.dumps({**BASE, "timestamp": "2026-11-02T10:00:00", "event_type": "view", "item_id": "i"}), "timestamp", "timezone"),
        (json.dumps({**BASE, "event_type": "scroll", "depth": 1.5}), "depth", "less than or equal to 1"),
        (json.dumps([1, 2]), "JSON object", "list"),
        (json.dumps({**BASE}), "event_type", "required"),
    ],
)
def test_malformed_events_are_refused_with_field_and_reason(payload, field, words):
    with pytest.raises(EventError) as caught:
        parse_event(payload)
    assert field in caught.value.reason
    assert words in caught.value.reason


def test_numbers_in_json_strings_for_ids_are_refused_but_iso_and_epoch_times_accepted():
    event = parse_event({**BASE, "timestamp": 1793613600, "event_type": "view", "item_id": "i"})
    assert event.epoch == 1793613600
    assert parse_event({**BASE, "timestamp": "2026-11-02T11:00:00+01:00", "event_type": "view", "item_id": "i"}).epoch == parse_event({**BASE, "event_type": "view", "item_id": "i"}).epoch
