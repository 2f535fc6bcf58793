"""The data-set loaders turn YooChoose, Diginetica and CDNOW files into valid, time-ordered events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tailor.events import parse_event
from tailor_lab.datasets import SHARED_DATA, load_cdnow, load_diginetica, load_yoochoose

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REAL_DATA = SHARED_DATA


def _iso(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{round(epoch_seconds * 1000) % 1000:03d}Z"


def _assert_stream(events: list[dict]) -> None:
    for event in events:
        parse_event(event)
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert all(s.endswith("Z") for s in stamps)


# -- YooChoose ----------------------------------------------------------------------------------

def test_yoochoose_clicks_become_view_events_in_time_order():
    events = list(load_yoochoose(FIXTURES / "yoochoose_clicks.txt"))
    _assert_stream(events)
    assert len(events) == 12
    assert Counter(e["event_type"] for e in events) == {"view": 12}
    # Session 5 is last in the file but earliest in time.
    first = events[0]
    assert first["session_id"] == "yc-5" and first["user_id"] == "yc-5"
    assert first["timestamp"] == "2014-03-31T21:06:40.000Z" == _iso(1396300000)
    assert first["event_id"] == "yc-yoochoose_clicks-11"  # file line 11
    by_session = Counter(e["session_id"] for e in events)
    assert by_session == {"yc-5": 3, "yc-17": 4, "yc-31": 3, "yc-44": 2}


def test_yoochoose_keeps_millisecond_times_and_session_order():
    events = list(load_yoochoose(FIXTURES / "yoochoose_clicks.txt"))
    session = [e for e in events if e["session_id"] == "yc-17"]
    assert [e["item_id"] for e in session] == ["900205", "900206", "900205", "900207"]
    assert [e["timestamp"] for e in session] == [_iso(1396400000.001), _iso(1396400012.9), _iso(1396400050),
                                                 _iso(1396400101.333)]
    assert session[-1]["timestamp"] == "2014-04-02T00:55:01.333Z"


def test_yoochoose_replay_gives_the_same_ids():
    first = [e["event_id"] for e in load_yoochoose(FIXTURES / "yoochoose_clicks.txt")]
    again = [e["event_id"] for e in load_yoochoose(FIXTURES / "yoochoose_clicks.txt")]
    assert first == again


def test_yoochoose_rejects_a_malformed_line(tmp_path):
    bad = tmp_path / "clicks.txt"
    bad.write_text("SessionId\tItemId\tTime\n1\t2\tnot-a-time\n")
    with pytest.raises(ValueError, match=r"clicks.txt:2"):
        list(load_yoochoose(bad))


# -- Diginetica ---------------------------------------------------------------------------------

def _diginetica() -> list[dict]:
    return list(load_diginetica(FIXTURES / "diginetica_views.csv", FIXTURES / "diginetica_purchases.csv",
                                FIXTURES / "diginetica_categories.csv"))


def test_diginetica_views_and_purchases_form_one_stream():
    events = _diginetica()
    _assert_stream(events)
    assert Counter(e["event_type"] for e in events) == {"view": 11, "purchase": 4}
    purchases = [e for e in events if e["event_type"] == "purchase"]
    assert {e["order_id"] for e in purchases} == {"dg-9001", "dg-9002"}
    assert all(e["price"] == 0.0 and e["quantity"] == 1 for e in purchases)  # no prices in the data


def test_diginetica_times_follow_timeframe_within_a_session():
    events = _diginetica()
    session = [e for e in events if e["session_id"] == "dg-1"]
    # The file lists the views out of order; timeframe (5 s, 20 s, 65 s) orders them.
    assert [e["item_id"] for e in session] == ["5002", "5003", "5001"]
    moments = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in session]
    assert [(b - a).total_seconds() for a, b in zip(moments, moments[1:])] == [15.0, 45.0]
    assert all(e["timestamp"].startswith("2016-05-09") for e in session)


def test_diginetica_session_across_midnight_keeps_each_event_on_its_date():
    events = _diginetica()
    session = [e for e in events if e["session_id"] == "dg-3"]
    # timeframe 0 on 05-09 and 1 h on 05-10: the session must have begun in the last hour of 05-09.
    assert [e["timestamp"] for e in session] == ["2016-05-09T23:29:59.999Z", "2016-05-10T00:29:59.999Z"]


def test_diginetica_users_come_from_the_row_or_its_session():
    events = _diginetica()
    users = {e["session_id"]: {x["user_id"] for x in events if x["session_id"] == e["session_id"]} for e in events}
    assert users["dg-1"] == {"dg-s1"}  # anonymous session
    assert users["dg-2"] == {"dg-u77"}
    assert users["dg-4"] == {"dg-u501"}  # views anonymous, the purchase names the shopper
    assert users["dg-5"] == {"dg-s5"}
    assert users["dg-6"] == {"dg-u88"}  # one row names the shopper, the other is NA


def test_diginetica_categories_attach_to_item_events():
    events = _diginetica()
    categories = {e["item_id"]: e.get("category") for e in events}
    assert categories["5001"] == "11" and categories["5007"] == "44"
    assert categories["5006"] is None and categories["5009"] is None  # not in the category file
    without = list(load_diginetica(FIXTURES / "diginetica_views.csv"))
    assert len(without) == 11 and not any("category" in e for e in without)


def test_diginetica_duplicate_rows_stay_distinct_events():
    events = _diginetica()
    repeated = [e for e in events if e["session_id"] == "dg-5"]
    assert [e["event_id"] for e in repeated] == ["dg-diginetica_purchases-4", "dg-diginetica_purchases-5"]


def test_diginetica_rejects_a_file_without_the_expected_header(tmp_path):
    bad = tmp_path / "views.csv"
    bad.write_text("a;b;c\n1;2;3\n")
    with pytest.raises(ValueError, match="lacks column"):
        list(load_diginetica(bad))


# -- CDNOW --------------------------------------------------------------------------------------

def test_cdnow_master_lines_become_purchases():
    events = list(load_cdnow(FIXTURES / "cdnow_master.txt"))
    _assert_stream(events)
    assert len(events) == 12
    assert {e["event_type"] for e in events} == {"purchase"}
    assert {e["user_id"] for e in events} == {f"cdnow-{i}" for i in range(1, 7)}
    line = next(e for e in events if e["event_id"] == "cdnow-2-19970112-1")
    assert line["quantity"] == 5 and line["price"] == pytest.approx(15.4)
    assert line["order_id"] == "cdnow-2-19970112-1"
    assert line["session_id"] == "cdnow-2-19970112"
    assert line["timestamp"] == "1997-01-12T12:00:01.000Z"  # the customer-day's second line
    assert sum(e["price"] * e["quantity"] for e in events) == pytest.approx(295.90)
    free = next(e for e in events if e["user_id"] == "cdnow-5")
    assert free["price"] == 0.0 and free["quantity"] == 3


def test_cdnow_one_session_per_customer_day():
    events = list(load_cdnow(FIXTURES / "cdnow_master.txt"))
    sessions = Counter(e["session_id"] for e in events)
    assert len(sessions) == 11 and sessions["cdnow-2-19970112"] == 2


def test_cdnow_sample_format_names_the_same_purchases_as_the_master():
    master = {e["event_id"]: e for e in load_cdnow(FIXTURES / "cdnow_master.txt")}
    sample = list(load_cdnow(FIXTURES / "cdnow_sample.txt"))
    _assert_stream(sample)
    assert len(sample) == 7
    for event in sample:
        assert master[event["event_id"]] == event


def test_cdnow_rejects_an_unknown_layout(tmp_path):
    bad = tmp_path / "cdnow.txt"
    bad.write_text("00001 19970101 1\n")
    with pytest.raises(ValueError, match="columns"):
        list(load_cdnow(bad))


# -- the published files, when present ------------------------------------------------------------

needs_data = pytest.mark.skipif(not REAL_DATA.is_dir(), reason="the shared data sets are not on this machine")


def _count_sorted_unique(events) -> tuple[int, Counter, set]:
    count, types, users, ids, last = 0, Counter(), set(), set(), ""
    for event in events:
        assert event["timestamp"] >= last
        last = event["timestamp"]
        ids.add(event["event_id"])
        types[event["event_type"]] += 1
        users.add(event["user_id"])
        count += 1
    assert len(ids) == count
    return count, types, users


@needs_data
def test_real_yoochoose_row_counts():
    count, types, _ = _count_sorted_unique(load_yoochoose(REAL_DATA / "yoochoose-100k" / "train_tr.txt"))
    assert count == types["view"] == 53_254
    count, _, _ = _count_sorted_unique(load_yoochoose(REAL_DATA / "yoochoose-100k" / "train_valid.txt"))
    assert count == 16_539


@needs_data
def test_real_diginetica_row_counts():
    folder = REAL_DATA / "diginetica"
    events = list(load_diginetica(folder / "train-item-views-sample.csv", folder / "train-purchases.csv",
                                  folder / "product-categories.csv"))
    count, types, _ = _count_sorted_unique(events)
    assert types == {"view": 12_391, "purchase": 18_025}
    assert len({e["session_id"] for e in events if e["event_type"] == "view"}) == 2_986
    assert len({e["order_id"] for e in events if e["event_type"] == "purchase"}) == 13_506
    for event in events[:: max(1, count // 500)]:
        parse_event(event)


@needs_data
def test_real_cdnow_row_counts():
    count, _, users = _count_sorted_unique(load_cdnow(REAL_DATA / "cdnow" / "CDNOW_master.txt"))
    assert count == 69_659 and len(users) == 23_570
    count, _, users = _count_sorted_unique(load_cdnow(REAL_DATA / "cdnow" / "CDNOW_sample.txt"))
    assert count == 6_919 and len(users) == 2_357
