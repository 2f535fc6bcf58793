"""tailor evaluate adaptation on a small simulation: the figures its JSON promises, the three feeds on the same
sessions, and the drift option off unless asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tailor_lab.evaluation import adaptation
from tailor_lab.simulator import simulate
from tailor_lab.simulator.drift import interest_path


def test_the_report_carries_the_goals_figures(tmp_path):
    out = tmp_path / "adaptation.json"
    assert adaptation.main(["--seed", "5", "--shoppers", "40", "--visits", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for key in ("share_of_oracle", "share_of_oracle_interval", "no_drift_difference", "no_drift_difference_interval"):
        assert key in report
    low, high = report["no_drift_difference_interval"]
    assert low <= report["no_drift_difference"] <= high
    feeds = report["drift"]["feeds"]
    assert (feeds["static"]["impressions"] == feeds["adaptive"]["impressions"] == feeds["oracle"]["impressions"]
            == feeds["ideal"]["impressions"])
    low, high = report["ideal_share_of_oracle_interval"]
    assert low <= report["ideal_share_of_oracle"] <= high
    assert all(len(pages) == len(report["drift"]["ctr_by_page"]["static"]) for pages in report["drift"]["ctr_by_page"].values())
    assert set(report["drift"]["after_first_page"]) == {"share_of_oracle", "ideal_share_of_oracle"}
    assert len(report["drift"]["regret"]["adaptive"]) == adaptation.REGRET_IMPRESSIONS
    assert 0 < report["session_state_bytes"]["mean"] < 1024


def test_interests_drift_only_when_asked():
    shopper = simulate(shoppers=3, days=1, seed=2).world.shoppers[0]
    steady = interest_path(np.random.default_rng(1), shopper, 30)
    assert len(set(steady)) == 1
    moving = interest_path(np.random.default_rng(1), shopper, 30, drift=0.5)
    assert moving[0] == steady[0] and len(set(moving)) > 1
    with pytest.raises(ValueError, match="drift"):
        interest_path(np.random.default_rng(1), shopper, 3, drift=1.5)


def test_the_ab_test_runs_through_the_experiment_framework():
    setting = adaptation.Setting(shoppers=40, visits=1, seed=5)
    world = adaptation._World.build(setting, lambda _: None)
    ab = adaptation.ab_test(world, setting, adaptation.BanditParams())
    assert sum(ab["units"].values()) == 40 and min(ab["units"].values()) > 0
    # Every page served reached the statistics: its events were not taken for another page's sent again.
    pages = 0
    for shopper in world.history.world.shoppers:
        more = np.random.default_rng([setting.seed, 17, shopper.index, 0]).random(setting.pages)
        pages += 1 + int(np.argmin(np.append(more[1:] < setting.keep_going, False)))
    assert sum(ab["pages"].values()) == pages
    assert set(ab["ctr"]) == {"static", "adaptive"} and all(v > 0 for v in ab["ctr"].values())
    assert ab["difference"] == pytest.approx(ab["ctr"]["adaptive"] - ab["ctr"]["static"])
    low, high = ab["relative_lift"]["low"], ab["relative_lift"]["high"]
    assert low <= ab["relative_lift"]["value"] <= high
