"""Train the LTV model on time-shifted windows of replayed shopper state and export it to ONNX.

The scheduled TrainLtv function runs `retrain_from_archive`: its build carries this module alone from the lab
(functions/train_ltv/Makefile), so it imports nothing from the lab, only the domain library and the training
libraries the function installs.

Production has no future to learn from, only the past: so the model learns what shoppers did in
the weeks after several past cutoffs, from their state as it was at each cutoff. The state comes
from replaying events through `tailor.shopper.fold_shopper`, the fold Ingest runs, and the
features from `tailor.ltv.features.ltv_features`, the function RebuildLtv scores with.

The model is a prior corrected by gradient boosting in two stages (a hurdle):
- The prior is BG/NBD (Fader, Hardie & Lee 2005), fitted by maximum likelihood on the buyers as
  they stand at as_of. It forecasts each buyer's purchase days over any horizon, so the forecast
  reaches horizons longer than any label window the history holds, and it ages shoppers as they
  will age: purchase rates fall as shoppers drop out, which a tree cannot extrapolate from
  younger shoppers. Shoppers who have not bought yet get the rate at which such shoppers bought.
  A buyer's value per purchase day is Gamma-Gamma's (same authors), fitted alongside: their mean
  shrunk towards the shop's, the more the fewer purchases it rests on.
- The correction (`HurdleCorrection`) learns, from all LTV features except those counted in weeks
  of age (the prior carries time) plus the prior's own outputs, purchase days in two stages:
  whether a shopper makes any purchase day in the window (a gradient-boosted classifier that also
  sees the prior's chance of it), and how many those who do make, as a ratio to what the prior
  expects of them. Most shoppers buy nothing in a window, and telling them from those who do is
  most of what a forecast of purchase days per shopper can get right: on the validation windows
  inside CDNOW's calibration this was off by fewer purchase days than one correction of the
  prior's expectation (see the README's LTV section). Spend is corrected in one stage, as the ratio
  of what shoppers spent to the prior's expected spend (scikit-learn's HistGradientBoostingRegressor,
  Poisson loss, for both regressors): spend per purchase day of those who bought, times the purchase
  days, ranked the big spenders worse there. Label windows of two lengths, the longest the history
  allows and half of it, teach the correction for short and long horizons at once. Each window's
  prior is BG/NBD refitted on what was known at its cutoff, as the model's own is fitted at as_of.
  The level is the trees' own: in windows inside CDNOW's calibration BG/NBD over-forecasts, and
  bringing the trees' totals back to the prior's cost MAE of purchase days on the validation windows
  (see the README's LTV section).
- Counts spread around their expectation as a negative binomial whose shape is fitted on the
  training windows. The purchase days to quote per shopper (`LtvPrediction.typical_transactions`)
  are the same quantile of every shopper's distribution, at the level that is off by the fewest
  purchase days on the training windows (a median-like level: absolute errors are least at the
  median). The spend to quote (`LtvPrediction.typical_spend`) is that of the purchase days at the
  level at which the shoppers' counts sum to their expected total, so that quoted spend adds up.
  Where one of the two levels gives no purchase day and the other some, the none becomes one
  (`tailor.ltv.scoring.consistent_days`): no shopper is quoted a spend without a purchase day.
The three stages go into one ONNX graph with the prior's offsets, scored by `tailor.ltv.scoring.LtvModel`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tailor.archive import archived_events
from tailor.events import Event, parse_event
from tailor.ingest.derive import contributions
from tailor.ltv.features import FEATURE_NAMES, WEEK_SECONDS, epoch_seconds, feature_matrix
from tailor.ltv.prior import (
    BGNBD_PARAMS,
    CORRECTION_COLUMNS,
    CORRECTION_PRIOR,
    PRIOR_NAMES,
    SHRUNK_VALUE_DAYS,
    prior_matrix,
    purchase_history,
)
from tailor.ltv.prior import expected_transactions as bgnbd_expected
from tailor.ltv.scoring import (
    INPUT_NAME,
    METADATA_KEY,
    MODEL_NAME,
    OUTPUT_NAMES,
    PRIOR_INPUT_NAME,
    quote,
    typical_counts,
)
from tailor.models.registry import ModelRegistry
from tailor.shopper import ShopperState, fold_shopper
from tailor.store.port import BlobStore

__all__ = ["AGE_FEATURES", "CORRECTION_WEIGHTS", "HurdleCorrection", "QUOTE_LEVELS", "SHRUNK_SPEND_SHARE", "Snapshot",
           "TooLittleHistory", "TrainedLtv", "buyer_summary", "choose_correction_weights", "correction_columns",
           "correction_input", "fit_bgnbd", "fit_booster",
           "fit_gamma_gamma", "fit_prior", "leaf_size", "least_error_level", "ltv_metrics", "minimize_robustly",
           "parse_events", "replay_snapshots", "retrain_from_archive", "totals_level", "train_ltv", "weighed"]

# Fewer, shallower rounds than usual: the correction to a good prior is small, and dry runs inside
# the CDNOW calibration period ranked shoppers better with 100 rounds than with 200 or 400.
BOOSTING = {"max_iter": 100, "learning_rate": 0.05, "max_leaf_nodes": 15, "l2_regularization": 1.0}
# Whether a shopper buys at all is learned with twice the rounds: on the validation windows inside CDNOW's
# calibration, 200 rounds were off by fewer purchase days than 50 or 100.
ANY_PURCHASE_ROUNDS = 200
# The spend forecast's share spent at the expected purchase days times the buyer's value shrunk towards the shop's
# (tailor.ltv.prior.SHRUNK_VALUE_DAYS); the rest is the spend correction's.
SHRUNK_SPEND_SHARE = 0.25
# The correction's shares of each forecast tried on the backtest, the rest the prior's own (BG/NBD's purchase days,
# times Gamma-Gamma's value for spend): on a shop whose recent weeks the trees forecast worse than BG/NBD, the model
# falls back towards it.
CORRECTION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Without a backtest to choose on, the correction's forecasts whole.
_WITHOUT_BACKTEST = {"transactions": 1.0, "spend": 1.0, "chosen_on": "nothing: no backtest"}
QUANTILES = 101
# Quantile levels tried for the purchase days to quote: the least error is near the median, and
# levels outside these quote nothing or a lot for almost every shopper.
QUOTE_LEVELS = np.round(np.arange(0.30, 0.901, 0.02), 2)
DAY_SECONDS = 86_400.0
# Features counted in weeks of age or elapsed time. At training cutoffs shoppers are younger than
# when they are scored, and a tree predicts for an older shopper what it learned for the oldest it
# saw; the prior accounts for age instead, so the correction does not see these.
AGE_FEATURES = frozenset({
    "recency_weeks", "purchase_span_weeks", "weeks_since_first_purchase", "tenure_weeks", "weeks_since_seen",
    "repeat_rate_per_week", "mean_gap_weeks", "last_gap_weeks", "median_gap_weeks", "min_gap_weeks",
})


class TooLittleHistory(ValueError):
    """The events do not yet hold what training needs: enough weeks, buyers, repeat buyers."""


@dataclass
class Snapshot:
    """Shoppers as they stood at `moment`: ids, purchase counters and (when asked for) LTV features."""

    moment: float
    user_ids: list[str]
    transactions: np.ndarray
    revenue: np.ndarray
    features: np.ndarray | None = None

    def index(self) -> dict[str, int]:
        return {user: i for i, user in enumerate(self.user_ids)}


@dataclass
class TrainedLtv:
    onnx: bytes
    metadata: dict[str, Any]


def parse_events(events: Iterable[dict | Event]) -> list[Event]:
    """Validated events in time order (stable for equal times)."""
    parsed = [e if not isinstance(e, dict) else parse_event(e) for e in events]
    parsed.sort(key=lambda e: e.epoch)
    return parsed


def replay_snapshots(events: Sequence[Event], moments: Iterable[float], *,
                     with_features: Callable[[float], bool] = lambda _: True) -> dict[float, Snapshot]:
    """Fold `events` (in time order) into shopper state and take a snapshot at each moment.

    A snapshot at m holds every event before m. Features are computed for the moments that
    `with_features` accepts; the others only keep the purchase counters (for labels).
    """
    states: dict[str, ShopperState] = {}
    referrals_sent: dict[str, int] = {}
    snapshots: dict[float, Snapshot] = {}
    position = 0
    for moment in sorted(set(moments)):
        while position < len(events) and events[position].epoch < moment:
            event = events[position]
            states[event.user_id] = fold_shopper(states.get(event.user_id), event)
            if event.event_type == "referral":
                # The counter Ingest adds to the referrer's row, from the same derivation.
                for c in contributions(event, None):
                    if c.table == "shoppers":
                        referrals_sent[c.key] = referrals_sent.get(c.key, 0) + int(c.increments.get("referrals_sent", 0))
            position += 1
        users = sorted(states)
        snapshots[moment] = Snapshot(
            moment=moment, user_ids=users,
            transactions=np.array([states[u].transactions for u in users], dtype=np.float64),
            revenue=np.array([states[u].revenue for u in users], dtype=np.float64),
            features=feature_matrix((states[u] for u in users), moment, referrals_sent) if with_features(moment) else None,
        )
    return snapshots


def train_ltv(events: Iterable[dict | Event], as_of: float | datetime, *, horizon_weeks: float = 39.0,
              windows: int = 7, step_weeks: float = 2.0, min_history_weeks: float = 13.0, seed: int = 0,
              backtest: bool = True) -> TrainedLtv:
    """Train on the events before `as_of` for horizons up to `horizon_weeks`; the ONNX model and its metadata.

    Label windows: the longest is `horizon_weeks`, shortened so that its first cutoff leaves
    `min_history_weeks` of history to learn from; the other is half of it. Each has `windows`
    cutoffs, `step_weeks` apart, ending by as_of, none in the first `min_history_weeks / 2` weeks
    of history (too few shoppers yet). Events after as_of are ignored. The backtest repeats the
    recipe at as_of minus the short window, for that window, and scores it against what shoppers
    did until as_of; the correction's share of each forecast, the rest BG/NBD's own, is chosen there.
    """
    end = epoch_seconds(as_of)
    stream = [e for e in parse_events(events) if e.epoch < end]
    if not stream:
        raise TooLittleHistory("no events before as_of to train on")
    label_days = _label_days(stream[0].epoch, end, horizon_weeks, min_history_weeks)
    choice: dict[str, Any] = dict(_WITHOUT_BACKTEST)
    report: dict[str, Any] = {"skipped": "too little history for a second, earlier training"}
    if backtest:
        choice, report = _backtest(stream, end, label_days[-1], windows, step_weeks, min_history_weeks, seed)
    fitted = _fit_recipe(stream, end, horizon_weeks, windows, step_weeks, min_history_weeks, seed,
                         weights=(choice["transactions"], choice["spend"]))

    _, spend_now = fitted.predict(fitted.current, horizon_weeks)
    metadata = {
        "feature_names": list(FEATURE_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "horizon_weeks": horizon_weeks,
        "as_of": _iso(end),
        "trained_at": _iso(end),
        "label_weeks": [d / 7.0 for d in fitted.label_days],
        "cutoffs": [_iso(c) for c in fitted.cutoffs],
        "training_rows": fitted.rows,
        "prior": fitted.prior,
        "count": {"distribution": "negative_binomial", "dispersion": fitted.dispersion, "level": fitted.level,
                  "spend_level": fitted.spend_level},
        "correction_features": [FEATURE_NAMES[i] for i in fitted.columns] + list(CORRECTION_PRIOR),
        "correction": ("purchase days: P(any purchase day) x max(purchase days given any, 1); spend: "
                       f"{1 - fitted.correction.shrunk_share:g} x one stage + {fitted.correction.shrunk_share:g} x "
                       f"purchase days x value shrunk by {SHRUNK_VALUE_DAYS:g} purchase days; each forecast "
                       f"{choice['transactions']:g} (purchase days) and {choice['spend']:g} (spend) of the "
                       "correction's, the rest BG/NBD's own"),
        "correction_weights": choice,
        "baseline": [float(v) for v in np.median(fitted.current, axis=0)],
        "spend_quantiles": [float(v) for v in np.quantile(spend_now, np.linspace(0, 1, QUANTILES))],
        "backtest": report,
        "library": _library_versions(),
        "boosting": {**BOOSTING, "loss": "poisson", "any_purchase": {"loss": "log_loss", "max_iter": ANY_PURCHASE_ROUNDS}},
    }
    return TrainedLtv(_export(fitted.columns, fitted.correction, metadata), metadata)


def choose_correction_weights(corrected: tuple[np.ndarray, np.ndarray], prior: tuple[np.ndarray, np.ndarray],
                              days: np.ndarray, spend: np.ndarray,
                              weights: Sequence[float] = CORRECTION_WEIGHTS) -> dict[str, Any]:
    """The correction's share of each forecast, the rest the prior's own, from (purchase days, spend) forecasts of the
    same shoppers and what they did: for purchase days the share whose blend is off by the fewest (MAE), for spend the
    one whose blend ranks spend best (Spearman); the larger share on a tie."""
    mae = {w: float(np.abs(weighed(corrected[0], prior[0], w) - days).mean()) for w in weights}
    rank = {w: _spearman(weighed(corrected[1], prior[1], w), spend) for w in weights}
    ranked = {w: r if np.isfinite(r) else -np.inf for w, r in rank.items()}
    return {"transactions": max(weights, key=lambda w: (-mae[w], w)),
            "spend": max(weights, key=lambda w: (ranked[w], w)),
            "chosen_on": "backtest",
            "mae_by_weight": {f"{w:g}": round(v, 6) for w, v in mae.items()},
            "spearman_by_weight": {f"{w:g}": round(v, 6) for w, v in rank.items()}}


def weighed(corrected: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    """A forecast `weight` of the correction's and the rest the prior's own."""
    return weight * np.asarray(corrected, float) + (1.0 - weight) * np.asarray(prior, float)


def retrain_from_archive(blobs: BlobStore, now: float | datetime, *, history_weeks: float = 104.0,
                         horizon_weeks: float = 39.0, publish: bool = True) -> dict[str, Any]:
    """Train on the archived events of the last `history_weeks` before `now` and publish the model as current.

    What the scheduled training runs: the archive holds every valid event Ingest applied, so the
    model learns from the same history the shoppers' state was folded from. The backtest in the
    metadata is the model's measured quality; the report returned says what was trained on, or why
    nothing was (status "skipped": too little history yet, and the current model stays).
    """
    end = epoch_seconds(now)
    start = end - history_weeks * WEEK_SECONDS
    since = datetime.fromtimestamp(start, tz=UTC).date().isoformat()
    until = datetime.fromtimestamp(end, tz=UTC).date().isoformat()
    events = [e for e in _parsed(archived_events(blobs, since=since, until=until)) if start <= e.epoch < end]
    events.sort(key=lambda e: e.epoch)
    try:
        trained = train_ltv(events, end, horizon_weeks=horizon_weeks)
    except TooLittleHistory as too_little:
        # A young shop: the current model (if any) stays; the next run looks again.
        return {"status": "skipped", "reason": str(too_little), "model": MODEL_NAME, "events": len(events),
                "since": since, "as_of": _iso(end), "training_rows": 0}
    version = ModelRegistry(blobs).publish(MODEL_NAME, trained.onnx, trained.metadata) if publish else None
    return {"status": "trained", "model": MODEL_NAME, "version": version, "events": len(events), "since": since,
            "as_of": _iso(end), "training_rows": trained.metadata["training_rows"], "label_weeks": trained.metadata["label_weeks"],
            "backtest": trained.metadata["backtest"], "correction_weights": trained.metadata["correction_weights"]}


def ltv_metrics(pred_transactions: np.ndarray, pred_spend: np.ndarray, actual_transactions: np.ndarray,
                actual_spend: np.ndarray) -> dict[str, float]:
    """Per-shopper errors and ranking quality of predicted purchases and spend against what happened."""
    pt, ps = np.asarray(pred_transactions, float), np.asarray(pred_spend, float)
    at, act = np.asarray(actual_transactions, float), np.asarray(actual_spend, float)
    n = len(at)
    top = np.argsort(-ps, kind="stable")[: max(int(round(n / 10)), 1)]
    return {
        "customers": n,
        "mae_transactions": float(np.abs(pt - at).mean()),
        "rmse_transactions": float(np.sqrt(((pt - at) ** 2).mean())),
        # MAE of expectations rewards a low level (most shoppers buy nothing): at the actual total, what is left
        # of a difference between two models is how they tell shoppers apart.
        "mae_transactions_at_actual_total": float(np.abs(pt * _ratio(at.sum(), pt.sum()) - at).mean())
        if pt.sum() > 0 else float("nan"),
        "spearman_spend": _spearman(ps, act),
        "top_decile_revenue_share": _ratio(act[top].sum(), act.sum()),
        "predicted_transactions": float(pt.sum()),
        "actual_transactions": float(at.sum()),
        "predicted_spend": float(ps.sum()),
        "actual_spend": float(act.sum()),
        "transactions_total_ratio": _ratio(pt.sum(), at.sum()),
        "spend_total_ratio": _ratio(ps.sum(), act.sum()),
    }


def fit_bgnbd(x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> dict[str, float]:
    """Maximum-likelihood BG/NBD parameters r, alpha, a, b (Fader, Hardie & Lee 2005, eq. 6)."""
    x, tx, T = (np.asarray(v, dtype=np.float64) for v in (x, tx, T))
    result = minimize_robustly(lambda p: -_bgnbd_loglik(np.exp(p), x, tx, T).sum(), np.zeros(4))
    return {name: float(v) for name, v in zip(BGNBD_PARAMS, np.exp(result))}


def fit_gamma_gamma(x: np.ndarray, m: np.ndarray) -> dict[str, float]:
    """Maximum-likelihood Gamma-Gamma spend parameters p, q, gamma from customers' x transactions averaging m."""
    from scipy import special

    x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]

    def nll(log_params: np.ndarray) -> float:
        p, q, g = np.exp(log_params)
        ll = (special.gammaln(p * x + q) - special.gammaln(p * x) - special.gammaln(q) + q * np.log(g)
              + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(g + m * x))
        return -ll.sum()

    p, q, g = np.exp(minimize_robustly(nll, np.zeros(3)))
    return {"p": float(p), "q": float(q), "gamma": float(g)}


