"""The BG/NBD model's per-shopper forecast in plain numpy: the prior that the LTV model corrects.

BG/NBD (Fader, Hardie & Lee 2005) describes buyers who purchase at their own Poisson rate and may
drop out for good after any purchase. From a buyer's repeat purchases x, the time of the last one
t_x and their age T (weeks since the first purchase), it gives the chance they are still active
and the purchases they will make in the next t weeks, for any t: so it extends a forecast to
horizons longer than any label window the training history holds. Only numpy is needed here, so
the Lambda runtime scores with it; the parameters are fitted at training time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tailor.ltv.features import ABSENT, FEATURE_NAMES

__all__ = ["BGNBD_PARAMS", "CORRECTION_COLUMNS", "CORRECTION_PRIOR", "PRIOR_NAMES", "SHRUNK_VALUE_DAYS",
           "alive_probability", "any_purchase_probability", "expected_transactions", "gamma_gamma_mean", "hyp2f1",
           "prior_matrix", "purchase_history", "shrunk_value"]

# What the prior hands the model for each shopper, in this order (a new quantity goes last, so that
# models built before it read the columns they knew). The correction sees CORRECTION_PRIOR: the
# expected rate (per week) rather than the total, and the horizon apart, so that a longer horizon
# than its label windows reads as the longest it learned, not as a keener shopper; and the chance
# of any purchase day at all, which the model's first stage refines. The value shrunk by SHRUNK_VALUE_DAYS is
# what models that spend part of their forecast at it read (not the correction).
PRIOR_NAMES = ("alive_probability", "log_expected_rate", "log_transaction_value", "horizon_weeks",
               "log_expected_transactions", "log_any_purchase", "log_shrunk_value")
CORRECTION_PRIOR = ("alive_probability", "log_expected_rate", "log_transaction_value", "horizon_weeks",
                    "log_any_purchase")
CORRECTION_COLUMNS = tuple(PRIOR_NAMES.index(name) for name in CORRECTION_PRIOR)

BGNBD_PARAMS = ("r", "alpha", "a", "b")
# Purchase days at the shop's mean value that a buyer's own mean value is shrunk towards it with, for the spend
# forecast's second part: Gamma-Gamma's weight ranks spenders by one cheap or dear order more than their later
# spend bears out.
SHRUNK_VALUE_DAYS = 3.0
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
_SERIES_TERMS = 4000  # enough for |z| <= 0.995 at the precision below
_SERIES_TOLERANCE = 1e-13


def prior_matrix(features: np.ndarray, prior: Mapping[str, Any], weeks: float) -> np.ndarray:
    """Per shopper (rows of an LTV feature matrix): the prior's PRIOR_NAMES over the next `weeks`, float32.

    `prior` holds the fitted "bgnbd" parameters, the "first_purchase_rate" (purchase days a week)
    of shoppers who have not bought yet, to whom BG/NBD does not apply, the shop's
    "mean_transaction_value" and, when fitted, the "gamma_gamma" spend parameters. A buyer's
    transaction value is their mean shrunk towards the shop's as Gamma-Gamma weighs it (Fader,
    Hardie & Lee 2005), or by one pseudo transaction at the shop's mean without it, so that one
    cheap first order does not make them worthless; the last column shrinks it by SHRUNK_VALUE_DAYS.
    """
    f = np.asarray(features, dtype=np.float64)
    transactions = f[:, _COLUMN["transactions"]]
    bought, x, tx, T = purchase_history(f)
    expected = np.where(bought, expected_transactions(prior["bgnbd"], weeks, x, tx, T),
                        float(prior["first_purchase_rate"]) * weeks)
    alive = np.where(bought, alive_probability(prior["bgnbd"], x, tx, T), ABSENT)
    any_purchase = np.where(bought, any_purchase_probability(prior["bgnbd"], weeks, x, tx, T),
                            -np.expm1(-float(prior["first_purchase_rate"]) * weeks))
    shop_value = float(prior["mean_transaction_value"])
    revenue, count = np.maximum(f[:, _COLUMN["revenue"]], 0.0), np.maximum(transactions, 0.0)
    if "gamma_gamma" in prior:
        mean_value = np.divide(revenue, count, out=np.zeros_like(revenue), where=count > 0)
        value = gamma_gamma_mean(prior["gamma_gamma"], count, mean_value)
    else:
        value = shrunk_value(revenue, count, shop_value, 1.0)
    log_expected = np.log(np.maximum(expected, 1e-9))
    shrunk = shrunk_value(revenue, count, shop_value, SHRUNK_VALUE_DAYS)
    return np.column_stack([alive, log_expected - np.log(weeks), np.log(np.maximum(value, 1e-9)),
                            np.full(len(f), float(weeks)), log_expected,
                            np.log(np.maximum(any_purchase, 1e-9)),
                            np.log(np.maximum(shrunk, 1e-9))]).astype(np.float32)


def purchase_history(features: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per shopper (rows of an LTV feature matrix): whether they have bought, and BG/NBD's x (repeat purchase
    days), t_x (weeks from the first to the last) and T (weeks since the first), zero for those who have not."""
    f = np.asarray(features, dtype=np.float64)
    bought = f[:, _COLUMN["transactions"]] > 0
    x = np.where(bought, np.maximum(f[:, _COLUMN["repeat_transactions"]], 0.0), 0.0)
    T = np.where(bought, np.maximum(f[:, _COLUMN["weeks_since_first_purchase"]], 0.0), 0.0)
    tx = np.minimum(np.where(bought, np.maximum(f[:, _COLUMN["purchase_span_weeks"]], 0.0), 0.0), T)
    return bought, x, tx, T


