"""Erasing a shopper from state ingested the real way: their rows, sessions and archived events go, nobody else's."""

import gzip
import json

from support import clean_run, random_events
from tailor.erasure import erase_shopper


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

    erased = erase_shopper(store, blobs, user)

    assert erased["shopper_deleted"] is True
    assert erased["sessions_deleted"] == len(own_sessions)
    assert erased["archive_events_removed"] == own_archived and erased["archive_objects_rewritten"] >= 1
    after = store.snapshot()
    assert user not in after["shoppers"] and not own_sessions & set(after["sessions"])
    others = {t: {k: v for k, v in rows.items() if not (t == "shoppers" and k == user) and
                  not (t == "sessions" and k in own_sessions)} for t, rows in before.items()}
    assert after == others
    remaining = archived(blobs)
    assert [e for e in remaining if e["user_id"] == user] == []
    assert remaining == [e for e in archived(clean_run(events)[1]) if e["user_id"] != user]


def test_erasing_again_or_erasing_a_stranger_changes_nothing_and_says_so():
    store, blobs = clean_run(random_events(6, 200))
    erase_shopper(store, blobs, "u1")
    snapshot, objects = store.snapshot(), dict(blobs.objects)
    for user in ("u1", "never-seen"):
        erased = erase_shopper(store, blobs, user)
        assert erased == {"user_id": user, "shopper_deleted": False, "sessions_deleted": 0, "archive_days_searched": 0,
                          "archive_objects_rewritten": 0, "archive_events_removed": 0}
    assert store.snapshot() == snapshot and blobs.objects == objects


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
    assert erase_shopper(store, blobs, "c")["shopper_deleted"] is True
    assert "c" not in store.snapshot()["shoppers"]
    erased = erase_shopper(store, blobs, "a")
    assert erased["archive_days_searched"] == 2 and erased["archive_events_removed"] == 2
    assert archived(blobs) == []
