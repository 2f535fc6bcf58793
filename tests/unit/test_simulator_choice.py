"""The simulator's choice model: shoppers click what they like and what is on top, drift to neighbouring categories,
and the events show only what a shop could see; calibration measures the simulator as it measures real shops."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from tailor.events import parse_event
from tailor_lab.datasets import SHARED_DATA
from tailor_lab.simulator import DEFAULT_PARAMETERS, Parameters, simulate
from tailor_lab.simulator.calibration import STATISTICS, calibrate, format_table, simulated_statistics
from tailor_lab.simulator.catalog import CATEGORY_NAMES, NEIGHBOURS
from tailor_lab.simulator.choices import Draws

DATA = SHARED_DATA


@pytest.fixture(scope="module")
def world():
    return simulate(shoppers=60, days=2.0, seed=5).world


def _clicks(world, shopper, listing, trials=4000, seed=1):
    choice = world.choice
    choice.draw = Draws(np.random.default_rng(seed))
    return Counter(choice.scan(shopper, listing, "listing") for _ in range(trials))


def test_an_examined_item_is_clicked_by_its_utility_to_the_shopper(world):
    shopper = world.shoppers[0]
    utility = world.choice.utility(shopper)
    liked, disliked = int(np.argmax(utility)), int(np.argmin(utility))
    # The same single slot: only the item differs.
    assert _clicks(world, shopper, [liked])[0] > 5 * max(1, _clicks(world, shopper, [disliked])[0])


def test_the_top_of_a_list_is_examined_more(world):
    shopper = world.shoppers[1]
    utility = world.choice.utility(shopper)
    item = int(np.argmax(utility))
    # The shopper's favourite, first or tenth behind items they dislike.
    dull = [int(i) for i in np.argsort(utility)[:9]]
    first = _clicks(world, shopper, [item] + dull)[0]
    tenth = _clicks(world, shopper, dull + [item])[9]
    assert first > 1.5 * tenth


def test_tastes_follow_the_persona_and_differ_by_shopper(world):
    by_persona: dict[int, list[np.ndarray]] = {}
    for shopper in world.shoppers:
        by_persona.setdefault(shopper.persona, []).append(shopper.style)
    spread_within = np.mean([np.std(np.array(v), axis=0).mean() for v in by_persona.values() if len(v) > 2])
    centres = np.array([np.mean(v, axis=0) for v in by_persona.values()])
    assert np.std(centres, axis=0).mean() > spread_within > 0


def test_exploring_drifts_to_neighbouring_categories():
    sim = simulate(shoppers=300, days=3.0, seed=9)
    index = {name: k for k, name in enumerate(CATEGORY_NAMES)}
    moves = Counter()
    last: dict[str, str] = {}
    for event in sim.events:
        if event["event_type"] != "category_browse":
            continue
        previous = last.get(event["session_id"])
        if previous is not None and previous != event["category"]:
            moves[index[event["category"]] in NEIGHBOURS[index[previous]]] += 1
        last[event["session_id"]] = event["category"]
    # Two neighbours of eleven other categories: far more often than by chance or by taste alone (about 0.25).
    assert moves[True] / sum(moves.values()) > 2 * 2 / 11


def test_events_carry_only_what_a_shop_sees():
    sim = simulate(shoppers=40, days=1.0, seed=3)
    hidden = {"utility", "quality", "style", "examined", "persona", "intent"}
    for event in sim.events:
        parse_event(event)
        assert not hidden & set(event)
    widget = sim.truth["widget"]
    assert len(widget["impressions"]) == DEFAULT_PARAMETERS.widget_slots
    assert sum(widget["clicks"]) < 0.05 * widget["impressions"][0]


def test_parameters_refuse_nonsense():
    with pytest.raises(ValueError, match="visit_scale"):
        Parameters(visit_scale=-1.0)
    with pytest.raises(ValueError, match="click_temperature"):
        Parameters(click_temperature=0.0)


def test_parameters_change_behaviour():
    loyal = simulate(shoppers=150, days=1.0, seed=4, params=Parameters(revisit=0.9))
    fickle = simulate(shoppers=150, days=1.0, seed=4, params=Parameters(revisit=0.0))
    assert (simulated_statistics(loyal.events, loyal.truth)["diginetica"]["repeated_view_share"]
            > simulated_statistics(fickle.events, fickle.truth)["diginetica"]["repeated_view_share"] + 0.1)


def test_calibration_reports_every_statistic_without_real_data(tmp_path):
    report = calibrate(tmp_path, shoppers=800, days=35.0, seed=2)
    rows = report["statistics"]
    assert [(r["name"], r["source"]) for r in rows] == [(s.name, s.source) for s in STATISTICS]
    assert all(r["real"] is None and r["pass"] is None for r in rows)
    assert all(r["simulated"] is not None for r in rows)
    assert "real data missing" in format_table(report)


@pytest.mark.skipif(not DATA.exists(), reason="the real data sets (../shared/data) are not here")
def test_the_default_simulator_passes_every_calibration_statistic():
    report = calibrate(DATA)
    failed = [r for r in report["statistics"] if r["pass"] is not True]
    assert not failed, format_table(report)
    for row in report["statistics"]:
        assert set(row) >= {"simulated", "real", "tolerance", "pass"}
        assert math.isfinite(row["tolerance"])
