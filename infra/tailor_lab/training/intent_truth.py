"""The session intent classifier on a simulation's ground truth: labelled examples, and how well a model predicts them.

Examples. Simulated events are folded session by session with tailor.session.fold_session, the fold Ingest runs, and
after each event whose intent the simulator recorded, the session's features (tailor.intent.intent_features, the
function Ingest and the API call) are one example labelled with that intent: the intent the shopper was in when they
did it. Sessions are folded with the model's intent filter (tailor.intent_filter), whose posterior four features
are; in training, with the filter learned without the session (`learned_filters`). Training learns from them; training and `tailor evaluate intent` score a model on held-out ones: macro F1,
accuracy, per-intent F1, and calibration (expected calibration error of the top probability over 15 equal-width
bins, and the multi-class Brier score), beside the filter's own posterior, the baseline of the training data's intent shares and, where the
simulation recorded its actions, the Bayes-optimal posterior (tailor_lab.evaluation.intent_oracle): the ceiling.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from tailor.events import parse_event
from tailor.intent import INTENT_FEATURES, INTENTS, IntentModel, intent_features
from tailor.intent_filter import IntentFilter
from tailor.session import SessionState, fold_session

from .intent_filter import fit_filter, labelled_sessions

__all__ = ["CALIBRATION_BINS", "FILTER", "ORACLE", "ORACLE_BLIND", "ORACLE_F1", "Examples", "calibration",
           "decision_weights", "evaluate_simulated", "format_simulated", "learned_filters", "macro_f1", "simulated_examples"]

CALIBRATION_BINS = 15
FOLDS = 2  # folds of the training sessions the classifier's filter posteriors are learned without
FILTER = "intent filter alone"
ORACLE = "Bayes oracle"
ORACLE_F1 = "Bayes oracle, F1 decision"
ORACLE_BLIND = "filter blind to shopper"


@dataclass
class Examples:
    """Feature rows with their intent (index into INTENTS) and the session each came from."""

    features: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.features, dtype=np.float32), np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)


def simulated_examples(events: Sequence[dict], truth: dict, *, max_examples: int | None = None, seed: int = 0,
                       intent_filter: IntentFilter | Callable[[str], IntentFilter] | None = None) -> Examples:
    """One example per simulated event with a recorded intent: the session's features after it, its intent. Sessions
    are folded with `intent_filter` (or, a function, the one it gives for the session id): the model's filter."""
    intent_of = _recorded_intents(truth)
    states: dict[str, SessionState] = {}
    out = Examples()
    index = {name: k for k, name in enumerate(INTENTS)}
    chosen = intent_filter if callable(intent_filter) else (lambda session_id: intent_filter)
    for raw in events:
        event = parse_event(raw)
        state = fold_session(states.get(event.session_id), event, ttl_seconds=0,
                             intent_filter=chosen(event.session_id))
        states[event.session_id] = state
        intent = intent_of.get(event.event_id)
        if intent is None:
            continue
        out.features.append(intent_features(state))
        out.labels.append(index[intent])
        out.sessions.append(event.session_id)
    if max_examples is not None and len(out) > max_examples:
        keep = np.sort(np.random.default_rng(seed).choice(len(out), max_examples, replace=False))
        out = Examples([out.features[i] for i in keep], [out.labels[i] for i in keep], [out.sessions[i] for i in keep])
    return out


def learned_filters(events: Sequence[dict], truth: dict, *, folds: int = FOLDS
                    ) -> tuple[IntentFilter, Callable[[str], IntentFilter]]:
    """The intent filter learned from a simulation's recorded intents (tailor_lab.training.intent_filter: counted,
    then fitted), and for each session id the filter learned without its fold of the sessions: a classifier learns
    from the posteriors of filters that did not see the session, as serving's filter has not."""
    index = {name: k for k, name in enumerate(INTENTS)}
    intent_of = {event_id: index[intent] for event_id, intent in _recorded_intents(truth).items()}
    sessions = labelled_sessions((parse_event(raw) for raw in events), intent_of)
    fold = {session_id: zlib.crc32(session_id.encode()) % folds for session_id in sessions}
    without = [fit_filter([events for session_id, events in sessions.items() if fold[session_id] != k])
               for k in range(folds)]
    return fit_filter(list(sessions.values())), lambda session_id: without[zlib.crc32(session_id.encode()) % folds]


