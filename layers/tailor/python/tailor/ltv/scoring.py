"""Score LTV feature matrices with a trained model, batch by batch: purchases, spend, percentile, drivers.

A model is a BG/NBD prior (parameters in the metadata, computed by `tailor.ltv.prior`) and one
ONNX graph that corrects it (models of today in two stages: whether a shopper buys at all, then how much). The graph takes "features" (float32, n x len(FEATURE_NAMES)) and
"prior" (float32, n x len(PRIOR_NAMES)) and returns "transactions" and "spend" (n x 1): the
expected purchase days and spend over the horizon the prior was computed for. Its metadata (JSON
under the ONNX metadata key METADATA_KEY) says which features, in which order, the longest horizon
it was built for, the prior, how purchase counts spread around their expectation, and what a
typical shopper looks like. The session, the metadata check and the model's label are those of every
registry model (`tailor.models.onnx_model.OnnxModel`). Only numpy and onnxruntime are needed here, so
the Lambda runtime can score.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from tailor.ltv.features import FEATURE_GROUPS, FEATURE_NAMES
from tailor.ltv.prior import prior_matrix
from tailor.models.onnx_model import OnnxModel

__all__ = ["INPUT_NAME", "METADATA_KEY", "MODEL_NAME", "OUTPUT_NAMES", "PRIOR_INPUT_NAME", "LtvModel", "LtvPrediction",
           "consistent_days", "quote", "typical_counts"]

MODEL_NAME = "ltv"  # its name in the model registry
METADATA_KEY = "tailor.ltv"
INPUT_NAME = "features"
PRIOR_INPUT_NAME = "prior"
OUTPUT_NAMES = ("transactions", "spend")
DEFAULT_BATCH = 8192
_MAX_COUNT = 100_000  # no shopper makes more purchase days than this in a horizon


@dataclass(frozen=True)
class LtvPrediction:
    """Per shopper over `horizon_weeks`: expected purchase days and spend, and the purchase days and spend to quote.

    `transactions` and `spend` are expectations: what sums, values and comparisons between
    shoppers (percentiles) should use. `typical_transactions` is a whole number per shopper, the
    same quantile of each shopper's purchase-count distribution for all, at the level that was
    off by the fewest purchase days on the windows the model learned from: the count to show one
    shopper. `typical_spend` is the spend of the purchase days at the level at which the counts of
    the shoppers the model was built on sum to their expected total, at the shopper's expected
    value per purchase day: a spend to show one shopper that still adds up over many. The two
    agree on whether the shopper buys at all (`consistent_days`): a shopper quoted a spend is
    quoted at least one purchase day, and one quoted purchase days is quoted the spend of at least
    one, so a profile never shows no purchases beside a spend.
    """

    transactions: np.ndarray
    spend: np.ndarray
    horizon_weeks: float
    typical_transactions: np.ndarray
    typical_spend: np.ndarray


def quote(transactions: np.ndarray, spend: np.ndarray, dispersion: float, level: float,
          spend_level: float) -> tuple[np.ndarray, np.ndarray]:
    """The purchase days and the spend to quote each shopper, from their expected purchase days and spend.

    The days are the `level` quantile of each shopper's count distribution; the spend is that of the
    `spend_level` quantile at the shopper's expected spend per purchase day; the two are made to
    agree on whether the shopper buys at all (`consistent_days`).
    """
    days, spend_days = consistent_days(typical_counts(transactions, dispersion, level),
                                       typical_counts(transactions, dispersion, spend_level))
    return days, spend_days * _per_day(transactions, spend)


def consistent_days(days: np.ndarray, spend_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quoted purchase days and the purchase days whose spend is quoted, made to agree on zero.

    The two come from two quantile levels of one distribution, so one can be 0 where the other is
    not: the 0 becomes 1 (a spend is spent on some purchase day, a purchase day spends something).
    Either count is raised by one day at most, and only where it was 0: the ranking by spend and
    the spend total, which the spend's level is for, stay as they were wherever the spend's level is
    the higher of the two (a skewed count distribution: its total is kept above its median).
    """
    days, spend_days = np.asarray(days, dtype=np.float64), np.asarray(spend_days, dtype=np.float64)
    return np.maximum(days, np.minimum(spend_days, 1.0)), np.maximum(spend_days, np.minimum(days, 1.0))


def _per_day(transactions: np.ndarray, spend: np.ndarray) -> np.ndarray:
    transactions, spend = np.asarray(transactions, dtype=np.float64), np.asarray(spend, dtype=np.float64)
    return np.divide(spend, transactions, out=np.zeros_like(spend), where=transactions > 0)


def typical_counts(mean: np.ndarray, dispersion: float, level: float) -> np.ndarray:
    """The `level` quantile of negative binomial counts with these means and shape `dispersion`.

    With a common level for every shopper, the quantiles minimise the total absolute error among
    all predictions with the same sum: the level is the price of keeping that sum right.
    """
    mean = np.maximum(np.asarray(mean, dtype=np.float64), 0.0)
    k = float(dispersion)
    success = mean / (k + mean)
    pmf = np.exp(k * np.log1p(-success))  # P(0) = (k / (k + mean))^k
    cdf = pmf.copy()
    counts = np.zeros(mean.shape, dtype=np.float64)
    below = cdf < level
    n = 0
    while below.any() and n < _MAX_COUNT:
        pmf = np.where(below, pmf * (n + k) / (n + 1.0) * success, pmf)
        cdf = np.where(below, cdf + pmf, cdf)
        counts += below
        n += 1
        # Rounding can leave a cdf a hair under a level it reaches in exact arithmetic.
        below &= cdf < level - 1e-12
    return counts


