"""The next-item evaluation with item vectors: the modes, the blended lists it writes, cold-start points."""

from __future__ import annotations

import csv
from pathlib import Path

from tailor_lab.evaluation.nextitem import evaluate_next_item, load_session_rec_split
from tailor_lab.training.embeddings import EmbeddingParams

from .test_nextitem_eval import T0, write_session_rec

PARAMS = EmbeddingParams(dim=4, window=2)


def split(tmp_path: Path):
    """Chains 1 -> 2 -> 3 -> 4 thirty times and a rare pair 5 -> 6 twice; test sessions on both."""
    sessions = {s: ["1", "2", "3", "4"] for s in range(1, 31)}
    sessions.update({31: ["5", "6"], 32: ["6", "5"]})
    train = write_session_rec(tmp_path / "train.txt", sessions, T0)
    test = write_session_rec(tmp_path / "test.txt", {101: ["1", "2", "3"], 102: ["5", "6"]}, T0 + 86_400)
    return load_session_rec_split(train, test)


def test_train_only_mode_runs_no_live_replay_and_writes_the_blended_lists(tmp_path):
    out = tmp_path / "recs.csv"
    figures = evaluate_next_item(split(tmp_path), out, mode="train-only", embedding_params=PARAMS)
    assert set(figures["methods"]) == {"popularity", "co-occurrence", "sequential rules", "V-SKNN",
                                       "tailor (train-only)", "embeddings", "tailor + embeddings (train-only)"}
    assert figures["recommendations"] == "tailor + embeddings (train-only)"
    assert figures["methods"]["embeddings"]["hr"] > 0.5  # the vectors alone find most targets
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    assert [(r[0], r[1]) for r in rows[1:]] == [("101", "0"), ("101", "1"), ("102", "0")]


def test_live_mode_runs_no_train_only_pass_and_the_cold_points_are_the_rare_targets(tmp_path):
    figures = evaluate_next_item(split(tmp_path), None, mode="live", embedding_params=PARAMS)
    assert "tailor (train-only)" not in figures["methods"] and "tailor + embeddings (live)" in figures["methods"]
    cold = figures["cold_start"]
    assert cold["points"] == 1 and not cold["categories"]  # 5 -> 6: item 6 has two training interactions
    assert cold["methods"]["category popularity"]["hr"] == 1.0  # six items: all of them are the top 20


def test_without_embeddings_the_lists_are_tailors_own(tmp_path):
    figures = evaluate_next_item(split(tmp_path), tmp_path / "r.csv", mode="both", embeddings=False)
    assert figures["embeddings"] is None and figures["recommendations"] == "tailor (live)"
    assert "embeddings" not in figures["methods"]
