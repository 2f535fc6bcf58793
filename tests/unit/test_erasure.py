"""Erasing a shopper from state ingested the real way: their rows, sessions and archived events go, nobody else's;
and their events that the stream delivers afterwards bring nothing of them back."""

import gzip
import json
import random
from datetime import datetime, timezone

import pytest

from support import FlakyBlobStore, FlakyStateStore, clean_run, deliver, random_events, to_records
from tailor.erasure import TOMBSTONE_SECONDS, erase_shopper, tombstone
from tailor.ingest.service import Ingestor
from tailor.ltv.features import row_features
from tailor.models import default_model
from tailor.personas.rebuild import _shoppers as persona_shoppers
from tailor.ranking import MODEL_NAME, RankingModel
from tailor.serving import Recommender
from tailor.shopper import ShopperState
from tailor.store.memory import MemoryBlobStore, MemoryStateStore


def archived(blobs) -> list[dict]:
    return [json.loads(line) for key in blobs.list("archive/") for line in gzip.decompress(blobs.get(key)).splitlines()]


def test_a_shopper_is_erased_from_rows_sessions_and_archive_and_everyone_else_is_untouched():
    events = random_events(5, 400)
    store, blobs = clean_run(events)
    user = "u3"
    before = store.snapshot()
    own_sessions = {e["session_id"] for e in events if e["user_id"] == user}
    assert own_sessions <= set(before["sessions"])
    own_archived = sum(1 for e in archived(blobs) if e["user_id"] == user)
    assert own_archived

    erased = erase_shopper(store, blobs, user, now=1793620800.25)

    assert erased["shopper_deleted"] is True
    assert erased["sessions_deleted"] == len(own_sessions)
    assert erased["archive_events_removed"] == own_archived and erased["archive_objects_rewritten"] >= 1
    after = store.snapshot()
    # The shopper row is now a tombstone: who, when (rounded up to the second), and when it expires.
    assert after["shoppers"].pop(user) == {"user_id": user, "erased_at": 1793620801,
                                           "expires_at": 1793620801 + TOMBSTONE_SECONDS}
    assert not own_sessions & set(after["sessions"])
    others = {t: {k: v for k, v in rows.items() if not (t == "shoppers" and k == user) and
                  not (t == "sessions" and k in own_sessions)} for t, rows in before.items()}
    assert after == others
    remaining = archived(blobs)
    assert [e for e in remaining if e["user_id"] == user] == []
    assert remaining == [e for e in archived(clean_run(events)[1]) if e["user_id"] != user]


def test_erasing_again_or_erasing_a_stranger_removes_nothing_says_so_and_leaves_a_tombstone():
    store, blobs = clean_run(random_events(6, 200))
    erase_shopper(store, blobs, "u1", now=1793620800)
    snapshot, objects = store.snapshot(), dict(blobs.objects)
    nothing = {"shopper_deleted": False, "sessions_deleted": 0, "archive_days_searched": 0,
               "archive_objects_rewritten": 0, "archive_events_removed": 0}
    assert erase_shopper(store, blobs, "u1", now=1793620800) == {"user_id": "u1", **nothing}
    assert store.snapshot() == snapshot and blobs.objects == objects
    # A stranger's events may still be on the stream: they get a tombstone too.
    assert erase_shopper(store, blobs, "never-seen", now=1793620800) == {"user_id": "never-seen", **nothing}
    assert store.snapshot()["shoppers"]["never-seen"] == tombstone("never-seen", 1793620800)
    # Erasing again later moves the erasure on (events up to then are dropped); never back.
    erase_shopper(store, blobs, "u1", now=1793620900)
    erase_shopper(store, blobs, "u1", now=1793620850)
    assert store.snapshot()["shoppers"]["u1"] == tombstone("u1", 1793620900)
    assert blobs.objects == objects