def evaluate_simulated(model: IntentModel, events: Sequence[dict], truth: dict, *,
                       train: Examples | None = None, oracle: Mapping[str, np.ndarray] | None = None,
                       blind_oracle: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Macro F1 and calibration of `model` on a simulation's recorded intents, beside the intent-share baseline
    (`train`: Examples giving the shares; default: the evaluated data's own) and, given `oracle` (event id ->
    P(intent), tailor_lab.evaluation.intent_oracle), the Bayes-optimal posterior: its most probable intent, and the
    decision with per-intent weights chosen for macro F1 on these same events (its figure is then a ceiling); given
    `blind_oracle` too, the same filter blind to the shopper (what the events alone tell)."""
    examples = simulated_examples(events, truth, intent_filter=model.filter)
    X, y = examples.arrays()
    shares_from = np.asarray(train.labels) if train is not None else y
    prior = np.bincount(shares_from, minlength=len(INTENTS)) / max(len(shares_from), 1)
    methods = {
        "intent model": model.predict(X),
        "intent shares (baseline)": np.tile(prior, (len(y), 1)),
    }
    if model.filter is not None:
        methods[FILTER] = X[:, [INTENT_FEATURES.index(f"filter_{i}") for i in INTENTS]].astype(float)
    out: dict[str, Any] = {}
    if oracle is not None:
        recorded = _recorded_intents(truth)
        ids = [e["event_id"] for e in events if e["event_id"] in recorded]
        posterior = _posteriors(oracle, ids, "oracle")
        weights = decision_weights(posterior, y, lambda predicted: macro_f1(predicted, y)[0])
        methods[ORACLE] = posterior
        weighted = posterior * weights
        out["oracle"] = {"macro_f1": _classification(posterior, y)["macro_f1"],
                         "macro_f1_f1_decision": _classification(weighted, y)["macro_f1"],
                         "decision_weights": {INTENTS[k]: round(float(w), 4) for k, w in enumerate(weights)},
                         "accuracy": float((posterior.argmax(axis=1) == y).mean())}
        methods[ORACLE_F1] = weighted / weighted.sum(axis=1, keepdims=True)
        if blind_oracle is not None:
            blind = _posteriors(blind_oracle, ids, "blind_oracle")
            methods[ORACLE_BLIND] = blind
            out["oracle"]["blind_macro_f1"] = _classification(blind, y)["macro_f1"]
            out["oracle"]["blind_accuracy"] = float((blind.argmax(axis=1) == y).mean())
    return {"examples": len(y), "sessions": len(set(examples.sessions)),
            "per_intent": {INTENTS[k]: int((y == k).sum()) for k in range(len(INTENTS))},
            "methods": {name: _classification(p, y) for name, p in methods.items()}, **out}


def macro_f1(predicted: np.ndarray, labels: np.ndarray, classes: int = len(INTENTS)) -> tuple[float, list[float]]:
    """Macro-averaged F1 over all `classes` and the F1 of each (0 for a class neither predicted nor present)."""
    scores = f1_score(labels, predicted, labels=list(range(classes)), average=None, zero_division=0.0)
    return float(np.mean(scores)), [float(v) for v in scores]


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, float]:
    """Expected calibration error of the top probability (equal-width bins) and the multi-class Brier score."""
    top = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(float)
    which = np.minimum((top * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.mean() * abs(top[inside].mean() - correct[inside].mean())
    onehot = np.eye(probabilities.shape[1])[labels]
    brier = float(((probabilities - onehot) ** 2).sum(axis=1).mean())
    return {"ece": float(ece), "brier": brier}


def format_simulated(evaluation: dict[str, Any]) -> str:
    lines = [f"simulated intents: {evaluation['examples']} events in {evaluation['sessions']} sessions "
             f"({', '.join(f'{k} {v}' for k, v in evaluation['per_intent'].items())})",
             f"{'method':<26} {'macro F1':>9} {'accuracy':>9} {'ECE':>7} {'Brier':>7}   F1 per intent"]
    for name, m in evaluation["methods"].items():
        per = " ".join(f"{k[:4]} {v:.3f}" for k, v in m["f1"].items())
        lines.append(f"{name:<26} {m['macro_f1']:>9.4f} {m['accuracy']:>9.4f} {m['ece']:>7.4f} {m['brier']:>7.4f}   {per}")
    return "\n".join(lines)


def decision_weights(probabilities: np.ndarray, labels: np.ndarray, score: Callable[[np.ndarray], float],
                     rounds: int = 3) -> np.ndarray:
    """Per-intent weights on the probabilities whose argmax maximises `score` of the predictions (coordinate
    search over a log grid): the decision that maximises macro F1 rather than accuracy."""
    weights = np.ones(probabilities.shape[1])
    grid = np.exp(np.linspace(-1.5, 1.5, 31))
    best = score((probabilities * weights).argmax(axis=1))
    for _ in range(rounds):
        for k in range(len(weights)):
            for g in grid:
                trial = weights.copy()
                trial[k] = g
                value = score((probabilities * trial).argmax(axis=1))
                if value > best:
                    best, weights = value, trial
    return weights


def _posteriors(oracle: Mapping[str, np.ndarray], ids: list[str], name: str) -> np.ndarray:
    missing = [i for i in ids if i not in oracle]
    if missing:
        raise ValueError(f"{name}: no posterior for {len(missing)} of the {len(ids)} events, e.g. {missing[0]}")
    return np.asarray([oracle[i] for i in ids])


def _recorded_intents(truth: dict) -> dict[str, str]:
    """Event id -> the intent the simulator recorded at it."""
    intent_of: dict[str, str] = {}
    for session in truth["sessions"].values():
        intent_of.update(zip(session["event_ids"], session["intents"]))
    return intent_of


def _classification(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    predicted = probabilities.argmax(axis=1)
    f1, per_class = macro_f1(predicted, labels)
    return {"macro_f1": f1, "accuracy": float((predicted == labels).mean()), **calibration(probabilities, labels),
            "f1": {INTENTS[k]: v for k, v in enumerate(per_class)}}
