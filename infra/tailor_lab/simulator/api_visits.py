"""Simulated shoppers visiting a running Tailor over its API: each asks for its feed, acts on what it is served by the
choice model (tailor_lab.simulator.online's visit: impressions, clicks and carts echoing the feed's id, orders), and
sends what it did back through POST /events, as a shop's front end would. Against a running experiment, the
shoppers are served their variants and Ingest attributes what they do.

Visits are dated in the last minutes (visit k of K about (K - k) x 2.5 minutes ago), so that they fall on the
experiment's days and inside the API's clock-skew allowance.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailor.experiments.feed_ids import parse_feed_id

from .online import act_on_feed
from .simulation import simulate

__all__ = ["Visits", "visit_api"]

EVENTS_PER_POST = 500  # POST /events takes at most 500


@dataclass
class Visits:
    feeds: int = 0
    clicks: int = 0
    orders: int = 0
    events: int = 0
    refused: int = 0
    feed_ids: dict[str, int] = field(default_factory=dict)  # experiment.variant (or "none") -> feeds served


def visit_api(base: str, key: str, *, shoppers: int = 200, visits: int = 2, n: int = 20, seed: int = 7,
              echo: Callable[[str], None] = lambda _: None) -> Visits:
    """`shoppers` simulated shoppers (seed `seed`: the catalog `make run` replays) each visit the feed `visits`
    times, a session each; their events go to POST /events."""
    world = simulate(shoppers=shoppers, days=1.0, seed=seed).world
    assert world is not None
    index = {item_id: i for i, item_id in enumerate(world.catalog.item_ids)}
    done = Visits()
    pending: list[dict[str, Any]] = []
    now_ms = int(time.time() * 1000)
    bought: list[set[int]] = [set() for _ in world.shoppers]
    for visit in range(visits):
        for shopper in world.shoppers:
            rng = np.random.default_rng([seed, 17, shopper.index, visit])
            session = f"s-api-{seed}-{shopper.index:05d}-{visit}-{now_ms}"
            category = int(np.searchsorted(np.cumsum(shopper.affinity), rng.random() * shopper.affinity.sum(),
                                           side="right"))
            category = min(category, len(world.catalog.category_items) - 1)
            query = urllib.parse.urlencode({"n": n, "session_id": session})
            answer = _call(base, key, "GET", f"/users/{urllib.parse.quote(shopper.user_id, safe='')}/feed?{query}")
            # The shopper acts on the feed once it is served, never before: an event dated earlier could fall on a
            # day before its experiment started, whose report would not count it.
            t_ms = int(time.time() * 1000)
            served = [index[item["item_id"]] for item in answer["items"] if item["item_id"] in index]
            feed_id = answer["feed_id"]
            named = parse_feed_id(feed_id)
            label = "none" if named is None else f"{named.experiment_id}.{named.variant}"
            done.feed_ids[label] = done.feed_ids.get(label, 0) + 1
            acted = act_on_feed(world, shopper, served, feed_id, session, category, bought[shopper.index], rng, t_ms)
            done.feeds += 1
            done.clicks += acted.clicks
            done.orders += acted.revenue > 0
            pending += acted.events
            if len(pending) >= EVENTS_PER_POST:
                _send(base, key, pending[:EVENTS_PER_POST], done)
                pending = pending[EVENTS_PER_POST:]
        echo(f"visit {visit + 1} of {visits}: {done.feeds} feeds served, {done.clicks} clicks, {done.orders} orders")
    while pending:
        _send(base, key, pending[:EVENTS_PER_POST], done)
        pending = pending[EVENTS_PER_POST:]
    return done


def _send(base: str, key: str, events: list[dict[str, Any]], done: Visits) -> None:
    answer = _call(base, key, "POST", "/events", {"events": events})
    done.events += len(events)
    done.refused += int(answer.get("failed") or 0)


def _call(base: str, key: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                     headers={"x-api-key": key, "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())
