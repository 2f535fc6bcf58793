"""Ingest with every optional feature on at once (session intent, personas, experiment attribution, session clusters,
session and shopper vectors), with and without the counter buffer: replays, cut batches, failed writes and crashes
leave the rows of one clean pass. What personas keep depends a little on where the stream cuts its batches (item
counters take the mixture as it stood before the batch, traits are rounded once a batch), so of those the test holds
what does not: each record counted once, and traits and mixtures within their rounding."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from tailor.clusters import BanditParams, ItemClusters
from tailor.clusters.model import TRAIT_NAMES
from tailor.clusters.session import SessionClusters
from tailor.embeddings import ItemVectors, VectorUpdate
from tailor.embeddings.online import OnlineVectors
from tailor.experiments.attribution import OUTCOMES_TABLE, Attribution
from tailor.experiments.feed_ids import new_feed_id
from tailor.ingest.buffer import cursor_id
from tailor.ingest.intent import SessionIntent
from tailor.ingest.merge import MERGE_ID, CounterMerge
from tailor.ingest.service import Ingestor
from tailor.intent import MODEL_NAME as INTENT_MODEL
from tailor.intent import IntentModel
from tailor.models import load_model
from tailor.personas.features import FeatureSpace
from tailor.personas.online import COUNTERS, DWELL_EVENTS, PersonaTracker
from tailor.personas.storage import ModelSource
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers.events import SHARD, random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, deliver, state_rows
from tests.unit.test_personas import blobs_model

ITEMS = [f"i{k}" for k in range(16)]
# Most items have a vector and a cluster; i0 and i1 have a vector only, i13 to i15 a cluster only.
VECTORS = ItemVectors.build(ITEMS[:13], np.random.default_rng(0).normal(size=(13, 4)).astype(np.float32),
                            metadata={"version": "all-features"})
CLUSTERS = ItemClusters(ids=("c0000", "c0001", "c0002"), centroids=np.eye(3),
                        descriptors=np.zeros((3, len(TRAIT_NAMES))), global_ctr=np.array([0.05, 0.08, 0.03]),
                        members={item: f"c{k % 3:04d}" for k, item in enumerate(ITEMS[2:])},
                        top_items={}, neighbours={"c0000": (), "c0001": (), "c0002": ()})
PERSONAS = blobs_model(k=3, space=FeatureSpace(("c0", "c1", "c2"), {}, {"*": np.linspace(0, 60, 13)}))
INTENT = SessionIntent(load_model(INTENT_MODEL, build=IntentModel.from_stored))
# An item's own counter beside each persona-weighted one (tailor.personas.online.COUNTERS): views beside pv:<persona>.
OWN_COUNTERS = {"pi": "impressions", "pv": "views", "pc": "clicks", "pa": "carts", "pp": "purchases",
                DWELL_EVENTS: "dwells", "pd": "dwell_ms"}


def all_features(store, blobs, *, buffer: bool, max_workers: int) -> Ingestor:
    rule = VectorUpdate(decay=0.5, ignore_weight=0.2, unseen_share=0.5)
    return Ingestor(store, blobs, max_workers=max_workers, buffer=buffer, intent=INTENT,
                    personas=PersonaTracker(ModelSource.fixed(PERSONAS)), attribution=Attribution(3600, shards=4),
                    clusters=SessionClusters(CLUSTERS, BanditParams(ignore_weight=0.2, decay=0.8)),
                    vectors=OnlineVectors(lambda: VECTORS, rule))


def feed_events(seed: int, n: int) -> list[dict]:
    """random_events on ITEMS with several sessions a shopper, where most shoppers are units of experiment "exp-1"
    (variant by user) or of the interleaved "exp-2": an impression (and a view in four) shows a new list of theirs
    (or the last one again), clicks and cart adds mostly land on an item of their last list echoing its feed id and
    position, and some purchases echo it too."""
    rng = random.Random(seed)
    units: dict[str, tuple] = {}
    shown: dict[str, tuple[str, list[str]]] = {}  # user -> the last list they were shown

    def new_list(user: str) -> str:
        experiment, variant, credits = units[user]
        feed = new_feed_id(experiment, variant, "u", credits=credits, scale=32)
        return feed[:-32] + f"{rng.getrandbits(128):032x}"  # its random token drawn from the seed

    out: list[dict] = []
    for k, event in enumerate(random_events(seed, n, users=7, items=len(ITEMS))):
        if out and event["event_id"] == out[-1]["event_id"]:
            # The producer sent it twice: the same event, or (see the test below) under another session of theirs.
            copy = dict(out[-1])
            if rng.random() < 0.3:
                copy["session_id"] = f"{copy['user_id']}-copy{k}"
            out.append(copy)
            continue
        user, kind = event["user_id"], event["event_type"]
        if rng.random() < 0.04:  # another session of theirs
            event["session_id"] = f"{user}-s{k}"
        if user not in units:
            units[user] = (None, None, None) if rng.random() < 0.15 else \
                ("exp-2", None, [rng.randint(-99, 99) for _ in range(6)]) if int(user[1:]) % 3 == 0 else \
                ("exp-1", "AB"[int(user[1:]) % 2], None)
        if units[user][0] is not None and (kind == "impression" or kind == "view" and rng.random() < 0.25):
            feed = shown[user][0] if user in shown and rng.random() < 0.2 else new_list(user)
            event = {**{name: event[name] for name in ("event_id", "user_id", "session_id", "timestamp")},
                     "event_type": "impression", "item_ids": rng.sample(ITEMS, rng.randint(2, 6)), "feed_id": feed}
            shown[user] = (feed, event["item_ids"])
        elif kind in ("click", "add_to_cart") and user in shown and rng.random() < 0.75:
            feed, items = shown[user]
            position = rng.randrange(len(items))
            event.update(item_id=items[position], feed_id=feed, position=position)
        elif kind == "purchase" and user in shown and rng.random() < 0.4:
            event["feed_id"] = shown[user][0]
        out.append(event)
    return out


def final_rows(store: MemoryStateStore, buffer: bool) -> tuple[dict, dict]:
    """The store's rows once the buffer is merged, but for the buffer's own (its slots, cursor and merge row, which
    count deliveries); and apart from them, what personas keep (see the module doc), by (table, key)."""
    if buffer:
        CounterMerge(store, max_workers=1).run()
    rows = state_rows(store)
    rows.pop("buffers", None)
    for key in (cursor_id(SHARD), MERGE_ID):
        rows.get("checkpoints", {}).pop(key, None)
    personas: dict[tuple[str, str], dict] = {}
    for key, row in rows["items"].items():
        found = {name: row.pop(name) for name in list(row) if name.split(":")[0] in OWN_COUNTERS}
        personas[("items", key)] = found
    for table in ("sessions", "shoppers"):
        for key, row in rows[table].items():
            personas[(table, key)] = row.pop("personas")
    return rows, personas


def assert_each_record_counted_once(rows: dict, personas: dict) -> None:
    """An item's persona-weighted counters add up, over the personas, to its own counter (every mixture of the test's
    model gives every persona a counted share, rounded to 4 places), and its shoppers' personas note the same
    evidence as one clean pass does."""
    for key, row in rows["items"].items():
        totals: dict[str, float] = defaultdict(float)
        for name, amount in personas[("items", key)].items():
            totals[name.split(":")[0]] += amount
        for prefix, own in OWN_COUNTERS.items():
            expected = row.get(own, 0) / (1000.0 if prefix == "pd" else 1.0)
            assert totals[prefix] == pytest.approx(expected, rel=1e-3, abs=1e-9), (key, prefix)


def assert_same_personas(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for (table, key), kept in got.items():
        if table == "items":
            continue  # held by assert_each_record_counted_once
        expected = want[(table, key)]
        assert {k: v for k, v in kept.items() if k not in ("traits", "mixture")} == \
            {k: v for k, v in expected.items() if k not in ("traits", "mixture")}, (table, key)
        assert kept.get("traits", {}).keys() == expected.get("traits", {}).keys()
        for trait, posterior in kept.get("traits", {}).items():  # rounded to 6 places once a batch
            assert posterior == pytest.approx(expected["traits"][trait], abs=2e-5), (table, key, trait)
        assert kept.get("mixture", {}).keys() == expected.get("mixture", {}).keys()
        for persona, share in kept.get("mixture", {}).items():  # from traits rounded once a batch
            assert share == pytest.approx(expected["mixture"][persona], abs=1e-4), (table, key, persona)


def assert_every_feature_ran(rows: dict, personas: dict) -> None:
    sessions, shoppers = rows["sessions"].values(), rows["shoppers"].values()
    assert sum(1 for s in sessions if s["vector"] and s["clusters"] and set(s["intent"])) >= 10
    assert all(s["vector"] for s in shoppers)
    assert sum(1 for s in shoppers if s["sessions"] >= 2 and s["experiments"]) >= 4
    assert {key.split("#")[2] for key in rows[OUTCOMES_TABLE]} == {"A", "B", "interleaved"}
    assert sum(s["purchases"] for s in shoppers) >= 5 and rows["associations"]
    assert all(p.get("mixture") for (table, _), p in personas.items() if table == "shoppers")
    assert sum(1 for (table, _), p in personas.items() if table == "items" and "pc:10" in p) >= 10
    assert set(COUNTERS.values()) <= set(OWN_COUNTERS)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("buffer", [False, True])
def test_replays_failures_and_crashes_with_every_feature_on_leave_the_rows_of_one_clean_pass(seed, buffer):
    events = feed_events(seed, 300)
    expected = MemoryStateStore()
    assert not all_features(expected, MemoryBlobStore(), buffer=buffer, max_workers=1).ingest(to_records(events)).failed

    rng = random.Random(seed)
    store = FlakyStateStore(MemoryStateStore(), rng, rate=0.08)
    calls = deliver(all_features(store, FlakyBlobStore(rng, rate=0.05), buffer=buffer, max_workers=4),
                    to_records(events), rng, crash_rate=0.15)

    assert calls > 20  # failures really happened and were retried
    (got, got_personas), (want, want_personas) = final_rows(store.inner, buffer), final_rows(expected, buffer)
    assert_every_feature_ran(want, want_personas)
    assert got == want
    for rows, personas in ((got, got_personas), (want, want_personas)):
        assert_each_record_counted_once(rows, personas)
    assert_same_personas(got_personas, want_personas)


class _ShopperAckLost(MemoryStateStore):
    """A store whose first shopper-row write lands and then times out, as a lost acknowledgement does."""

    lost = False

    def write_state(self, table, key, fields, **kwargs):
        super().write_state(table, key, fields, **kwargs)
        if table == "shoppers" and not self.lost:
            self.lost = True
            raise TimeoutError("timed out after the write landed")


def test_a_producers_copy_under_another_session_pulls_that_sessions_vector_alike_on_a_replay():
    # The copy of "x" comes under s-1, its original under s-2. The shopper row has seen "x" (in one pass, or from the
    # first delivery on a replay whose session rows waited for it): the copy is not counted again, while s-1, which
    # has not seen it, folds it, its vector pulled at s-1's intent factor either way.
    views = [("s-1", "i1", "e1"), ("s-1", "i2", "e2"), ("s-2", "i3", "x"), ("s-1", "i4", "x")]
    events = [{"event_id": event_id, "user_id": "u-1", "session_id": session, "event_type": "view", "item_id": item,
               "timestamp": f"2026-12-01T10:00:0{n}Z"} for n, (session, item, event_id) in enumerate(views)]
    clean = MemoryStateStore()
    assert not all_features(clean, MemoryBlobStore(), buffer=False, max_workers=1).ingest(to_records(events)).failed
    store = _ShopperAckLost()
    ingestor = all_features(store, MemoryBlobStore(), buffer=False, max_workers=1)
    assert ingestor.ingest(to_records(events)).failed and not state_rows(store).get("sessions")
    assert not ingestor.ingest(to_records(events)).failed
    assert state_rows(store) == state_rows(clean)
