"""Off-policy estimators: exact on small hand-made logs, and unbiased on a simulated bandit whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.experiments.offpolicy import direct_method, doubly_robust, estimate_all, ipw, self_normalised_ipw


def test_estimators_on_a_small_log_by_hand():
    actions = np.array([0, 1, 1, 2])
    rewards = np.array([1.0, 0.0, 1.0, 0.0])
    logged = np.array([0.5, 0.25, 0.25, 0.25])
    target = np.tile([0.2, 0.6, 0.2], (4, 1))
    predicted = np.tile([0.3, 0.4, 0.1], (4, 1))
    weights = np.array([0.4, 2.4, 2.4, 0.8])
    assert ipw(actions, rewards, logged, target).value == pytest.approx(np.mean(weights * rewards))
    assert self_normalised_ipw(actions, rewards, logged, target).value == pytest.approx(2.8 / 6.0)
    dm = 0.2 * 0.3 + 0.6 * 0.4 + 0.2 * 0.1
    assert direct_method(target, predicted).value == pytest.approx(dm)
    residuals = rewards - np.array([0.3, 0.4, 0.4, 0.1])
    assert doubly_robust(actions, rewards, logged, target, predicted).value == pytest.approx(
        dm + np.mean(weights * residuals))
    # the logging policy evaluated on its own logs: IPW is the logged mean reward
    same = np.zeros((4, 3))
    same[np.arange(4), actions] = logged
    assert ipw(actions, rewards, logged, same).value == pytest.approx(rewards.mean())


def test_estimators_recover_a_known_policy_value():
    rng = np.random.default_rng(0)
    n, k = 40_000, 10
    context = rng.normal(size=n)
    truth_p = 1 / (1 + np.exp(-(-3 + 0.3 * np.arange(k)[None, :] * context[:, None] / k + 0.1 * np.arange(k))))
    logging = np.full((n, k), 1 / k)
    actions = rng.integers(0, k, n)
    rewards = (rng.random(n) < truth_p[np.arange(n), actions]).astype(float)
    target = np.exp(0.4 * np.arange(k))[None, :].repeat(n, axis=0)
    target /= target.sum(axis=1, keepdims=True)
    value = float((target * truth_p).sum(axis=1).mean())
    wrong_model = np.full((n, k), rewards.mean())  # a model that knows nothing: DR must still be right
    estimates = estimate_all(actions, rewards, logging[np.arange(n), actions], target, wrong_model)
    for name in ("IPW", "SNIPW", "DR"):
        low, high = estimates[name].ci
        assert low <= value <= high, (name, estimates[name], value)
        assert estimates[name].relative_error(value) < 0.1
    # with the true model DM is right and DR no worse
    exact = estimate_all(actions, rewards, logging[np.arange(n), actions], target, truth_p)
    assert exact["DM"].value == pytest.approx(value)
    assert exact["DR"].standard_error < estimates["DR"].standard_error


def test_bad_logs_are_refused_naming_what_is_wrong():
    with pytest.raises(ValueError, match="logged probabilities"):
        ipw(np.array([0]), np.array([1.0]), np.array([0.0]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="integer indices"):
        ipw(np.array([2]), np.array([1.0]), np.array([0.5]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="predicted must have target's shape"):
        direct_method(np.ones((2, 2)), np.ones((2, 3)))
