"""Variants of the LTV model on CDNOW's validation windows and holdout, beside BG/NBD: the README's tried-and-not-kept rows.

    python -m tailor_lab.evaluation.ltv_variants [--data CDNOW_master.txt] [--weeks 20 26 39] [--only TEXT ...] [--json F]

The calibration purchases are replayed once through Ingest's fold, with a snapshot of every shopper's state at the
end of each week. Each variant is trained on label windows that end by its as-of week and scored from the state
at that week: as of weeks 20 and 26 on the rest of calibration (what `tailor evaluate ltv --validate` measures,
where variants are chosen), as of week 39 on the holdout (what `tailor evaluate ltv` measures). Windows here are
whole weeks, so the shipped recipe's figures differ from those commands' in the third decimal.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tailor.ltv.features import FEATURE_NAMES
from tailor.ltv.prior import CORRECTION_COLUMNS, PRIOR_NAMES, expected_transactions, prior_matrix, purchase_history
from tailor.ltv.prior import shrunk_value as shrunk_by
from tailor_lab import report_json
from tailor_lab.datasets import load_cdnow
from tailor_lab.evaluation.ltv import CALIBRATION_END, CALIBRATION_START, DEFAULT_DATA, HOLDOUT_END
from tailor_lab.training.ltv import (
    BOOSTING,
    HurdleCorrection,
    TooLittleHistory,
    buyer_summary,
    correction_columns,
    correction_input,
    fit_bgnbd,
    fit_booster,
    fit_prior,
    leaf_size,
    ltv_metrics,
    parse_events,
    replay_snapshots,
)
from tailor_lab.training.pareto_nbd import fit_pareto_nbd, pareto_nbd_alive, pareto_nbd_expected

__all__ = ["Windows", "main", "measure"]

CALIBRATION_WEEKS = 39
HOLDOUT_WEEK = 78
COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
BLEND_WEIGHTS = (0.25, 0.5, 0.75)
_ALIVE, _LOG_VALUE, _HORIZON, _LOG_DAYS, _LOG_ANY = (PRIOR_NAMES.index(name) for name in (
    "alive_probability", "log_transaction_value", "horizon_weeks", "log_expected_transactions", "log_any_purchase"))
# Pseudo orders at the shop's mean value that a shopper's mean value is shrunk towards it with.
SHRINK_ORDERS = 3.0
OTHER_SHRINK_ORDERS = (1.0, 2.0, 6.0, 10.0)


class Windows:
    """Weekly snapshots of CDNOW's cohort, BG/NBD fitted at any of them, and labels between any two."""

    def __init__(self, data: str | Path):
        events = [e for e in parse_events(load_cdnow(data)) if e.epoch < HOLDOUT_END.timestamp()]
        moments = {week: (CALIBRATION_START + timedelta(weeks=week)).timestamp() for week in range(1, CALIBRATION_WEEKS + 1)}
        moments[HOLDOUT_WEEK] = HOLDOUT_END.timestamp()
        assert moments[CALIBRATION_WEEKS] == CALIBRATION_END.timestamp()
        snaps = replay_snapshots(events, moments.values(), with_features=lambda m: m <= CALIBRATION_END.timestamp())
        self.snaps = {week: snaps[moment] for week, moment in moments.items()}
        self._priors: dict[int, dict[str, Any]] = {}
        self._pareto: dict[int, dict[str, float]] = {}

    def features(self, week: int) -> np.ndarray:
        return self.snaps[week].features

    def prior(self, week: int) -> dict[str, Any]:
        """BG/NBD and Gamma-Gamma fitted on the buyers at `week` (CDNOW's cohort has all bought by week 12)."""
        if week not in self._priors:
            self._priors[week] = {**fit_prior(self.features(week)), "first_purchase_rate": 0.0}
        return self._priors[week]

    def prior_matrix(self, week: int, weeks: float) -> np.ndarray:
        """The prior's columns (tailor.ltv.prior.PRIOR_NAMES) for the shoppers known at `week`, over `weeks`."""
        return prior_matrix(self.features(week), self.prior(week), weeks)

    def pareto_nbd(self, week: int) -> dict[str, float]:
        """Pareto/NBD fitted on the buyers at `week`."""
        if week not in self._pareto:
            x, tx, T, _, _ = buyer_summary(self.features(week))
            self._pareto[week] = fit_pareto_nbd(x, tx, T)
        return self._pareto[week]

    def labels(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Purchase days and spend of the shoppers known at `start` from then until `end`."""
        first, last = self.snaps[start], self.snaps[end]
        later = last.index()  # once: building it per shopper made every label window quadratic in shoppers
        rows = np.array([later[u] for u in first.user_ids])
        return last.transactions[rows] - first.transactions, np.maximum(last.revenue[rows] - first.revenue, 0.0)


def measure(windows: Windows, weeks: Sequence[int] = (20, 26, 39),
            only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every variant's figures as of each week, beside BG/NBD's; with `only`, the variants whose names contain one
    of those texts (case-insensitive), BG/NBD always (a run takes minutes per variant, the whole set over half an
    hour on two busy cores)."""
    results = []
    for week in weeks:
        end = HOLDOUT_WEEK if week == CALIBRATION_WEEKS else CALIBRATION_WEEKS
        horizon = end - week
        actual_t, actual_s = windows.labels(week, end)
        for name, predict in _variants(windows, week, horizon).items():
            if only and name != BGNBD and not any(text.lower() in name.lower() for text in only):
                continue
            t, s = predict()
            figures = ltv_metrics(t, s, actual_t, actual_s)
            results.append({"as_of_week": week, "horizon_weeks": horizon, "variant": name, **figures})
            print(_line(results[-1]), flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tailor_lab.evaluation.ltv_variants", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CDNOW_master.txt (default: %(default)s)")
    parser.add_argument("--weeks", type=int, nargs="+", default=[20, 26, 39],
                        help="as-of weeks: before 39 scored on the rest of calibration, 39 on the holdout")
    parser.add_argument("--only", nargs="+", default=[], metavar="TEXT",
                        help="only the variants whose names contain one of these texts (and BG/NBD)")
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if any(not 13 < w <= CALIBRATION_WEEKS for w in args.weeks):
        parser.error(f"--weeks must lie in 14..{CALIBRATION_WEEKS}")
    results = measure(Windows(args.data), args.weeks, args.only)
    if args.json:
        report_json.write(Path(args.json), {"measured": datetime.now(UTC).isoformat(), "rows": results})
    return 0


# -- helpers --------------------------------------------------------------------------------------

BGNBD = "BG/NBD + Gamma-Gamma"


def _variants(windows: Windows, week: int, horizon: int) -> dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]]:
    """Each variant's (purchase days, spend), computed when called; what several share, once."""
    features = windows.features(week)
    prior = windows.prior_matrix(week, horizon)
    bgnbd_t = _expected_days(prior)
    value = _value(prior)
    shipped = _plan(week, horizon, step=2, count=7)
    stacked = _plan(week, horizon, step=1, count=week)
    previous = functools.cache(lambda: _trees(windows, week, horizon, shipped))
    count, mean = features[:, COLUMN["transactions"]], features[:, COLUMN["mean_transaction_value"]]
    shop = float(features[:, COLUMN["revenue"]].sum() / count.sum())
    shrunk = shrunk_value(features)
    hurdle = functools.cache(lambda: _shipped(windows, week, horizon, shipped))
    # Pareto/NBD fitted once, at the as-of week, for every training cutoff: a fit per cutoff takes minutes.
    with_pareto = functools.cache(lambda: _shipped(windows, week, horizon, shipped, extra=functools.partial(
        _pareto_columns, fitted_at=week)))

    def per_tertile():
        by_segment = _segment_expected(windows, week, features, horizon, _tertiles(features))
        return by_segment, by_segment * value

    def blend(weight: float):
        tree_t, tree_s = previous()
        return weight * bgnbd_t + (1 - weight) * tree_t, weight * bgnbd_t * value + (1 - weight) * tree_s

    out = {
        BGNBD: lambda: (bgnbd_t, bgnbd_t * value),
        "shipped recipe (purchase days by a hurdle; 2 label lengths, 7 cutoffs 2 weeks apart)":
            hurdle,
        "(f) the previous recipe: Poisson trees on the ratio to BG/NBD": previous,
        "(c) every week's cutoff stacked": lambda: _trees(windows, week, horizon, stacked),
        "(c) stacked, with the cutoff's calendar week": lambda: _trees(
            windows, week, horizon, stacked, extra=lambda f, cutoff: np.full((len(f), 1), float(cutoff))),
        "(d) one-time and repeat buyers apart": lambda: _split_trees(windows, week, horizon, shipped),
        "(b) hurdle without the prior's offsets": lambda: _hurdle(windows, week, horizon, shipped),
        "(a) BG/NBD per first-order value tertile": per_tertile,
        "(a) trees on the per-tertile BG/NBD": lambda: _trees(windows, week, horizon, shipped, segment_edges=True),
    }
    for weight in BLEND_WEIGHTS:
        out[f"(e) {weight:g} x BG/NBD + {1 - weight:g} x previous trees"] = functools.partial(blend, weight)
    out["spend: previous trees' purchase days x Gamma-Gamma value"] = lambda: (previous()[0], previous()[0] * value)
    out["spend: previous trees' purchase days x own mean value"] = lambda: (
        previous()[0], previous()[0] * np.where(count > 0, mean, shop))
    out["spend: previous trees' purchase days x value shrunk by 3 orders"] = lambda: (previous()[0],
                                                                                     previous()[0] * shrunk)
    out[f"(g) the recipe's hurdle days x value shrunk by {SHRINK_ORDERS:g} orders"] = lambda: (hurdle()[0],
                                                                                        hurdle()[0] * shrunk)
    for orders in OTHER_SHRINK_ORDERS:
        out[f"(g) the recipe's hurdle days x value shrunk by {orders:g} orders"] = functools.partial(
            lambda k: (hurdle()[0], hurdle()[0] * shrunk_value(features, k)), orders)
    out["(g) mean of the recipe's spend and hurdle days x shrunk value"] = lambda: (
        hurdle()[0], 0.5 * hurdle()[1] + 0.5 * hurdle()[0] * shrunk)
    out["(h) the recipe with Pareto/NBD's expectations as inputs"] = with_pareto
    out["(h) Pareto/NBD inputs, days x shrunk value"] = lambda: (with_pareto()[0], with_pareto()[0] * shrunk)
    out["(i) spend learned outright: Poisson trees, no offset"] = lambda: (
        hurdle()[0], _outright_spend(windows, week, horizon, shipped))
    out["(i) spend learned outright: Tweedie GLM (power 1.5) on the prior's logs"] = lambda: (
        hurdle()[0], _tweedie_spend(windows, week, horizon, shipped))
    out["(k) spend correction on BG/NBD x shrunk value"] = lambda: (
        hurdle()[0], _shrunk_offset_spend(windows, week, horizon, shipped))
    return out