class LtvModel(OnnxModel):
    """The LTV model: one ONNX graph, inputs "features" and "prior", outputs OUTPUT_NAMES (see the module).

    Unlike the ranker's and the intent model's, its features are not taken by name: the prior and
    the drivers read the features in this library's order, so a model must name all of them, in it.
    """

    metadata_key, features, kind, model_name = METADATA_KEY, FEATURE_NAMES, "an LTV model", MODEL_NAME

    def __init__(self, onnx: bytes, *, threads: int | None = None, **kwargs: Any):
        # Threads: onnxruntime's own choice unless told (scoring every shopper is one large batch job).
        super().__init__(onnx, threads=threads, **kwargs)
        if self.feature_names != FEATURE_NAMES:
            # Scoring a vector in another order than training saw would silently give wrong values.
            raise ValueError("the model was trained on other LTV features than this library computes; retrain it")
        self.horizon_weeks = float(self.metadata["horizon_weeks"])
        self._prior = self.metadata["prior"]
        self._count = self.metadata["count"]
        self._baseline = np.asarray(self.metadata["baseline"], dtype=np.float32)
        self._quantiles = np.asarray(self.metadata["spend_quantiles"], dtype=np.float64)
        # A model built before the prior's last columns existed takes the ones it knew (they come first).
        self._prior_width = next(int(i.shape[1]) for i in self._session.get_inputs() if i.name == PRIOR_INPUT_NAME)

    @classmethod
    def load(cls, path: str | PathLike[str], **kwargs: Any) -> LtvModel:
        return cls(Path(path).read_bytes(), **kwargs)

    def predict(self, features: np.ndarray, horizon_weeks: float | None = None,
                batch_size: int = DEFAULT_BATCH) -> LtvPrediction:
        """Expected purchases and spend, and purchases to quote, for each row of `features` over `horizon_weeks`.

        Any horizon up to the model's: the prior forecasts each, and the correction learned from
        label windows of several lengths. Longer ones were never checked, so they are refused.
        """
        weeks = self.horizon_weeks if horizon_weeks is None else float(horizon_weeks)
        if weeks <= 0:
            raise ValueError("horizon_weeks must be positive")
        if weeks > self.horizon_weeks + 1e-9:
            raise ValueError(f"the model was built for up to {self.horizon_weeks:g} weeks; "
                             f"{weeks:g} weeks needs a model trained for it")
        transactions, spend = self._raw(features, weeks, batch_size)
        dispersion, level = self._count["dispersion"], self._count["level"]
        # Models from before the spend had a level of its own quoted both at one level.
        spend_level = self._count.get("spend_level", level)
        return LtvPrediction(transactions, spend, weeks, *quote(transactions, spend, dispersion, level, spend_level))

    def percentile(self, spend_at_horizon: np.ndarray) -> np.ndarray:
        """Where each predicted spend (at the model's horizon) stands among the shoppers trained on, 0..100."""
        values = np.asarray(spend_at_horizon, dtype=np.float64)
        q = self._quantiles
        step = 100.0 / (len(q) - 1)
        low = np.searchsorted(q, values, side="left")
        high = np.searchsorted(q, values, side="right")
        # A value equal to a run of quantiles (many shoppers predicted alike) takes the middle of the run;
        # one between two quantiles is interpolated.
        on_run = (low + high - 1) / 2.0 * step
        upper = np.clip(low, 1, len(q) - 1)
        gap = q[upper] - q[upper - 1]
        frac = np.where(gap > 0, (values - q[upper - 1]) / np.where(gap > 0, gap, 1.0), 0.5)
        between = (upper - 1 + np.clip(frac, 0.0, 1.0)) * step
        return np.clip(np.where(high > low, on_run, between), 0.0, 100.0)

    def drivers(self, features: np.ndarray, top: int = 3,
                batch_size: int = DEFAULT_BATCH) -> list[list[tuple[str, float]]]:
        """Per row, the feature groups that move its predicted spend most, with their signed effect.

        A group's effect is the row's prediction minus the prediction with that group set to a
        typical shopper's values: positive means the group raises this shopper's value.
        """
        features = _as_matrix(features)
        base = self._raw(features, self.horizon_weeks, batch_size)[1]
        effects = np.empty((features.shape[0], len(FEATURE_GROUPS)), dtype=np.float64)
        start = 0
        for g, names in enumerate(FEATURE_GROUPS.values()):
            columns = slice(start, start + len(names))
            start += len(names)
            typical = features.copy()
            typical[:, columns] = self._baseline[columns]
            effects[:, g] = base - self._raw(typical, self.horizon_weeks, batch_size)[1]
        groups = list(FEATURE_GROUPS)
        order = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :top]
        return [[(groups[g], round(float(effects[i, g]), 4)) for g in row if effects[i, g] != 0.0]
                for i, row in enumerate(order)]

    def _raw(self, features: np.ndarray, weeks: float, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        features = _as_matrix(features)
        n = features.shape[0]
        transactions = np.empty(n, dtype=np.float64)
        spend = np.empty(n, dtype=np.float64)
        for lo in range(0, n, max(batch_size, 1)):
            hi = min(lo + batch_size, n)
            block = features[lo:hi]
            t, s = self.run_all(OUTPUT_NAMES, INPUT_NAME, block,
                                {PRIOR_INPUT_NAME: prior_matrix(block, self._prior, weeks)[:, :self._prior_width]})
            transactions[lo:hi] = t.reshape(-1)
            spend[lo:hi] = s.reshape(-1)
        return transactions, spend


def _as_matrix(features: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(features, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"features must be an (n, {len(FEATURE_NAMES)}) matrix, got shape {matrix.shape}")
    return matrix