def totals_level(mean: np.ndarray, dispersion: float) -> float:
    """The quantile level at which the shoppers' quoted counts sum closest to their expected total."""
    target = float(np.sum(mean))
    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        if typical_counts(mean, dispersion, mid).sum() < target:
            low = mid
        else:
            high = mid
    below, above = typical_counts(mean, dispersion, low).sum(), typical_counts(mean, dispersion, high).sum()
    return float(low if abs(below - target) < abs(above - target) else high)


def least_error_level(mean: np.ndarray, dispersion: float, counts: np.ndarray) -> float:
    """Of QUOTE_LEVELS, the quantile level whose quoted counts are off from `counts` by the least on average."""
    counts = np.asarray(counts, dtype=np.float64)
    errors = [float(np.abs(typical_counts(mean, dispersion, level) - counts).mean()) for level in QUOTE_LEVELS]
    return float(QUOTE_LEVELS[int(np.argmin(errors))])


def minimize_robustly(objective: Callable[[np.ndarray], float], start: np.ndarray) -> np.ndarray:
    """A robust start with Nelder-Mead, then a quasi-Newton polish (for likelihoods of a few parameters)."""
    from scipy import optimize

    coarse = optimize.minimize(objective, start, method="Nelder-Mead",
                               options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-8})
    fine = optimize.minimize(objective, coarse.x, method="L-BFGS-B")
    return fine.x if fine.fun <= coarse.fun else coarse.x


