"""Erasing a shopper from state ingested the real way: the tombstone at once, then their sessions and archived events,
however many and however far back, visiting only the parts of the archive their row indexes; nobody else's; and their
events that the stream delivers afterwards bring nothing of them back."""

import gzip
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from tailor.archive import (
    ANY_SHARD,
    ARCHIVE_PERIODS,
    archive_day,
    archived_events,
    compact_archive,
    is_part,
    periods_between,
    with_period,
    with_shard,
)
from tailor.erasure import (
    PERIODS_PER_SAVE,
    TOMBSTONE_SECONDS,
    ErasureIncomplete,
    complete_erasure,
    erasure_status,
    request_erasure,
    tombstone,
)
from tailor.experiments.assignment import assign
from tailor.experiments.definitions import new_experiment
from tailor.experiments.feed_ids import new_feed_id
from tailor.experiments.storage import ExperimentStore
from tailor.ingest.service import RECENT_ARCHIVE_KEYS, RECENT_KEYS, Ingestor
from tailor.ltv.features import row_features
from tailor.models import default_model
from tailor.personas.rebuild import _each_shopper as persona_shoppers
from tailor.ranking import MODEL_NAME, RankingModel
from tailor.serving import Recommender
from tailor.shopper import ShopperState
from tailor.store.memory import MemoryBlobStore, MemoryQueue, MemoryStateStore

from tests.helpers.events import random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, UnreadableBlobs, clean_run, deliver, state_rows

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC).timestamp()  # after every event of random_events
SHARDS = ("shardId-000000000000", "shardId-000000000001")


def archived(blobs) -> list[dict]:
    return [json.loads(line) for key in blobs.list("archive/") for line in gzip.decompress(blobs.get(key)).splitlines()]


def erase(store, blobs, user: str, *, now: float = NOW) -> dict:
    """The whole erasure: the request, then the worker on the message it queued."""
    queue = MemoryQueue()
    requested = request_erasure(store, queue, user, now=now)
    if not queue.sent:
        return requested
    (message,) = queue.sent
    assert message == {"user_id": user, "erasure_id": requested["erasure_id"]}
    return complete_erasure(store, blobs, user, message["erasure_id"], now=lambda: now + 5)


def ingest(events: list[dict], store=None, blobs=None, *, shard: str = SHARDS[0], start: int = 0, batch: int = 100):
    store, blobs = store or MemoryStateStore(), blobs or MemoryBlobStore()
    records = to_records(events, shard, start=start)
    for offset in range(0, len(records), batch):
        assert Ingestor(store, blobs, max_workers=1).ingest(records[offset:offset + batch]).failed == []
    return store, blobs


