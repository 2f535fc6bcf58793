"""The LTV model learns from time-shifted windows before its cutoff and scores through ONNX as trained."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import onnx
import pytest

from tailor.ltv.features import FEATURE_NAMES
from tailor.ltv.scoring import METADATA_KEY, MODEL_NAME, LtvModel, consistent_days, quote, typical_counts
from tailor_lab.training import ltv as ltv_training
from tailor_lab.training.ltv import (
    QUOTE_LEVELS,
    least_error_level,
    ltv_metrics,
    parse_events,
    replay_snapshots,
    totals_level,
    train_ltv,
)

from tests.helpers.ltv import AS_OF, START, purchase_histories


@pytest.fixture(scope="module")
def history() -> list[dict]:
    return purchase_histories()


@pytest.fixture(scope="module")
def trained(history):
    return train_ltv(history, AS_OF, horizon_weeks=4, windows=3, step_weeks=1)


def test_training_never_sees_events_at_or_after_as_of(history, trained):
    before = [e for e in history if e["timestamp"] < AS_OF.isoformat()]
    assert len(before) < len(history)
    again = train_ltv(before, AS_OF, horizon_weeks=4, windows=3, step_weeks=1)
    assert again.onnx == trained.onnx
    # The latest windows end at as_of: the long one starts 4 weeks before, the short one (half of it) 2 weeks.
    iso = lambda moment: moment.isoformat().replace("+00:00", "Z")  # noqa: E731
    assert trained.metadata["cutoffs"][0] == iso(AS_OF - timedelta(weeks=2))
    assert iso(AS_OF - timedelta(weeks=4)) in trained.metadata["cutoffs"]
    assert trained.metadata["label_weeks"] == [4, 2]
    # The backtest trains the same recipe two weeks earlier and scores what shoppers did until as_of.
    assert trained.metadata["backtest"]["weeks"] == 2 and trained.metadata["backtest"]["customers"] > 0
    # It also chose each forecast's share of the correction, the rest BG/NBD's own.
    weights = trained.metadata["correction_weights"]
    assert weights["chosen_on"] == "backtest"
    assert weights["transactions"] in ltv_training.CORRECTION_WEIGHTS and weights["spend"] in ltv_training.CORRECTION_WEIGHTS
    assert set(weights["mae_by_weight"]) == {f"{w:g}" for w in ltv_training.CORRECTION_WEIGHTS}


def test_snapshots_count_what_came_before_each_moment(history):
    events = parse_events(history)
    moments = [(START + timedelta(weeks=w)).timestamp() for w in (10, 20)]
    snaps = replay_snapshots(events, moments, with_features=lambda m: m == moments[1])
    early, late = snaps[moments[0]], snaps[moments[1]]
    assert early.features is None and late.features.shape == (len(late.user_ids), len(FEATURE_NAMES))
    u = late.user_ids[0]
    bought = {e.event_id for e in events if e.user_id == u and e.event_type == "purchase" and e.epoch < moments[1]}
    assert late.revenue[late.index()[u]] == pytest.approx(
        sum(e.price * e.quantity for e in events if e.event_id in bought))
    assert set(early.user_ids) <= set(late.user_ids)


def test_onnx_scores_match_the_fitted_prior_and_boosters(history):
    events = [e for e in parse_events(history) if e.epoch < AS_OF.timestamp()]
    fitted = ltv_training._fit_recipe(events, AS_OF.timestamp(), 4, 3, 1, 13, 0)
    assert fitted.columns.size < len(FEATURE_NAMES)  # constant and age features stay out of the boosters
    metadata = {"feature_names": list(FEATURE_NAMES), "horizon_weeks": 4, "prior": fitted.prior,
                "count": {"dispersion": fitted.dispersion, "level": fitted.level, "spend_level": fitted.spend_level},
                "baseline": np.median(fitted.current, 0).tolist(), "spend_quantiles": np.linspace(0, 100, 11).tolist()}
    for weights in ((1.0, 1.0), (0.25, 0.75)):  # the correction's shares of the forecasts, the rest the prior's
        fitted.correction.days_weight, fitted.correction.spend_weight = weights
        model = LtvModel(ltv_training._export(fitted.columns, fitted.correction, metadata))
        for weeks in (4, 1.5):
            expected_t, expected_s = fitted.predict(fitted.current, weeks)
            got = model.predict(fitted.current, horizon_weeks=weeks, batch_size=64)  # several batches
            np.testing.assert_allclose(got.transactions, expected_t, rtol=2e-4)
            np.testing.assert_allclose(got.spend, expected_s, rtol=2e-4)


def test_model_ranks_active_shoppers_above_lapsed_ones(history, trained):
    model = LtvModel(trained.onnx)
    snap = replay_snapshots(parse_events(history), [AS_OF.timestamp()])[AS_OF.timestamp()]
    prediction = model.predict(snap.features)
    later = replay_snapshots(parse_events(history), [(AS_OF + timedelta(weeks=4)).timestamp()])
    after = later[(AS_OF + timedelta(weeks=4)).timestamp()]
    rows = np.array([after.index()[u] for u in snap.user_ids])
    actual_t = after.transactions[rows] - snap.transactions
    actual_s = after.revenue[rows] - snap.revenue
    figures = ltv_metrics(prediction.transactions, prediction.spend, actual_t, actual_s)
    assert figures["spearman_spend"] > 0.4
    # Shoppers quiet for 6+ weeks are mostly gone; those who bought lately mostly buy again.
    recency = snap.features[:, FEATURE_NAMES.index("recency_weeks")]
    assert prediction.spend[recency > 6].mean() < 0.5 * prediction.spend[recency < 2].mean()
    assert np.all(np.isfinite(prediction.spend)) and np.all(prediction.transactions >= 0)


def test_shorter_horizons_come_from_the_prior_and_longer_ones_are_refused(history, trained):
    model = LtvModel(trained.onnx)
    snap = replay_snapshots(parse_events(history), [AS_OF.timestamp()])[AS_OF.timestamp()]
    full = model.predict(snap.features)
    assert full.horizon_weeks == 4
    half = model.predict(snap.features, horizon_weeks=2)
    assert np.all(half.transactions <= full.transactions + 1e-6) and half.transactions.sum() > 0.3 * full.transactions.sum()
    assert half.spend.sum() < full.spend.sum()
    # Quoted purchase days are whole numbers; the quoted spend is that of whole purchase days and adds up.
    assert np.array_equal(full.typical_transactions, np.round(full.typical_transactions))
    per_day = full.spend / np.maximum(full.transactions, 1e-9)
    days = full.typical_spend / per_day
    np.testing.assert_allclose(days, np.round(days), atol=1e-6)
    assert full.typical_spend.sum() == pytest.approx(full.spend.sum(), rel=0.25)
    # The two quotes come from two levels (here the spend's is the lower) but agree on who buys at all.
    for quoted in (full, half):
        assert np.array_equal(quoted.typical_transactions == 0, quoted.typical_spend == 0)
    with pytest.raises(ValueError, match="8 weeks needs a model trained for it"):
        model.predict(snap.features, horizon_weeks=8)
    with pytest.raises(ValueError, match="positive"):
        model.predict(snap.features, horizon_weeks=0)


def test_percentiles_and_drivers(history, trained):
    model = LtvModel(trained.onnx)
    snap = replay_snapshots(parse_events(history), [AS_OF.timestamp()])[AS_OF.timestamp()]
    spend = model.predict(snap.features).spend
    pct = model.percentile(spend)
    assert pct.min() >= 0 and pct.max() <= 100
    order = np.argsort(spend)
    assert np.all(np.diff(pct[order]) >= -1e-9)
    assert pct[order[-1]] > 90 and pct[order[0]] < 10
    drivers = model.drivers(snap.features[:5], top=2)
    assert len(drivers) == 5 and all(len(d) <= 2 for d in drivers)
    best = int(order[-1])
    (group, effect), *_ = model.drivers(snap.features[best:best + 1])[0]
    assert effect > 0 and group in {"frequency", "recency", "age", "monetary", "timing", "basket"}


def test_the_ltv_model_is_a_registry_onnx_model(trained):
    from tailor.models import ModelRegistry
    from tailor.models.onnx_model import OnnxModel
    from tailor.store.memory import MemoryBlobStore

    model = LtvModel(trained.onnx, threads=1)
    assert isinstance(model, OnnxModel) and model.feature_names == FEATURE_NAMES
    assert model.label == f"{MODEL_NAME}:unpublished"
    registry = ModelRegistry(MemoryBlobStore())
    version = registry.publish(MODEL_NAME, trained.onnx, trained.metadata)
    stored = LtvModel.from_stored(registry.fetch(MODEL_NAME, version), threads=1)
    assert stored.label == f"{MODEL_NAME}:{version}" and stored.horizon_weeks == model.horizon_weeks
    proto = onnx.load_from_string(trained.onnx)
    del proto.metadata_props[:]
    with pytest.raises(ValueError, match="not an LTV model"):
        LtvModel(proto.SerializeToString())


def test_a_model_for_other_features_is_refused(trained):
    proto = onnx.load_from_string(trained.onnx)
    metadata = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    metadata["feature_names"] = metadata["feature_names"][::-1]
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata)})
    with pytest.raises(ValueError, match="other LTV features"):
        LtvModel(proto.SerializeToString())
    with pytest.raises(ValueError, match="matrix"):
        LtvModel(trained.onnx).predict(np.zeros((3, 5), dtype=np.float32))


def test_metrics_of_a_known_case():
    figures = ltv_metrics(np.array([1.0, 0.0, 2.0, 0.0]), np.array([10.0, 0.0, 30.0, 5.0]),
                          np.array([2.0, 0.0, 2.0, 0.0]), np.array([20.0, 0.0, 40.0, 0.0]))
    assert figures["mae_transactions"] == pytest.approx(0.25)
    assert figures["rmse_transactions"] == pytest.approx(0.5)
    # Scaled by 4/3 to the actual total: |4/3 - 2| + |8/3 - 2| over four customers.
    assert figures["mae_transactions_at_actual_total"] == pytest.approx(1 / 3)
    assert figures["top_decile_revenue_share"] == pytest.approx(40 / 60)  # one customer of four: the top one
    assert figures["transactions_total_ratio"] == pytest.approx(0.75)
    assert figures["spend_total_ratio"] == pytest.approx(45 / 60)
    # Ranks: predicted 3,1,4,2 against actual 3,1.5,4,1.5 (ties share their rank).
    a, b = np.array([3, 1, 4, 2.0]), np.array([3, 1.5, 4, 1.5])
    expected = np.corrcoef(a, b)[0, 1]
    assert figures["spearman_spend"] == pytest.approx(expected)


def test_purchase_days_are_quoted_near_the_median_and_spend_at_the_level_that_keeps_the_total():
    rng = np.random.default_rng(3)
    mean, shape = rng.gamma(0.5, 1.0, 5000), 0.8
    counts = rng.negative_binomial(shape, shape / (shape + mean))  # negative binomial counts with these means
    level, total = least_error_level(mean, shape, counts), totals_level(mean, shape)

    def error(at: float) -> float:
        return float(np.abs(typical_counts(mean, shape, at) - counts).mean())

    assert level in QUOTE_LEVELS and 0.4 <= level <= 0.65  # absolute errors are least near the median
    assert typical_counts(mean, shape, total).sum() == pytest.approx(mean.sum(), rel=0.02)
    # Skewed counts: keeping the total quotes more purchase days than the least error does, and errs more.
    assert total > level and error(total) > error(level) + 0.02


@pytest.mark.parametrize("spend_level", [0.72, 0.45])
def test_no_shopper_is_quoted_purchases_without_spend_or_spend_without_purchases(spend_level):
    rng = np.random.default_rng(4)
    transactions = rng.gamma(0.4, 1.5, 4000)
    spend = transactions * rng.lognormal(3.0, 0.5, 4000)
    level, dispersion = 0.56, 0.65
    low, high = sorted((level, spend_level))
    # The two levels alone disagree for many shoppers: some of them have a count at the higher level only.
    disagree = (typical_counts(transactions, dispersion, low) == 0) & (typical_counts(transactions, dispersion, high) > 0)
    assert disagree.sum() > 100
    days, quoted_spend = quote(transactions, spend, dispersion, level, spend_level)
    assert np.array_equal(days == 0, quoted_spend == 0)
    # Only the zeros move, by one day: the other quotes are their level's quantiles, the spend that of whole days.
    alone = typical_counts(transactions, dispersion, level)
    np.testing.assert_array_equal(days, np.where((alone == 0) & disagree, 1.0, alone))
    spend_days = quoted_spend / (spend / transactions)
    np.testing.assert_allclose(spend_days, np.maximum(typical_counts(transactions, dispersion, spend_level),
                                                      np.minimum(alone, 1.0)), atol=1e-9)
    if spend_level > level:  # a spend level above the purchases' keeps its spend, its total and its ranking
        np.testing.assert_allclose(spend_days, np.round(spend_days), atol=1e-9)
        np.testing.assert_allclose(quoted_spend, typical_counts(transactions, dispersion, spend_level)
                                   * spend / transactions)
    days, spend_days = consistent_days(np.array([0.0, 0, 2, 3]), np.array([0.0, 4, 0, 5]))
    assert days.tolist() == [0, 1, 2, 3] and spend_days.tolist() == [0, 4, 1, 5]


def test_the_prior_values_a_buyers_purchases_as_gamma_gamma_shrinks_them_towards_the_shop():
    from tailor.ltv.prior import PRIOR_NAMES, gamma_gamma_mean, prior_matrix

    features = np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32)
    column = FEATURE_NAMES.index
    for row, (transactions, revenue) in enumerate(((1, 10.0), (8, 80.0), (0, 0.0))):
        features[row, [column("transactions"), column("revenue"), column("weeks_since_first_purchase")]] = (
            transactions, revenue, 10.0)
    spend = {"p": 6.0, "q": 4.0, "gamma": 15.0}  # the shop's mean value: 6 * 15 / 3 = 30
    prior = {"bgnbd": {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.4}, "first_purchase_rate": 0.01,
             "mean_transaction_value": 30.0, "gamma_gamma": spend}
    value = np.exp(prior_matrix(features, prior, 4.0)[:, PRIOR_NAMES.index("log_transaction_value")])
    np.testing.assert_allclose(value, gamma_gamma_mean(spend, np.array([1, 8, 0.0]), np.array([10, 10, 0.0])), rtol=1e-5)
    # One $10 order says less than eight: the first buyer stays nearer the shop's $30.
    assert 10 < value[1] < value[0] < 30 and value[2] == pytest.approx(30.0)


def test_the_chance_of_any_purchase_day_is_bgnbds_and_grows_with_the_horizon_to_the_chance_of_being_alive():
    from tailor.ltv.prior import alive_probability, any_purchase_probability, expected_transactions

    params = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.4}
    x, tx, T = np.array([0.0, 2, 6, 6]), np.array([0.0, 20, 30, 5]), np.array([10.0, 30, 31, 31])
    # Alive for sure with no repeat purchase yet: the chance of no purchase day is the NBD's zero.
    new = any_purchase_probability(params, 13.0, np.zeros(1), np.zeros(1), np.zeros(1))
    assert new[0] == pytest.approx(1 - (4.0 / 17.0) ** 0.25)
    short, long, never = (any_purchase_probability(params, t, x, tx, T) for t in (4.0, 39.0, 1e7))
    assert np.all(0 < short) and np.all(short < long) and np.all(long < alive_probability(params, x, tx, T))
    # Over a very long horizon the quiet chance of an alive buyer vanishes (slowest without repeat purchases).
    np.testing.assert_allclose(never[1:], alive_probability(params, x, tx, T)[1:], rtol=1e-3)
    assert never[0] == pytest.approx(1 - (14.0 / (14.0 + 1e7)) ** 0.25)
    # Whoever buys at all buys at least one purchase day: the expectation is never below the chance.
    assert np.all(expected_transactions(params, 39.0, x, tx, T) >= long)


def test_the_hurdle_forecasts_the_chance_of_buying_times_the_purchase_days_of_those_who_buy():
    from tailor.ltv.prior import CORRECTION_COLUMNS, PRIOR_NAMES

    rng = np.random.default_rng(3)
    n = 4000
    # Half the shoppers have stopped buying, which the prior cannot tell; a feature can.
    stopped = rng.random(n) < 0.5
    prior = np.zeros((n, len(PRIOR_NAMES)), dtype=np.float32)
    expected = rng.uniform(0.2, 2.0, n)
    prior[:, PRIOR_NAMES.index("log_expected_transactions")] = np.log(expected)
    prior[:, PRIOR_NAMES.index("log_any_purchase")] = np.log(-np.expm1(-expected))
    prior[:, PRIOR_NAMES.index("log_transaction_value")] = np.log(20.0)
    prior[:, PRIOR_NAMES.index("horizon_weeks")] = 13.0
    prior[:, PRIOR_NAMES.index("log_shrunk_value")] = np.log(40.0)  # their own value, which the past told
    X = np.hstack([stopped[:, None].astype(np.float32), prior[:, CORRECTION_COLUMNS]])
    days = np.where(stopped, 0, rng.poisson(2 * expected)).astype(float)
    spend = days * rng.uniform(30, 50, n)
    hurdle = ltv_training.HurdleCorrection().fit(X, prior, days, spend)
    predicted_days, predicted_spend = hurdle.predict(X, prior)
    assert predicted_days[stopped].mean() < 0.1 * predicted_days[~stopped].mean()
    assert predicted_days[~stopped].sum() == pytest.approx(days[~stopped].sum(), rel=0.1)
    # Spend: what shoppers spent (about $40 a purchase day), not the prior's $20 a purchase day.
    assert predicted_spend[stopped].mean() < 0.1 * predicted_spend[~stopped].mean()
    assert predicted_spend.sum() == pytest.approx(spend.sum(), rel=0.1)
    # A share of it is the purchase days at the shrunk value, the rest the spend correction's
    share = ltv_training.SHRUNK_SPEND_SHARE
    corrected = ltv_training.HurdleCorrection(shrunk_share=0.0).fit(X, prior, days, spend).predict(X, prior)[1]
    np.testing.assert_allclose(predicted_spend, (1 - share) * corrected + share * predicted_days * 40.0, rtol=1e-5)
    # Weighed with the prior's own forecasts: its expected purchase days, and those at its transaction value.
    hurdle.days_weight, hurdle.spend_weight = 0.25, 0.5
    blended_days, blended_spend = hurdle.predict(X, prior)
    np.testing.assert_allclose(blended_days, 0.25 * predicted_days + 0.75 * expected, rtol=1e-5)
    np.testing.assert_allclose(blended_spend, 0.5 * predicted_spend + 0.5 * expected * 20.0, rtol=1e-5)
    with pytest.raises(ltv_training.TooLittleHistory):
        ltv_training.HurdleCorrection().fit(X, prior, np.zeros(n), np.zeros(n))


def test_the_backtest_chooses_each_forecasts_share_of_the_correction_by_its_own_measure():
    rng = np.random.default_rng(5)
    n = 3000
    days = rng.poisson(1.0, n).astype(float)
    spend = days * rng.uniform(10, 30, n)
    noise = rng.uniform(-0.5, 0.5, n)
    # Purchase days: the prior is off by less than half a day and the correction by three, so the prior's alone is
    # off by the fewest. Spend: the correction ranks it exactly and the prior by chance, so the correction's alone.
    choice = ltv_training.choose_correction_weights((days + 3.0, spend), (days + noise, noise), days, spend)
    assert (choice["transactions"], choice["spend"]) == (0.0, 1.0) and choice["chosen_on"] == "backtest"
    mae = choice["mae_by_weight"]
    assert mae["0"] == pytest.approx(np.abs(noise).mean(), rel=1e-5) and mae["0"] < mae["0.5"] < mae["1"]
    # The other way round; and on a tie, the correction's.
    swapped = ltv_training.choose_correction_weights((days + noise, noise), (days + 3.0, spend), days, spend)
    assert (swapped["transactions"], swapped["spend"]) == (1.0, 0.0)
    tie = ltv_training.choose_correction_weights((np.ones(n), spend), (np.ones(n), spend), days, spend)
    assert (tie["transactions"], tie["spend"]) == (1.0, 1.0)


def test_a_shop_too_young_for_the_backtest_gets_the_correction_whole(history):
    # 100 days: enough for a week's label window after 13 weeks, not for the recipe trained before its short one.
    young = train_ltv(history, START + timedelta(days=100), horizon_weeks=4, windows=3, step_weeks=1)
    assert "skipped" in young.metadata["backtest"]
    assert young.metadata["correction_weights"] == {"transactions": 1.0, "spend": 1.0,
                                                    "chosen_on": "nothing: no backtest"}


def test_a_model_built_before_the_prior_had_its_last_columns_scores_with_those_it_knew(trained):
    from onnx import TensorProto, helper

    from tailor.ltv.prior import PRIOR_NAMES

    # The recipe of then: a graph of one correction, its prior input as wide as the prior was (five columns).
    width = PRIOR_NAMES.index("log_expected_transactions") + 1
    nodes = [helper.make_node("Gather", ["prior", "expected"], ["log_expected"], axis=1),
             helper.make_node("Exp", ["log_expected"], ["transactions"]),
             helper.make_node("Mul", ["transactions", "ten"], ["spend"])]
    graph = helper.make_graph(
        nodes, "old_ltv",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, len(FEATURE_NAMES)]),
         helper.make_tensor_value_info("prior", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]) for name in ("transactions", "spend")],
        initializer=[helper.make_tensor("expected", TensorProto.INT64, [1], [width - 1]),
                     helper.make_tensor("ten", TensorProto.FLOAT, [], [10.0])])
    old = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    old.ir_version = 8
    helper.set_model_props(old, {METADATA_KEY: json.dumps(trained.metadata)})
    model = LtvModel(old.SerializeToString())
    current = LtvModel(trained.onnx)
    features = np.zeros((2, len(FEATURE_NAMES)), dtype=np.float32)
    features[:, FEATURE_NAMES.index("transactions")] = 2
    features[:, FEATURE_NAMES.index("weeks_since_first_purchase")] = 8
    prediction = model.predict(features)
    assert np.all(prediction.transactions > 0)
    np.testing.assert_allclose(prediction.spend, 10 * prediction.transactions, rtol=1e-6)
    assert current.predict(features).transactions.shape == (2,)


def test_training_imports_none_of_the_packages_the_training_function_leaves_out(tmp_path):
    """functions/train_ltv/Makefile drops packages to fit Lambda's size limit: train with them blocked."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    makefile = (root / "functions/train_ltv/Makefile").read_text()
    unused = re.search(r"^UNUSED = (.*?)(?<!\\)$", makefile, re.M | re.S).group(1).replace("\\\n", " ").split()
    modules = [path.replace("/", ".") for path in unused if "/" in path]
    assert "scipy.io" in modules and "onnx.reference" in modules
    probe = (
        "import sys, importlib.abc\n"
        f"BLOCKED = {modules!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if any(name == b or name.startswith(b + '.') for b in BLOCKED):\n"
        "            raise ImportError(f'{name} is left out of the training function')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from tests.helpers.ltv import small_model\n"
        "from tailor.ltv.scoring import LtvModel\n"
        "trained = small_model()\n"
        "assert LtvModel(trained.onnx).horizon_weeks == 4\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_train_command_trains_on_an_events_file_and_writes_the_model(tmp_path, history, capsys):
    from tailor_lab.training.ltv_command import main

    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in history if e["timestamp"] < AS_OF.isoformat()))
    assert main(["--events", str(events), "--as-of", AS_OF.isoformat(), "--horizon-weeks", "4",
                 "--out", str(tmp_path / "model"), "--json", str(tmp_path / "report.json")]) == 0
    printed = capsys.readouterr().out
    assert "backtest over the last 2 weeks" in printed and "the correction's share chosen on it" in printed
    assert "correction_weights" in json.loads((tmp_path / "report.json").read_text())
    model = LtvModel.load(tmp_path / "model" / "model.onnx")
    assert model.horizon_weeks == 4
    # The version a shipped default is known by is the one embedded in the graph.
    assert json.loads((tmp_path / "model" / "metadata.json").read_text())["version"] == model.metadata["version"]
    assert json.loads((tmp_path / "report.json").read_text())["as_of"] == AS_OF.isoformat().replace("+00:00", "Z")


def test_the_shipped_default_scores_every_shopper_with_drivers():
    from tailor.events import parse_event
    from tailor.ltv.rebuild import ltv_entries
    from tailor.models.registry import default_model
    from tailor.shopper import fold_shopper

    model = LtvModel.from_stored(default_model(MODEL_NAME))
    assert model.label == f"{MODEL_NAME}:{model.metadata['version']}" and model.horizon_weeks == 39
    states = {}
    for raw in purchase_histories(shoppers=30):
        event = parse_event(raw)
        if event.epoch < AS_OF.timestamp():
            states[event.user_id] = fold_shopper(states.get(event.user_id), event)
    entries, skipped = ltv_entries(model, [s.to_row() for s in states.values()], AS_OF.timestamp())
    assert skipped == 0 and len(entries) == len(states)
    for _, ltv in entries:
        assert ltv["expected_spend"] >= 0 and 0 <= ltv["percentile"] <= 100 and ltv["drivers"]
