"""tailor evaluate experiments: the vectorised shoppers against the choice model's expectations, and a small run."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tailor_lab.evaluation import experiments
from tailor_lab.evaluation.experiments import FEED_LENGTH, Population


@pytest.fixture(scope="module")
def population() -> Population:
    return Population.simulated(400, 5, 14)


def test_simulated_visits_average_to_the_exact_expectations(population):
    rng = np.random.default_rng(0)
    shoppers = np.repeat(np.arange(len(population.rate)), 300)
    personal = np.argsort(-population.utility, axis=1)[:, :FEED_LENGTH]
    for feeds, scale in ((population.best_sellers, 1.0), (population.best_sellers, 1.3), (personal, 1.0)):
        drawn = population.visits(shoppers, feeds if feeds.ndim == 1 else feeds[shoppers], rng, scale)
        clicks, revenue = population.expected_per_visit(feeds, scale)
        assert drawn["clicks"].mean() == pytest.approx(clicks.mean(), rel=0.02)
        assert drawn["revenue"].mean() == pytest.approx(revenue.mean(), rel=0.08)
        assert (drawn["clicked"].sum(axis=1) == drawn["clicks"]).all()


def test_a_small_run_reports_every_key_and_skips_missing_data(population, tmp_path):
    report = experiments.run(aa_runs=4, ab_runs=4, units=3000, days=5, pool=300, srm_runs=50, srm_units=20_000,
                             interleaving_runs=20, approximation_shoppers=20_000, obd=tmp_path / "absent")
    for key in ("aa_fpr_fixed", "aa_fpr_sequential", "coverage", "srm_detection", "srm_false_alarm",
                "interleaving_ratio", "obd"):
        assert key in report
    assert report["obd"] == {"skipped": f"{tmp_path / 'absent'} not found"}
    assert report["product_path_check"]["max_relative_difference"] < 1e-9
    assert report["ab"]["true_relative_lift"]["ctr"] == pytest.approx(0.05, abs=1e-5)
    assert report["ab"]["click_probability_scale"] > 1.05  # the cascade damps a lift of every click
    assert "Open Bandit Dataset: skipped" in experiments.format_table(report)
    inter = report["interleaving"]
    assert inter["interleaving_shoppers"] <= inter["ab_shoppers"]
    assert set(inter["null_false_winner"]) == {"interleaving", "team_draft", "ab"}
    assert set(inter["slot_clicks_false_winner"]) == {"interleaving", "team_draft"}
    assert inter["null_false_winner"]["interleaving"] == 0.0  # a ranker against itself: every rank credit is 0
    approximation = inter["normal_approximation"]
    assert approximation["interleaving"] < approximation["team_draft"] < approximation["ab"]
    assert approximation["credit_ceiling"] < approximation["ab"]
    assert approximation["optimized_interleaving"] < approximation["ab"]
    assert "optimized interleaving" in experiments.format_table(report)
    # Candidates closer to ranker A agree with it in more slots, and interleaving gains more against an A/B test.
    agreements = [inter["agreement"], *(pair["agreement"] for pair in inter["candidates"])]
    ratios = [approximation["ratio"], *(pair["normal_approximation"]["ratio"] for pair in inter["candidates"])]
    assert agreements == sorted(agreements) and ratios == sorted(ratios)
    assert "a candidate B keeping 80% of A's error" in experiments.format_table(report)
    assert "realized" in report["aa"]["fpr_fixed"]
    with pytest.raises(ValueError, match="unknown part 'ab'"):
        experiments.run(parts=("ab",))


def test_vectorised_team_draft_is_the_products():
    rng = np.random.default_rng(3)
    catalog = rng.permutation(500)[:FEED_LENGTH]
    ranking_a = np.array([rng.permutation(catalog) for _ in range(300)])
    ranking_b = np.array([rng.permutation(catalog) for _ in range(300)])
    ranking_b[:50] = ranking_a[:50]  # the same ranking on both sides too
    for row in range(50, 100):  # and a shared top
        ranking_b[row] = np.concatenate([ranking_a[row, :10], rng.permutation(ranking_a[row, 10:])])
    coins = rng.random((300, FEED_LENGTH))
    items, from_a = experiments._team_draft(ranking_a, ranking_b, coins)
    experiments._team_draft_check(ranking_a, ranking_b, coins, items, from_a, queries=300)
    assert (from_a.sum(axis=1) == FEED_LENGTH // 2).all()
    with pytest.raises(AssertionError, match="query 0"):
        experiments._team_draft_check(ranking_a, ranking_b, 1.0 - coins, items, from_a)


def test_obd_section_on_files_of_its_format(tmp_path):
    rng = np.random.default_rng(1)
    header = ["", "timestamp", "item_id", "position", "click", "propensity_score",
              *[f"user_feature_{i}" for i in range(4)], *[f"user-item_affinity_{i}" for i in range(6)]]
    for policy, ctr in (("random", 0.1), ("bts", 0.15)):
        for campaign in ("all", "men", "women"):
            folder = tmp_path / policy / campaign
            folder.mkdir(parents=True)
            with open(folder / f"{campaign}.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                for row in range(600):
                    item = int(rng.integers(6 if policy == "random" else 3))
                    writer.writerow([row, "2019-11-24", item, int(rng.integers(1, 4)), int(rng.random() < ctr),
                                     1 / 6 if policy == "random" else 1 / 3,
                                     *[f"h{rng.integers(3)}" for _ in range(4)], *rng.random(6).round(3)])
    obd = experiments.evaluate_obd(tmp_path, 3)
    assert set(obd["campaigns"]) == {"all", "men", "women", "pooled"}
    pooled = obd["campaigns"]["pooled"]
    assert pooled["impressions"] == {"random": 1800, "bts": 1800} and not pooled["srm_flagged"]
    assert pooled["lift_ci"][0] < pooled["lift"] < pooled["lift_ci"][1]
    estimates = obd["campaigns"]["all"]["off_policy"]["estimates"]
    assert set(estimates) == {"DM", "IPW", "SNIPW", "DR"}
    assert all(0 < e["value"] < 1 for e in estimates.values())


def test_vectorised_slot_baselines_are_the_products(monkeypatch):
    ranking_a, ranking_b = _pairs(np.random.default_rng(4), 6, shared_top=6)
    baselines = experiments._slot_baselines(ranking_a, ranking_b, chunk=4, checked=6)
    assert (baselines[0] == 0).all()
    assert baselines.sum(axis=1) == pytest.approx(np.zeros(6), abs=1e-9)  # every item shown: differences sum to 0
    monkeypatch.setattr(experiments, "slot_baselines", lambda a, b, length: [0.0] * length)
    with pytest.raises(AssertionError, match="row 1"):
        experiments._slot_baselines(ranking_a, ranking_b, checked=3)


def test_credit_ceiling_finds_nothing_where_there_is_nothing_to_find(population):
    rng = np.random.default_rng(6)
    candidates = population.best_sellers
    rows = 60  # pool shoppers: team draft's every coin sequence is walked for each
    utility = population.utility[:rows, candidates]
    noisy = candidates[np.argsort(-(utility + rng.normal(0, 3, utility.shape)), axis=1)]
    better = candidates[np.argsort(-utility, axis=1)]
    shopper = rng.integers(0, rows, 6000)
    unit_of_visit = np.repeat(np.arange(len(shopper)), 3)
    visitor = shopper[unit_of_visit]

    def effect(ranking_b, slot_clicks=False):
        items, _ = experiments._team_draft(noisy[visitor], ranking_b[visitor], rng.random((len(visitor), FEED_LENGTH)))
        clicked = population.visits(visitor, items, rng)["clicked"]
        if slot_clicks:  # another visit's clicks: they depend on the slot, not on the item
            clicked = clicked[rng.permutation(len(clicked))]
        return experiments._credit_ceiling(noisy, ranking_b, shopper, unit_of_visit, items, clicked)

    scored = np.sqrt(len(shopper) / 2)  # an effect's standard error is about 1 / sqrt(the shoppers scored)
    assert effect(noisy) == 0.0  # a ranker against itself: every centred credit is 0
    assert effect(better, slot_clicks=True) < 3 / scored  # centred: no signal from the slots alone
    assert effect(better) > 6 / scored  # the ranker that knows the utilities is found


def test_optimized_interleaving_serves_balanced_lists_of_both_rankings_prefixes():
    rng = np.random.default_rng(8)
    ranking_a, ranking_b = _pairs(rng, 5, shared_top=8)
    lists, probabilities, differences = experiments._optimized_lists(ranking_a, ranking_b, rng, samples=200)
    assert probabilities.sum(axis=1) == pytest.approx(np.ones(5))
    assert (differences[0] == 0).all() and probabilities[0].max() == pytest.approx(1.0)  # one list: A's own
    for row in range(5):
        places_in_b = list(np.argsort((ranking_a[row][:, None] == ranking_b[row][None, :]).argmax(axis=1)))
        for served, chance in zip(lists[row], probabilities[row]):
            if chance == 0:
                continue
            assert sorted(served) == list(range(FEED_LENGTH))
            for k in range(1, FEED_LENGTH + 1):  # every prefix: a prefix of A's with a prefix of B's
                prefix = set(served[:k])
                from_a = next(i for i in range(FEED_LENGTH + 1) if i == FEED_LENGTH or i not in prefix)
                assert prefix - set(range(from_a)) <= set(places_in_b[:k])
                assert any(prefix == set(range(from_a)) | set(places_in_b[:j]) for j in range(k + 1))
        # the program balances each slot: the expected rank difference there is 0
        expected = np.einsum("m,mk->k", probabilities[row], differences[row][lists[row]])
        assert expected == pytest.approx(np.zeros(FEED_LENGTH), abs=1e-6)


def test_optimized_interleaving_finds_the_better_ranker(population):
    rng = np.random.default_rng(9)
    candidates = population.best_sellers
    rows = 40
    utility = population.utility[:rows, candidates]
    noisy = candidates[np.argsort(-(utility + rng.normal(0, 3, utility.shape)), axis=1)]
    better = candidates[np.argsort(-utility, axis=1)]
    shopper = rng.integers(0, rows, 6000)
    unit_of_visit = np.repeat(np.arange(len(shopper)), 3)

    def credits(ranking_b):
        return experiments._optimized_credits(population, {"A": noisy, "B": ranking_b}, shopper, unit_of_visit, 3)

    assert (credits(noisy) == 0).all()  # a ranker against itself: every credit is 0
    found = credits(better)
    assert found.mean() < -0.3 * found.std()  # B, which knows the utilities, is preferred, and clearly
    assert experiments._optimized_effect(population, {"A": noisy, "B": better}, shopper, unit_of_visit, 3) == \
        pytest.approx(abs(found.mean()) / found.std())


def test_optimized_interleaving_balances_what_a_few_sampled_lists_can_and_centres_the_rest():
    rng = np.random.default_rng(10)
    ranking_a, ranking_b = _pairs(rng, 6, shared_top=3)
    lists, probabilities, differences = experiments._optimized_lists(ranking_a, ranking_b, rng, samples=1)
    assert probabilities.sum(axis=1) == pytest.approx(np.ones(6))
    expected = np.einsum("sm,smk->sk", probabilities, differences[np.arange(6)[:, None, None], lists])
    assert np.abs(expected).max() > 0.5  # a penalised remainder, which the credit's centring takes out
    with pytest.raises(ValueError, match="the same items"):
        experiments._optimized_lists(ranking_a, np.roll(ranking_b, 1, axis=0) + 1, rng)


def test_a_list_of_probability_0_is_never_drawn_however_the_sum_rounds():
    probabilities = np.array([[0.5, 0.5 - 1e-16, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.3, 0.0, 0.7, 0.0]])
    assert experiments._drawn(probabilities, np.full(3, np.nextafter(1.0, 0.0))).tolist() == [1, 1, 2]
    assert experiments._drawn(probabilities, np.array([0.75, 0.5, 0.3])).tolist() == [1, 1, 2]
    assert experiments._drawn(probabilities, np.zeros(3)).tolist() == [0, 1, 0]


def _pairs(rng: np.random.Generator, rows: int, shared_top: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of two rankings of one catalog: the first row a ranker against itself, the second sharing a top."""
    catalog = rng.permutation(500)[:FEED_LENGTH]
    ranking_a = np.array([rng.permutation(catalog) for _ in range(rows)])
    ranking_b = np.array([rng.permutation(catalog) for _ in range(rows)])
    ranking_b[0] = ranking_a[0]
    ranking_b[1] = np.concatenate([ranking_a[1, :shared_top], rng.permutation(ranking_a[1, shared_top:])])
    return ranking_a, ranking_b