def fit_prior(current: np.ndarray) -> dict[str, Any]:
    """BG/NBD fitted on the buyers at as_of, and the shop's mean transaction value."""
    x, tx, T, revenue, transactions = buyer_summary(current)
    prior = {"model": "bgnbd", "bgnbd": fit_bgnbd(x, tx, T),
             "mean_transaction_value": float(revenue.sum() / transactions.sum()) or 1.0}
    spend = fit_gamma_gamma(transactions, revenue / transactions)
    if spend["q"] > 1.0 and all(math.isfinite(v) for v in spend.values()):
        prior["gamma_gamma"] = spend  # else the shop's values are too few or too alike for a mean to exist
    return prior


def buyer_summary(features: np.ndarray) -> tuple[np.ndarray, ...]:
    """BG/NBD's x, t_x and T (weeks), and revenue and transactions, of the shoppers who have bought."""
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    bought, x, tx, T = purchase_history(features)
    if not bought.any():
        raise TooLittleHistory("no shopper has bought anything yet: nothing to learn from")
    x, tx, T, buyers = x[bought], tx[bought], T[bought], features[bought].astype(np.float64)
    if not np.any(x > 0):
        raise TooLittleHistory("no shopper has bought twice yet: purchase rates cannot be told from dropout")
    return x, tx, T, buyers[:, column["revenue"]], buyers[:, column["transactions"]]


