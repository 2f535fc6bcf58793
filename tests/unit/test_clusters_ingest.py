"""Ingest's fold keeps each session's cluster posteriors: a feed's impression and its clicks count exactly once,
whether the stream delivers the batch again or the producer sends an event twice."""

from __future__ import annotations

import numpy as np

from tailor.clusters import BanditParams, ClusterPosteriors, ItemClusters
from tailor.clusters.model import TRAIT_NAMES
from tailor.clusters.session import SessionClusters

from tests.helpers.ingest import UnreadableBlobs, fold, written

PARAMS = BanditParams(ignore_weight=0.25)
CLUSTERS = ItemClusters(ids=("c0000", "c0001"), centroids=np.eye(2), descriptors=np.zeros((2, len(TRAIT_NAMES))),
                        global_ctr=np.array([0.05, 0.05]),
                        members={"item-a": "c0000", "item-b": "c0001", "item-c": "c0000"},
                        top_items={}, neighbours={"c0000": (), "c0001": ()})


def _event(n: int, kind: str, **extra) -> dict:
    return {"event_id": f"e-{n}", "user_id": "u-1", "session_id": "s-1",
            "timestamp": f"2026-12-01T10:00:{n:02d}Z", "event_type": kind, **extra}


EVENTS = [_event(1, "impression", item_ids=["item-a", "item-b", "item-c"], feed_id="feed-1"),
          _event(2, "click", item_id="item-c", feed_id="feed-1", position=2),
          _event(3, "impression", item_ids=["item-a"]),  # a listing, not a feed: no arm of the bandit
          _event(4, "click", item_id="item-b", feed_id="feed-1", position=1)]


def _fold(events, rows, start):
    return fold(events, rows, start, clusters=SessionClusters(CLUSTERS, PARAMS))


def _expected() -> dict:
    posteriors = ClusterPosteriors()
    posteriors.observe("feed-1", ["c0000", "c0001", "c0000"], clicks=[1, 2], params=PARAMS)
    return posteriors.encode()


def test_the_session_keeps_its_feeds_clicks_and_ignores():
    rows = written(_fold(EVENTS, {"sessions": {}, "shoppers": {}}, 0))
    kept = rows["sessions"]["s-1"]["clusters"]
    assert kept == _expected() == "c0000,100,100,c0001,100,0|1,2|c0000,c0001,c0000,|feed-1"
    assert ClusterPosteriors.decode(kept).evidence == {"c0000": [1.0, 1.0], "c0001": [1.0, 0.0]}


def test_a_session_row_written_as_a_map_goes_on_from_its_evidence():
    first = written(_fold(EVENTS[:2], {"sessions": {}, "shoppers": {}}, 0))
    # As rows were written before the evidence became one string: a map of lists.
    first["sessions"]["s-1"]["clusters"] = {"e": {"c0000": [1.0, 1.0], "c0001": [0.0, 1.0]}, "f": "feed-1",
                                            "p": ["c0000", "c0001", "c0000"], "k": [2]}
    again = written(_fold(EVENTS, first, 0), first)
    assert again["sessions"]["s-1"]["clusters"] == _expected()


def test_a_redelivered_batch_and_a_producers_duplicate_count_once():
    first = written(_fold(EVENTS[:2], {"sessions": {}, "shoppers": {}}, 0))
    again = written(_fold(EVENTS, first, 0), first)  # the stream delivers the first two again, then the rest
    assert again["sessions"]["s-1"]["clusters"] == _expected()
    next_feed = _event(20, "impression", item_ids=["item-b"], feed_id="feed-2")
    moved = written(_fold([next_feed], again, 10), again)
    expected = ClusterPosteriors.decode(_expected())
    expected.impression("feed-2", ["c0001"], PARAMS)
    assert moved["sessions"]["s-1"]["clusters"] == expected.encode()
    # The producer sends the first feed's impression again: it is not a new feed to decay the evidence for.
    duplicate = dict(EVENTS[0], timestamp="2026-12-01T10:00:30Z")
    twice = written(_fold([duplicate], moved, 20), moved)
    assert twice["sessions"]["s-1"]["clusters"] == expected.encode()


def test_without_clusters_the_session_keeps_none():
    folded = fold(EVENTS, {"sessions": {}, "shoppers": {}}, 0)
    assert written(folded)["sessions"]["s-1"]["clusters"] == ""


def test_ingest_loads_the_published_clusters_at_the_first_feed_event_and_once():
    from tailor.clusters import FORMAT, MODEL_NAME, PublishedClusters
    from tailor.models import ModelRegistry
    from tailor.store.memory import MemoryBlobStore

    class Counting(MemoryBlobStore):
        reads = 0

        def get(self, key):
            Counting.reads += 1
            return super().get(key)

    blobs = Counting()
    ModelRegistry(blobs).publish(MODEL_NAME, CLUSTERS.to_json().encode(), {"format": FORMAT})
    Counting.reads = 0
    published = PublishedClusters(ModelRegistry(blobs))
    sessions = SessionClusters(published, PARAMS)
    fold(EVENTS[2:3], {"sessions": {}, "shoppers": {}}, 0, clusters=sessions)
    assert not published.loaded and Counting.reads == 0  # no feed's event yet: the registry is not read
    folded = fold(EVENTS, {"sessions": {}, "shoppers": {}}, 0, clusters=sessions)
    assert written(folded)["sessions"]["s-1"]["clusters"] == _expected()
    reads = Counting.reads
    assert published.loaded and reads > 0
    fold(EVENTS, {"sessions": {}, "shoppers": {}}, 0, clusters=sessions)
    assert Counting.reads == reads  # once per container


