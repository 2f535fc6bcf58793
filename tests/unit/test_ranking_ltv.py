"""The feed's ranking option that weighs the purchase-probability term by the shopper's predicted LTV (spec 004)."""

from __future__ import annotations

import pytest

from tailor.ranking.context import RankingContext, Request
from tailor.ranking.pipeline import Pipeline
from tailor.ranking.scoring import DEFAULT_WEIGHTS, ltv_adjusted
from tailor.store.memory import MemoryStateStore

FEED = DEFAULT_WEIGHTS["feed"]


@pytest.mark.parametrize(("percentile", "factor"), [(100.0, 1.5), (75.0, 1.25), (50.0, 1.0), (0.0, 0.5)])
def test_the_probability_term_grows_with_the_shoppers_ltv_percentile(percentile, factor):
    adjusted = ltv_adjusted(FEED, {"percentile": percentile, "expected_spend": 10.0}, 0.5)
    assert adjusted["probability"] == pytest.approx(FEED["probability"] * factor)
    assert {k: v for k, v in adjusted.items() if k != "probability"} == {k: v for k, v in FEED.items()
                                                                          if k != "probability"}


@pytest.mark.parametrize("ltv", [None, {}, {"percentile": None}])
def test_no_ltv_or_no_strength_leaves_the_weights_alone(ltv):
    assert ltv_adjusted(FEED, ltv, 0.5) == FEED
    assert ltv_adjusted(FEED, {"percentile": 99.0}, 0.0) == FEED
    # A strength past 1 never turns the term negative.
    assert ltv_adjusted(FEED, {"percentile": 0.0}, 2.0)["probability"] == 0.0


def test_the_pipeline_weighs_by_the_ltv_in_the_shoppers_row_only_when_asked():
    ctx = RankingContext(Request("feed", user_id="u"), 1.0)
    ctx.shopper_row = {"user_id": "u", "ltv": {"percentile": 90.0}}
    assert Pipeline(MemoryStateStore(), []).weights(ctx) == FEED  # off by default
    weights = Pipeline(MemoryStateStore(), [], ltv_strength=0.5).weights(ctx)
    assert weights["probability"] == pytest.approx(FEED["probability"] * 1.4)
    ctx.shopper_row = None  # an unknown shopper
    assert Pipeline(MemoryStateStore(), [], ltv_strength=0.5).weights(ctx) == FEED
