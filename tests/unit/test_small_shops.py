"""Small shops cut from a session log: consecutive sessions, the last of them the test, session-rec's filter."""

from __future__ import annotations

import pytest

from tailor_lab.datasets import load_yoochoose
from tailor_lab.evaluation.small_shops import Shop, cut_shop, measure

from .test_nextitem_eval import T0, write_session_rec


@pytest.fixture
def log(tmp_path):
    """40 sessions that run 1 -> 2 -> 3 -> 4, then 20 that run 5 -> 6 -> 7; session 59 also views item 99 once."""
    sessions = {s: ["1", "2", "3", "4"] for s in range(1, 41)} | {s: ["5", "6", "7"] for s in range(41, 61)}
    sessions[59] = ["5", "99", "6"]
    return write_session_rec(tmp_path / "log.txt", sessions, T0)


def test_a_shop_is_a_run_of_consecutive_sessions_whose_last_ones_are_its_test(log):
    split = cut_shop(list(load_yoochoose(log)), Shop("shop", "log.txt", first=30, sessions=20))
    train = {e["session_id"] for e in split.train}
    test = {e["session_id"] for e in split.test}
    assert train == {f"yc-{s}" for s in range(31, 48)} and test == {f"yt-{s}" for s in range(48, 51)}
    assert split.name == "shop (17 + 3 sessions)"
    with pytest.raises(ValueError, match="none from session 60"):
        cut_shop(list(load_yoochoose(log)), Shop("late", "log.txt", first=60, sessions=5))


def test_the_test_keeps_the_items_its_shop_saw_in_training(log):
    split = cut_shop(list(load_yoochoose(log)), Shop("shop", "log.txt", first=40, sessions=20))
    assert [e["item_id"] for e in split.test if e["session_id"] == "yt-59"] == ["5", "6"]  # 99 was never trained on


def test_each_shop_is_measured_against_v_sknn_in_both_modes(log):
    rows = measure(log.parent, [Shop("chain", "log.txt", first=0, sessions=40)])
    assert rows[0]["shop"] == "chain" and rows[0]["test"]["sessions"] == 6
    assert {"tailor + embeddings (train-only) vs V-SKNN", "tailor + embeddings (live) vs V-SKNN (live events)"} <= set(
        rows[0]["relative"])
    assert rows[0]["methods"]["tailor (train-only)"]["hr"] == pytest.approx(1.0)  # the chain is learned