def correction_columns(features: np.ndarray) -> np.ndarray:
    """The feature columns the correction learns from: those that vary, none counted in weeks of age."""
    # A feature that never varies (a shop without referrals, profiles or categories) cannot split a
    # tree; leaving it out spares the booster from scanning it on every split.
    varies = features.min(axis=0) < features.max(axis=0)
    timeless = np.array([name not in AGE_FEATURES for name in FEATURE_NAMES])
    return np.flatnonzero(varies & timeless)


def fit_booster(X: np.ndarray, y: np.ndarray, weight: np.ndarray | None, leaf: int, seed: int,
                monotonic_cst: np.ndarray | None = None):
    """The correction's gradient-boosted trees (Poisson loss, BOOSTING) fitted to y with sample weights.

    Poisson loss with an offset: the ratio to the prior, weighted by the prior, has the same optimum."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(loss="poisson", min_samples_leaf=leaf, early_stopping=False,
                                          random_state=seed, monotonic_cst=monotonic_cst, **BOOSTING)
    return model.fit(X, y, sample_weight=weight)


def leaf_size(rows: int) -> int:
    """The fewest shoppers in a leaf of the correction's trees: enough to estimate a rate."""
    return int(np.clip(rows * 0.003, 5, 500))


def correction_input(features: np.ndarray, columns: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The correction's input: the LTV features it uses (correction_columns), then the prior's CORRECTION_PRIOR."""
    return np.hstack([features[:, columns], prior[:, CORRECTION_COLUMNS]])


class HurdleCorrection:
    """The prior's forecast corrected: purchase days in two stages (whether a shopper buys at all in a window,
    then how many purchase days if they do), spend in one.

    fit(X, prior, days, spend): X is the correction's input (features, then the prior's CORRECTION_PRIOR),
    prior the rows' PRIOR_NAMES, days and spend what each shopper did in the window.
    - `any_purchase`: P(at least one purchase day), a classifier over X, monotone in the prior's own chance
      and in the horizon (inputs whose direction is known for every shopper).
    - `days_given_any`: purchase days of those who bought, as a ratio to the prior's expectation given any
      (expected purchase days over the chance of any, at least one), Poisson loss weighted by that expectation,
      monotone in the horizon: so that a longer horizon does not forecast fewer purchase days.
    - `spend`: every shopper's spend, as a ratio to the prior's expected spend (expected purchase days times
      the transaction value), Poisson loss weighted by it: ranking spend is a matter of the big spenders, whom
      a stage of those who bought alone ranked worse on the validation windows.
    predict gives expected purchase days P(any) x max(days given any, 1), and the spend: `shrunk_share` of it
    those purchase days at the value shrunk towards the shop's (the prior's log_shrunk_value), the rest the
    spend correction's. Each forecast is then `days_weight` (`spend_weight`) of that and the rest the prior's own:
    its expected purchase days (times its transaction value).
    """

    def __init__(self, seed: int = 0, shrunk_share: float = SHRUNK_SPEND_SHARE, days_weight: float = 1.0,
                 spend_weight: float = 1.0):
        self.seed = seed
        self.shrunk_share = shrunk_share
        self.days_weight = days_weight
        self.spend_weight = spend_weight

    def fit(self, X: np.ndarray, prior: np.ndarray, days: np.ndarray, spend: np.ndarray) -> HurdleCorrection:
        from sklearn.ensemble import HistGradientBoostingClassifier

        conditional, expected, value = _offsets(prior)
        bought = days > 0
        if bought.all() or not bought.any():
            raise TooLittleHistory("every shopper or none bought in the training windows: no hurdle to learn")
        prior_at = X.shape[1] - len(CORRECTION_PRIOR)
        longer = np.zeros(X.shape[1], dtype=int)
        longer[prior_at + CORRECTION_PRIOR.index("horizon_weeks")] = 1
        likelier = longer.copy()
        likelier[prior_at + CORRECTION_PRIOR.index("log_any_purchase")] = 1
        self.any_purchase = HistGradientBoostingClassifier(
            min_samples_leaf=leaf_size(len(X)), early_stopping=False, random_state=self.seed, monotonic_cst=likelier,
            **{**BOOSTING, "max_iter": ANY_PURCHASE_ROUNDS}).fit(X, bought)
        Xb, leaf = X[bought], leaf_size(int(bought.sum()))
        self.days_given_any = fit_booster(Xb, days[bought] / conditional[bought], conditional[bought], leaf, self.seed,
                                          longer)
        expected_spend = expected * value
        self.spend = fit_booster(X, spend / expected_spend, expected_spend, leaf_size(len(X)), self.seed)
        return self

    def predict(self, X: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        conditional, expected, value = _offsets(prior)
        days = self.any_purchase.predict_proba(X)[:, 1] * np.maximum(self.days_given_any.predict(X) * conditional, 1.0)
        shrunk = np.exp(prior[:, PRIOR_NAMES.index("log_shrunk_value")].astype(np.float64))
        share = self.shrunk_share
        spend = (1.0 - share) * self.spend.predict(X) * expected * value + share * days * shrunk
        return weighed(days, expected, self.days_weight), weighed(spend, expected * value, self.spend_weight)


# -- helpers --------------------------------------------------------------------------------------

def _offsets(prior: np.ndarray) -> tuple[np.ndarray, ...]:
    """From rows of PRIOR_NAMES: expected purchase days given any (at least one), the expected days, the value."""
    column = {name: prior[:, PRIOR_NAMES.index(name)].astype(np.float64) for name in PRIOR_NAMES}
    log_conditional = np.maximum(column["log_expected_transactions"] - column["log_any_purchase"], 0.0)
    return np.exp(log_conditional), np.exp(column["log_expected_transactions"]), np.exp(column["log_transaction_value"])


@dataclass
class _Fitted:
    """One run of the recipe: the prior, the correction, the count spread, and what they saw."""

    horizon_weeks: float
    label_days: list[int]
    cutoffs: list[float]
    rows: int
    columns: np.ndarray
    prior: dict[str, Any]
    correction: HurdleCorrection
    current: np.ndarray
    dispersion: float = 1.0
    level: float = 0.5  # the quantile level of the purchase days to quote
    spend_level: float = 0.5  # the one of the purchase days whose spend is quoted

    def predict(self, features: np.ndarray, weeks: float) -> tuple[np.ndarray, np.ndarray]:
        prior = prior_matrix(features, self.prior, weeks)
        X = correction_input(features, self.columns, prior)
        return self.correction.predict(X, prior)


def _fit_recipe(stream: list[Event], end: float, horizon_weeks: float, windows: int, step_weeks: float,
                min_history_weeks: float, seed: int, weights: tuple[float, float] = (1.0, 1.0)) -> _Fitted:
    """`weights`: the correction's shares of the purchase days and the spend forecasts (HurdleCorrection)."""
    if not stream:
        raise TooLittleHistory("no events to train on")
    first = stream[0].epoch
    label_days = _label_days(first, end, horizon_weeks, min_history_weeks)
    earliest = first + min_history_weeks / 2 * WEEK_SECONDS
    step = round(step_weeks * 7) * DAY_SECONDS
    plan = [(end - days * DAY_SECONDS - j * step, days) for days in label_days for j in range(windows)]
    plan = [(cutoff, days) for cutoff, days in plan if cutoff >= earliest]
    moments = {cutoff for cutoff, _ in plan} | {cutoff + days * DAY_SECONDS for cutoff, days in plan} | {end}
    features_at = {cutoff for cutoff, _ in plan} | {end}
    snaps = replay_snapshots(stream, moments, with_features=lambda m: m in features_at)
    current = snaps[end].features

    prior = fit_prior(current)
    # Shoppers who had not bought at a cutoff: how often they made a first purchase day in its window.
    nonbuyer_days, nonbuyer_weeks = 0.0, 0.0
    rows: list[tuple[np.ndarray, float, np.ndarray, np.ndarray, float]] = []
    for cutoff, days in plan:
        start, finish = snaps[cutoff], snaps[cutoff + days * DAY_SECONDS]
        if not start.user_ids:
            continue
        later = finish.index()
        idx = np.array([later[u] for u in start.user_ids])
        bought = finish.transactions[idx] - start.transactions
        spent = np.maximum(finish.revenue[idx] - start.revenue, 0.0)
        new = start.transactions == 0
        nonbuyer_days += float(bought[new].sum())
        nonbuyer_weeks += float(new.sum()) * days / 7.0
        rows.append((start.features, days / 7.0, bought, spent, cutoff))
    if not rows:
        raise TooLittleHistory("no shopper had any history at the training cutoffs")
    # One pseudo shopper-week at the rate BG/NBD gives a new buyer, for shops without such shoppers.
    mean_rate = prior["bgnbd"]["r"] / prior["bgnbd"]["alpha"]
    prior["first_purchase_rate"] = (nonbuyer_days + mean_rate) / (nonbuyer_weeks + 1.0)

    features = np.vstack([r[0] for r in rows])
    # Each window's prior is BG/NBD as fitted on what was known at its cutoff, as the model's prior is fitted at
    # as_of when it scores: the trees learn how that forecast errs, not how a forecast fitted on later data does
    # (on validation windows inside CDNOW's calibration, MAE of purchase days 2% lower).
    at_cutoff = {(cutoff, weeks): _prior_at(f, prior, weeks) for f, weeks, _, _, cutoff in rows}
    prior_rows = np.vstack([prior_matrix(f, at_cutoff[cutoff, weeks], weeks) for f, weeks, _, _, cutoff in rows])
    y_t = np.concatenate([r[2] for r in rows])
    y_s = np.concatenate([r[3] for r in rows])
    if not np.any(y_t > 0):
        raise TooLittleHistory("no shopper bought anything in the training windows")

    columns = correction_columns(features)
    X = correction_input(features, columns, prior_rows)
    correction = HurdleCorrection(seed, days_weight=weights[0], spend_weight=weights[1]).fit(X, prior_rows, y_t, y_s)

    fitted = _Fitted(horizon_weeks, label_days, sorted({c for c, _ in plan}, reverse=True), int(len(y_t)), columns,
                     prior, correction, current)
    window_mean = correction.predict(X, prior_rows)[0]
    fitted.dispersion = _fit_dispersion(y_t, window_mean)
    fitted.level = least_error_level(window_mean, fitted.dispersion, y_t)
    fitted.spend_level = totals_level(fitted.predict(current, horizon_weeks)[0], fitted.dispersion)
    return fitted


