"""Off-policy estimates of a target policy's click-through rate from logs of another policy (slot by slot).

Each logged row is one slot shown: the context's row i, the action a_i the logging policy showed there with the
probability it had of showing it (the logged slot probability p_i), and the reward r_i (a click). The target
policy's probabilities of every action in the same context and slot are `target[i, a]`; a reward model's predicted
click probabilities are `predicted[i, a]`. With weights w_i = target[i, a_i] / p_i (as zr-obp defines them):

    DM     mean_i sum_a target[i, a] predicted[i, a]          biased as the reward model is, low variance
    IPW    mean_i w_i r_i                                      unbiased when p_i > 0 wherever target is
    SNIPW  sum_i w_i r_i / sum_i w_i                           IPW normalised by the mean weight
    DR     DM + mean_i w_i (r_i - predicted[i, a_i])           unbiased if either the weights or the model are right

Each comes with a normal 95% interval from the standard error of its per-row terms (SNIPW by the delta method);
DM's counts only the spread of the model's predictions over the rows, not the model's own error, so it is far too
narrow to trust.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .stats import ALPHA, normal_interval

__all__ = ["OffPolicyEstimate", "direct_method", "doubly_robust", "estimate_all", "ipw", "self_normalised_ipw"]


@dataclass(frozen=True)
class OffPolicyEstimate:
    """An estimator's value of the target policy's reward per slot, its standard error and 95% interval."""

    estimator: str
    value: float
    standard_error: float
    ci: tuple[float, float]

    def relative_error(self, truth: float) -> float:
        return abs(self.value - truth) / truth


def ipw(actions: np.ndarray, rewards: np.ndarray, logged: np.ndarray, target: np.ndarray) -> OffPolicyEstimate:
    """Inverse propensity weighting."""
    terms = _weights(actions, logged, target) * _rewards(rewards, actions)
    return _mean("IPW", terms)


def self_normalised_ipw(actions: np.ndarray, rewards: np.ndarray, logged: np.ndarray, target: np.ndarray
                        ) -> OffPolicyEstimate:
    """Inverse propensity weighting divided by the mean weight."""
    weights = _weights(actions, logged, target)
    rewards = _rewards(rewards, actions)
    mean_weight = weights.mean()
    if mean_weight <= 0:
        raise ValueError("target gives no weight to any logged action: SNIPW is undefined")
    value = float((weights * rewards).sum() / weights.sum())
    influence = weights * (rewards - value) / mean_weight
    return _estimate("SNIPW", value, influence)


def direct_method(target: np.ndarray, predicted: np.ndarray) -> OffPolicyEstimate:
    """The reward model's expected reward under the target policy."""
    _same_shape(target, predicted)
    return _mean("DM", (target * predicted).sum(axis=1))


def doubly_robust(actions: np.ndarray, rewards: np.ndarray, logged: np.ndarray, target: np.ndarray,
                  predicted: np.ndarray) -> OffPolicyEstimate:
    """The direct method corrected by the weighted residuals of the logged rewards."""
    _same_shape(target, predicted)
    weights = _weights(actions, logged, target)
    rows = np.arange(len(actions))
    residual = _rewards(rewards, actions) - predicted[rows, actions]
    return _mean("DR", (target * predicted).sum(axis=1) + weights * residual)


def estimate_all(actions: np.ndarray, rewards: np.ndarray, logged: np.ndarray, target: np.ndarray,
                 predicted: np.ndarray) -> dict[str, OffPolicyEstimate]:
    """DM, IPW, SNIPW and DR on the same logs."""
    return {"DM": direct_method(target, predicted), "IPW": ipw(actions, rewards, logged, target),
            "SNIPW": self_normalised_ipw(actions, rewards, logged, target),
            "DR": doubly_robust(actions, rewards, logged, target, predicted)}


# -- helpers ---------------------------------------------------------------------------------------------------------

def _weights(actions: np.ndarray, logged: np.ndarray, target: np.ndarray) -> np.ndarray:
    actions = np.asarray(actions)
    logged = np.asarray(logged, dtype=float)
    target = np.asarray(target, dtype=float)
    if target.ndim != 2 or len(target) != len(actions) or len(logged) != len(actions):
        raise ValueError("target must be rows x actions, with one logged action and probability per row")
    if len(actions) == 0:
        raise ValueError("no logged rows")
    if not np.issubdtype(actions.dtype, np.integer) or actions.min() < 0 or actions.max() >= target.shape[1]:
        raise ValueError(f"actions must be integer indices into target's {target.shape[1]} columns")
    if (logged <= 0).any() or (logged > 1).any():
        raise ValueError("logged probabilities must be in (0, 1]")
    return target[np.arange(len(actions)), actions] / logged


def _rewards(rewards: np.ndarray, actions: np.ndarray) -> np.ndarray:
    rewards = np.asarray(rewards, dtype=float)
    if rewards.shape != np.shape(actions):
        raise ValueError("rewards must have one value per logged row")
    return rewards


def _same_shape(target: np.ndarray, predicted: np.ndarray) -> None:
    if np.shape(target) != np.shape(predicted):
        raise ValueError(f"predicted must have target's shape {np.shape(target)}, got {np.shape(predicted)}")


def _mean(name: str, terms: np.ndarray) -> OffPolicyEstimate:
    value = float(terms.mean())
    return _estimate(name, value, terms - value)


def _estimate(name: str, value: float, centred: np.ndarray) -> OffPolicyEstimate:
    n = len(centred)
    variance = float((centred ** 2).sum() / max(n - 1, 1) / n)
    return OffPolicyEstimate(name, value, math.sqrt(variance), normal_interval(value, variance, ALPHA))
