"""The state the serving benchmarks rank from: a simulated day ingested in memory, copied into the local AWS, and
the shoppers whose feeds they ask for."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from typing import Any

from tailor.embeddings.online import OnlineVectors
from tailor.experiments.assignment import claim_slot
from tailor.experiments.definitions import Experiment, new_experiment
from tailor.experiments.strategies import BUILT_IN
from tailor.ingest.intent import SessionIntent
from tailor.ingest.service import Ingestor, StreamRecord
from tailor.personas.online import PersonaTracker
from tailor.personas.storage import ModelSource
from tailor.store.aws import to_dynamo
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor.store.port import TABLES
from tailor_local.http import proxy_event
from tailor_local.stack import LocalStack

__all__ = ["FEED_N", "UNKNOWN_SHARE", "copy_to_dynamo", "feed_event", "feed_requests", "ingested", "started_experiment"]

FEED_N = 20  # items per feed asked for
UNKNOWN_SHARE = 0.1  # of requests, for shoppers Tailor has never seen (cold-start feeds)


def ingested(events: list[dict[str, Any]], vectors: Any = None) -> MemoryStateStore:
    """The state Ingest makes of `events` (one shard, batches of 100), in memory, as a new stack keeps it: with
    session intent from the shipped intent model, so that feeds weigh associations by intent as deployed, and the
    shoppers' and sessions' traits (no persona model yet), which also settles each batch's evidence notes rather
    than leave them in the rows; with item `vectors` (tailor.embeddings.ItemVectors), the session and shopper
    vectors Ingest keeps in the rows."""
    store = MemoryStateStore()
    intent = SessionIntent.shipped()
    blobs = MemoryBlobStore()
    ingestor = Ingestor(store, blobs, max_workers=1, intent=intent, personas=PersonaTracker(ModelSource(blobs)),
                        vectors=None if vectors is None else OnlineVectors(lambda: vectors))
    base = 49_000_000_000_000_000_000
    records = [StreamRecord("shardId-000000000000", str(base + n), json.dumps(e).encode(), e["user_id"], time.time())
               for n, e in enumerate(events)]
    for start in range(0, len(records), 100):
        outcome = ingestor.ingest(records[start:start + 100])
        if outcome.failed:
            raise RuntimeError(f"ingest failed while building the benchmark's state: {outcome.failed[:3]}")
    store.calls.clear()
    return store


def copy_to_dynamo(state: MemoryStateStore, stack: LocalStack) -> None:
    """Every row of `state` into the stack's tables."""
    assert stack.resources is not None
    client = stack.aws.client("dynamodb")
    for table, rows in state.snapshot().items():
        name = stack.resources.name(f"{table.capitalize()}Table")
        items = [{k: to_dynamo(v) for k, v in row.items()} for row in rows.values()]
        for start in range(0, len(items), 25):
            pending = [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]
            while pending:
                response = client.batch_write_item(RequestItems={name: pending})
                pending = response.get("UnprocessedItems", {}).get(name, [])


def feed_requests(state: MemoryStateStore, count: int, seed: int) -> list[tuple[str, str | None]]:
    """(user, session) pairs: known shoppers in their last session, and some shoppers never seen."""
    rng = random.Random(seed)
    shoppers = sorted(state.snapshot().get("shoppers", {}).values(), key=lambda row: row[TABLES["shoppers"]])
    known = [(row["user_id"], row.get("last_session_id")) for row in shoppers if "first_seen" in row]
    if not known:
        raise RuntimeError("the simulated state has no shoppers")
    return [(f"u-unknown-{n}", None) if rng.random() < UNKNOWN_SHARE else rng.choice(known) for n in range(count)]


def feed_event(user: str, session: str | None) -> dict[str, Any]:
    """The API Gateway event of a request for `user`'s feed of FEED_N, in `session` if given."""
    query = [("n", str(FEED_N))] + ([("session_id", session)] if session else [])
    return proxy_event("GET", f"/users/{user}/feed", resource="/users/{user_id}/feed",
                       path_parameters={"user_id": user}, query=query, headers=[("x-api-key", "bench")],
                       api_key="bench")


def started_experiment(definition: dict[str, Any], now: dt.datetime) -> Experiment:
    """An experiment on the feed, started an hour before `now`."""
    experiment = new_experiment({**definition, "start": (now - dt.timedelta(hours=1)).isoformat()}, now=now,
                                known_strategies=set(BUILT_IN))
    return experiment.started(now, claim_slot(experiment, []))
