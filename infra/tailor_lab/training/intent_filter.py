"""Count the session intent filter's parameters (tailor.intent_filter) from sessions whose intents are known.

The simulator records the intent at every event, so the filter is a supervised hidden Markov model: no expectation
maximisation, only counts. Sessions are folded event by event with tailor.session.fold_session, and each event's
observation (tailor.intent_filter.observe, the function serving filters with) is counted against its intent: the
first event's intent gives the prior; each pair of consecutive events the transition of its kind (a new action,
within one, after a purchase); the kind given what came before it (Observation.given), per intent, P(kind | given,
intent), where a session's end counts as one more outcome after its last event, so that each event weighs by the
chance that the session went on; the detail given the kind (and the part of the detail before a "|", known before
the event), per intent, P(detail | kind, intent). Every count starts from SMOOTHING, so that what the training
sessions never showed is unlikely rather than impossible. The likelihoods ship raised to EVIDENCE_WEIGHT: the
filter takes the observations as independent given the intent, which they are not quite (a page's scroll and its
dwell both follow its reading time), and weighing each a little less keeps the posterior from running ahead of the
evidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from tailor.events import Event
from tailor.intent_filter import ANY_ACTION, N_INTENTS, TRANSITIONS, IntentFilter, kind_context, observe
from tailor.session import SessionState, fold_session

__all__ = ["EVIDENCE_WEIGHT", "SMOOTHING", "count_filter", "labelled_sessions"]

SMOOTHING = 0.5
EVIDENCE_WEIGHT = 0.85  # chosen on a validation simulation (seed 9)
_END = "end"  # the outcome counted after a session's last event
_NEUTRAL = IntentFilter([0.25] * N_INTENTS, {name: np.eye(N_INTENTS).tolist() for name in TRANSITIONS}, {}, {})


def count_filter(sessions: Iterable[Sequence[tuple[Event, int]]], *, smoothing: float = SMOOTHING,
                 evidence_weight: float = EVIDENCE_WEIGHT) -> IntentFilter:
    """The filter counted from sessions, each its events in order with their intent (index into tailor.intent.INTENTS;
    negative: not known, which breaks the chain of transitions there)."""
    prior = np.full(N_INTENTS, smoothing)
    transitions = {name: np.full((N_INTENTS, N_INTENTS), smoothing) for name in TRANSITIONS}
    kinds: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(N_INTENTS))
    # Per what came before (Observation.given): the events after it and the sessions' ends, per intent.
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
            kinds[f"{seen.given}>{seen.kind}"][intent] += 1
            after[seen.given][intent] += 1
            details[f"{seen.kind}:{seen.detail}"][intent] += 1
            of_kind[_given(seen.kind, seen.detail)][intent] += 1
            for key in seen.extra:
                details[key][intent] += 1
                of_kind[_given(*key.split(":", 1))][intent] += 1
            before = intent
        if before >= 0 and state is not None:
            # The session ended where an action could have started (its last event may have been the last action's).
            ended = ANY_ACTION + kind_context(state)
            kinds[f"{ended}>{_END}"][before] += 1
            after[ended][before] += 1
    n_kinds: dict[str, int] = defaultdict(int)
    for key in kinds:
        n_kinds[key.split(">")[0]] += 1
    n_details: dict[str, int] = defaultdict(int)
    for key in details:
        n_details[_given(*key.split(":", 1))] += 1

    def kind_likelihood(key: str, v: np.ndarray) -> list:
        given = key.split(">")[0]
        return _rounded(((v + smoothing) / (after[given] + smoothing * n_kinds[given])) ** evidence_weight)

    def detail_likelihood(key: str, v: np.ndarray) -> list:
        given = _given(*key.split(":", 1))
        return _rounded(((v + smoothing) / (of_kind[given] + smoothing * n_details[given])) ** evidence_weight)

    return IntentFilter(
        (prior / prior.sum()).tolist(),
        {name: _rounded(m / m.sum(axis=1, keepdims=True)) for name, m in transitions.items()},
        {key: kind_likelihood(key, v) for key, v in sorted(kinds.items()) if not key.endswith(">" + _END)},
        {key: detail_likelihood(key, v) for key, v in sorted(details.items())},
    )


def labelled_sessions(events: Iterable[Event], intent_of: dict[str, int]) -> dict[str, list[tuple[Event, int]]]:
    """Events grouped by session in their order, each with its intent (-1 where `intent_of` holds none)."""
    out: dict[str, list[tuple[Event, int]]] = defaultdict(list)
    for event in events:
        out[event.session_id].append((event, intent_of.get(event.event_id, -1)))
    return out


def _given(kind: str, detail: str) -> str:
    """What a detail's likelihood is given: its kind, and the part of the detail before a "|" (known before it)."""
    return f"{kind}:{detail.split('|', 1)[0]}" if "|" in detail else kind


def _rounded(values: np.ndarray) -> list:
    return np.vectorize(lambda v: float(f"{v:.6g}"))(values).tolist()
