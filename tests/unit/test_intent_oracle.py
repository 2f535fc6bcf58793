"""The intent oracle: the Bayes-optimal posterior filtered with the simulator's own intent process, the ceiling an
intent model is measured against."""

import numpy as np
import pytest

from tailor.intent import INTENTS
from tailor_lab.evaluation.intent_oracle import intent_posteriors, simulate_recorded
from tailor_lab.simulator import simulate
from tailor_lab.training.intent_truth import (
    ORACLE,
    ORACLE_BLIND,
    ORACLE_F1,
    decision_weights,
    evaluate_simulated,
    macro_f1,
)

PURCHASE = INTENTS.index("intent_to_purchase")


@pytest.fixture(scope="module")
def recorded():
    sim, recorder = simulate_recorded(shoppers=200, days=2, seed=5)
    return sim, recorder, intent_posteriors(sim, recorder)


def test_recording_the_actions_leaves_the_simulation_as_it_was(recorded):
    sim, recorder, _ = recorded
    plain = simulate(shoppers=200, days=2, seed=5)
    assert sim.events == plain.events and sim.truth == plain.truth
    assert set(recorder.actions) == set(sim.truth["sessions"])
    assert all(a.name for actions in recorder.actions.values() for a in actions)


def test_every_event_has_a_posterior_over_the_intents(recorded):
    sim, _, posteriors = recorded
    assert set(posteriors) == {e["event_id"] for e in sim.events}
    rows = np.array(list(posteriors.values()))
    assert rows.shape[1] == len(INTENTS) and (rows >= 0).all()
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)


def test_what_only_one_intent_does_is_certain(recorded):
    sim, _, posteriors = recorded
    checkouts = [e["event_id"] for e in sim.events if e["event_type"] == "checkout_view"]
    assert checkouts and all(posteriors[i][PURCHASE] > 0.999 for i in checkouts)


def test_the_oracle_is_calibrated_and_beats_chance_by_far(recorded):
    sim, _, posteriors = recorded
    evaluation = evaluate_simulated(_Shares(), sim.events, sim.truth, oracle=posteriors)
    oracle = evaluation["methods"][ORACLE]
    assert oracle["macro_f1"] > 0.65 and oracle["ece"] < 0.05
    assert evaluation["oracle"]["macro_f1"] == oracle["macro_f1"]
    assert evaluation["oracle"]["macro_f1_f1_decision"] >= oracle["macro_f1"]
    assert evaluation["methods"][ORACLE_F1]["macro_f1"] == evaluation["oracle"]["macro_f1_f1_decision"]


def test_the_filter_blind_to_the_shopper_knows_less_and_still_far_more_than_chance(recorded):
    sim, recorder, posteriors = recorded
    blind = intent_posteriors(sim, recorder, blind=True)
    assert set(blind) == set(posteriors)
    np.testing.assert_allclose(np.array(list(blind.values())).sum(axis=1), 1.0)
    evaluation = evaluate_simulated(_Shares(), sim.events, sim.truth, oracle=posteriors, blind_oracle=blind)
    sighted, unsighted = evaluation["methods"][ORACLE], evaluation["methods"][ORACLE_BLIND]
    assert 0.6 < unsighted["accuracy"] < sighted["accuracy"] and unsighted["brier"] > sighted["brier"]
    assert evaluation["oracle"]["blind_macro_f1"] == unsighted["macro_f1"]


def test_an_oracle_missing_events_is_refused(recorded):
    sim, _, posteriors = recorded
    partial = dict(list(posteriors.items())[:-1])
    with pytest.raises(ValueError, match="oracle: no posterior for 1 of"):
        evaluate_simulated(_Shares(), sim.events, sim.truth, oracle=partial)


def test_decision_weights_favour_a_class_argmax_starves():
    labels = np.array([0] * 6 + [1] * 4)
    # Class 1 is always a little less probable than class 0: argmax never names it.
    probabilities = np.array([[0.6, 0.4]] * 6 + [[0.55, 0.45]] * 4)
    score = lambda predicted: macro_f1(predicted, labels, classes=2)[0]  # noqa: E731
    weights = decision_weights(probabilities, labels, score)
    assert score((probabilities * weights).argmax(axis=1)) == 1.0 > score(probabilities.argmax(axis=1))


class _Shares:
    """A model that knows nothing: the same probabilities for every session, and no intent filter."""

    filter = None

    def predict(self, features):
        return np.full((len(features), len(INTENTS)), 1 / len(INTENTS))