def test_with_nothing_published_ingest_keeps_no_cluster_evidence():
    from tailor.clusters import PublishedClusters
    from tailor.models import ModelRegistry
    from tailor.store.memory import MemoryBlobStore

    folded = fold(EVENTS, {"sessions": {}, "shoppers": {}}, 0,
                  clusters=SessionClusters(PublishedClusters(ModelRegistry(MemoryBlobStore())), PARAMS))
    assert written(folded)["sessions"]["s-1"]["clusters"] == ""


def test_ingest_picks_up_a_rebuild_at_its_next_look():
    from tailor.clusters import FORMAT, MODEL_NAME, PublishedClusters
    from tailor.models import ModelRegistry
    from tailor.store.memory import MemoryBlobStore

    registry = ModelRegistry(MemoryBlobStore())
    now = [0.0]
    published = PublishedClusters(registry, refresh_seconds=60, clock=lambda: now[0])
    assert published() is None  # nothing published yet
    registry.publish(MODEL_NAME, CLUSTERS.to_json().encode(), {"format": FORMAT, "trained_at": "2026-12-01T00:00:00Z"})
    now[0] = 30.0
    assert published() is None  # not looked again yet
    now[0] = 61.0
    assert published().ids == CLUSTERS.ids
    registry.publish(MODEL_NAME, b"{}", {"format": "broken", "trained_at": "2026-12-02T00:00:00Z"})
    now[0] = 130.0
    assert published().ids == CLUSTERS.ids  # a version it cannot use: what it had stays


def test_a_registry_that_cannot_be_read_before_anything_is_loaded_raises_and_is_read_again():
    import pytest

    from tailor.clusters import FORMAT, MODEL_NAME, PublishedClusters
    from tailor.models import ModelRegistry, RegistryUnreadable

    blobs = UnreadableBlobs()
    registry = ModelRegistry(blobs)
    registry.publish(MODEL_NAME, CLUSTERS.to_json().encode(), {"format": FORMAT, "trained_at": "2026-12-01T00:00:00Z"})
    now = [0.0]
    published = PublishedClusters(registry, refresh_seconds=60, clock=lambda: now[0])
    blobs.failing = True
    with pytest.raises(RegistryUnreadable):  # Ingest's batch is delivered again rather than folded without them
        published()
    assert not published.loaded
    blobs.failing = False
    assert published().ids == CLUSTERS.ids  # read again at once, not a refresh later
    registry.publish(MODEL_NAME, CLUSTERS.to_json().encode(), {"format": FORMAT, "trained_at": "2026-12-02T00:00:00Z"})
    blobs.failing, now[0] = True, 61.0
    assert published().ids == CLUSTERS.ids  # loaded already: kept while the registry cannot be read


def test_an_unreadable_registry_at_a_batchs_first_feed_event_fails_the_batch_and_quarantines_nothing():
    from tailor.clusters import FORMAT, MODEL_NAME, PublishedClusters
    from tailor.ingest.service import Ingestor
    from tailor.models import ModelRegistry
    from tailor.store.memory import MemoryBlobStore, MemoryStateStore

    from tests.helpers.events import to_records

    registry_blobs = UnreadableBlobs()
    ModelRegistry(registry_blobs).publish(MODEL_NAME, CLUSTERS.to_json().encode(), {"format": FORMAT})
    registry_blobs.failing = True
    archive = MemoryBlobStore()
    ingest = Ingestor(MemoryStateStore(), archive, max_workers=1,
                      clusters=SessionClusters(PublishedClusters(ModelRegistry(registry_blobs)), PARAMS))
    records = to_records(EVENTS)
    outcome = ingest.ingest(records)
    # The lazy read at the first feed event is the store's fault, not the event's: nothing is quarantined.
    assert len(outcome.failed) == len(records) and outcome.quarantined == 0
    assert not archive.list("quarantine/")
    registry_blobs.failing = False
    assert ingest.ingest(records).failed == []
    assert ingest.store.snapshot()["sessions"]["s-1"]["clusters"] == _expected()


def test_a_session_row_is_the_same_however_the_stream_cuts_its_events_into_batches():
    params = BanditParams(ignore_weight=0.15, decay=0.8)  # counts that need rounding after every feed
    events = [_event(n * 3 + 1, "impression", item_ids=["item-a", "item-b", "item-c"], feed_id=f"feed-{n}")
              for n in range(8)]
    for n in range(8):
        events.insert(n * 2 + 1, _event(n * 3 + 2, "click", item_id="item-c", feed_id=f"feed-{n}", position=2 - n % 3))
    sessions = SessionClusters(CLUSTERS, params)
    whole = written(fold(events, {"sessions": {}, "shoppers": {}}, 0, clusters=sessions))
    one_by_one: dict = {"sessions": {}, "shoppers": {}}
    for n, event in enumerate(events):
        one_by_one = written(fold([event], one_by_one, n, clusters=sessions), one_by_one)
    assert whole["sessions"]["s-1"]["clusters"] == one_by_one["sessions"]["s-1"]["clusters"]
    assert ClusterPosteriors.decode(whole["sessions"]["s-1"]["clusters"]).evidence["c0001"][1] > 0
