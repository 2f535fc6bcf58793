"""Ingest's fold keeps each session's and shopper's vector in their rows: engagements pull it toward their item's
vector (by event type and session intent), ignored impressions push it away, exactly once whether the stream
delivers a batch again, cuts it in parts, or the producer sends an event twice; the feed queries with it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tailor.embeddings import MODEL_NAME, ItemVectors, VectorUpdate, update_vector
from tailor.embeddings.online import OnlineVectors, stored_vector, vectors_tag
from tailor.events import parse_event
from tailor.ingest.fold import fold_batch
from tailor.ingest.intent import SessionIntent
from tailor.ingest.service import Ingestor
from tailor.intent import MODEL_NAME as INTENT_MODEL
from tailor.intent import IntentModel
from tailor.models import ModelRegistry, load_model
from tailor.ranking import Filters, Request
from tailor.ranking.candidates import EmbeddingSource
from tailor.ranking.context import RankingContext
from tailor.session import SessionState
from tailor.shopper import ShopperState
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers.events import random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, deliver, fold, state_rows, written

RULE = VectorUpdate(decay=0.5, ignore_weight=0.2, unseen_share=0.5)
ITEMS = ["lamp-1", "lamp-2", "lamp-3", "book-1", "book-2", "book-3"]
MATRIX = np.array([[1.0, 0.1], [0.9, 0.2], [0.8, 0.3], [0.1, 1.0], [0.2, 0.9], [0.3, 0.8]], dtype=np.float32)
VECTORS = ItemVectors.build(ITEMS, MATRIX, metadata={"version": "v1"})


def _event(n: int, kind: str, user: str = "u-1", session: str = "s-1", **extra) -> dict:
    return {"event_id": f"e-{user}-{n}", "user_id": user, "session_id": session,
            "timestamp": f"2026-12-01T10:{n // 60:02d}:{n % 60:02d}Z", "event_type": kind, **extra}


EVENTS = [_event(1, "view", item_id="lamp-1"),
          _event(2, "impression", item_ids=["book-1", "lamp-2", "book-2", "lamp-3"], feed_id="feed-1"),
          _event(3, "click", item_id="book-2", feed_id="feed-1", position=2),
          _event(4, "add_to_cart", item_id="book-2", feed_id="feed-1", position=2),
          _event(5, "impression", item_ids=["book-3"], feed_id="feed-2")]


def _fold(events, rows, start, *, online=None, intent=None):
    return fold(events, rows, start, intent=intent, vectors=online or OnlineVectors(lambda: VECTORS, RULE))


EMPTY = {"sessions": {}, "shoppers": {}}


def _by_hand() -> np.ndarray:
    """The rule applied to EVENTS: the view and the click pull; the click settles the two items above it as ignored
    (book-1, lamp-2); the cart add pulls again; feed-2's impression settles feed-1's unclicked rest (lamp-3) as
    rendered and never engaged."""
    v = VECTORS.vector
    current = update_vector(None, v("lamp-1"), "view", rule=RULE)
    for item in ("book-1", "lamp-2"):
        current = update_vector(current, v(item), "ignore", rule=RULE)
    current = update_vector(current, v("book-2"), "click", rule=RULE)
    current = update_vector(current, v("book-2"), "add_to_cart", rule=RULE)
    return update_vector(current, v("lamp-3"), "ignore", rule=RULE, intent_factor=RULE.unseen_share)


def test_engagements_pull_and_ignores_push_the_session_and_the_shopper_vector():
    rows = written(_fold(EVENTS, EMPTY, 0))
    expected = _by_hand()
    for table, key in (("sessions", "s-1"), ("shoppers", "u-1")):
        kept = rows[table][key]["vector"]
        assert kept["m"] == vectors_tag(VECTORS) and kept["f"] == "feed-2" and kept["p"] == "book-3"
        found = stored_vector(kept, VECTORS)
        assert np.allclose(found, expected, atol=0.02 * np.abs(expected).max())
    # Without the ignores the vector would lie closer to the lamps it passed over.
    pulled_only = update_vector(update_vector(update_vector(None, VECTORS.vector("lamp-1"), "view", rule=RULE),
                                              VECTORS.vector("book-2"), "click", rule=RULE),
                                VECTORS.vector("book-2"), "add_to_cart", rule=RULE)
    lamp = VECTORS.vector("lamp-2")
    found = stored_vector(rows["sessions"]["s-1"]["vector"], VECTORS)
    assert found @ lamp / np.linalg.norm(found) < pulled_only @ lamp / np.linalg.norm(pulled_only)


def test_a_redelivered_or_cut_batch_and_a_producers_duplicate_leave_the_same_bytes():
    whole = written(_fold(EVENTS, EMPTY, 0))
    first = written(_fold(EVENTS[:2], EMPTY, 0))
    again = written(_fold(EVENTS, first, 0), first)  # the stream delivers the first two again, then the rest
    parts = written(_fold(EVENTS[3:], written(_fold(EVENTS[:3], EMPTY, 0)), 3))
    replayed = written(_fold(EVENTS, whole, 0), whole)  # all of it again: the rows hold it already
    duplicate = written(_fold([dict(EVENTS[3], timestamp="2026-12-01T10:00:09Z")], whole, 10), whole)
    for table, key in (("sessions", "s-1"), ("shoppers", "u-1")):
        for other in (again, parts, replayed, duplicate):
            assert other[table][key]["vector"] == whole[table][key]["vector"]


def test_a_feed_rendered_again_after_its_items_are_settled_is_not_a_new_feed_in_any_later_batch():
    events = [_event(1, "impression", item_ids=["book-1", "lamp-2"], feed_id="feed-1"),
              _event(2, "click", item_id="lamp-2", feed_id="feed-1", position=1),  # settles book-1 as passed over
              _event(3, "impression", item_ids=["book-1", "lamp-2"], feed_id="feed-1"),  # the same feed, again
              _event(4, "impression", item_ids=["book-3"], feed_id="feed-2")]
    whole = written(_fold(events, EMPTY, 0))
    first = written(_fold(events[:2], EMPTY, 0))
    assert first["sessions"]["s-1"]["vector"]["f"] == "feed-1"  # every item settled, the feed still known
    split = written(_fold(events[2:], first, 2), first)
    for table, key in (("sessions", "s-1"), ("shoppers", "u-1")):
        assert split[table][key]["vector"] == whole[table][key]["vector"]


def test_a_session_that_expires_within_a_batch_starts_its_vector_afresh_as_across_batches():
    events = [_event(1, "view", item_id="lamp-1"),
              {**_event(2, "view", item_id="book-1"), "timestamp": "2026-12-03T10:00:00Z"}]  # two days on
    accepted = [(f"{n:08d}", parse_event(e)) for n, e in enumerate(events)]
    arrivals = {pos: event.epoch for pos, event in accepted}  # each arriving when it happened

    def folded(batch, rows):
        return fold_batch(batch, rows, "shard-1", ttl=86_400, arrivals=arrivals,
                          vectors=OnlineVectors(lambda: VECTORS, RULE))

    whole = folded(accepted, EMPTY).sessions["s-1"].fields()
    first = folded(accepted[:1], EMPTY)
    rows = {"sessions": {"s-1": {**first.sessions["s-1"].fields(), "sw:shard-1": accepted[0][0]}},
            "shoppers": {"u-1": {**first.shoppers["u-1"].fields(), "sw:shard-1": accepted[0][0]}}}
    split = folded(accepted[1:], rows).sessions["s-1"].fields()
    assert whole["items"] == split["items"] == ["book-1"] and whole["vector"] == split["vector"]


def test_with_session_intent_a_batch_folds_alike_whole_or_in_parts():
    intent = SessionIntent(load_model(INTENT_MODEL, build=IntentModel.from_stored))
    events = _stream(seed=3, n=160)
    whole = written(_fold(events, EMPTY, 0, intent=intent))
    half = written(_fold(events[:70], EMPTY, 0, intent=intent))
    parts = written(_fold(events[70:], half, 70, intent=intent), half)
    assert whole == parts
    kept = [row["vector"] for row in whole["sessions"].values()] + [row["vector"] for row in whole["shoppers"].values()]
    assert sum(1 for v in kept if stored_vector(v, VECTORS) is not None) >= 10
    # The session's intent weighs its pulls: without it the vectors differ.
    plain = written(_fold(events, EMPTY, 0))
    assert any(plain["sessions"][k]["vector"] != whole["sessions"][k]["vector"] for k in whole["sessions"])


def test_new_item_vectors_start_the_rows_again_from_their_recent_items():
    rows = written(_fold(EVENTS[:1], EMPTY, 0))
    retrained = ItemVectors.build(ITEMS, MATRIX[:, ::-1].copy(), metadata={"version": "v2"})
    assert stored_vector(rows["sessions"]["s-1"]["vector"], retrained) is None  # of another space: not used
    moved = written(_fold([_event(7, "view", item_id="book-1")], rows, 5,
                        online=OnlineVectors(lambda: retrained, RULE)), rows)
    expected = update_vector(update_vector(None, retrained.vector("lamp-1"), "view", rule=RULE),
                             retrained.vector("book-1"), "view", rule=RULE)
    found = stored_vector(moved["sessions"]["s-1"]["vector"], retrained)
    assert np.allclose(found, expected, atol=0.02 * np.abs(expected).max())


def test_without_item_vectors_the_rows_keep_none():
    rows = written(_fold(EVENTS, EMPTY, 0, online=OnlineVectors(lambda: None, RULE)))
    assert rows["sessions"]["s-1"]["vector"] == {} and rows["shoppers"]["u-1"]["vector"] == {}


def test_a_vector_costs_its_row_a_few_hundred_bytes_at_256_dimensions():
    rng = np.random.default_rng(0)
    ids = [f"item-{k}" for k in range(100)]
    wide = ItemVectors.build(ids, rng.normal(size=(100, 256)).astype(np.float32), metadata={"version": "w"})
    events = [_event(k, "view", item_id=ids[k]) for k in range(30)]
    events.append(_event(40, "impression", item_ids=ids[50:70], feed_id="f-" + "0" * 30))
    rows = written(_fold(events, EMPTY, 0, online=OnlineVectors(lambda: wide, RULE)))
    kept = rows["sessions"]["s-1"]["vector"]
    assert len(kept["v"]) == 684  # base64 of 256 float16 components
    found, exact = stored_vector(kept, wide), None
    for event in events[:30]:
        exact = update_vector(exact, wide.vector(event["item_id"]), "view", rule=RULE)
    assert found @ exact / (np.linalg.norm(found) * np.linalg.norm(exact)) > 0.999


def test_ingest_keeps_vectors_without_another_write_and_reads_the_registry_once():
    registry_blobs = MemoryBlobStore()
    registry = ModelRegistry(registry_blobs)
    registry.publish(MODEL_NAME, VECTORS.to_npz(), {"format": "tailor-item-vectors/1"})
    reads = []
    online = OnlineVectors.load(_Counting(registry, reads), RULE)
    assert not online.ready and not reads  # nothing read at a cold start
    events = _stream(seed=4, n=120)
    written = {}
    for name, vectors in (("plain", None), ("kept", online)):
        ingest = Ingestor(MemoryStateStore(), MemoryBlobStore(), max_workers=4, vectors=vectors)
        outcomes = [ingest.ingest(to_records(events[:60])), ingest.ingest(to_records(events[60:], start=60))]
        assert all(o.failed == [] for o in outcomes)
        written[name] = [o.rows_written for o in outcomes]
        store = ingest.store
    assert written["kept"] == written["plain"]  # the vectors ride in the rows the batch writes anyway
    assert len(reads) == 1 and online.ready
    sessions = [SessionState.from_row(row) for row in state_rows(store)["sessions"].values()]
    assert sum(1 for s in sessions if stored_vector(s.vector, online.vectors()) is not None) >= 5


def test_a_registry_that_cannot_be_read_fails_the_batch_and_the_next_delivery_reads_it_again():
    registry_blobs = _FailingOnce()
    registry = ModelRegistry(registry_blobs)
    registry.publish(MODEL_NAME, VECTORS.to_npz(), {"format": "tailor-item-vectors/1"})
    registry_blobs.failures = 1
    online = OnlineVectors.load(registry, RULE)
    events = _stream(seed=4, n=60)
    ingest = Ingestor(MemoryStateStore(), MemoryBlobStore(), max_workers=4, vectors=online)
    outcome = ingest.ingest(to_records(events))
    # Not folded without the vectors the registry holds: every record comes again, and nothing was written.
    assert len(outcome.failed) == 60 and not online.ready and not state_rows(ingest.store).get("sessions")
    assert ingest.ingest(to_records(events)).failed == [] and online.ready
    sessions = [SessionState.from_row(row) for row in state_rows(ingest.store)["sessions"].values()]
    assert sum(1 for s in sessions if stored_vector(s.vector, online.vectors()) is not None) >= 3


@pytest.mark.parametrize(("seed", "with_intent"), [(1, False), (2, False), (1, True), (2, True)])
def test_replays_after_failures_and_crashes_leave_the_vectors_of_one_clean_pass(seed, with_intent):
    # With session intent, a replay whose session row took its records before (and whose shopper row did not)
    # weighs the shopper's pulls by the factors the session had then, which its row keeps for it.
    intent = SessionIntent(load_model(INTENT_MODEL, build=IntentModel.from_stored)) if with_intent else None
    events = _stream(seed=seed, n=300)
    expected = MemoryStateStore()
    Ingestor(expected, MemoryBlobStore(), max_workers=1, intent=intent,
             vectors=OnlineVectors(lambda: VECTORS, RULE)).ingest(to_records(events))
    rng = random.Random(seed)
    store = FlakyStateStore(MemoryStateStore(), rng, rate=0.08)
    calls = deliver(Ingestor(store, FlakyBlobStore(rng, rate=0.05), max_workers=4, intent=intent,
                             vectors=OnlineVectors(lambda: VECTORS, RULE)), to_records(events), rng, crash_rate=0.15)
    assert calls > 10
    assert state_rows(store.inner) == state_rows(expected)


def test_the_feeds_embedding_source_queries_with_the_rows_vectors():
    session = SessionState(session_id="s-1", user_id="u-1", started_at=0.0, last_seen=0.0, expires_at=0,
                           items=["lamp-1"])
    shopper = ShopperState(user_id="u-1", first_seen=0.0, last_seen=0.0, recent_items=["lamp-1"])
    folded = written(_fold([_event(1, "view", item_id="book-1"), _event(2, "add_to_cart", item_id="book-2")], EMPTY, 0))
    session.vector = folded["sessions"]["s-1"]["vector"]
    shopper.vector = folded["shoppers"]["u-1"]["vector"]
    source = EmbeddingSource(vectors=lambda: VECTORS)
    ctx = RankingContext(Request("feed", user_id="u-1", session_id="s-1", n=20, filters=Filters(available_only=False)),
                         now=0.0, shopper=shopper, session=session)
    found = list(source.propose(ctx, 20))
    assert found[0].startswith("book")  # the rows' vectors, not the lamp its items name
    session.vector, shopper.vector = {}, {}
    assert list(EmbeddingSource(vectors=lambda: VECTORS).propose(ctx, 20))[0].startswith("lamp")


def test_a_request_decodes_the_rows_vectors_once_for_the_source_and_the_similarity_term(monkeypatch):
    from tailor.ranking import candidates
    from tailor.ranking.candidates import Candidates
    from tailor.ranking.similarity import Similarity

    decoded = []
    monkeypatch.setattr(candidates, "stored_vector", lambda value, vectors: decoded.append(value) or
                        stored_vector(value, vectors))
    folded = written(_fold([_event(1, "view", item_id="book-1"), _event(2, "add_to_cart", item_id="book-2")], EMPTY, 0))
    session = SessionState(session_id="s-1", user_id="u-1", started_at=0.0, last_seen=0.0, expires_at=0,
                           items=["lamp-1"], vector=folded["sessions"]["s-1"]["vector"])
    ctx = RankingContext(Request("feed", user_id="u-1", session_id="s-1", n=20), now=0.0, session=session)
    source = EmbeddingSource(vectors=lambda: VECTORS)
    found = source.propose(ctx, 20)
    ctx.version += 1  # another read (an items row, say): the session's row is the same
    assert source.propose(ctx, 20) == found
    candidates_ = Candidates(list(found), {}, np.zeros((len(found), 1)), [None] * len(found),
                             np.zeros(len(found), dtype=int), [None], np.zeros(len(found)))
    term, raw = Similarity(lambda: VECTORS).score(ctx, candidates_, np.zeros((len(found), 1)))
    assert len(decoded) == 1 and np.allclose(raw["cosine"], list(found.values()), atol=1e-6)
    ctx.session = SessionState.from_row(session.to_row())  # the session's row read again: a new row object
    source.propose(ctx, 20)
    assert len(decoded) == 2


class _FailingOnce(MemoryBlobStore):
    """A store whose next `failures` reads fail as a store outage would."""

    failures = 0

    def get(self, key):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the store is not answering")
        return super().get(key)


class _Counting:
    """A registry that counts its reads."""

    def __init__(self, registry, reads):
        self.registry, self.reads = registry, reads

    def fetch(self, name, version=None):
        self.reads.append(name)
        return self.registry.fetch(name, version)


def _stream(seed: int, n: int) -> list[dict]:
    """random_events on this module's items, with feeds' impressions and clicks echoing them."""
    events = random_events(seed=seed, n=n, items=len(ITEMS))
    rename = {f"i{k}": item for k, item in enumerate(ITEMS)}
    out = []
    for k, event in enumerate(events):
        event = dict(event)
        if "item_id" in event:
            event["item_id"] = rename[event["item_id"]]
        if "item_ids" in event:
            event["item_ids"] = [rename[i] for i in event["item_ids"]]
            event["feed_id"] = f"feed-{k}"
        out.append(event)
    return out


def test_the_similarity_term_ranks_candidates_by_cosine_with_the_rows_vectors():
    from tailor.ranking.candidates import Candidates
    from tailor.ranking.similarity import Similarity

    folded = written(_fold([_event(1, "view", item_id="book-1"), _event(2, "add_to_cart", item_id="book-2")], EMPTY, 0))
    session = SessionState(session_id="s-1", user_id="u-1", started_at=0.0, last_seen=0.0, expires_at=0,
                           items=["lamp-1"], vector=folded["sessions"]["s-1"]["vector"])
    ctx = RankingContext(Request("feed", user_id="u-1", session_id="s-1", n=20), now=0.0, session=session)
    ids = ["lamp-3", "book-3", "unknown", "lamp-1"]
    candidates = Candidates(ids, {}, np.zeros((4, 1)), [None] * 4, np.zeros(4, dtype=int), [None], np.zeros(4))
    term, raw = Similarity(lambda: VECTORS).score(ctx, candidates, np.zeros((4, 1)))
    assert term.max() == 1.0 and term[1] == 1.0 and term[2] == 0.0  # a book, near the row's vector; no vector: 0
    assert term[1] > term[0] and raw["cosine"][1] > 0.9
    assert not Similarity(lambda: None).score(ctx, candidates, np.zeros((4, 1)))[0].any()


def test_a_recommender_with_item_vectors_weighs_the_similarity_in_its_feed():
    from tailor.models import load_model
    from tailor.ranking import MODEL_NAME as RANKER
    from tailor.ranking import RankingModel
    from tailor.ranking.similarity import FEED_WEIGHT, Similarity
    from tailor.serving import Recommender

    model = load_model(RANKER, None, build=RankingModel.from_stored)
    with_vectors = Recommender(MemoryStateStore(), model, item_vectors=lambda: VECTORS)
    assert with_vectors.pipeline.routes["feed"].weights["similarity"] == FEED_WEIGHT
    assert any(isinstance(scorer, Similarity) for scorer in with_vectors.pipeline.scorers)
    assert "similarity" not in Recommender(MemoryStateStore(), model).pipeline.routes["feed"].weights
    chosen = Recommender(MemoryStateStore(), model, item_vectors=lambda: VECTORS,
                         weights={"feed": {"commercial": 1.0}})
    assert chosen.pipeline.routes["feed"].weights == {"commercial": 1.0}  # the caller's weights stand