def _expected_days(prior: np.ndarray) -> np.ndarray:
    """BG/NBD's expected purchase days from the prior's columns."""
    return np.exp(prior[:, _LOG_DAYS].astype(np.float64))


def _value(prior: np.ndarray) -> np.ndarray:
    """Gamma-Gamma's expected value per purchase day from the prior's columns."""
    return np.exp(prior[:, _LOG_VALUE].astype(np.float64))


def shrunk_value(features: np.ndarray, orders: float = SHRINK_ORDERS) -> np.ndarray:
    """Each shopper's mean value per purchase day shrunk towards the shop's by `orders` pseudo purchase days at the
    shop's mean (the shop's alone for a shopper who has not bought)."""
    count, revenue = features[:, COLUMN["transactions"]].astype(np.float64), features[:, COLUMN["revenue"]]
    return shrunk_by(revenue.astype(np.float64), count, float(revenue.sum() / max(count.sum(), 1.0)), orders)


def _pareto_columns(windows: Windows, f: np.ndarray, weeks: float, prior: np.ndarray, fitted_at: int) -> np.ndarray:
    """Pareto/NBD fitted at `fitted_at`: each shopper's log expected purchase days a week over `weeks`, and P(alive)
    (BG/NBD's rate from `prior`, and -1, for a shopper who has not bought); `f` are the features at the cutoff."""
    params = windows.pareto_nbd(fitted_at)
    bought, x, tx, T = purchase_history(f)
    expected = np.where(bought, pareto_nbd_expected(params, weeks, x, tx, T), _expected_days(prior))
    alive = np.where(bought, pareto_nbd_alive(params, x, tx, T), -1.0)
    return np.column_stack([np.log(np.maximum(expected, 1e-9)) - np.log(weeks), alive])