def _label_days(first: float, end: float, horizon_weeks: float, min_history_weeks: float) -> list[int]:
    """The label windows' lengths in days, longest first: the horizon, shortened to leave `min_history_weeks` of the
    history since `first` to learn from, and half of it."""
    history_days = math.floor((end - first) / DAY_SECONDS)
    long_days = min(round(horizon_weeks * 7), history_days - math.ceil(min_history_weeks * 7))
    if long_days < 7:
        raise TooLittleHistory(f"{history_days} days of history leave no label window of a week after "
                               f"{min_history_weeks:g} weeks to learn from")
    return sorted({long_days, max(round(long_days / 2), 1)}, reverse=True)


def _backtest(stream: list[Event], end: float, days: int, windows: int, step_weeks: float,
              min_history_weeks: float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recipe trained `days` before `end` and scored on what shoppers did until `end`: the correction's weights
    chosen there (choose_correction_weights), and its figures with them, which the choice makes a little flattering."""
    earlier_end = end - days * DAY_SECONDS
    try:
        past = _fit_recipe([e for e in stream if e.epoch < earlier_end], earlier_end, days / 7.0, windows, step_weeks,
                           min_history_weeks, seed)
    except TooLittleHistory as too_little:
        return dict(_WITHOUT_BACKTEST), {"skipped": str(too_little)}
    snaps = replay_snapshots(stream, [earlier_end, end], with_features=lambda m: m == earlier_end)
    start, finish = snaps[earlier_end], snaps[end]
    later = finish.index()
    rows = np.array([later[u] for u in start.user_ids])
    did_t = finish.transactions[rows] - start.transactions
    did_s = np.maximum(finish.revenue[rows] - start.revenue, 0.0)
    prior = prior_matrix(start.features, past.prior, past.horizon_weeks)
    corrected = past.correction.predict(correction_input(start.features, past.columns, prior), prior)
    _, expected, value = _offsets(prior)
    own = (expected, expected * value)
    choice = choose_correction_weights(corrected, own, did_t, did_s)
    bt_t, bt_s = (weighed(c, o, choice[k]) for c, o, k in zip(corrected, own, ("transactions", "spend")))
    # Per shopper, what is quoted; totals, what sums: the expectations.
    report = ltv_metrics(*quote(bt_t, bt_s, past.dispersion, past.level, past.spend_level), did_t, did_s)
    expected_figures = ltv_metrics(bt_t, bt_s, did_t, did_s)
    report.update({f"expected_{k}": expected_figures[k] for k in ("predicted_transactions", "predicted_spend",
                                                                  "transactions_total_ratio", "spend_total_ratio")})
    report["weeks"] = past.horizon_weeks
    return choice, report


def _prior_at(features: np.ndarray, prior: dict[str, Any], weeks: float) -> dict[str, Any]:
    """`prior` with BG/NBD refitted on the buyers as they stood in `features`; `prior` as it is if they are too few,
    or if the refit's forecast over `weeks` is not a positive number for each of them (parameters fitted on a
    young shop's few repeat buyers can be extreme enough for its series to overflow)."""
    try:
        x, tx, T, _, _ = buyer_summary(features)
    except TooLittleHistory:
        return prior
    refitted = fit_bgnbd(x, tx, T)
    with np.errstate(all="ignore"):
        forecast = bgnbd_expected(refitted, weeks, x, tx, T)
    return {**prior, "bgnbd": refitted} if np.all(forecast > 0) else prior


def _fit_dispersion(counts: np.ndarray, mean: np.ndarray) -> float:
    """Maximum-likelihood shape k of negative binomial counts around their predicted means."""
    from scipy import optimize, special

    y, mu = np.asarray(counts, dtype=np.float64), np.maximum(np.asarray(mean, dtype=np.float64), 1e-9)

    def nll(log_k: float) -> float:
        k = math.exp(log_k)
        return -float(np.sum(special.gammaln(y + k) - special.gammaln(k) - special.gammaln(y + 1)
                             + k * np.log(k / (k + mu)) + y * np.log(mu / (k + mu))))

    return float(math.exp(optimize.minimize_scalar(nll, bounds=(-6.0, 6.0), method="bounded").x))


def _bgnbd_loglik(params: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    from scipy import special

    r, alpha, a, b = params
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + special.betaln(a, b + x) - special.betaln(a, b)
    alive = -(r + x) * np.log(alpha + T)
    # The second term exists for repeat buyers: they may have dropped out right after their last purchase.
    dropped = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-12)) - (r + x) * np.log(alpha + tx), -np.inf)
    return common + np.logaddexp(alive, dropped)