def test_a_session_id_another_shopper_used_is_kept_and_a_counters_only_row_is_deleted():
    base = {"timestamp": "2026-11-02T10:00:00Z", "event_type": "view", "item_id": "i-1"}
    events = [{**base, "event_id": "e1", "user_id": "a", "session_id": "shared"},
              {**base, "event_id": "e2", "user_id": "b", "session_id": "b-own"},
              {**base, "event_id": "e3", "user_id": "b", "session_id": "shared", "timestamp": "2026-11-02T10:01:00Z"},
              {"event_id": "e4", "user_id": "a", "session_id": "a2", "timestamp": "2026-11-03T09:00:00Z",
               "event_type": "referral", "source": "friend", "referrer_user_id": "c"}]
    store, blobs = clean_run(events)
    assert store.snapshot()["sessions"]["shared"]["user_id"] == "a"  # the session row keeps its first shopper
    erased = erase_shopper(store, blobs, "b")
    assert erased["sessions_deleted"] == 1 and "shared" in store.snapshot()["sessions"]
    assert erased["archive_events_removed"] == 2
    # "c" never sent an event: their row holds only the referral counter a's event added to it.
    row = store.snapshot()["shoppers"]["c"]
    assert row["referrals_sent"] == 1 and "first_seen" not in row
    assert erase_shopper(store, blobs, "c", now=1793620800)["shopper_deleted"] is True
    assert store.snapshot()["shoppers"]["c"] == tombstone("c", 1793620800)
    erased = erase_shopper(store, blobs, "a")
    assert erased["archive_days_searched"] == 2 and erased["archive_events_removed"] == 2
    assert archived(blobs) == []


# ---- after the erasure: events of the shopper still on the stream --------------------------------------------------

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc).timestamp()  # after every event of random_events


def of(records, user: str, *, mine: bool = True) -> list:
    return [r for r in records if (json.loads(r.data)["user_id"] == user) == mine]


def erased_midway(seed: int = 5, user: str = "u3"):
    """The first half of a stream ingested, `user` erased at NOW, and the records of the second half."""
    events = random_events(seed, 400)
    records = to_records(events)
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    Ingestor(store, blobs, max_workers=1).ingest(records[:200])
    erase_shopper(store, blobs, user, now=NOW)
    return store, blobs, records


def test_events_sent_before_the_erasure_recreate_nothing_count_nothing_and_are_not_archived():
    user = "u3"
    store, blobs, records = erased_midway(user=user)
    rest = records[200:]
    assert len(of(rest, user)) > 5
    # What the rest of the stream would have done had the shopper never sent those events.
    expected_store, expected_blobs, _ = erased_midway(user=user)
    Ingestor(expected_store, expected_blobs, max_workers=1).ingest(of(rest, user, mine=False))

    outcome = Ingestor(store, blobs, max_workers=1).ingest(rest)

    assert outcome.failed == [] and outcome.erased == len(of(rest, user))
    assert outcome.accepted == len(rest) and outcome.duplicates + outcome.erased <= len(rest)
    after = store.snapshot()
    assert after == expected_store.snapshot()  # items, associations, queries, trends, everyone's rows
    assert blobs.objects == expected_blobs.objects
    row = after["shoppers"][user]
    assert {k: row[k] for k in ("erased_at", "expires_at")} == {"erased_at": NOW, "expires_at": NOW + TOMBSTONE_SECONDS}
    assert "first_seen" not in row and ShopperState.from_row(row) is None
    assert not [s for s in after["sessions"].values() if s.get("user_id") == user]
    assert not [e for e in archived(blobs) if e["user_id"] == user]
    # Not a read or write more than the batch without them: the tombstone comes with the rows a batch reads anyway.
    assert store.calls == expected_store.calls

    # Kinesis delivers again: the same batch, and the batch from before the erasure.
    for replay in (rest, records[:200], records):
        again = Ingestor(store, blobs, max_workers=1).ingest(replay)
        assert again.failed == [] and again.erased == len(of(replay, user))
        assert store.snapshot() == after and blobs.objects == expected_blobs.objects


