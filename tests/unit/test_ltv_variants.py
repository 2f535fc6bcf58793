"""The LTV variants' measurement: weekly windows of CDNOW-format logs, each variant scored beside BG/NBD."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tailor_lab.datasets import load_cdnow
from tailor_lab.evaluation.ltv import CALIBRATION_END, HOLDOUT_END, rfm_summary
from tailor_lab.evaluation.ltv_variants import Windows, measure
from tailor_lab.training.ltv import parse_events

from .test_ltv_eval import _write_cdnow_like


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    data = tmp_path_factory.mktemp("cdnow") / "cdnow.txt"
    _write_cdnow_like(data, customers=300, seed=5)
    return data, Windows(data)


def test_the_holdout_labels_are_each_customers_purchase_days_after_calibration(windows):
    data, w = windows
    events = [e for e in parse_events(load_cdnow(data)) if e.epoch < HOLDOUT_END.timestamp()]
    before, after = rfm_summary(events, CALIBRATION_END), rfm_summary(events, HOLDOUT_END)
    bought, _ = w.labels(39, 78)
    for i, user in enumerate(w.snaps[39].user_ids):
        assert bought[i] == after.x[after.index[user]] - before.x[before.index[user]]


def test_every_variant_is_scored_once_per_week_with_bgnbd_as_fitted_at_that_week(windows):
    _, w = windows
    rows = measure(w, [26])
    names = [r["variant"] for r in rows]
    assert len(names) == len(set(names)) and names[0] == "BG/NBD + Gamma-Gamma"
    assert all(r["as_of_week"] == 26 and r["horizon_weeks"] == 13 for r in rows)
    assert all(math.isfinite(r["mae_transactions"]) and r["predicted_transactions"] > 0 for r in rows)
    actual, _ = w.labels(26, 39)
    assert rows[0]["actual_transactions"] == pytest.approx(float(np.sum(actual)))


def test_only_the_variants_asked_for_are_scored_beside_bgnbd(windows):
    _, w = windows
    rows = measure(w, [26], only=["SHIPPED"])
    assert [r["variant"] for r in rows][0] == "BG/NBD + Gamma-Gamma" and len(rows) == 2
    assert "shipped recipe" in rows[1]["variant"]
