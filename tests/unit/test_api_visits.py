"""Simulated shoppers visiting the API's feed (`tailor experiments shoppers`): what they send and when."""

from __future__ import annotations

from datetime import UTC, datetime

from tailor.events import MAX_CLOCK_SKEW_SECONDS, parse_event
from tailor_lab.simulator import api_visits


def test_shoppers_act_on_a_feed_after_it_is_served_even_just_after_midnight(monkeypatch):
    served_at = datetime(2026, 12, 7, 0, 0, 30, tzinfo=UTC).timestamp()  # an experiment started at midnight
    monkeypatch.setattr(api_visits.time, "time", lambda: served_at)
    posted: list[dict] = []

    def call(base, key, method, path, body=None):
        if method == "GET":  # the feed: the catalog's first items, under an experiment's feed id
            return {"items": [{"item_id": f"item-{i:05d}"} for i in range(10)], "feed_id": "f-1"}
        posted.extend(body["events"])
        return {"failed": 0}

    monkeypatch.setattr(api_visits, "_call", call)
    done = api_visits.visit_api("http://api", "key", shoppers=30, visits=2, n=10, seed=7)
    assert done.feeds == 60 and done.events == len(posted) > 60 and done.refused == 0
    times = [parse_event(e).epoch for e in posted]
    # Never before the feed was served (so never on the day before), and within the clock skew the API accepts.
    assert min(times) >= served_at and max(times) <= served_at + MAX_CLOCK_SKEW_SECONDS