def shrunk_value(revenue: np.ndarray, purchase_days: np.ndarray, shop_value: float, pseudo_days: float) -> np.ndarray:
    """A shopper's mean value per purchase day shrunk towards the shop's: `pseudo_days` purchase days at the shop's
    mean value added to theirs (the shop's mean for a shopper who has not bought)."""
    return (pseudo_days * shop_value + revenue) / (pseudo_days + purchase_days)


def expected_transactions(params: Mapping[str, float], t: float, x: np.ndarray, tx: np.ndarray,
                          T: np.ndarray) -> np.ndarray:
    """Expected purchase days in the next t weeks given (x, t_x, T) (Fader, Hardie & Lee 2005, eq. 10).

    With z = t / (alpha + T + t), Euler's transformation 2F1(r+x, b+x; c; z) =
    (1-z)^(a-1-r-x) 2F1(a+b-1-r, a-1; c; z), c = a+b+x-1, turns the published formula into a
    series whose terms do not grow with x, and cancels (1-z)^(r+x) exactly.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    x, tx, T = (np.asarray(v, dtype=np.float64) for v in (x, tx, T))
    z = t / (alpha + T + t)
    c = a + b + x - 1.0
    growth = 1.0 - np.power(1.0 - z, a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
    expected = c / (a - 1.0) * growth * alive_probability(params, x, tx, T)
    return np.where(np.isfinite(expected), np.maximum(expected, 0.0), 0.0)


def any_purchase_probability(params: Mapping[str, float], t: float, x: np.ndarray, tx: np.ndarray,
                             T: np.ndarray) -> np.ndarray:
    """The chance of at least one purchase day in the next t weeks given (x, t_x, T).

    In BG/NBD a buyer drops out only right after a purchase, so one who buys nothing in the next t
    weeks is either gone already or alive and quiet: alive, their rate is Gamma(r + x, alpha + T)
    (Fader, Hardie & Lee 2005), and the chance of t quiet weeks ((alpha + T) / (alpha + T + t))^(r + x).
    """
    r, alpha = float(params["r"]), float(params["alpha"])
    x, tx, T = (np.asarray(v, dtype=np.float64) for v in (x, tx, T))
    quiet = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    return alive_probability(params, x, tx, T) * (1.0 - quiet)


def gamma_gamma_mean(params: Mapping[str, float], x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Expected value of a customer's future transactions from x of them averaging m; the population's without."""
    p, q, g = float(params["p"]), float(params["q"]), float(params["gamma"])
    x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
    population = p * g / (q - 1.0)
    return np.where((x > 0) & (m > 0), (q - 1.0) / (p * x + q - 1.0) * population + p * x / (p * x + q - 1.0) * m,
                    population)


def alive_probability(params: Mapping[str, float], x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """The chance each buyer has not dropped out by now; one for a buyer with no repeat purchase yet."""
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    x, tx, T = (np.asarray(v, dtype=np.float64) for v in (x, tx, T))
    with np.errstate(over="ignore", divide="ignore"):
        log_dead = (np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-12))
                    + (r + x) * (np.log(alpha + T) - np.log(alpha + np.minimum(tx, T))))
        odds = np.where(x > 0, np.exp(np.minimum(log_dead, 700.0)), 0.0)
    return 1.0 / (1.0 + odds)


def hyp2f1(a: float, b: float, c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Gauss's hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1 by its power series, elementwise."""
    c, z = np.broadcast_arrays(np.asarray(c, dtype=np.float64), np.asarray(z, dtype=np.float64))
    if np.any((z < 0) | (z >= 1)):
        raise ValueError("hyp2f1 here needs 0 <= z < 1")
    term = np.ones_like(z)
    total = np.ones_like(z)
    active = np.ones(z.shape, dtype=bool)
    for n in range(_SERIES_TERMS):
        term = np.where(active, term * (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z, 0.0)
        total += term
        active &= np.abs(term) > _SERIES_TOLERANCE * np.abs(total)
        if not active.any():
            break
    return total
