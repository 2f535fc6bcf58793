"""What one ranking request may ask for: each rule in tailor.ranking.limits, refused by the domain objects that carry
it with a RequestError naming the field, the error the API answers as a 422."""

from __future__ import annotations

import math

import pytest

from tailor.events import parse_event
from tailor.ranking import MAX_ITEMS, MAX_SESSION_EVENTS, Filters, Request, RequestError

EVENT = {"event_id": "e-1", "user_id": "u-1", "session_id": "s-1", "event_type": "view", "item_id": "lamp-1",
         "timestamp": "2026-11-02T12:00:00Z"}


def refusal(build, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as raised:
        build(*args, **kwargs)
    return raised.value


@pytest.mark.parametrize(("low", "high"), [(None, None), (0.0, None), (None, 0.0), (5.0, 5.0), (1.0, 2.0)])
def test_a_price_range_the_right_way_up_is_taken(low, high):
    filters = Filters(min_price=low, max_price=high)
    assert (filters.min_price, filters.max_price) == (low, high)


def test_a_price_range_upside_down_is_refused_naming_max_price():
    error = refusal(Filters, min_price=10.0, max_price=5.0)
    assert (error.field, error.kind, error.message) == ("max_price", "price_range", "max_price is below min_price")
    assert isinstance(error, ValueError) and str(error) == "max_price: max_price is below min_price"


@pytest.mark.parametrize("value", [-0.01, math.nan, math.inf])
@pytest.mark.parametrize("name", ["min_price", "max_price"])
def test_a_price_bound_is_a_non_negative_number(name, value):
    assert refusal(Filters, **{name: value}).field == name


def test_base_scores_are_one_finite_score_per_item():
    assert Request("rerank", items=("a", "b"), base_scores=(1.0, 0.0)).base_scores == (1.0, 0.0)
    short = refusal(Request, "rerank", items=("a", "b"), base_scores=(1.0,))
    assert (short.field, short.kind, short.message) == (
        "base_scores", "length_mismatch", "base_scores needs one score per item (2 items)")
    assert refusal(Request, "rerank", items=("a", "b"), base_scores=(1.0, 2.0, 3.0)).kind == "length_mismatch"
    assert refusal(Request, "rerank", items=("a", "b"), base_scores=(1.0, math.nan)).field == "base_scores"


def test_a_request_hands_over_at_most_max_items_items():
    items = tuple(f"i-{k}" for k in range(MAX_ITEMS))
    assert len(Request("rerank", items=items).items) == MAX_ITEMS
    error = refusal(Request, "rerank", items=(*items, "one-more"))
    assert error.field == "items" and f"at most {MAX_ITEMS}" in error.message


def test_a_described_session_holds_at_most_max_session_events_events():
    event = parse_event(EVENT)
    taken = Request("related", item_id="lamp-1", session_events=(event,) * MAX_SESSION_EVENTS)
    assert len(taken.session_events) == MAX_SESSION_EVENTS
    error = refusal(Request, "related", item_id="lamp-1", session_events=(event,) * (MAX_SESSION_EVENTS + 1))
    assert error.field == "session_events" and f"at most {MAX_SESSION_EVENTS}" in error.message
