"""The Pareto/NBD model (Schmittlein, Morrison & Colombo 1987): likelihood, fit, P(alive) and expected purchases.

Buyers purchase at their own Poisson rate (Gamma(r, alpha) across buyers) and drop out at an exponential moment
(rate Gamma(s, beta) across buyers), at any time rather than only after a purchase as in BG/NBD. The expressions
are those of Fader & Hardie's note "A Note on Deriving the Pareto/NBD Model and Related Expressions" (2005), in
logs; no library in the project's environment provides them. x is a buyer's repeat purchases, t_x the time of
the last one and T their age, in weeks since the first purchase.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["PARETO_NBD_PARAMS", "fit_pareto_nbd", "pareto_nbd_alive", "pareto_nbd_expected", "pareto_nbd_loglik"]

PARETO_NBD_PARAMS = ("r", "alpha", "s", "beta")


def pareto_nbd_loglik(params: Mapping[str, float], x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Each buyer's log-likelihood of (x, t_x, T)."""
    from scipy import special

    r, alpha, s, beta = (float(params[k]) for k in PARETO_NBD_PARAMS)
    x, tx, T = (np.asarray(v, dtype=np.float64) for v in (x, tx, T))
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    dropped = np.log(s) - np.log(r + s + x) + _log_a0(r, alpha, s, beta, x, tx, T)
    return common + np.logaddexp(alive, dropped)


def fit_pareto_nbd(x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> dict[str, float]:
    """Maximum-likelihood Pareto/NBD parameters r, alpha, s, beta."""
    from tailor_lab.training.ltv import minimize_robustly

    x, tx, T = (np.asarray(v, dtype=np.float64) for v in (x, tx, T))

    def nll(log_params: np.ndarray) -> float:
        value = -float(pareto_nbd_loglik(dict(zip(PARETO_NBD_PARAMS, np.exp(log_params))), x, tx, T).sum())
        return value if np.isfinite(value) else 1e300

    return {name: float(v) for name, v in zip(PARETO_NBD_PARAMS, np.exp(minimize_robustly(nll, np.zeros(4))))}


def pareto_nbd_alive(params: Mapping[str, float], x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """The chance each buyer is still active at T."""
    r, alpha, s, beta = (float(params[k]) for k in PARETO_NBD_PARAMS)
    x, tx, T = (np.asarray(v, dtype=np.float64) for v in (x, tx, T))
    log_odds_dropped = (np.log(s) - np.log(r + s + x) + (r + x) * np.log(alpha + T) + s * np.log(beta + T)
                        + _log_a0(r, alpha, s, beta, x, tx, T))
    return 1.0 / (1.0 + np.exp(np.minimum(log_odds_dropped, 700.0)))


def pareto_nbd_expected(params: Mapping[str, float], t: float, x: np.ndarray, tx: np.ndarray,
                        T: np.ndarray) -> np.ndarray:
    """Expected purchases in the next t weeks given (x, t_x, T): P(alive) x E[lambda / mu (1 - exp(-mu t))]."""
    r, alpha, s, beta = (float(params[k]) for k in PARETO_NBD_PARAMS)
    x, T = np.asarray(x, dtype=np.float64), np.asarray(T, dtype=np.float64)
    log_stay = np.log(beta + T) - np.log(beta + T + t)  # < 0
    # (1 - ((beta + T) / (beta + T + t))^(s - 1)) / (s - 1), its limit -log_stay at s = 1
    growth = -np.expm1((s - 1.0) * log_stay) / (s - 1.0) if abs(s - 1.0) > 1e-9 else -log_stay
    return (r + x) * (beta + T) / (alpha + T) * growth * pareto_nbd_alive(params, x, tx, T)


def _log_a0(r: float, alpha: float, s: float, beta: float, x: np.ndarray, tx: np.ndarray,
            T: np.ndarray) -> np.ndarray:
    """log A0 of the note (its eq. for alpha >= beta and the one for alpha < beta): the likelihood of having
    dropped out between t_x and T, up to the factor s / (r + s + x); -inf where t_x = T."""
    from scipy import special

    rsx = r + s + x
    if alpha >= beta:
        high, low, second = alpha, beta, s + 1.0
    else:
        high, low, second = beta, alpha, r + x
    at_last = np.log(special.hyp2f1(rsx, second, rsx + 1.0, (high - low) / (high + tx))) - rsx * np.log(high + tx)
    at_end = np.log(special.hyp2f1(rsx, second, rsx + 1.0, (high - low) / (high + T))) - rsx * np.log(high + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        return at_last + np.log(-np.expm1(np.minimum(at_end - at_last, 0.0)))