def test_a_shopper_who_comes_back_after_the_erasure_starts_afresh_and_earlier_stragglers_stay_dropped():
    user = "u3"
    store, blobs, records = erased_midway(user=user)

    def at(seconds: float) -> str:
        return datetime.fromtimestamp(NOW + seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    back = [{"event_id": "back-1", "user_id": user, "session_id": "u3-back", "timestamp": at(60), "event_type": "view",
             "item_id": "i7", "category": "c2", "price": 17.0},
            {"event_id": "back-2", "user_id": user, "session_id": "u3-back", "timestamp": at(90),
             "event_type": "purchase", "item_id": "i7", "category": "c2", "price": 17.0, "quantity": 1},
            # Sent before the erasure, delivered after the shopper came back.
            {"event_id": "late", "user_id": user, "session_id": "u3-late", "timestamp": at(-60), "event_type": "view",
             "item_id": "i8", "category": "c3", "price": 18.0}]
    batch = records[200:] + to_records(back, start=len(records))
    outcome = Ingestor(store, blobs, max_workers=1).ingest(batch)

    assert outcome.failed == [] and outcome.erased == len(of(records[200:], user)) + 1
    after = store.snapshot()
    row = after["shoppers"][user]
    shopper = ShopperState.from_row(row)
    assert shopper is not None and (shopper.events, shopper.purchases, shopper.session_ids) == (2, 1, ["u3-back"])
    assert shopper.first_seen == NOW + 60
    assert row["erased_at"] == NOW and row["expires_at"] is None  # the TTL must not take them
    assert {sid for sid, s in after["sessions"].items() if s.get("user_id") == user} == {"u3-back"}
    assert {e["event_id"] for e in archived(blobs) if e["user_id"] == user} == {"back-1", "back-2"}
    for replay in (batch, records):
        assert Ingestor(store, blobs, max_workers=1).ingest(replay).failed == []
        assert store.snapshot() == after

    # Erased again: the fresh state goes too.
    erased = erase_shopper(store, blobs, user, now=NOW + 3600)
    assert (erased["shopper_deleted"], erased["sessions_deleted"], erased["archive_events_removed"]) == (True, 1, 2)
    assert store.snapshot()["shoppers"][user] == tombstone(user, NOW + 3600)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replays_after_failures_and_crashes_drop_an_erased_shoppers_events_as_one_clean_pass(seed):
    user = "u3"
    back = {"event_id": "back", "user_id": user, "session_id": "u3-back", "timestamp": "2026-11-02T12:05:00Z",
            "event_type": "add_to_cart", "item_id": "i1", "category": "c1", "price": 11.0, "quantity": 2}
    expected_store, expected_blobs, records = erased_midway(seed, user)
    rest = records[200:] + to_records([back], start=len(records))
    Ingestor(expected_store, expected_blobs, max_workers=1).ingest(rest)

    inner, clean_blobs, _ = erased_midway(seed, user)
    rng = random.Random(seed)
    store, blobs = FlakyStateStore(inner, rng, rate=0.08), FlakyBlobStore(rng, rate=0.05)
    blobs.objects = dict(clean_blobs.objects)
    calls = deliver(Ingestor(store, blobs, max_workers=4), rest, rng, crash_rate=0.15)

    assert calls > 5
    assert inner.snapshot() == expected_store.snapshot()
    assert sorted(map(json.dumps, archived(blobs))) == sorted(map(json.dumps, archived(expected_blobs)))
    assert ShopperState.from_row(inner.snapshot()["shoppers"][user]).events == 1


def test_a_batch_that_read_the_shopper_before_the_erasure_fails_and_its_replay_drops_their_events():
    user = "u3"
    events = random_events(5, 400)
    records = to_records(events)

    class ErasedWhileIngesting(MemoryStateStore):
        """The erasure runs between a batch's read and its writes."""
        erase = False

        def read_many(self, requests):
            rows = super().read_many(requests)
            if self.erase:
                self.erase = False
                erase_shopper(self, blobs, user, now=NOW)
            return rows

    store, blobs = ErasedWhileIngesting(), MemoryBlobStore()
    ingestor = Ingestor(store, blobs, max_workers=1)
    ingestor.ingest(records[:200])
    store.erase = True
    outcome = ingestor.ingest(records[200:])

    assert outcome.failed  # its write to the shopper row met the tombstone
    failed = min(outcome.failed, key=lambda s: (len(s), s))
    again = ingestor.ingest([r for r in records[200:] if int(r.sequence) >= int(failed)])
    assert again.failed == [] and again.erased >= 1
    row = store.snapshot()["shoppers"][user]
    assert ShopperState.from_row(row) is None and row["erased_at"] == NOW and "first_seen" not in row


def test_readers_take_a_tombstone_for_no_shopper():
    user = "u3"
    store, blobs, _ = erased_midway(user=user)
    row = store.snapshot()["shoppers"][user]
    assert ShopperState.from_row(row) is None
    # State a racing batch wrote beside the tombstone, from events up to the erasure, is no shopper either.
    assert ShopperState.from_row({**row, "first_seen": NOW - 5, "last_seen": NOW - 1, "events": 3}) is None
    assert ShopperState.from_row({**row, "first_seen": NOW + 5, "last_seen": NOW + 9, "events": 3}) is not None
    assert row_features(row, NOW) is None
    assert user not in {s.user_id for s in persona_shoppers(store)} and persona_shoppers(store)
    recommender = Recommender(store, RankingModel.from_stored(default_model(MODEL_NAME)), clock=lambda: NOW)
    assert recommender.profile(user) is None and recommender.profile("u4") is not None
    assert recommender.feed(user, n=5).items  # a cold start, like a stranger's
