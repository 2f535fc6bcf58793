"""Team-draft interleaving: the merged list, the per-query credit and the sign test against scipy's binomtest, the
per-shopper click differences and their t-test against scipy's ttest_1samp, and each slot's items' probabilities and
the centred rank credit against an enumeration of every coin sequence through team_draft itself."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from scipy.stats import binomtest, t, ttest_1samp

from tailor.experiments.interleaving import (
    CREDIT_SCALE,
    A,
    B,
    click_difference,
    credit,
    interleave,
    interleaving_test,
    live_credits,
    rank_credit,
    rank_difference,
    shopper_test,
    shopper_test_of,
    sign_test,
    slot_baselines,
    slot_shares,
    student_t_sf,
    team_draft,
)

# Pairs of rankings: permutations of one set, partly shared tops, different items, one running out.
PAIRS = [(list("abcdefgh"), list("bdaxyzce")), (list("abcdefgh"), list("abdcefhg")), (list("abcdef"), list("abcdef")),
         (list("abcdefghij"), list("jihgfedcba")), (list("ab"), list("cdefg")), (list("abcdefghij"), list("bacdfeghji"))]


class Bits:
    """A coin that falls as told: 0 lets A pick first, 1 lets B."""

    def __init__(self, bits):
        self.bits = iter(bits)

    def random(self):
        return 0.25 if next(self.bits) == 0 else 0.75


def every_draft(ranking_a, ranking_b, length):
    """team_draft under each of the equally likely coin sequences (more tosses than any draft needs)."""
    tosses = (length + 1) // 2 + 1
    return [team_draft(ranking_a, ranking_b, length, Bits(bits)) for bits in itertools.product((0, 1), repeat=tosses)]


def test_team_draft_takes_each_rankers_best_unshown_item_in_balanced_rounds():
    a, b = list("abcdefgh"), list("bdaxyzce")
    for seed in range(50):
        merged = team_draft(a, b, 8, random.Random(seed))
        items = [item for item, _ in merged]
        assert len(items) == len(set(items)) == 8
        teams = [team for _, team in merged]
        for cut in range(2, 9, 2):  # after each whole round both teams have picked equally
            assert teams[:cut].count(A) == teams[:cut].count(B)
        for index, (item, team) in enumerate(merged):
            source = a if team == A else b
            shown = set(items[:index])
            assert item == next(candidate for candidate in source if candidate not in shown)


def test_team_draft_coin_decides_who_picks_first_and_exhausted_rankings_hand_over():
    class Fixed:
        def __init__(self, value):
            self.value = value

        def random(self):
            return self.value

    assert team_draft([1, 2, 3], [4, 5, 6], 4, Fixed(0.1)) == [(1, A), (4, B), (2, A), (5, B)]
    assert team_draft([1, 2, 3], [4, 5, 6], 4, Fixed(0.9)) == [(4, B), (1, A), (5, B), (2, A)]
    assert team_draft([1], [1, 2, 3], 5, Fixed(0.1)) == [(1, A), (2, B), (3, B)]
    # the same ranking on both sides: the first items in order whoever picks
    assert [item for item, _ in team_draft("abc", "abc", 3, random.Random(1))] == list("abc")


def test_credit_goes_to_the_team_with_more_clicks():
    merged = [("a", A), ("x", B), ("b", A), ("y", B)]
    assert credit(merged, [0]) == 1
    assert credit(merged, [1, 3, 0]) == -1
    assert credit(merged, [0, 1]) == 0
    assert credit(merged, []) == 0
    with pytest.raises(ValueError, match="position 4"):
        credit(merged, [4])


@pytest.mark.parametrize("wins_a, wins_b", [(0, 0), (3, 3), (10, 2), (2, 10), (60, 40), (530, 470), (0, 12),
                                            (5000, 5200)])
def test_sign_test_matches_scipy_binomtest(wins_a, wins_b):
    expected = 1.0 if wins_a + wins_b == 0 else binomtest(wins_a, wins_a + wins_b, 0.5).pvalue
    assert sign_test(wins_a, wins_b) == pytest.approx(expected, rel=1e-9)


def test_interleaving_test_counts_wins_and_ties():
    result = interleaving_test([1, 1, -1, 0, 1, 0, 1])
    assert (result.wins_a, result.wins_b, result.ties, result.preferred) == (4, 1, 2, A)
    assert result.p_value == pytest.approx(binomtest(4, 5, 0.5).pvalue)
    assert result.delta == pytest.approx(3 / 7)
    assert interleaving_test([]).preferred is None


def test_click_difference_counts_each_clicked_position_once():
    merged = [("a", A), ("x", B), ("b", A), ("y", B)]
    assert click_difference(merged, [0, 2, 1]) == 1
    assert click_difference(merged, [1, 3, 3]) == -2
    assert click_difference(merged, []) == 0
    with pytest.raises(ValueError, match="position -1"):
        click_difference(merged, [-1])


@pytest.mark.parametrize("size, shift", [(2, 0.5), (3, 0.0), (8, 1.0), (40, 0.2), (500, 0.05), (5000, -0.03)])
def test_shopper_test_matches_scipy_ttest_1samp(size, shift):
    rng = np.random.default_rng(size)
    differences = rng.poisson(0.4, size) - rng.poisson(0.4, size) + shift
    result = shopper_test(differences)
    expected = ttest_1samp(differences, 0.0)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.mean == pytest.approx(differences.mean())
    assert result.standard_error == pytest.approx(differences.std(ddof=1) / np.sqrt(size))
    assert result.preferred == (None if expected.pvalue >= 0.05 else A if differences.mean() > 0 else B)


@pytest.mark.parametrize("size, shift", [(2, 0.5), (8, 1.0), (500, 0.05), (5000, -0.03)])
def test_shopper_test_of_sufficient_statistics_is_the_same_test(size, shift):
    rng = np.random.default_rng(size)
    differences = (rng.poisson(0.4, size) - rng.poisson(0.4, size) + shift).tolist()
    whole = shopper_test(differences)
    summed = shopper_test_of(size, sum(differences), sum(d * d for d in differences))
    assert summed.p_value == pytest.approx(ttest_1samp(differences, 0.0).pvalue, rel=1e-9)
    assert (summed.mean, summed.standard_error) == pytest.approx((whole.mean, whole.standard_error), rel=1e-9)
    assert summed.preferred == whole.preferred
    assert shopper_test_of(0, 0.0, 0.0).p_value == 1.0 and shopper_test_of(1, 2.0, 4.0).preferred is None
    with pytest.raises(ValueError, match="finite"):
        shopper_test_of(3, float("inf"), 1.0)


def test_shopper_test_edges():
    assert shopper_test([]).preferred is None and shopper_test([]).p_value == 1.0
    assert shopper_test([3]).p_value == 1.0
    assert shopper_test([0, 0, 0]).p_value == 1.0
    assert shopper_test([2, 2, 2]).preferred == A  # every shopper clicked A's items more, and by as much
    assert shopper_test([-1, -1, -3, -2]).preferred == B
    assert shopper_test([1, -1] * 50 + [1] * 3, alpha=0.01).preferred is None
    with pytest.raises(ValueError, match="finite"):
        shopper_test([1, float("nan")])
    with pytest.raises(ValueError, match="alpha"):
        shopper_test([1, 2], alpha=1.5)


@pytest.mark.parametrize("value, df", [(0.0, 3), (1e-9, 5), (0.3, 5), (1.0, 1), (2.5, 1000.5), (7.0, 1), (50.0, 2),
                                       (3.0, 4), (1.96, 1e6)])
def test_student_t_tail_matches_scipy(value, df):
    assert student_t_sf(value, df) == pytest.approx(t.sf(value, df), rel=1e-9, abs=1e-300)


def test_rank_difference_is_b_rank_minus_a_rank_and_a_missing_item_ranks_past_the_end():
    a, b = list("abcd"), list("cabx")
    assert rank_difference(a, b, "a") == 1  # A puts it first, B second
    assert rank_difference(a, b, "c") == -2
    assert rank_difference(a, b, "d") == 5 - 4  # B lacks it: rank 5
    assert rank_difference(a, b, "x") == 4 - 5
    assert rank_difference(a, a, "b") == 0


@pytest.mark.parametrize("pair", range(len(PAIRS)))
@pytest.mark.parametrize("length", [1, 4, 7])
def test_slot_baselines_are_each_slots_mean_credit_over_every_coin_sequence(pair, length):
    ranking_a, ranking_b = PAIRS[pair]
    drafts = every_draft(ranking_a, ranking_b, length)
    expected = [sum(rank_difference(ranking_a, ranking_b, merged[slot][0]) for merged in drafts if slot < len(merged))
                / len(drafts) for slot in range(length)]
    assert slot_baselines(ranking_a, ranking_b, length) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_rank_credit_earns_nothing_on_average_from_clicks_that_depend_on_the_slot_alone(pair):
    ranking_a, ranking_b = PAIRS[pair]
    length = 6
    drafts = every_draft(ranking_a, ranking_b, length)
    baselines = slot_baselines(ranking_a, ranking_b, length)
    for clicked in ([0], [1], [0, 3], [2, 4, 5]):
        reachable = [merged for merged in drafts if max(clicked) < len(merged)]
        if len(reachable) < len(drafts):
            continue
        credits = [rank_credit(ranking_a, ranking_b, merged, clicked, baselines) for merged in drafts]
        assert sum(credits) / len(credits) == pytest.approx(0.0, abs=1e-12)
    # uncentred, the first slot's credit is not 0 on average when the tops differ: what centring is for
    a, b = list("abcdefgh"), list("bdaxyzce")
    raw = [rank_difference(a, b, merged[0][0]) for merged in every_draft(a, b, 4)]
    assert sum(raw) / len(raw) == pytest.approx(0.5)


@pytest.mark.parametrize("pair", PAIRS[:4])
def test_live_credits_are_the_centred_rank_credits_rounded_without_bias(pair):
    ranking_a, ranking_b = pair
    merged = team_draft(ranking_a, ranking_b, 6, random.Random(1))
    baselines = slot_baselines(ranking_a, ranking_b, 6)
    exact = [(rank_difference(ranking_a, ranking_b, item) - baselines[slot]) * 7
             for slot, (item, _) in enumerate(merged)]
    rng = random.Random(2)
    drawn = np.array([live_credits(ranking_a, ranking_b, merged, rng, scale=7) for _ in range(4000)])
    assert np.all((drawn == np.floor(exact)) | (drawn == np.ceil(exact)))  # whole numbers next to the exact credit
    assert drawn.mean(axis=0) == pytest.approx(exact, abs=4 * 0.5 / np.sqrt(4000))  # in expectation the exact one
    assert live_credits(ranking_a, ranking_b, merged, rng, scale=7, baselines=baselines) in drawn.tolist()
    # Averaged over the served list's coins and the rounding, a slot's credit is 0, as the exact centring makes it.
    mean = np.zeros(len(merged))
    for _ in range(3000):
        served = team_draft(ranking_a, ranking_b, 6, rng)
        mean[:len(served)] += np.array(live_credits(ranking_a, ranking_b, served, rng, scale=4)) / 4 / 3000
    spread = max(abs(rank_difference(ranking_a, ranking_b, item)) for item in {*ranking_a, *ranking_b}) + 1
    assert np.all(np.abs(mean) < 4 * spread / np.sqrt(3000))
    with pytest.raises(ValueError, match="scale"):
        live_credits(ranking_a, ranking_b, merged, rng, scale=0)
    with pytest.raises(ValueError, match="baselines"):
        live_credits(ranking_a, ranking_b, merged, rng, baselines=baselines[:2])


@pytest.mark.parametrize("pair", PAIRS)
def test_interleave_serves_team_draft_with_its_credits_and_each_slots_probability(pair):
    ranking_a, ranking_b = pair
    served = interleave(ranking_a, ranking_b, 7, random.Random(4), credit_slots=3)
    assert served.merged == team_draft(ranking_a, ranking_b, 7, random.Random(4))
    shares = slot_shares(ranking_a, ranking_b, 7)
    assert served.probabilities == [shares[slot][item] for slot, (item, _) in enumerate(served.merged)]
    baselines = slot_baselines(ranking_a, ranking_b, 7)
    assert len(served.credits) == min(3, len(served.merged))
    for (item, _), baseline, earned in zip(served.merged, baselines, served.credits):
        assert abs(earned / CREDIT_SCALE - (rank_difference(ranking_a, ranking_b, item) - baseline)) < 1 / CREDIT_SCALE


@pytest.mark.parametrize("pair", [*PAIRS, (list("abca"), list("cbad")), (list("abcdefghijkl"), list("lkabjcidhegf"))])
@pytest.mark.parametrize("length", [1, 4, 9])
def test_slot_shares_are_each_slots_share_of_every_coin_sequence(pair, length):
    ranking_a, ranking_b = pair
    drafts = every_draft(ranking_a, ranking_b, length)
    expected = [{} for _ in range(max(map(len, drafts)))]
    for merged in drafts:
        for slot, (item, _) in enumerate(merged):
            expected[slot][item] = expected[slot].get(item, 0.0) + 1 / len(drafts)
    shares = slot_shares(ranking_a, ranking_b, length)
    assert [set(slot) for slot in shares] == [set(slot) for slot in expected]
    for found, wanted in zip(shares, expected):
        assert found == pytest.approx(wanted, abs=1e-12)


def test_slot_shares_on_random_pairs_sum_to_each_slots_reach_and_cover_every_served_item():
    rng = random.Random(5)
    for _ in range(60):
        catalog = list(range(30))
        ranking_a, ranking_b = rng.sample(catalog, rng.randint(0, 10)), rng.sample(catalog, rng.randint(0, 10))
        length = rng.randint(0, 10)
        drafts = every_draft(ranking_a, ranking_b, length)
        shares = slot_shares(ranking_a, ranking_b, length)
        for slot, found in enumerate(shares):
            reach = sum(slot < len(merged) for merged in drafts) / len(drafts)
            assert sum(found.values()) == pytest.approx(reach, abs=1e-12)
            assert all(found[merged[slot][0]] > 0 for merged in drafts if slot < len(merged))
        assert len(shares) == max(map(len, drafts))
    with pytest.raises(ValueError, match="length"):
        slot_shares(list("ab"), list("ba"), -1)


def test_rank_credit_rewards_the_ranker_that_put_the_clicked_item_higher():
    a, b = list("abcdefgh"), list("hgfedcba")
    merged = team_draft(a, b, 8, random.Random(3))
    position = [item for item, _ in merged].index("a")  # A's first, B's last
    baselines = slot_baselines(a, b, 8)
    assert rank_credit(a, b, merged, [position], baselines) == pytest.approx(7 - baselines[position])
    assert rank_credit(a, b, merged, [position, position]) == rank_credit(a, b, merged, [position])
    assert rank_credit(a, a, team_draft(a, a, 8, random.Random(1)), range(8)) == 0.0  # a ranker against itself
    with pytest.raises(ValueError, match="position 8"):
        rank_credit(a, b, merged, [8], baselines)
    with pytest.raises(ValueError, match="baselines"):
        rank_credit(a, b, merged, [0], baselines[:3])
    with pytest.raises(ValueError, match="length"):
        slot_baselines(a, b, -1)