def _hurdle_rows(windows: Windows, plan, columns, extra=None):
    """The shipped correction's training rows on these windows: input, prior, purchase days and spend."""
    X, priors, days, spend = [], [], [], []
    for cutoff, length in plan:
        f = windows.features(cutoff)
        prior = windows.prior_matrix(cutoff, length)
        t, s = windows.labels(cutoff, cutoff + length)
        X.append(_hurdle_input(windows, f, length, columns, prior, extra))
        priors.append(prior)
        days.append(t)
        spend.append(s)
    return np.vstack(X), np.vstack(priors), np.concatenate(days), np.concatenate(spend)


def _hurdle_input(windows, f, weeks, columns, prior, extra=None):
    """correction_input, with any extra columns between the features and the prior's (where the correction's
    monotonic constraints look for the prior's)."""
    if extra is None:
        return correction_input(f, columns, prior)
    return np.hstack([f[:, columns], extra(windows, f, weeks, prior), prior[:, CORRECTION_COLUMNS]])


def _shipped(windows: Windows, week: int, horizon: int, plan, extra=None):
    """The shipped correction (tailor_lab.training.ltv.HurdleCorrection) learned on these windows; with `extra`,
    more columns in its input."""
    columns = correction_columns(windows.features(week))
    X, priors, days, spend = _hurdle_rows(windows, plan, columns, extra)
    model = HurdleCorrection().fit(X, priors, days, spend)
    f = windows.features(week)
    prior = windows.prior_matrix(week, horizon)
    return model.predict(_hurdle_input(windows, f, horizon, columns, prior, extra), prior)


