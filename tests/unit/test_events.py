"""Event schemas: every type parses, and every malformed event is refused with the field and the reason."""

import json

import pytest

from tailor.events import (
    EVENT_TYPES,
    MAX_CLOCK_SKEW_SECONDS,
    MAX_EVENT_DEPTH,
    MAX_ID_LENGTH,
    MAX_LINE_VALUE,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_QUERY_LENGTH,
    EventError,
    load_json,
    parse_event,
)

from tests.helpers.events import kinesis_payloads, load_event

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


def view(**changes):
    return {**BASE, "event_type": "view", "item_id": "i", **changes}


@pytest.mark.parametrize("payload", [
    "[" * 100_000 + "]" * 100_000,
    "{" + '"a":{' * 100_000 + "}" * 100_001,
    json.dumps(view(context=[[[[[[[["eight levels down"]]]]]]]])),
])
def test_json_nested_deeper_than_an_event_is_refused_before_it_is_decoded(payload):
    with pytest.raises(EventError, match=f"nested deeper than {MAX_EVENT_DEPTH} levels"):
        parse_event(payload)


def test_brackets_inside_strings_do_not_count_as_nesting_and_decoded_objects_are_held_to_the_same_depth():
    assert parse_event(json.dumps(view(note='[[[[[[[[[[ "quoted" {{{{{{{{{{'))).item_id == "i"
    assert parse_event(json.dumps(view(context=[[[[[[["seven levels down"]]]]]]]))).item_id == "i"
    with pytest.raises(EventError, match="context.0.0.0.0.0.0.0: nested deeper than 8 levels"):
        parse_event(view(context=[[[[[[[["eight levels down"]]]]]]]]))


@pytest.mark.parametrize(("payload", "words"), [
    ('{"event_id": "e1", "price": NaN}', "NaN is not a JSON number"),
    ('{"event_id": "e1", "price": -Infinity}', "-Infinity is not a JSON number"),
    ('{"event_id": "e1", "quantity": ' + "9" * 5000 + "}", "not valid JSON"),
])
def test_json_that_is_not_json_numbers_is_refused(payload, words):
    with pytest.raises(EventError, match=words):
        parse_event(payload)


def test_non_finite_numbers_in_a_decoded_object_are_refused_naming_where():
    with pytest.raises(EventError, match=r"context.score: inf is not a finite number"):
        parse_event(view(context={"score": float("inf")}))
    with pytest.raises(EventError, match=r"^price: nan is not a finite number"):
        parse_event(view(price=float("nan")))


PURCHASE = {**BASE, "event_type": "purchase", "item_id": "i"}


