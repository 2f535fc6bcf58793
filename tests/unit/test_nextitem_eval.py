"""The next-item evaluation: data splits, V-SKNN as published, the live replay, the outputs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from tailor_lab.evaluation.nextitem import (
    VSKNN,
    VSKNN_CONFIG,
    evaluate_next_item,
    load_diginetica_split,
    load_session_rec_split,
    main,
    validation_split,
)

T0 = 1_396_400_000  # an April 2014 epoch, like the YooChoose sample


def write_session_rec(path: Path, sessions: dict[int, list[str]], start: float) -> Path:
    """A session-rec file: sessions one after another, a minute between clicks."""
    lines = ["SessionId\tItemId\tTime"]
    t = start
    for session, items in sessions.items():
        for item in items:
            lines.append(f"{session}\t{item}\t{t:.3f}")
            t += 60
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, Path]:
    """Training sessions that always run 1 -> 2 -> 3 -> 4; test sessions that follow the chain."""
    train = write_session_rec(tmp_path / "train.txt", {s: ["1", "2", "3", "4"] for s in range(1, 31)}, T0)
    test = write_session_rec(tmp_path / "test.txt", {101: ["1", "2", "3"], 102: ["2", "3", "4"], 103: ["3", "99", "4"],
                                                    104: ["4"]}, T0 + 86_400)
    return train, test


def test_session_rec_split_drops_unknown_items_then_short_sessions(chain):
    split = load_session_rec_split(*chain)
    assert len(split.train) == 120
    kept = [(e["session_id"], e["item_id"]) for e in split.test]
    assert ("yt-103", "99") not in kept and all(s != "yt-104" for s, _ in kept)
    assert [i for s, i in kept if s == "yt-103"] == ["3", "4"]
    assert split.label("yt-101") == "101"


def test_test_sessions_numbered_as_training_sessions_are_sessions_of_their_own(tmp_path):
    train = write_session_rec(tmp_path / "train.txt", {s: ["1", "2", "3", "4"] for s in range(1, 31)}, T0)
    figures = {}
    for name, numbers in (("own", (101, 102)), ("reused", (1, 2))):  # a test file that numbers from 1 again
        test = write_session_rec(tmp_path / f"test-{name}.txt", {numbers[0]: ["2", "3", "4"], numbers[1]: ["3", "4", "1"]},
                                 T0 + 86_400)
        figures[name] = evaluate_next_item(load_session_rec_split(train, test), embeddings=False, mode="live")
    scored = {name: {m: (round(v["hr"], 9), round(v["mrr"], 9)) for m, v in f["methods"].items()}
              for name, f in figures.items()}
    assert scored["reused"] == scored["own"]


def test_a_learnable_chain_is_learned_through_ingest_and_written_in_the_session_rec_format(chain, tmp_path):
    out = tmp_path / "recs.csv"
    figures = evaluate_next_item(load_session_rec_split(*chain), out)
    assert figures["test"]["points"] == 2 + 2 + 1
    for name in ("tailor (live)", "tailor (train-only)", "sequential rules", "V-SKNN"):
        assert figures["methods"][name]["hr"] == 1.0, name
    # The training sessions never came back to an item: with the revisit odds the item vectors carry, the next one
    # in the chain comes first; a constant reminder (no vectors, so no odds) puts the last item itself first.
    assert figures["methods"]["tailor (train-only)"]["mrr"] == 1.0
    constant = evaluate_next_item(load_session_rec_split(*chain), embeddings=False, mode="train-only")
    assert constant["methods"]["tailor (train-only)"]["mrr"] < 1.0
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    assert rows[0] == ["SessionId", "Position", "Recommendations", "Scores"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("101", "0"), ("101", "1"), ("102", "0"), ("102", "1"), ("103", "0")]
    recs, scores = rows[1][2].split(","), [float(x) for x in rows[1][3].split(",")]
    assert recs[:2] == ["2", "3"] and len(recs) == len(scores) <= 20 and scores == sorted(scores, reverse=True)


def test_live_mode_learns_from_earlier_test_sessions_but_never_from_the_future(tmp_path):
    # Training never shows x followed by y; two test sessions do, one after the other. The lists are the associations'
    # alone: the item vectors of five items put y at a cosine with x that is 0 but for rounding, which the blend
    # would add at the end.
    train = write_session_rec(tmp_path / "train.txt", {1: ["x", "w", "u"], 2: ["z", "y"], 3: ["w", "x"]}, T0)
    test = write_session_rec(tmp_path / "test.txt", {11: ["x", "y"], 12: ["x", "y"]}, T0 + 86_400)
    out = tmp_path / "recs.csv"
    figures = evaluate_next_item(load_session_rec_split(train, test), out, embeddings=False)
    with open(out, newline="") as fh:
        lists = {r["SessionId"]: r["Recommendations"].split(",") for r in csv.DictReader(fh, delimiter=";")}
    assert "y" not in lists["11"]  # nothing before it linked x to y
    assert "y" in lists["12"]  # session 11 did, before session 12 began
    methods = figures["methods"]
    assert (methods["tailor (live)"]["hr"], methods["tailor (train-only)"]["hr"]) == (0.5, 0.0)
    assert (methods["V-SKNN (live events)"]["hr"], methods["V-SKNN"]["hr"]) == (0.5, 0.0)


def test_vsknn_scores_as_published():
    sessions = {"s1": [(1.0, "a"), (2.0, "b")], "s2": [(3.0, "a"), (4.0, "c")],
                "s3": [(5.0, "b"), (6.0, "c"), (7.0, "d")]}
    idf = {"a": math.log(3 / 2), "b": math.log(3 / 2), "c": math.log(3 / 2), "d": math.log(3)}
    # Prefix a, b: position weights a (1/2)^2, b 1 over 2 distinct items -> s1 0.625, s2 0.125, s3 0.5;
    # steps back to each neighbour's most recent shared item: s1 1 (b), s2 2 (a), s3 1 (b).
    contributions = {"a": 0.625 + 0.125 / 2, "b": 0.625 + 0.5, "c": 0.125 / 2 + 0.5, "d": 0.5}
    expected = {item: value * (1 + 5 * idf[item]) for item, value in contributions.items()}
    ranked = sorted(expected, key=lambda i: -expected[i])
    assert ranked == ["b", "d", "a", "c"]  # idf lifts the rare d over the more often met a and c
    assert VSKNN(sessions).recommend(["a", "b"]) == ranked
    # Only the most recent sharing session is a candidate with sample_size 1: s2 for prefix a.
    assert VSKNN(sessions, {**VSKNN_CONFIG, "sample_size": 1}).recommend(["a"]) == ["a", "c"]
    assert VSKNN(sessions).recommend(["unknown"]) == []


def write_views(path: Path, rows: list[tuple[int, str, int, str]]) -> Path:
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    lines += [f"{s};NA;{item};{tf};{day}" for s, item, tf, day in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_diginetica_split_follows_sr_gnn(tmp_path):
    rows = []
    for s in range(1, 6):  # training sessions, 2016-01-01..05, frequent items p and q
        rows += [(s, "q", 2000, f"2016-01-0{s}"), (s, "p", 1000, f"2016-01-0{s}")]
    rows += [(6, "p", 10, "2016-01-10"), (6, "rare", 20, "2016-01-10")]  # rare: seen once, dropped
    rows += [(7, "p", 10, "2016-01-14"), (7, "q", 20, "2016-01-14")]  # dated exactly 7 days before the last
    rows += [(8, "p", 10, "2016-01-20"), (8, "q", 20, "2016-01-21")]  # dated by its last line
    rows += [(9, "q", 10, "2016-01-21")]  # one view: dropped
    split = load_diginetica_split(write_views(tmp_path / "views.csv", rows))
    train = {}
    for e in split.train:
        train.setdefault(e["session_id"], []).append(e["item_id"])
    test = [(e["session_id"], e["item_id"]) for e in split.test]
    assert train == {f"dg-{s}": ["p", "q"] for s in range(1, 6)}  # ordered by timeframe
    assert test == [("dg-8", "p"), ("dg-8", "q")]
    loose = load_diginetica_split(tmp_path / "views.csv", min_item_support=1)
    assert [e["item_id"] for e in loose.train if e["session_id"] == "dg-6"] == ["p", "rare"]


def test_main_writes_the_figures_and_rejects_a_lone_session_rec_file(chain, tmp_path, capsys):
    train, test = chain
    assert main(["--train", str(train), "--test", str(test), "--out", str(tmp_path / "r.csv"),
                 "--json", str(tmp_path / "f.json")]) == 0
    figures = json.loads((tmp_path / "f.json").read_text())
    assert figures["vsknn_config"] == VSKNN_CONFIG
    assert set(figures["goal"]["met"]) == {"tailor (live)", "tailor (train-only)", "tailor + embeddings (live)",
                                           "tailor + embeddings (train-only)"}
    assert {"embeddings", "tailor + embeddings (live)"} <= set(figures["methods"])
    assert "V-SKNN" in capsys.readouterr().out
    assert main(["--train", str(train), "--out", str(tmp_path / "r2.csv")]) == 2
    assert "not a Diginetica item-views file" in capsys.readouterr().err


def test_validation_split_holds_out_the_last_days_of_training_and_never_reads_the_test(tmp_path):
    # Training: sessions 1-30 on day 0 (the chain), sessions 31-32 on day 2; the test file is never used.
    sessions = {s: ["1", "2", "3", "4"] for s in range(1, 31)}
    train = write_session_rec(tmp_path / "train.txt", sessions, T0)
    late = write_session_rec(tmp_path / "late.txt", {31: ["2", "3", "new"], 32: ["new", "4"]}, T0 + 2 * 86_400)
    both = tmp_path / "both.txt"
    both.write_text(train.read_text() + "".join(late.read_text().splitlines(keepends=True)[1:]))
    test = write_session_rec(tmp_path / "test.txt", {101: ["1", "2"]}, T0 + 3 * 86_400)
    split = validation_split(load_session_rec_split(both, test), days=1)
    assert {e["session_id"] for e in split.train} == {f"yc-{s}" for s in range(1, 31)}
    # "new" is unknown to the earlier sessions: dropped, and session 32 with it (one event left).
    assert [(e["session_id"], e["item_id"]) for e in split.test] == [("yc-31", "2"), ("yc-31", "3")]
    out = tmp_path / "val.csv"
    assert main(["--train", str(both), "--test", str(test), "--validation-days", "1", "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        assert [(r["SessionId"], r["Position"]) for r in csv.DictReader(fh, delimiter=";")] == [("31", "0")]


def test_tailor_is_measured_through_the_feed_routes_session_candidates(chain, monkeypatch):
    # The evaluation recommends with the API's SessionSource: changing it changes the measured figures.
    from tailor.ranking import candidates

    split = load_session_rec_split(*chain)
    before = evaluate_next_item(split)["methods"]["tailor (live)"]
    monkeypatch.setattr(candidates.SessionSource, "propose", lambda self, ctx, limit: {"none": 1.0})
    after = evaluate_next_item(split)["methods"]
    assert before["hr"] == 1.0 and after["tailor (live)"]["hr"] == after["tailor (train-only)"]["hr"] == 0.0