def _spend_inputs(X: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The correction's input with the prior's log expected spend (purchase days x value) beside it."""
    return np.hstack([X, (prior[:, _LOG_DAYS] + prior[:, _LOG_VALUE]).astype(np.float64)[:, None]])


def _outright_spend(windows: Windows, week: int, horizon: int, plan) -> np.ndarray:
    """Spend learned outright (Poisson trees on spend itself, no offset), the prior's quantities among the inputs."""
    columns = correction_columns(windows.features(week))
    X, priors, _, spend = _hurdle_rows(windows, plan, columns)
    model = fit_booster(_spend_inputs(X, priors), spend, None, leaf_size(len(X)), 0)
    f = windows.features(week)
    prior = windows.prior_matrix(week, horizon)
    return model.predict(_spend_inputs(correction_input(f, columns, prior), prior))


def _glm_inputs(f: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Logs of BG/NBD's expected purchase days and of their chance, Gamma-Gamma's value, the shrunk value, P(alive)
    and the horizon: a log-linear Tweedie model on these reweighs BG/NBD x Gamma-Gamma's factors."""
    p = prior.astype(np.float64)
    return np.column_stack([p[:, _LOG_DAYS], p[:, _LOG_ANY], p[:, _LOG_VALUE], np.log(shrunk_value(f)), p[:, _ALIVE],
                            np.log(p[:, _HORIZON]),
                            np.log1p(np.maximum(f[:, COLUMN["max_transaction_value"]].astype(np.float64), 0.0))])


def _tweedie_spend(windows: Windows, week: int, horizon: int, plan) -> np.ndarray:
    """Spend from scikit-learn's TweedieRegressor (power 1.5, log link) on _glm_inputs, standardised."""
    from sklearn.linear_model import TweedieRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Z, spend = [], []
    for cutoff, length in plan:
        f = windows.features(cutoff)
        Z.append(_glm_inputs(f, windows.prior_matrix(cutoff, length)))
        spend.append(windows.labels(cutoff, cutoff + length)[1])
    model = make_pipeline(StandardScaler(), TweedieRegressor(power=1.5, link="log", alpha=1e-4, max_iter=2000))
    model.fit(np.vstack(Z), np.concatenate(spend))
    f = windows.features(week)
    return model.predict(_glm_inputs(f, windows.prior_matrix(week, horizon)))


def _shrunk_offset_spend(windows: Windows, week: int, horizon: int, plan) -> np.ndarray:
    """The shipped spend correction with BG/NBD's purchase days times the shrunk value as its offset."""
    columns = correction_columns(windows.features(week))
    X, priors, _, spend = _hurdle_rows(windows, plan, columns)
    offset = _expected_days(priors) * np.concatenate([shrunk_value(windows.features(c)) for c, _ in plan])
    model = fit_booster(X, spend / offset, offset, leaf_size(len(X)), 0)
    f = windows.features(week)
    prior = windows.prior_matrix(week, horizon)
    return model.predict(correction_input(f, columns, prior)) * _expected_days(prior) * shrunk_value(f)


def _plan(week: int, horizon: int, *, step: int, count: int) -> list[tuple[int, int]]:
    """(cutoff, label weeks): the longest window the history allows (13 weeks before it) and half of it."""
    longest = min(horizon, week - 13)
    lengths = sorted({longest, max(round(longest / 2), 1)}, reverse=True)
    return [(week - length - j * step, length) for length in lengths for j in range(count)
            if week - length - j * step >= 7]


def _rows(windows: Windows, plan, columns, extra=None, segment_edges: bool = False):
    X, y_t, y_s, log_expected, log_value = [], [], [], [], []
    for cutoff, length in plan:
        f = windows.features(cutoff)
        prior = windows.prior_matrix(cutoff, length)
        expected = prior[:, _LOG_DAYS].astype(np.float64)
        if segment_edges:
            expected = np.log(np.maximum(_segment_expected(windows, cutoff, f, length, _tertiles(f)), 1e-9))
        t, s = windows.labels(cutoff, cutoff + length)
        parts = [f[:, columns], prior[:, :4]] + ([extra(f, cutoff)] if extra else [])
        X.append(np.hstack(parts))
        y_t.append(t)
        y_s.append(s)
        log_expected.append(expected)
        log_value.append(prior[:, _LOG_VALUE].astype(np.float64))
    return (np.vstack(X), np.concatenate(y_t), np.concatenate(y_s), np.exp(np.concatenate(log_expected)),
            np.exp(np.concatenate(log_value)))


def _scoring_rows(windows: Windows, week: int, horizon: int, columns, extra=None, segment_edges: bool = False):
    f = windows.features(week)
    prior = windows.prior_matrix(week, horizon)
    expected = _expected_days(prior)
    if segment_edges:
        expected = _segment_expected(windows, week, f, horizon, _tertiles(f))
    parts = [f[:, columns], prior[:, :4]] + ([extra(f, week)] if extra else [])
    return np.hstack(parts), expected, _value(prior)


def _trees(windows: Windows, week: int, horizon: int, plan, extra=None, segment_edges: bool = False):
    """Poisson trees on the ratio of what shoppers did to what the prior expected, as the recipe before the hurdle."""
    columns = correction_columns(windows.features(week))
    X, y_t, y_s, expected, value = _rows(windows, plan, columns, extra, segment_edges)
    leaf = leaf_size(len(X))
    transactions = fit_booster(X, y_t / expected, expected, leaf, 0)
    spend = fit_booster(X, y_s / (expected * value), expected * value, leaf, 0)
    x, e, v = _scoring_rows(windows, week, horizon, columns, extra, segment_edges)
    return transactions.predict(x) * e, spend.predict(x) * e * v


def _split_trees(windows: Windows, week: int, horizon: int, plan):
    columns = correction_columns(windows.features(week))
    X, y_t, y_s, expected, value = _rows(windows, plan, columns)
    x, e, v = _scoring_rows(windows, week, horizon, columns)
    where = columns.tolist().index(COLUMN["repeat_transactions"])
    t, s = np.zeros(len(x)), np.zeros(len(x))
    for repeat in (False, True):
        train, score = (X[:, where] > 0) == repeat, (x[:, where] > 0) == repeat
        leaf = leaf_size(int(train.sum()))
        m_t = fit_booster(X[train], y_t[train] / expected[train], expected[train], leaf, 0)
        m_s = fit_booster(X[train], y_s[train] / (expected[train] * value[train]), expected[train] * value[train], leaf, 0)
        t[score] = m_t.predict(x[score]) * e[score]
        s[score] = m_s.predict(x[score]) * e[score] * v[score]
    return t, s


def _hurdle(windows: Windows, week: int, horizon: int, plan):
    """P(any purchase day) from a classifier, purchase days and spend given any from Poisson trees, both on the
    prior's quantities (the horizon among them) rather than as its correction."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    columns = correction_columns(windows.features(week))
    X, y_t, y_s, expected, _ = _rows(windows, plan, columns)
    X = np.hstack([X, np.log(expected)[:, None]])
    leaf = leaf_size(len(X))
    any_ = HistGradientBoostingClassifier(min_samples_leaf=leaf, early_stopping=False, random_state=0,
                                          **BOOSTING).fit(X, y_t > 0)
    bought = y_t > 0
    given_t = fit_booster(X[bought], y_t[bought], None, max(leaf // 4, 5), 0)
    given_s = fit_booster(X[bought], y_s[bought], None, max(leaf // 4, 5), 0)
    x, e, _ = _scoring_rows(windows, week, horizon, columns)
    x = np.hstack([x, np.log(e)[:, None]])
    p = any_.predict_proba(x)[:, 1]
    return p * np.maximum(given_t.predict(x), 1.0), p * given_s.predict(x)


def _tertiles(features: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    edges = np.quantile(features[:, COLUMN["first_transaction_value"]], [1 / 3, 2 / 3])
    return lambda f: np.digitize(f[:, COLUMN["first_transaction_value"]], edges)


def _segment_expected(windows: Windows, week: int, features: np.ndarray, horizon: int, segment) -> np.ndarray:
    """BG/NBD's expected purchase days with its parameters fitted per segment of the buyers at `week`."""
    expected = np.exp(windows.prior_matrix(week, horizon)[:, _LOG_DAYS].astype(np.float64))
    at_week = windows.features(week)
    labels_then, labels_now = segment(at_week), segment(features)
    bought, x_now, tx_now, T_now = purchase_history(features)
    for label in np.unique(labels_now):
        try:
            x, tx, T, _, _ = buyer_summary(at_week[labels_then == label])
        except TooLittleHistory:
            continue
        rows = (labels_now == label) & bought
        expected[rows] = expected_transactions(fit_bgnbd(x, tx, T), horizon, x_now[rows], tx_now[rows], T_now[rows])
    return expected


def _line(row: dict[str, Any]) -> str:
    return (f"week {row['as_of_week']:>2} (+{row['horizon_weeks']}) {row['variant']:<58} MAE {row['mae_transactions']:.3f} "
            f"at total {row['mae_transactions_at_actual_total']:.3f} Spearman {row['spearman_spend']:.3f} "
            f"top-10% {row['top_decile_revenue_share']:.3f} total x{row['transactions_total_ratio']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