@pytest.mark.parametrize(("event", "field", "words"), [
    ({**PURCHASE, "price": 1e308, "quantity": 10_000}, "price", f"less than or equal to {MAX_PRICE:.0f}"),
    ({**PURCHASE, "price": MAX_PRICE, "quantity": 101}, "quantity", "above 100000000, the most one order line"),
    ({**PURCHASE, "price": 5.0, "quantity": MAX_QUANTITY + 1}, "quantity", "less than or equal to 10000"),
    ({**BASE, "event_type": "checkout_view", "cart_value": 1e12}, "cart_value", "less than or equal to"),
    ({**BASE, "event_type": "dwell", "item_id": "i", "dwell_ms": 10**20}, "dwell_ms", "less than or equal to"),
    ({**BASE, "event_type": "review_read", "item_id": "i", "duration_ms": 10**12}, "duration_ms", "less than or equal"),
    ({**BASE, "event_type": "zoom", "item_id": "i", "level": 1e300}, "level", "less than or equal to 100"),
    (view(position=10**30), "position", "less than or equal to 10000"),
    (view(timestamp="9999-12-31T00:00:00Z"), "timestamp", "on or after 2100-01-01"),
    (view(timestamp=4_102_444_800), "timestamp", "on or after 2100-01-01"),
    (view(timestamp="1969-12-31T23:59:59Z"), "timestamp", "before 1990-01-01"),
    (view(timestamp=-1), "timestamp", "before 1990-01-01"),
    (view(item_id="i" * (MAX_ID_LENGTH + 1)), "item_id", "at most 256 characters"),
    (view(brand="b" * 257), "brand", "at most 256 characters"),
    ({**BASE, "event_type": "search", "query": "q" * (MAX_QUERY_LENGTH + 1)}, "query", "at most 512 characters"),
    ({**BASE, "event_type": "search", "query": "q", "results": ["i"] * 501}, "results", "at most 500 items"),
    ({**BASE, "event_type": "impression", "item_ids": ["i"] * 501}, "item_ids", "at most 500 items"),
    ({**BASE, "event_type": "spec_compare", "item_id": "i", "compared_with": ["j"] * 51}, "compared_with", "at most 50"),
    ({**BASE, "event_type": "profile", "interests": ["x" * 300]}, "interests.0", "at most 256 characters"),
    ({**BASE, "event_type": "referral", "source": "s", "campaign": "c" * 257}, "campaign", "at most 256"),
])
def test_numbers_dates_and_strings_beyond_what_a_shop_can_mean_are_refused_naming_the_field(event, field, words):
    with pytest.raises(EventError) as caught:
        parse_event(json.dumps(event))
    assert caught.value.reason.startswith(f"{field}:"), caught.value.reason
    assert words in caught.value.reason


@pytest.mark.parametrize(("event", "field", "where"), [
    (view(user_id="u\u0000x"), "user_id", "U+0000 at position 1"),
    (view(session_id="s-\n-1"), "session_id", "U+000A at position 2"),
    (view(item_id="i\u001b[31m"), "item_id", "U+001B at position 1"),
    (view(event_id="e\u007f"), "event_id", "U+007F at position 1"),
    (view(user_id="u\u0085x"), "user_id", "U+0085 at position 1"),
    ({**BASE, "event_type": "impression", "item_ids": ["i", "j\u0000"]}, "item_ids.1", "U+0000 at position 1"),
])
def test_ids_with_control_characters_are_refused_naming_the_field(event, field, where):
    for payload in (event, json.dumps(event)):
        with pytest.raises(EventError) as caught:
            parse_event(payload)
        assert caught.value.reason == f"{field}: a control character ({where}); an id is text without control characters"


def test_ids_in_any_script_with_format_characters_are_accepted():
    event = parse_event(view(user_id="ü-用户-😀-\u202eevil", item_id="item-ñ-é\u0301-🛒"))
    assert (event.user_id, event.item_id) == ("ü-用户-😀-\u202eevil", "item-ñ-é\u0301-🛒")


def test_the_largest_order_line_and_old_backfills_are_accepted():
    line = parse_event({**PURCHASE, "price": MAX_PRICE, "quantity": int(MAX_LINE_VALUE // MAX_PRICE)})
    assert line.price * line.quantity == MAX_LINE_VALUE
    assert parse_event(view(timestamp="1997-03-01T00:00:00Z")).timestamp.year == 1997


def test_an_event_dated_past_the_clock_skew_of_its_arrival_is_refused():
    received = parse_event(view()).epoch
    assert parse_event(view(), received_at=received - MAX_CLOCK_SKEW_SECONDS).epoch == received
    with pytest.raises(EventError, match=r"^timestamp: 301 s after the event was received"):
        parse_event(view(), received_at=received - MAX_CLOCK_SKEW_SECONDS - 1)
    assert parse_event(view(timestamp="2001-01-01T00:00:00Z"), received_at=received).timestamp.year == 2001


def test_load_json_refuses_what_tailor_does_not_take_as_a_json_decode_error():
    assert load_json('{"a": [1, {"b": "]]]]"}]}', max_depth=3) == {"a": [1, {"b": "]]]]"}]}
    for text in ("[[[[1]]]]", '{"a": NaN}', "1" * 5000):
        with pytest.raises(json.JSONDecodeError):
            load_json(text, max_depth=3)