def history(user: str, sessions: int, *, years: float, end: datetime, events_per_session: int = 3) -> list[dict]:
    """`sessions` sessions of `user`, spread evenly over `years` up to `end`, a few item events each."""
    span = timedelta(days=365.25 * years)
    out = []
    for s in range(sessions):
        start = end - span + span * s / max(1, sessions - 1) - timedelta(hours=1)
        for n in range(events_per_session):
            out.append({"event_id": f"{user}-{s}-{n}", "user_id": user, "session_id": f"{user}-s{s}",
                        "timestamp": (start + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "event_type": ("view", "click", "add_to_cart")[n % 3], "item_id": f"i{(s + n) % 17}",
                        "category": f"c{s % 4}", "price": 10.0 + s % 7})
    return out


class ErasedWhileIngesting(MemoryStateStore):
    """Requests the erasure of `user` between a batch's read and its writes, once `erase` is set."""

    def __init__(self, user: str, queue: MemoryQueue):
        super().__init__()
        self.user, self.queue, self.erase = user, queue, False

    def read_many(self, requests):
        rows = super().read_many(requests)
        if self.erase:
            self.erase = False
            request_erasure(self, self.queue, self.user, now=NOW)
        return rows


class ListingBlobs(MemoryBlobStore):
    """Remembers every prefix listed, and counts the objects read."""

    def __init__(self, clock=None):
        super().__init__(**({} if clock is None else {"clock": clock}))
        self.listed: list[str] = []
        self.gets = 0

    def list(self, prefix):
        self.listed.append(prefix)
        return super().list(prefix)

    def get(self, key):  # get_tagged reads through it
        self.gets += 1
        return super().get(key)


# ---- the erasure --------------------------------------------------------------------------------------------------


def test_a_shopper_is_erased_from_rows_sessions_and_archive_and_everyone_else_is_untouched():
    events = random_events(5, 400)
    store, blobs = clean_run(events)
    user = "u3"
    before = state_rows(store)
    own_sessions = {e["session_id"] for e in events if e["user_id"] == user}
    assert own_sessions <= set(before["sessions"])
    own_archived = sum(1 for e in archived(blobs) if e["user_id"] == user)
    assert own_archived

    done = erase(store, blobs, user, now=1793620800.25)

    assert done["status"] == "done" and done["erased_until"] == "2026-11-02T12:00:01Z"
    assert done["removed"] == {"shopper_state": True, "sessions": len(own_sessions), "exposures": 0,
                               "archive_objects_rewritten": 1, "archive_events": own_archived}
    after = state_rows(store)
    row = after["shoppers"].pop(user)
    # The shopper row is now a tombstone: who, when (rounded up to the second), when it expires, and the record.
    assert {k: row[k] for k in ("user_id", "erased_at", "expires_at")} == {
        "user_id": user, "erased_at": 1793620801, "expires_at": 1793620801 + TOMBSTONE_SECONDS}
    assert row == tombstone(user, 1793620800.25, done["erasure_id"], row["erasure"])
    assert row["erasure"]["status"] == "done" and row["erasure"]["archive_days"] == []
    assert not own_sessions & set(after["sessions"])
    others = {t: {k: v for k, v in rows.items() if not (t == "shoppers" and k == user) and
                  not (t == "sessions" and k in own_sessions)} for t, rows in before.items()}
    assert after == others
    remaining = archived(blobs)
    assert [e for e in remaining if e["user_id"] == user] == []
    assert remaining == [e for e in archived(clean_run(events)[1]) if e["user_id"] != user]
    assert erasure_status(store, user) == done


def _running_experiment() -> list:
    body = {"experiment_id": "e1", "surface": "feed", "variants": [
        {"name": "a", "strategy": "default", "share": 0.5}, {"name": "b", "strategy": "baseline", "share": 0.5}]}
    return [new_experiment(body, now=datetime.fromtimestamp(NOW, UTC), known_strategies={"default", "baseline"}).started(
        datetime.fromtimestamp(NOW, UTC), (0.0, 1.0))]


def test_the_lists_experiments_served_the_shopper_go_and_everyone_elses_stay():
    store, blobs = clean_run(random_events(5, 400))
    running = _running_experiment()
    experiments = ExperimentStore(store)
    served = {}
    for n, (user, session, at) in enumerate([("u3", "s-1", NOW - 60), ("u3", "s-2", NOW - 30), ("u4", "s-3", NOW - 30),
                                              (None, "u3", NOW - 30), ("u3", "s-4", NOW + 60)]):
        assignment = assign(running, "feed", user_id=user, session_id=session)
        feed_id = new_feed_id("e1", assignment.variant_name, assignment.unit_kind)
        experiments.log_exposure(feed_id, assignment, strategy="default", items=["i1", "i2"],
                                 probabilities=[1.0, 1.0], served_at=at)
        served[n] = feed_id

    done = erase(store, blobs, "u3")

    # Theirs up to the erasure; not another shopper's, not an anonymous session that happens to share the id, and
    # not what a shopper who came back was served afterwards.
    assert done["removed"]["exposures"] == 2
    assert set(state_rows(store)["exposures"]) == {served[2], served[3], served[4]}


def test_the_lists_served_to_the_shoppers_sessions_before_they_were_known_go_too():
    store, blobs = clean_run(random_events(5, 400))
    running = _running_experiment()
    experiments = ExperimentStore(store)
    sessions = state_rows(store)["sessions"]
    own = sorted(k for k, row in sessions.items() if row["user_id"] == "u3")
    other = sorted(k for k, row in sessions.items() if row["user_id"] != "u3")[0]
    served = {}
    for session in (*own, other):  # anonymous requests: the session is the unit
        assignment = assign(running, "feed", user_id=None, session_id=session)
        feed_id = new_feed_id("e1", assignment.variant_name, assignment.unit_kind)
        experiments.log_exposure(feed_id, assignment, strategy="default", items=["i1"], probabilities=[1.0],
                                 served_at=NOW - 30)
        served[session] = feed_id

    done = erase(store, blobs, "u3")

    assert own and done["removed"]["exposures"] == len(own)
    assert set(state_rows(store)["exposures"]) == {served[other]}


def test_a_shopper_with_60_sessions_loses_every_one():
    user = "u-60"
    events = history(user, 60, years=0.2, end=datetime(2026, 11, 2, tzinfo=UTC))
    store, blobs = ingest(events + random_events(3, 300))
    assert ShopperState.from_row(state_rows(store)["shoppers"][user]).sessions == 60

    done = erase(store, blobs, user)

    assert done["removed"]["sessions"] == 60 and done["removed"]["archive_events"] == 180
    assert not [s for s in state_rows(store)["sessions"].values() if s["user_id"] == user]
    assert [s for s in state_rows(store)["sessions"].values() if s["user_id"] == "u1"], "others' sessions are kept"
    assert not [e for e in archived(blobs) if e["user_id"] == user]


def test_1000_sessions_over_ten_years_all_go_and_only_the_indexed_parts_of_the_archive_are_listed():
    user = "loyal"
    end = datetime(2026, 11, 2, 12, tzinfo=UTC)
    events = history(user, 1000, years=10, end=end)
    others = [{**e, "user_id": "other", "session_id": "other-" + e["session_id"], "event_id": "o" + e["event_id"]}
              for e in history("x", 400, years=12, end=end, events_per_session=1)]
    store, blobs = ingest(sorted(events + others, key=lambda e: e["timestamp"]), blobs=ListingBlobs())
    row = state_rows(store)["shoppers"][user]
    days = {archive_day(datetime.fromisoformat(e["timestamp"]).timestamp()) for e in events}
    assert len(days) > 900
    # The index stays small however long the history, and covers every day with an event of theirs.
    assert len(row["archive_days"]) <= ARCHIVE_PERIODS and row["archive_shards"] == [SHARDS[0]]
    assert all(any(day.startswith(period) for period in row["archive_days"]) for day in days)
    assert len(json.dumps(row["archive_days"])) < 1500

    blobs.listed.clear()
    done = erase(store, blobs, user)
    listed = list(blobs.listed)

    assert done["removed"]["sessions"] == 1000 and done["removed"]["archive_events"] == 3000
    assert not [s for s in state_rows(store)["sessions"].values() if s["user_id"] == user]
    assert not [e for e in archived(blobs) if e["user_id"] == user]
    assert len([e for e in archived(blobs) if e["user_id"] == "other"]) == 400
    # One listing per entry of the index, narrowed to the shopper's shard where the entry is a day; and one more of
    # each shard-day where their events were, for what a compaction may have merged meanwhile (tailor.archive).
    assert done["archive_days_searched"] == len(row["archive_days"])
    assert sorted(listed) == sorted(
        [f"archive/date={p}/shard={SHARDS[0]}/" if len(p) == 10 else f"archive/date={p}" for p in row["archive_days"]]
        + [f"archive/date={day}/shard={SHARDS[0]}/" for day in days])


def test_only_the_days_the_shopper_was_active_are_visited_not_the_span_between():
    user = "u-far"
    old = {"event_id": "far-1", "user_id": user, "session_id": "far-s1", "timestamp": "2000-01-01T08:00:00Z",
           "event_type": "view", "item_id": "i1", "category": "c1", "price": 11.0}
    recent = {**old, "event_id": "far-2", "session_id": "far-s2", "timestamp": "2026-11-02T09:00:00Z"}
    store, blobs = ingest([old] + random_events(4, 200), blobs=ListingBlobs())
    ingest([recent], store, blobs, shard=SHARDS[1], start=500)
    row = state_rows(store)["shoppers"][user]
    assert (row["archive_days"], row["archive_shards"]) == (["2000-01-01", "2026-11-02"], list(SHARDS))

    blobs.listed.clear()
    done = erase(store, blobs, user)
    listed = list(blobs.listed)

    assert (done["archive_days_searched"], done["removed"]["archive_events"]) == (2, 2)
    assert sorted(listed) == sorted([f"archive/date={day}/shard={shard}/"
                                     for day in ("2000-01-01", "2026-11-02") for shard in SHARDS]
                                    + [f"archive/date=2000-01-01/shard={SHARDS[0]}/",
                                       f"archive/date=2026-11-02/shard={SHARDS[1]}/"])


def test_running_the_worker_again_changes_nothing_and_a_run_stopped_part_way_is_finished_by_the_next():
    end = datetime(2026, 11, 2, tzinfo=UTC)
    events = history("u-long", 200, years=2, end=end) + random_events(7, 300)
    store, blobs = ingest(events)
    expected_store, expected_blobs = ingest(events)
    expected = erase(expected_store, expected_blobs, "u-long")

    queue = MemoryQueue()
    requested = request_erasure(store, queue, "u-long", now=NOW)
    erasure_id = queue.sent[0]["erasure_id"]
    clock = iter([100.0, 100.0, 100.0, 10.0])  # the run's deadline comes near after three saves
    with pytest.raises(ErasureIncomplete):
        complete_erasure(store, blobs, "u-long", erasure_id, seconds_left=lambda: next(clock))
    partial = erasure_status(store, "u-long")
    assert partial["status"] == "pending" and partial["archive_days_searched"] == 3 * PERIODS_PER_SAVE
    assert partial["archive_days_left"] == requested["archive_days_left"] - 3 * PERIODS_PER_SAVE
    done = complete_erasure(store, blobs, "u-long", erasure_id, now=lambda: NOW + 5)

    assert {k: v for k, v in done.items() if k != "erasure_id"} == {
        k: v for k, v in expected.items() if k != "erasure_id"}
    assert blobs.objects == expected_blobs.objects
    snapshot, puts, writes = state_rows(store), blobs.puts, store.calls["write"]
    assert complete_erasure(store, blobs, "u-long", erasure_id, now=lambda: NOW + 99) == done
    assert (state_rows(store), blobs.puts, store.calls["write"]) == (snapshot, puts, writes)


def test_the_tombstone_comes_first_so_events_on_their_way_are_dropped_before_the_worker_runs():
    user = "u3"
    events = random_events(5, 400)
    records = to_records(events)
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    Ingestor(store, blobs, max_workers=1).ingest(records[:200])
    queue = MemoryQueue()
    requested = request_erasure(store, queue, user, now=NOW)
    assert requested["status"] == "pending" and ShopperState.from_row(state_rows(store)["shoppers"][user]) is None

    # The rest of the stream, theirs included, arrives before the worker has run.
    outcome = Ingestor(store, blobs, max_workers=1).ingest(records[200:])
    mine = sum(1 for r in records[200:] if json.loads(r.data)["user_id"] == user)
    assert outcome.failed == [] and mine > 5 and outcome.erased == mine
    assert ShopperState.from_row(state_rows(store)["shoppers"][user]) is None
    complete_erasure(store, blobs, user, queue.sent[0]["erasure_id"])

    assert not [s for s in state_rows(store)["sessions"].values() if s["user_id"] == user]
    assert not [e for e in archived(blobs) if e["user_id"] == user]
    assert erasure_status(store, user)["status"] == "done"


def test_an_id_never_seen_is_answered_so_and_still_refuses_its_events_on_their_way():
    store, blobs = clean_run(random_events(6, 200))
    queue = MemoryQueue()
    answer = request_erasure(store, queue, "never-seen", now=NOW)

    assert answer["status"] == "nothing_to_erase" and answer["finished_at"] == answer["requested_at"]
    assert answer["removed"] == {"shopper_state": False, "sessions": 0, "exposures": 0,
                                 "archive_objects_rewritten": 0, "archive_events": 0}
    assert queue.sent == []  # nothing for a worker to do
    assert erasure_status(store, "never-seen") == answer
    assert erasure_status(store, "u1") is None
    sent_before = {"event_id": "late", "user_id": "never-seen", "session_id": "ns-1",
                   "timestamp": "2026-11-02T11:59:00Z", "event_type": "view", "item_id": "i1"}
    outcome = Ingestor(store, blobs, max_workers=1).ingest(to_records([sent_before], start=900))
    assert outcome.erased == 1 and "ns-1" not in state_rows(store)["sessions"]


def test_a_shopper_who_was_only_shown_lists_has_them_erased_though_tailor_holds_no_row_of_them():
    """Feeds in an experiment log what they served under the shopper's id before any event of theirs arrives."""
    store, blobs = clean_run(random_events(5, 200))
    experiments = ExperimentStore(store)
    assignment = assign(_running_experiment(), "feed", user_id="only-shown", session_id="os-1")
    feed_id = new_feed_id("e1", assignment.variant_name, assignment.unit_kind)
    experiments.log_exposure(feed_id, assignment, strategy="default", items=["i1"], probabilities=[1.0],
                             served_at=NOW - 60)
    assert "only-shown" not in state_rows(store)["shoppers"]

    done = erase(store, blobs, "only-shown")

    assert done["status"] == "done" and done["removed"]["exposures"] == 1
    assert feed_id not in state_rows(store).get("exposures", {})


def test_a_second_delete_while_one_is_pending_covers_both_and_the_first_message_does_nothing():
    user = "u-twice"
    store, blobs = ingest(history(user, 20, years=1, end=datetime(2026, 10, 1, tzinfo=UTC)))
    queue = MemoryQueue()
    first = request_erasure(store, queue, user, now=NOW)
    # They come back, and are erased again before the first erasure has run.
    back = history(user, 3, years=0.0001, end=datetime(2026, 11, 2, 15, tzinfo=UTC))
    back = [{**e, "event_id": "back-" + e["event_id"], "session_id": "back-" + e["session_id"]} for e in back]
    ingest(back, store, blobs, start=1000)
    second = request_erasure(store, queue, user, now=NOW + 86400)
    assert second["archive_days_left"] == first["archive_days_left"] + 1

    puts = blobs.puts
    assert complete_erasure(store, blobs, user, first["erasure_id"])["status"] == "superseded"
    assert blobs.puts == puts  # nothing rewritten: the second erasure covers the first
    done = complete_erasure(store, blobs, user, second["erasure_id"])

    assert done["status"] == "done" and done["removed"]["sessions"] == 23
    assert done["removed"]["archive_events"] == 69 and done["removed"]["shopper_state"]
    assert not [e for e in archived(blobs) if e["user_id"] == user]
    assert erasure_status(store, user)["erasure_id"] == second["erasure_id"]


def test_what_a_shopper_does_after_the_erasure_is_theirs_to_keep_even_if_the_worker_runs_later():
    user = "u3"
    store, blobs = clean_run(random_events(5, 400))
    queue = MemoryQueue()
    request_erasure(store, queue, user, now=NOW)
    later = {"event_id": "after", "user_id": user, "session_id": "u3-after", "timestamp": "2026-11-02T12:30:00Z",
             "event_type": "view", "item_id": "i9", "category": "c4", "price": 19.0}
    ingest([later], store, blobs, start=900)

    done = complete_erasure(store, blobs, user, queue.sent[0]["erasure_id"])

    assert done["status"] == "done" and done["removed"]["archive_events"] > 0
    assert [e["event_id"] for e in archived(blobs) if e["user_id"] == user] == ["after"]
    assert [k for k, s in state_rows(store)["sessions"].items() if s["user_id"] == user] == ["u3-after"]
    assert ShopperState.from_row(state_rows(store)["shoppers"][user]).events == 1


def test_a_session_id_another_shopper_used_is_kept_and_a_counters_only_row_is_erased():
    base = {"timestamp": "2026-11-02T10:00:00Z", "event_type": "view", "item_id": "i-1"}
    events = [{**base, "event_id": "e1", "user_id": "a", "session_id": "shared"},
              {**base, "event_id": "e2", "user_id": "b", "session_id": "b-own"},
              {**base, "event_id": "e3", "user_id": "b", "session_id": "shared", "timestamp": "2026-11-02T10:01:00Z"},
              {"event_id": "e4", "user_id": "a", "session_id": "a2", "timestamp": "2026-11-03T09:00:00Z",
               "event_type": "referral", "source": "friend", "referrer_user_id": "c"}]
    store, blobs = clean_run(events)
    assert state_rows(store)["sessions"]["shared"]["user_id"] == "a"  # a session row belongs to one shopper
    done = erase(store, blobs, "b")
    assert done["removed"]["sessions"] == 1 and state_rows(store)["sessions"]["shared"]["user_id"] == "a"
    assert not [e for e in archived(blobs) if e["user_id"] == "b"]
    # "c" never sent an event: their row holds only the referral counter a's event added to it.
    row = state_rows(store)["shoppers"]["c"]
    assert row["referrals_sent"] == 1 and "first_seen" not in row
    # a's row says a shopper referred them, not who: it would outlive c's erasure.
    referred = state_rows(store)["shoppers"]["a"]
    assert referred["referred_by_shopper"] is True and '"c"' not in json.dumps(referred)
    done = erase(store, blobs, "c")
    assert done["status"] == "done" and done["removed"]["shopper_state"] is True
    assert set(state_rows(store)["shoppers"]["c"]) == {"user_id", "erased_at", "expires_at", "erasure_id", "erasure"}
    done = erase(store, blobs, "a")
    assert done["archive_days_searched"] == 2 and done["removed"]["archive_events"] == 2
    assert [e["user_id"] for e in archived(blobs)] == []


def test_a_row_that_named_its_referrer_forgets_who_at_its_next_write():
    base = {"timestamp": "2026-11-02T10:00:00Z", "event_type": "view", "item_id": "i-1", "user_id": "a",
            "session_id": "a1"}
    store, blobs = clean_run([{**base, "event_id": "e1"}])
    store.tables["shoppers"]["a"]["referrer_user_id"] = "c"  # as rows kept it before
    assert ShopperState.from_row(store.tables["shoppers"]["a"]).referred_by_shopper is True
    records = to_records([{**base, "event_id": "e2", "timestamp": "2026-11-02T10:05:00Z"}], start=1)
    assert Ingestor(store, blobs, max_workers=1).ingest(records).failed == []
    row = state_rows(store)["shoppers"]["a"]
    assert row["referrer_user_id"] is None and row["referred_by_shopper"] is True


def test_ids_written_with_escapes_or_inside_longer_ids_are_told_apart_in_the_archive():
    base = {"timestamp": "2026-11-02T10:00:00Z", "event_type": "view", "item_id": "i-1"}
    sent = [{**base, "event_id": "e1", "user_id": "ana é", "session_id": "s1"},
            {**base, "event_id": "e2", "user_id": "ana é1", "session_id": "s2"}]
    store, blobs = clean_run(sent)
    # An object as a producer's bytes may have it: the id escaped.
    escaped = [json.dumps({**base, "event_id": "e4", "user_id": "ana é", "session_id": "s1"}) + "\n",
               json.dumps({**base, "event_id": "e5", "user_id": "ana é1", "session_id": "s2"}) + "\n"]
    assert "\\u00e9" in escaped[0]
    blobs.put(f"archive/date=2026-11-02/shard={SHARDS[0]}/1.jsonl.gz", gzip.compress("".join(escaped).encode()))

    done = erase(store, blobs, "ana é")

    assert done["removed"]["archive_events"] == 2
    assert sorted(e["event_id"] for e in archived(blobs)) == ["e2", "e5"]


def test_a_row_folded_before_rows_kept_an_index_is_erased_over_its_whole_span_in_few_listings():
    user = "u3"
    store, blobs = clean_run(random_events(5, 400))
    # A row as Ingest wrote it before: no index, and events far back.
    row = store.tables["shoppers"][user]
    del row["archive_days"], row["archive_shards"]
    row["first_seen"] = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
    listing = ListingBlobs()
    listing.objects = dict(blobs.objects)

    done = erase(store, listing, user)

    assert done["archive_days_searched"] == len([p for p in listing.listed if "/shard=" not in p]) <= ARCHIVE_PERIODS
    assert done["archive_days_searched"] > 1
    assert not [e for e in archived(listing) if e["user_id"] == user]


# ---- the archive index -----------------------------------------------------------------------------------------------


def test_the_index_covers_every_day_added_stays_within_its_limit_and_widens_as_little_as_it_can():
    rng = random.Random(3)
    start = datetime(2016, 11, 2).date()
    days = sorted((start + timedelta(days=rng.randrange(3650))).isoformat() for _ in range(1000))
    periods: list[str] = []
    for day in days:
        periods = with_period(periods, day)
        assert len(periods) <= ARCHIVE_PERIODS
    assert all(any(day.startswith(p) for p in periods) for day in days)
    assert periods == sorted(periods) and not [p for p in periods if any(p != q and p.startswith(q) for q in periods)]
    # Ten years of days in a hundred entries: recent days stay days, and far fewer than all 3650 days are covered.
    assert periods[-1] == days[-1] and len([p for p in periods if len(p) == 10]) > 10
    covered = sum({10: 1, 7: 30.44, 4: 365.25}[len(p)] for p in periods)
    assert covered < 3650
    # A few days, however far apart, stay days.
    assert with_period(with_period(["2026-11-02"], "2000-01-01"), "2000-01-01") == ["2000-01-01", "2026-11-02"]
    assert with_period(["2019-03"], "2019-03-14") == ["2019-03"]
    assert with_period(["2019-03-01", "2019-03-14", "2020-01-01"], "2019-03") == ["2019-03", "2020-01-01"]


def test_the_index_knows_few_shards_and_falls_back_to_any():
    shards: list[str] = []
    for n in (1, 0, 1, 2):
        shards = with_shard(shards, f"shardId-{n:012d}")
    assert shards == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    assert with_shard(shards, None) == [ANY_SHARD] and with_shard([ANY_SHARD], "shardId-000000000003") == [ANY_SHARD]
    many: list[str] = []
    for n in range(9):
        many = with_shard(many, f"shardId-{n:012d}")
    assert many == [ANY_SHARD]


def test_a_span_is_indexed_in_at_most_the_limit_at_one_width():
    day = 86400
    assert periods_between(NOW - 2 * day, NOW) == ["2026-10-31", "2026-11-01", "2026-11-02"]
    assert periods_between(NOW - 300 * day, NOW)[:2] == ["2026-01", "2026-02"]
    assert periods_between(datetime(2000, 1, 1, tzinfo=UTC).timestamp(), NOW)[:2] == ["2000", "2001"]
    assert periods_between(datetime(1, 1, 1, tzinfo=UTC).timestamp(), NOW) == [
        f"{n:02d}" for n in range(21)]


def test_what_ingest_indexes_covers_every_archived_object_of_the_shopper_on_every_shard():
    events = random_events(9, 600, users=6)
    rng = random.Random(9)
    for e in events:  # days apart, out of order
        e["timestamp"] = (datetime(2026, 11, 2, tzinfo=UTC) - timedelta(days=rng.randrange(400),
                                                                                 minutes=rng.randrange(1440))
                          ).strftime("%Y-%m-%dT%H:%M:%SZ")
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    for n, shard in enumerate(SHARDS):  # the stream resharded half way
        ingest(events[n * 300:(n + 1) * 300], store, blobs, shard=shard, start=n * 1000, batch=37)
    for user, row in state_rows(store)["shoppers"].items():
        if "archive_days" not in row:
            continue
        for key in blobs.list("archive/"):
            lines = [json.loads(line) for line in gzip.decompress(blobs.get(key)).splitlines()]
            if any(e["user_id"] == user for e in lines):
                day, shard = key.split("/")[1][len("date="):], key.split("/")[2][len("shard="):]
                assert any(day.startswith(p) for p in row["archive_days"]) and shard in row["archive_shards"]


# ---- after the erasure: events of the shopper still on the stream --------------------------------------------------


def of(records, user: str, *, mine: bool = True) -> list:
    return [r for r in records if (json.loads(r.data)["user_id"] == user) == mine]


def erased_midway(seed: int = 5, user: str = "u3"):
    """The first half of a stream ingested, `user` erased at NOW, and the records of the second half."""
    events = random_events(seed, 400)
    records = to_records(events)
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    Ingestor(store, blobs, max_workers=1).ingest(records[:200])
    erase(store, blobs, user, now=NOW)
    return store, blobs, records


def test_events_sent_before_the_erasure_recreate_nothing_count_nothing_and_are_not_archived():
    user = "u3"
    store, blobs, records = erased_midway(user=user)
    rest = records[200:]
    assert len(of(rest, user)) > 5
    # What the rest of the stream would have done had the shopper never sent those events.
    expected_store, expected_blobs, _ = erased_midway(user=user)
    expected_store.calls.clear()
    Ingestor(expected_store, expected_blobs, max_workers=1).ingest(of(rest, user, mine=False))
    store.calls.clear()

    outcome = Ingestor(store, blobs, max_workers=1).ingest(rest)

    assert outcome.failed == [] and outcome.erased == len(of(rest, user))
    assert outcome.accepted == len(rest) and outcome.duplicates + outcome.erased <= len(rest)
    after = state_rows(store)
    ignore = ("erasure_id", "erasure")  # each run's own erasure id
    assert {t: {k: {f: v for f, v in r.items() if f not in ignore} for k, r in rows.items()}
            for t, rows in after.items()} == {
        t: {k: {f: v for f, v in r.items() if f not in ignore} for k, r in rows.items()}
        for t, rows in state_rows(expected_store).items()}
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
        assert state_rows(store) == after and blobs.objects == expected_blobs.objects


def test_a_shopper_who_comes_back_after_the_erasure_starts_afresh_and_earlier_stragglers_stay_dropped():
    user = "u3"
    store, blobs, records = erased_midway(user=user)

    def at(seconds: float) -> str:
        return datetime.fromtimestamp(NOW + seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

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
    after = state_rows(store)
    row = after["shoppers"][user]
    shopper = ShopperState.from_row(row)
    assert shopper is not None and (shopper.events, shopper.purchases, shopper.session_ids) == (2, 1, ["u3-back"])
    assert shopper.first_seen == NOW + 60 and shopper.archive_days == ["2026-11-02"]
    assert row["erased_at"] == NOW and row["expires_at"] is None  # the TTL must not take them
    assert row["erasure"]["status"] == "done"  # the record of the erasure stays beside their new state
    assert {sid for sid, s in after["sessions"].items() if s.get("user_id") == user} == {"u3-back"}
    assert {e["event_id"] for e in archived(blobs) if e["user_id"] == user} == {"back-1", "back-2"}
    for replay in (batch, records):
        assert Ingestor(store, blobs, max_workers=1).ingest(replay).failed == []
        assert state_rows(store) == after

    # Erased again: the fresh state goes too.
    done = erase(store, blobs, user, now=NOW + 3600)
    assert done["removed"] == {"shopper_state": True, "sessions": 1, "exposures": 0,
                               "archive_objects_rewritten": 1, "archive_events": 2}
    assert state_rows(store)["shoppers"][user] == tombstone(user, NOW + 3600, done["erasure_id"],
                                                           state_rows(store)["shoppers"][user]["erasure"])


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
    ignore = ("erasure_id", "erasure")
    assert {k: v for k, v in state_rows(inner)["shoppers"][user].items() if k not in ignore} == {
        k: v for k, v in state_rows(expected_store)["shoppers"][user].items() if k not in ignore}
    assert {t: r for t, r in state_rows(inner).items() if t != "shoppers"} == {
        t: r for t, r in state_rows(expected_store).items() if t != "shoppers"}
    assert sorted(map(json.dumps, archived(blobs))) == sorted(map(json.dumps, archived(expected_blobs)))
    assert ShopperState.from_row(state_rows(inner)["shoppers"][user]).events == 1


def test_a_batch_that_read_the_shopper_before_the_erasure_fails_and_its_replay_drops_their_events():
    user = "u3"
    events = random_events(5, 400)
    records = to_records(events)

    queue, blobs = MemoryQueue(), MemoryBlobStore()
    store = ErasedWhileIngesting(user, queue)
    ingestor = Ingestor(store, blobs, max_workers=1)
    ingestor.ingest(records[:200])
    store.erase = True
    outcome = ingestor.ingest(records[200:])

    assert outcome.failed  # its write to the shopper row met the tombstone
    failed = min(outcome.failed, key=lambda s: (len(s), s))
    again = ingestor.ingest([r for r in records[200:] if int(r.sequence) >= int(failed)])
    assert again.failed == [] and again.erased >= 1
    row = state_rows(store)["shoppers"][user]
    assert ShopperState.from_row(row) is None and row["erased_at"] == NOW and "first_seen" not in row
    # The worker, running after it, finds the sessions it wrote through the index.
    complete_erasure(store, blobs, user, queue.sent[0]["erasure_id"])
    assert not [s for s in state_rows(store)["sessions"].values() if s["user_id"] == user]


def test_readers_take_a_tombstone_for_no_shopper():
    user = "u3"
    store, blobs, _ = erased_midway(user=user)
    row = state_rows(store)["shoppers"][user]
    assert ShopperState.from_row(row) is None
    # State a racing batch wrote beside the tombstone, from events up to the erasure, is no shopper either.
    assert ShopperState.from_row({**row, "first_seen": NOW - 5, "last_seen": NOW - 1, "events": 3}) is None
    assert ShopperState.from_row({**row, "first_seen": NOW + 5, "last_seen": NOW + 9, "events": 3}) is not None
    assert row_features(row, NOW) is None
    assert user not in {s.user_id for s in persona_shoppers(store)} and list(persona_shoppers(store))
    recommender = Recommender(store, RankingModel.from_stored(default_model(MODEL_NAME)), clock=lambda: NOW)
    assert recommender.profile(user) is None and recommender.profile("u4") is not None
    assert recommender.feed(user, n=5).items  # a cold start, like a stranger's


def test_two_erasures_rewriting_the_same_archive_objects_at_once_both_take_their_shoppers_out():
    import threading

    events = [{"event_id": f"e{n}", "event_type": "view", "user_id": user, "session_id": f"s-{user}",
               "item_id": f"i{n}", "timestamp": f"2026-11-02T11:00:{n:02d}Z"}
              for n, user in enumerate(["alice", "bob"] * 5)]
    store, blobs = ingest(events)
    queue = MemoryQueue()
    for user in ("alice", "bob"):
        request_erasure(store, queue, user, now=NOW)
    both_read = threading.Barrier(2)
    first_read = threading.local()

    class Racing(MemoryBlobStore):
        """The same objects; each worker's first read of an archive object waits until the other has read it too."""

        def __init__(self):
            self.__dict__ = blobs.__dict__

        def get(self, key):
            found = super().get(key)
            if key.startswith("archive/") and not getattr(first_read, "done", False):
                first_read.done = True
                both_read.wait(timeout=10)
            return found

    done = {}

    def work(message):
        done[message["user_id"]] = complete_erasure(store, Racing(), message["user_id"], message["erasure_id"],
                                                    now=lambda: NOW + 5, workers=1)

    threads = [threading.Thread(target=work, args=(message,)) for message in queue.sent]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(d["status"] == "done" and d["removed"]["archive_events"] == 5 for d in done.values())
    assert archived(blobs) == []  # before, the later write put back what the earlier one took out


def test_an_erasure_of_more_archive_objects_than_a_run_rewrites_moves_on_with_every_run(monkeypatch):
    import tailor.erasure as erasure_module

    monkeypatch.setattr(erasure_module, "OBJECTS_PER_SAVE", 3)
    events = [{"event_id": f"e{n}", "event_type": "view", "user_id": "u-busy", "session_id": "s-busy",
               "item_id": f"i{n}", "timestamp": f"2026-11-02T10:{n // 60:02d}:{n % 60:02d}Z"} for n in range(40)]
    store, blobs = ingest(events, batch=4)  # one day, ten objects
    expected_store, expected_blobs = ingest(events, batch=4)
    expected = erase(expected_store, expected_blobs, "u-busy")
    queue = MemoryQueue()
    request_erasure(store, queue, "u-busy", now=NOW)
    erasure_id = queue.sent[0]["erasure_id"]
    runs = 0
    while True:
        runs += 1
        clock = iter([100.0, 10.0])  # each run's deadline comes near after one save
        try:
            done = complete_erasure(store, blobs, "u-busy", erasure_id, now=lambda: NOW + 5,
                                    seconds_left=lambda: next(clock, 10.0))
            break
        except ErasureIncomplete:
            assert runs < 10
    assert runs == 4 and done["removed"] == expected["removed"] and done["removed"]["archive_events"] == 40
    assert blobs.objects == expected_blobs.objects


def test_events_a_failed_batch_archived_before_the_tombstone_came_go_when_its_replay_drops_them():
    """The batch read the shopper's row before the DELETE, archived their events of a day the row had not indexed yet,
    and met the tombstone at its row write: its replay drops those events, and takes them out of the archive too."""
    user = "u1"
    earlier = history(user, 2, years=0.01, end=datetime(2026, 10, 1, tzinfo=UTC))
    others = [dict(e, user_id="v1", session_id="v1-" + e["session_id"], event_id="v1-" + e["event_id"])
              for e in history(user, 3, years=0.01, end=datetime(2026, 10, 20, tzinfo=UTC))]
    later = history(user, 2, years=0.01, end=datetime(2026, 10, 20, tzinfo=UTC))  # a day the row does not index
    later = [dict(e, event_id="late-" + e["event_id"], session_id="late-" + e["session_id"]) for e in later]
    records = to_records(earlier + others + later)
    first, second = records[:len(earlier)], records[len(earlier):]

    queue, blobs = MemoryQueue(), MemoryBlobStore()
    store = ErasedWhileIngesting(user, queue)
    ingestor = Ingestor(store, blobs, max_workers=1)
    assert ingestor.ingest(first).failed == []
    store.erase = True
    outcome = ingestor.ingest(second)
    assert outcome.failed  # its write to the shopper row met the tombstone
    assert any(e["user_id"] == user and e["event_id"].startswith("late-") for e in archived(blobs))  # archived first

    failed = min(outcome.failed, key=lambda s: (len(s), s))
    again = ingestor.ingest([r for r in second if int(r.sequence) >= int(failed)])
    assert again.failed == [] and again.erased >= 1
    complete_erasure(store, blobs, user, queue.sent[0]["erasure_id"])
    assert [e for e in archived(blobs) if e["user_id"] == user] == []
    assert sorted(e["event_id"] for e in archived(blobs)) == sorted(e["event_id"] for e in others)


def test_a_delivery_that_cannot_take_archived_events_out_fails_from_them_and_the_next_one_does():
    user = "u1"
    events = history(user, 2, years=0.01, end=datetime(2026, 10, 1, tzinfo=UTC))
    events += [dict(e, user_id="v1", event_id="v1-" + e["event_id"], session_id="v1-" + e["session_id"])
               for e in events]
    records = to_records(events)
    store, blobs = MemoryStateStore(), UnreadableBlobs("archive/")
    ingestor = Ingestor(store, blobs, max_workers=1)
    assert ingestor.ingest(records).failed == []
    request_erasure(store, MemoryQueue(), user, now=NOW)
    blobs.failing = True
    first_of_theirs = min((r for r in records if json.loads(r.data)["user_id"] == user), key=lambda r: r.position)
    assert ingestor.ingest(records).failed == [r.sequence for r in records if r.position >= first_of_theirs.position]
    blobs.failing = False
    assert any(e["user_id"] == user for e in archived(blobs))
    assert ingestor.ingest(records).failed == []
    assert [e for e in archived(blobs) if e["user_id"] == user] == []
    assert len(archived(blobs)) == len(events) // 2


def _view(user: str, n: int, when: datetime) -> dict:
    return {"event_id": f"{user}-{n}", "user_id": user, "session_id": f"{user}-s",
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "event_type": "view", "item_id": f"i{n % 7}",
            "category": "c1"}


def test_a_batch_of_only_an_erased_shoppers_events_writes_no_archive_object():
    user = "u1"
    store, blobs = ingest(history(user, 2, years=0.01, end=datetime(2026, 10, 1, tzinfo=UTC)))
    request_erasure(store, MemoryQueue(), user, now=NOW)
    before = dict(blobs.objects)
    day = datetime(2026, 10, 20, 9, tzinfo=UTC)  # no object of that day yet, and none written for their events
    outcome = Ingestor(store, blobs, max_workers=1).ingest(to_records([_view(user, 100, day), _view(user, 101, day)],
                                                                      start=100))
    assert outcome.failed == [] and outcome.erased == 2
    assert blobs.objects == before


class ThrottledOnce(ErasedWhileIngesting):
    """Fails the next write of each (table, key) in `throttled` once, as a throttle would."""

    def __init__(self, user: str, queue: MemoryQueue):
        super().__init__(user, queue)
        self.throttled: set[tuple[str, str]] = set()

    def write_state(self, table, key, fields, **kwargs):
        if (table, key) in self.throttled:
            self.throttled.discard((table, key))
            raise ConnectionError("throttled")
        return super().write_state(table, key, fields, **kwargs)


def test_a_replay_that_drops_events_never_archived_reads_only_the_latest_deliveries_objects():
    day = datetime(2026, 10, 20, 8, tzinfo=UTC)
    store, blobs = ThrottledOnce("nobody", MemoryQueue()), ListingBlobs()
    ingestor = Ingestor(store, blobs, max_workers=1)
    sequence = 0
    for batch in range(300):  # a busy shard-day: an object a batch
        events = [_view(f"o{batch}", k, day + timedelta(seconds=batch * 10 + k)) for k in range(3)]
        assert ingestor.ingest(to_records(events, start=sequence)).failed == []
        sequence += len(events)
    for user in ("e1", "e2"):
        assert ingestor.ingest(to_records([_view(user, 0, day)], start=sequence)).failed == []
        sequence += 1
        request_erasure(store, MemoryQueue(), user, now=NOW)
    # Their events still on the stream, between two others', one of whose session writes is throttled once.
    batch = [_view(u, 10 + k, day + timedelta(hours=1, minutes=k)) for u in ("e1", "e2") for k in range(2)]
    records = to_records([_view("w", 0, day + timedelta(hours=2)), *batch, _view("z", 0, day + timedelta(hours=3))],
                         start=sequence)
    store.throttled.add(("sessions", "w-s"))
    first = ingestor.ingest(records)
    assert first.erased == 4 and first.failed
    reads = blobs.gets
    again = ingestor.ingest([r for r in records if r.sequence in first.failed])
    assert again.failed == [] and again.erased == 4
    assert blobs.gets - reads <= RECENT_ARCHIVE_KEYS < 300  # not the shard-day's every object
    # What they did before the DELETE is the Erase worker's (their rows indexed it); the rest was never archived.
    assert sorted(e["event_id"] for e in archived(blobs) if e["user_id"] in ("e1", "e2")) == ["e1-0", "e2-0"]


def test_a_racing_backfill_of_more_days_than_the_checkpoint_keeps_leaves_nothing_of_the_shopper():
    """One delivery may archive events of up to 100 days (a backfill): the checkpoint names every object it wrote."""
    user = "u1"
    earlier = history(user, 2, years=0.01, end=datetime(2026, 10, 1, tzinfo=UTC))
    backfill = [_view("v1", k, datetime(2025, 1, 1, 9, tzinfo=UTC) + timedelta(days=k))
                for k in range(RECENT_ARCHIVE_KEYS + 6)]
    queue, blobs = MemoryQueue(), MemoryBlobStore()
    store = ErasedWhileIngesting(user, queue)
    ingestor = Ingestor(store, blobs, max_workers=1)
    assert ingestor.ingest(to_records(earlier)).failed == []
    racing = to_records([*backfill, _view(user, 100, datetime(2026, 10, 20, 9, tzinfo=UTC))], start=len(earlier))
    store.erase = True
    outcome = ingestor.ingest(racing)
    assert outcome.failed
    again = ingestor.ingest([r for r in racing if int(r.sequence) >= int(min(outcome.failed, key=int))])
    assert again.failed == [] and again.erased == 1
    complete_erasure(store, blobs, user, queue.sent[0]["erasure_id"])
    assert [e for e in archived(blobs) if e["user_id"] == user] == []
    (checkpoint,) = store.snapshot()["checkpoints"].values()
    assert len(checkpoint[RECENT_KEYS]) == len(backfill) + 1  # the racing delivery's, its replay writing none
    later = to_records([_view("v2", 0, datetime(2026, 10, 21, tzinfo=UTC))], start=len(earlier) + len(racing))
    assert ingestor.ingest(later).failed == []
    (checkpoint,) = store.snapshot()["checkpoints"].values()
    assert len(checkpoint[RECENT_KEYS]) == 1  # no replay: no later delivery can want an earlier one's objects


@pytest.mark.parametrize("others_on", ["the same day", "the next day"])
def test_a_racing_delivery_whose_archive_checkpoint_failed_leaves_nothing_of_the_shopper_and_no_copies(others_on):
    """The replay names its objects as the first delivery did and writes them again without the shopper's lines: a
    day that held only theirs too (an empty object over the first delivery's)."""
    user = "u1"
    earlier = history(user, 2, years=0.01, end=datetime(2026, 10, 1, tzinfo=UTC))
    day = datetime(2026, 10, 20, 9, tzinfo=UTC)  # a day the row does not index
    later = day + timedelta(days=0 if others_on == "the same day" else 1)
    second = [_view(user, 100, day)] + [_view("v1", k, later + timedelta(minutes=k + 1)) for k in range(3)]
    queue, blobs = MemoryQueue(), MemoryBlobStore()
    store = ThrottledOnce(user, queue)
    ingestor = Ingestor(store, blobs, max_workers=1)
    assert ingestor.ingest(to_records(earlier)).failed == []
    records = to_records(second, start=len(earlier))
    store.erase = True
    store.throttled.add(("checkpoints", "archive:" + records[0].shard))
    outcome = ingestor.ingest(records)
    assert outcome.failed
    again = ingestor.ingest([r for r in records if int(r.sequence) >= int(min(outcome.failed, key=int))])
    assert again.failed == [] and again.erased == 1
    complete_erasure(store, blobs, user, queue.sent[0]["erasure_id"])
    assert sorted(e["event_id"] for e in archived(blobs)) == [f"v1-{k}" for k in range(3)]


class CompactingBlobs(ListingBlobs):
    """Runs a whole compaction of the archive the first time an object is read while `store` is set."""

    def __init__(self):
        self.now = 1_000_000.0
        super().__init__(clock=lambda: self.now)
        self.store = None

    def get_tagged(self, key):
        found = super().get_tagged(key)
        if self.store is not None and not is_part(key):
            store, self.store = self.store, None
            self.now += 2 * 3600
            compact_archive(self, store, now=self.now, days=0)
        return found


def test_a_compaction_merging_an_object_while_a_replay_takes_the_shopper_out_leaves_nothing_of_them():
    user = "u1"
    earlier = history(user, 2, years=0.01, end=datetime(2026, 10, 1, tzinfo=UTC))
    day = datetime(2026, 10, 20, 9, tzinfo=UTC)
    others = [_view(f"v{k}", k, day + timedelta(minutes=k)) for k in range(6)]
    queue, blobs = MemoryQueue(), CompactingBlobs()
    store = ErasedWhileIngesting(user, queue)
    ingestor = Ingestor(store, blobs, max_workers=1)
    assert ingestor.ingest(to_records(earlier)).failed == []
    assert ingestor.ingest(to_records(others[:3], start=len(earlier))).failed == []
    racing = to_records([_view(user, 100, day + timedelta(minutes=30)), *others[3:]], start=len(earlier) + 3)
    store.erase = True
    outcome = ingestor.ingest(racing)
    assert outcome.failed
    blobs.store = store  # the compaction runs between the replay's read of an object and its rewrite
    again = ingestor.ingest([r for r in racing if int(r.sequence) >= int(min(outcome.failed, key=int))])
    assert again.failed == [] and any(is_part(key) for key in blobs.list("archive/"))
    kept = list(archived_events(blobs))  # the parts in place of the objects they merged, as readers take them
    assert [e for e in kept if e["event_id"] == "u1-100"] == []
    assert [e for e in archived(blobs) if e["event_id"] == "u1-100"] == []  # and in every object, merged or not
    assert sorted(e["event_id"] for e in kept if e["user_id"] != user) == sorted(
        e["event_id"] for e in earlier + others if e["user_id"] != user)



@pytest.mark.parametrize("first_seen_on", ["another shard", "nowhere"])
def test_a_racing_batch_that_read_no_row_of_its_shard_meets_the_tombstone_too(first_seen_on):
    """Its shopper write expects no watermark of its shard, which a tombstone lacks as well: it is the erasure as
    read that makes the write fail, and the delivery again drop and take out what the first archived."""
    user = "u1"
    earlier = history(user, 2, years=0.01, end=datetime(2026, 10, 1, tzinfo=UTC))
    queue, blobs = MemoryQueue(), MemoryBlobStore()
    store = ErasedWhileIngesting(user, queue)
    ingestor = Ingestor(store, blobs, max_workers=1)
    if first_seen_on == "another shard":  # a row another shard's batches wrote, as after a reshard
        assert ingestor.ingest(to_records(earlier, SHARDS[0])).failed == []
    day = datetime(2026, 10, 20, 9, tzinfo=UTC)  # a day no index names
    racing = to_records([_view(user, 100, day), _view("v1", 1, day)], SHARDS[1], start=len(earlier))
    store.erase = True
    outcome = ingestor.ingest(racing)
    assert outcome.failed  # the erasure as read changed
    again = ingestor.ingest([r for r in racing if int(r.sequence) >= int(min(outcome.failed, key=int))])
    assert again.failed == [] and again.erased == 1
    for message in queue.sent:
        complete_erasure(store, blobs, user, message["erasure_id"])
    assert [e for e in archived(blobs) if e["user_id"] == user] == []
    assert [e["event_id"] for e in archived(blobs) if e["user_id"] != user] == ["v1-1"]
    assert ShopperState.from_row(store.snapshot()["shoppers"][user]) is None
