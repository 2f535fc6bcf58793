"""Count the session intent filter's parameters (tailor.intent_filter) from sessions whose intents are known.

The simulator records the intent at every event, so the filter is a supervised hidden Markov model: no expectation
maximisation, only counts. Sessions are folded event by event with tailor.session.fold_session, and each event's
observation (tailor.intent_filter.observe, the function serving filters with) is counted against its intent: the
first event's intent gives the prior; each pair of consecutive events the transition of its kind (a new action,
within one, after a purchase); the kind given the previous one's, per intent, P(kind | previous kind, intent); the
detail given the kind, per intent, P(detail | kind, intent). Every count starts from SMOOTHING, so that what the
training sessions never showed is unlikely rather than impossible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from tailor.events import Event
from tailor.intent_filter import N_INTENTS, TRANSITIONS, IntentFilter, observe
from tailor.session import SessionState, fold_session

__all__ = ["SMOOTHING", "count_filter", "labelled_sessions"]

SMOOTHING = 0.5
_NEUTRAL = IntentFilter([0.25] * N_INTENTS, {name: np.eye(N_INTENTS).tolist() for name in TRANSITIONS}, {}, {})


def count_filter(sessions: Iterable[Sequence[tuple[Event, int]]], *, smoothing: float = SMOOTHING) -> IntentFilter:
    """The filter counted from sessions, each its events in order with their intent (index into tailor.intent.INTENTS;
    negative: not known, which breaks the chain of transitions there)."""
    prior = np.full(N_INTENTS, smoothing)
    transitions = {name: np.full((N_INTENTS, N_INTENTS), smoothing) for name in TRANSITIONS}
    kinds: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(N_INTENTS))
    # Per previous kind: the events after it, per intent.
    after: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(N_INTENTS))
    details: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(N_INTENTS))
    of_kind: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(N_INTENTS))
    for events in sessions:
        state: SessionState | None = None
        before = -1
        for event, intent in events:
            seen = observe(state, event)
            state = fold_session(state, event, ttl_seconds=0, intent_filter=_NEUTRAL)
            if intent < 0:
                before = -1
                continue
            if before < 0:
                prior[intent] += 1
            else:
                transitions[seen.transition][before, intent] += 1
            kinds[f"{seen.previous}>{seen.kind}"][intent] += 1
            after[seen.previous][intent] += 1
            details[f"{seen.kind}:{seen.detail}"][intent] += 1
            of_kind[seen.kind][intent] += 1
            before = intent
    n_kinds = {previous: sum(1 for key in kinds if key.startswith(previous + ">")) for previous in after}
    n_details = {kind: sum(1 for key in details if key.startswith(kind + ":")) for kind in of_kind}
    return IntentFilter(
        (prior / prior.sum()).tolist(),
        {name: _rounded(m / m.sum(axis=1, keepdims=True)) for name, m in transitions.items()},
        {key: _rounded((v + smoothing) / (after[key.split(">")[0]] + smoothing * n_kinds[key.split(">")[0]]))
         for key, v in sorted(kinds.items())},
        {key: _rounded((v + smoothing) / (of_kind[key.split(":")[0]] + smoothing * n_details[key.split(":")[0]]))
         for key, v in sorted(details.items())},
    )


def labelled_sessions(events: Iterable[Event], intent_of: dict[str, int]) -> dict[str, list[tuple[Event, int]]]:
    """Events grouped by session in their order, each with its intent (-1 where `intent_of` holds none)."""
    out: dict[str, list[tuple[Event, int]]] = defaultdict(list)
    for event in events:
        out[event.session_id].append((event, intent_of.get(event.event_id, -1)))
    return out


def _rounded(values: np.ndarray) -> list:
    return np.vectorize(lambda v: float(f"{v:.6g}"))(values).tolist()
