"""The intent filter fitted to labelled sessions: its gradient is the loss's, the fit lowers the log-loss the counts
leave, and it gives a filter serving reads as it reads a counted one."""

import numpy as np
import pytest

from tailor.events import parse_event
from tailor.intent import INTENTS
from tailor.intent_filter import IntentFilter
from tailor_lab.simulator import simulate
from tailor_lab.training.intent_filter import (
    EVIDENCE_WEIGHT,
    _Encoded,
    _parameters,
    count_filter,
    fit_filter,
    labelled_sessions,
)
from tailor_lab.training.intent_truth import _recorded_intents


@pytest.fixture(scope="module")
def sessions() -> list:
    sim = simulate(shoppers=60, days=1.0, seed=3)
    index = {name: k for k, name in enumerate(INTENTS)}
    intent_of = {e: index[i] for e, i in _recorded_intents(sim.truth).items()}
    return list(labelled_sessions((parse_event(raw) for raw in sim.events), intent_of).values())


def _encoded_and_start(sessions):
    counted = count_filter(sessions, evidence_weight=1.0)
    kinds, details = sorted(counted.kinds), sorted(counted.details)
    encoded = _Encoded(sessions, {k: i for i, k in enumerate(kinds)}, {k: i for i, k in enumerate(details)})
    return encoded, _parameters(counted, kinds, details, evidence_weight=EVIDENCE_WEIGHT)


def test_the_gradient_is_the_losss_by_finite_differences(sessions):
    encoded, start = _encoded_and_start(sessions[:25])
    rng = np.random.default_rng(0)
    params = [p + 0.1 * rng.standard_normal(p.shape) for p in start]
    _, grads = encoded.loss_and_gradient(*params)
    for which in range(4):
        flat = params[which].ravel()
        for position in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            moved = [p.copy() for p in params]
            step = np.zeros(flat.size)
            step[position] = 1e-6
            moved[which] = (flat + step).reshape(params[which].shape)
            up, _ = encoded.loss_and_gradient(*moved)
            moved[which] = (flat - step).reshape(params[which].shape)
            down, _ = encoded.loss_and_gradient(*moved)
            assert grads[which].ravel()[position] == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-6)


def test_the_fit_lowers_the_log_loss_of_the_counted_filter_and_serving_reads_it(sessions):
    encoded, start = _encoded_and_start(sessions)
    counted_loss, _ = encoded.loss_and_gradient(*start)
    fitted = fit_filter(sessions)
    fitted_loss, _ = encoded.loss_and_gradient(*_parameters(fitted, sorted(fitted.kinds), sorted(fitted.details)))
    assert fitted_loss < 0.98 * counted_loss
    assert set(fitted.kinds) == set(count_filter(sessions).kinds)  # the same keys, so the same format
    again = IntentFilter.from_json(fitted.to_json())
    assert again.to_json() == fitted.to_json() and fit_filter(sessions).to_json() == fitted.to_json()
    assert fit_filter(iter(sessions)).to_json() == fitted.to_json()  # read twice, so a generator too
