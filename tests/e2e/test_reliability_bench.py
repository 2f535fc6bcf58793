"""End to end: `tailor bench reliability` in a tiny configuration starts its own stack, runs every part, and writes
every figure; the bad input it sends gets no server error."""

import json

import pytest

from tailor_cli.main import main

from tests.helpers import ROOT

pytestmark = [pytest.mark.e2e]

TINY = [
    "--cases", "purchase price 1e308 x 10000,timestamp a year ahead,NaN literal,non-JSON body,bad UTF-8,"
               "deep nesting /events,deep nesting /rerank,injection strings as ids,unicode ids,"
               "stream: non-JSON,stream: purchase price 1e308 x 10000,stream: lone surrogate,stream: null byte in user_id",
    "--fuzz-examples", "1", "--fuzz-seconds", "20",
    "--crowd", "4", "--idle-feeds", "10",
    "--burst-requests", "2", "--burst-events", "5", "--burst-concurrency", "2",
    "--pause-events", "100", "--pause-s", "1", "--pause-posts", "1",
    "--big-sessions", "12", "--big-years", "2", "--small-sessions", "3", "--events-per-session", "2",
    "--drain-timeout", "120", "--erasure-timeout", "20",
]


def test_a_tiny_reliability_run_writes_every_figure_and_bad_input_gets_no_server_error(tmp_path, capsys):
    out = tmp_path / "reliability.json"
    assert main(["bench", "reliability", *TINY, "--template", str(ROOT / "template.yaml"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    table = capsys.readouterr().out

    assert report["benchmark"] == "reliability"
    for section in ("seed", "bad_input", "burst", "pause", "erasure", "stream", "checks", "goals", "meets_goals"):
        assert section in report, section
    unfinished = {part: s["error"] for part, s in report.items() if isinstance(s, dict) and "error" in s}
    assert not unfinished, unfinished
    assert report["burst"]["api_environments"] >= 3  # the burst's two POSTs beside a feed, each set up before timing
    for part in ("bad_input", "burst", "pause"):
        events = report[part]["events"]
        assert set(events) >= {"sent", "accepted", "applied", "lost", "double_counted"}, part
        assert events["applied"] <= events["accepted"] <= events["sent"], (part, events)
    assert len(report["bad_input"]["http"]["cases"]) == 9 and report["bad_input"]["stream"]["records"] == 4
    assert {"idle", "under_burst", "p99_ratio"} <= set(report["burst"])
    assert {"duplicated_on_stream", "duplicated_sent_again", "duplicated_sent_once"} <= set(report["stream"])
    assert [e["sessions"] for e in report["erasure"]] == [12, 3]
    assert all({"answer_s", "clean_s", "leftovers"} <= set(e) for e in report["erasure"])
    assert all(check["what"].split(" (")[0] in table for check in report["checks"])

    http_errors = report["bad_input"]["http"]["by_class"].get("5xx", 0)
    fuzz_errors = report["bad_input"]["fuzz"]["by_class"].get("5xx", 0)
    assert (http_errors, fuzz_errors) == (0, 0), [c for c in report["bad_input"]["http"]["cases"]
                                                  if c["class"] == "5xx"]