def _export(columns: np.ndarray, correction: HurdleCorrection, metadata: dict[str, Any]) -> bytes:
    """One ONNX graph: (features, prior) -> (transactions, spend), as HurdleCorrection.predict computes them."""
    import onnx
    from onnx import TensorProto, compose, helper
    from skl2onnx import to_onnx

    opsets = {"": 17, "ai.onnx.ml": 3}
    sample = np.zeros((1, len(columns) + len(CORRECTION_PRIOR)), dtype=np.float32)

    def indices(name: str, values: list[int]):
        return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)

    initializers = [
        indices("used_columns", [int(c) for c in columns]),
        indices("correction_prior_columns", list(CORRECTION_COLUMNS)),
        indices("expected_column", [PRIOR_NAMES.index("log_expected_transactions")]),
        indices("any_column", [PRIOR_NAMES.index("log_any_purchase")]),
        indices("value_column", [PRIOR_NAMES.index("log_transaction_value")]),
        indices("shrunk_column", [PRIOR_NAMES.index("log_shrunk_value")]),
        indices("positive_class", [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("shrunk_share", TensorProto.FLOAT, [], [correction.shrunk_share]),
        helper.make_tensor("correction_share", TensorProto.FLOAT, [], [1.0 - correction.shrunk_share]),
        helper.make_tensor("days_weight", TensorProto.FLOAT, [], [correction.days_weight]),
        helper.make_tensor("prior_days_weight", TensorProto.FLOAT, [], [1.0 - correction.days_weight]),
        helper.make_tensor("spend_weight", TensorProto.FLOAT, [], [correction.spend_weight]),
        helper.make_tensor("prior_spend_weight", TensorProto.FLOAT, [], [1.0 - correction.spend_weight]),
    ]
    nodes = [
        helper.make_node("Gather", [INPUT_NAME, "used_columns"], ["used_features"], axis=1),
        helper.make_node("Gather", [PRIOR_INPUT_NAME, "correction_prior_columns"], ["correction_prior"], axis=1),
        helper.make_node("Concat", ["used_features", "correction_prior"], ["correction_input"], axis=1),
        helper.make_node("Gather", [PRIOR_INPUT_NAME, "expected_column"], ["log_expected"], axis=1),
        helper.make_node("Gather", [PRIOR_INPUT_NAME, "any_column"], ["log_any"], axis=1),
        helper.make_node("Gather", [PRIOR_INPUT_NAME, "value_column"], ["log_value"], axis=1),
        # The prior's expected purchase days given any: expected over the chance of any, at least one.
        helper.make_node("Sub", ["log_expected", "log_any"], ["log_conditional_raw"]),
        helper.make_node("Max", ["log_conditional_raw", "zero"], ["log_conditional"]),
    ]

    def stage(prefix: str, model: Any, options: dict | None = None) -> list[str]:
        """The model's graph, fed the correction input, its outputs' names."""
        with warnings.catch_warnings():
            # skl2onnx 1.20 hands ONNX a Python bool where it wants an int: protobuf 6 warns, 7 refuses.
            warnings.filterwarnings("ignore", message=".*Expected an int, got a boolean", category=DeprecationWarning)
            raw = to_onnx(model, sample, target_opset=opsets, options=options)
        graph = compose.add_prefix(raw, prefix).graph
        nodes.append(helper.make_node("Identity", ["correction_input"], [graph.input[0].name]))
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        return [output.name for output in graph.output]

    probabilities = next(name for name in stage("any_", correction.any_purchase,
                                                {id(correction.any_purchase): {"zipmap": False}})
                         if name.endswith("probabilities"))
    # skl2onnx writes a regressor's raw score: the log of the ratio to its offset.
    days_score = stage("days_", correction.days_given_any)[0]
    spend_score = stage("spend_", correction.spend)[0]
    nodes += [
        helper.make_node("Gather", [probabilities, "positive_class"], ["any_probability"], axis=1),
        helper.make_node("Add", [days_score, "log_conditional"], ["days_given_any_log"]),
        helper.make_node("Exp", ["days_given_any_log"], ["days_given_any_raw"]),
        helper.make_node("Max", ["days_given_any_raw", "one"], ["days_given_any"]),
        helper.make_node("Mul", ["any_probability", "days_given_any"], ["corrected_days"]),
        helper.make_node("Add", ["log_expected", "log_value"], ["log_expected_spend"]),
        helper.make_node("Add", [spend_score, "log_expected_spend"], ["spend_log"]),
        helper.make_node("Exp", ["spend_log"], ["corrected_spend"]),
        helper.make_node("Gather", [PRIOR_INPUT_NAME, "shrunk_column"], ["log_shrunk"], axis=1),
        helper.make_node("Exp", ["log_shrunk"], ["shrunk_value"]),
        helper.make_node("Mul", ["corrected_days", "shrunk_value"], ["shrunk_spend"]),
        helper.make_node("Mul", ["corrected_spend", "correction_share"], ["corrected_part"]),
        helper.make_node("Mul", ["shrunk_spend", "shrunk_share"], ["shrunk_part"]),
        helper.make_node("Add", ["corrected_part", "shrunk_part"], ["blended_spend"]),
        # Each forecast's share from the correction, the rest the prior's own.
        helper.make_node("Exp", ["log_expected"], ["prior_days"]),
        helper.make_node("Mul", ["corrected_days", "days_weight"], ["days_from_correction"]),
        helper.make_node("Mul", ["prior_days", "prior_days_weight"], ["days_from_prior"]),
        helper.make_node("Add", ["days_from_correction", "days_from_prior"], [OUTPUT_NAMES[0]]),
        helper.make_node("Exp", ["log_expected_spend"], ["prior_spend"]),
        helper.make_node("Mul", ["blended_spend", "spend_weight"], ["spend_from_correction"]),
        helper.make_node("Mul", ["prior_spend", "prior_spend_weight"], ["spend_from_prior"]),
        helper.make_node("Add", ["spend_from_correction", "spend_from_prior"], [OUTPUT_NAMES[1]]),
    ]
    graph = helper.make_graph(
        nodes, "tailor_ltv",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, len(FEATURE_NAMES)]),
         helper.make_tensor_value_info(PRIOR_INPUT_NAME, TensorProto.FLOAT, [None, len(PRIOR_NAMES)])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]) for name in OUTPUT_NAMES],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="tailor")
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties share their average rank); NaN when either side is constant."""
    from scipy import stats

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def _parsed(raw_events: Iterable[dict]) -> Iterator[Event]:
    """The archived events that parse (the archive holds only valid ones, but a schema may have moved on since)."""
    for raw in raw_events:
        try:
            yield parse_event(raw)
        except ValueError:
            continue


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def _library_versions() -> dict[str, str]:
    import onnx
    import skl2onnx
    import sklearn

    return {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__}
