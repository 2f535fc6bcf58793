"""Pareto/NBD as published: its likelihood, P(alive) and expected purchases against their defining integrals, and
its fit on the CDNOW sample against Fader & Hardie's parameters; the shrunk value the LTV variants use."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from tailor.ltv.features import FEATURE_NAMES
from tailor_lab.datasets import SHARED_DATA, load_cdnow
from tailor_lab.evaluation.ltv import CALIBRATION_END, HOLDOUT_END, rfm_summary
from tailor_lab.evaluation.ltv_variants import shrunk_value
from tailor_lab.training.ltv import parse_events
from tailor_lab.training.pareto_nbd import (
    fit_pareto_nbd,
    pareto_nbd_alive,
    pareto_nbd_expected,
    pareto_nbd_loglik,
)

REAL_SAMPLE = SHARED_DATA / "cdnow" / "CDNOW_sample.txt"
# Fader & Hardie's maximum-likelihood parameters on the CDNOW sample (weeks), log-likelihood -9,595.0.
PAPER_PARETO_NBD_SAMPLE = {"r": 0.5534, "alpha": 10.5802, "s": 0.6061, "beta": 11.6562}


def _over_rates(params, integrand) -> float:
    """The integral of integrand(lambda, mu) over the gamma mixing distributions of purchase and dropout rates,
    taken over the rates' logs (the densities of shapes under one are unbounded at zero)."""
    def weighted(log_mu, log_lam):
        lam, mu = np.exp(log_lam), np.exp(log_mu)
        return (integrand(lam, mu) * stats.gamma.pdf(lam, params["r"], scale=1 / params["alpha"]) * lam
                * stats.gamma.pdf(mu, params["s"], scale=1 / params["beta"]) * mu)
    return integrate.dblquad(weighted, -40, 4, -40, 4, epsabs=0, epsrel=1e-10)[0]


@pytest.mark.parametrize(("x", "tx", "T"), [(2, 30.43, 38.86), (5, 20.0, 35.0)])
def test_likelihood_alive_and_expectation_match_their_integrals(x, tx, T):
    params = PAPER_PARETO_NBD_SAMPLE
    t = 39.0
    # Given rates (lambda, mu): x purchases by t_x, then alive at T, or dropped out between t_x and T.
    alive = _over_rates(params, lambda lam, mu: lam ** x * np.exp(-(lam + mu) * T))
    likelihood = alive + _over_rates(params, lambda lam, mu: lam ** x * mu / (lam + mu)
                                     * (np.exp(-(lam + mu) * tx) - np.exp(-(lam + mu) * T)))
    # Alive at T: lambda / mu (1 - exp(-mu t)) purchases expected in the next t weeks.
    expected = _over_rates(params, lambda lam, mu: lam ** x * np.exp(-(lam + mu) * T) * lam / mu * -np.expm1(-mu * t))
    assert pareto_nbd_loglik(params, x, tx, T) == pytest.approx(np.log(likelihood), abs=1e-8)
    assert pareto_nbd_alive(params, x, tx, T) == pytest.approx(alive / likelihood, rel=1e-7)
    assert pareto_nbd_expected(params, t, x, tx, T) == pytest.approx(expected / likelihood, rel=1e-7)


def test_a_buyer_without_repeat_purchases_is_alive_and_expected_by_the_population_rates():
    params = {"r": 0.5, "alpha": 10.0, "s": 0.6, "beta": 12.0}
    T = np.array([0.0, 10.0, 30.0])
    assert pareto_nbd_alive(params, np.zeros(3), np.zeros(3), T)[0] == pytest.approx(1.0)
    # A buyer just seen is as likely to buy as a new one: r / alpha per week times the chance of staying.
    assert pareto_nbd_expected(params, 1e-6, 0, 0.0, 0.0) == pytest.approx(0.5 / 10.0 * 1e-6, rel=1e-5)
    assert np.all(np.diff(pareto_nbd_expected(params, 39.0, np.zeros(3), np.zeros(3), T)) < 0)


@pytest.mark.skipif(not REAL_SAMPLE.exists(), reason="the CDNOW sample is not in ../shared/data")
def test_pareto_nbd_on_the_cdnow_sample_gives_the_published_parameters():
    events = [e for e in parse_events(load_cdnow(REAL_SAMPLE)) if e.epoch < HOLDOUT_END.timestamp()]
    summary = rfm_summary(events, CALIBRATION_END)
    fitted = fit_pareto_nbd(summary.x, summary.tx, summary.T)
    for name, value in PAPER_PARETO_NBD_SAMPLE.items():
        assert fitted[name] == pytest.approx(value, rel=0.01)
    assert pareto_nbd_loglik(fitted, summary.x, summary.tx, summary.T).sum() == pytest.approx(-9595.0, abs=1.0)


def test_shrunk_value_weighs_the_shops_mean_as_pseudo_purchase_days():
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    features = np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32)
    features[:, column["transactions"]] = [1, 3, 0]
    features[:, column["revenue"]] = [10.0, 90.0, 0.0]
    shop = 100.0 / 4
    assert shrunk_value(features, orders=3.0) == pytest.approx([(3 * shop + 10) / 4, (3 * shop + 90) / 6, shop])
