"""Learn the session intent filter's parameters (tailor.intent_filter) from sessions whose intents are known: counted,
then fitted to the intents.

The simulator records the intent at every event, so the filter is a supervised hidden Markov model: no expectation
maximisation. Counted (`count_filter`): sessions are folded event by event with tailor.session.fold_session, and each event's
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

Fitted (`fit_filter`): the same tables, started from the counts (the likelihoods in logs, weighted by
EVIDENCE_WEIGHT), are then moved to make the filter's posterior after each event as likely as possible to name the
intent the shopper was in (the log-loss over every labelled event, forward through each session as serving filters
it), with a penalty (FIT_L2) on the log-likelihoods' distance from the counted ones; scipy's L-BFGS-B on the loss and
its gradient, worked out in numpy through the forward recursion. Where the observations are not independent given the
intent (a page's details repeat its reading time), the fit weighs each kind of evidence by what it adds, which one
weight for all cannot. The result has the same keys and format: serving is unchanged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.optimize import minimize

from tailor.events import Event
from tailor.intent_filter import ANY_ACTION, N_INTENTS, TRANSITIONS, IntentFilter, kind_context, observe
from tailor.session import SessionState, fold_session

__all__ = ["EVIDENCE_WEIGHT", "FIT_L2", "SMOOTHING", "count_filter", "fit_filter", "labelled_sessions"]

SMOOTHING = 0.5
EVIDENCE_WEIGHT = 0.85  # chosen on a validation simulation (seed 9)
FIT_L2 = 1e-3  # the fit's penalty per squared log-likelihood from the counted one, on the mean log-loss (seeds 9-11)
FIT_ITERATIONS = 300

logger = logging.getLogger(__name__)
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


def fit_filter(sessions: Iterable[Sequence[tuple[Event, int]]], *, l2: float = FIT_L2,
               max_iterations: int = FIT_ITERATIONS) -> IntentFilter:
    """The filter counted from `sessions` (as count_filter), then fitted to their intents (the module doc)."""
    sessions = list(sessions)  # read twice: counted, then encoded
    counted = count_filter(sessions, evidence_weight=1.0)
    kinds, details = sorted(counted.kinds), sorted(counted.details)
    encoded = _Encoded(sessions, {k: i for i, k in enumerate(kinds)}, {k: i for i, k in enumerate(details)})
    start = _parameters(counted, kinds, details, evidence_weight=EVIDENCE_WEIGHT)
    shapes = [p.shape for p in start]
    cuts = np.cumsum([p.size for p in start])[:-1]
    labelled = max(1, encoded.labelled)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        prior, transitions, kind_logs, detail_logs = (v.reshape(s) for v, s in zip(np.split(x, cuts), shapes))
        loss, grads = encoded.loss_and_gradient(prior, transitions, kind_logs, detail_logs)
        kind_gap, detail_gap = kind_logs - start[2], detail_logs - start[3]
        penalty = l2 * (np.sum(kind_gap ** 2) + np.sum(detail_gap ** 2))
        grads = [grads[0] / labelled, grads[1] / labelled, grads[2] / labelled + 2 * l2 * kind_gap,
                 grads[3] / labelled + 2 * l2 * detail_gap]
        return loss / labelled + penalty, np.concatenate([g.ravel() for g in grads])

    fitted = minimize(objective, np.concatenate([p.ravel() for p in start]), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iterations})
    logger.info("intent filter fitted", extra={"iterations": fitted.nit, "converged": bool(fitted.success),
                                               "message": str(fitted.message), "loss": float(fitted.fun)})
    prior, transitions, kind_logs, detail_logs = (v.reshape(s) for v, s in zip(np.split(fitted.x, cuts), shapes))
    return IntentFilter(
        _rounded(_softmax(prior)),
        {name: _rounded(_softmax(transitions[i], axis=1)) for i, name in enumerate(TRANSITIONS)},
        # Each likelihood up to a factor, which the posterior's normalisation takes out: the largest is 1.
        {k: _rounded(np.exp(kind_logs[i] - kind_logs[i].max())) for i, k in enumerate(kinds)},
        {k: _rounded(np.exp(detail_logs[i] - detail_logs[i].max())) for i, k in enumerate(details)},
    )


def labelled_sessions(events: Iterable[Event], intent_of: dict[str, int]) -> dict[str, list[tuple[Event, int]]]:
    """Events grouped by session in their order, each with its intent (-1 where `intent_of` holds none)."""
    out: dict[str, list[tuple[Event, int]]] = defaultdict(list)
    for event in events:
        out[event.session_id].append((event, intent_of.get(event.event_id, -1)))
    return out


class _Encoded:
    """Labelled sessions as the fit reads them: each event's transition kind, intent and likelihood keys (indices),
    laid out step by step (the first event of every session, then the second of those that have one, ...) with the
    sessions longest first, so that a step of the forward recursion is one block of rows."""

    def __init__(self, sessions: Sequence[Sequence[tuple[Event, int]]], kinds: dict[str, int],
                 details: dict[str, int]):
        rows = []  # per session: (transition, intent, kind key, detail keys) per event
        for events in sessions:
            state: SessionState | None = None
            session = []
            for event, intent in events:
                seen = observe(state, event)
                transition = 0 if state is None else TRANSITIONS.index(seen.transition)
                state = fold_session(state, event, ttl_seconds=0, intent_filter=_NEUTRAL)
                keys = [details[k] for k in (f"{seen.kind}:{seen.detail}", *seen.extra) if k in details]
                session.append((transition, intent, kinds.get(f"{seen.given}>{seen.kind}", -1), keys))
            if session:
                rows.append(session)
        rows.sort(key=len, reverse=True)
        self.sizes = [sum(1 for session in rows if len(session) > t) for t in range(len(rows[0]) if rows else 0)]
        self.steps, kind_rows, kind_keys, detail_rows, detail_keys = [], [], [], [], []
        row = 0
        for t, size in enumerate(self.sizes):
            transitions, intents = [], []
            for session in rows[:size]:
                transition, intent, kind, keys = session[t]
                transitions.append(transition)
                intents.append(intent)
                if kind >= 0:
                    kind_rows.append(row)
                    kind_keys.append(kind)
                detail_rows += [row] * len(keys)
                detail_keys += keys
                row += 1
            self.steps.append((np.array(transitions), np.array(intents)))
        self.rows = row
        self.kind_rows, self.kind_keys = np.array(kind_rows, dtype=np.int64), np.array(kind_keys, dtype=np.int64)
        self.detail_rows, self.detail_keys = np.array(detail_rows, dtype=np.int64), np.array(detail_keys, dtype=np.int64)
        self.labelled = int(sum((intents >= 0).sum() for _, intents in self.steps))

    def loss_and_gradient(self, prior: np.ndarray, transitions: np.ndarray, kind_logs: np.ndarray,
                          detail_logs: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """The log-loss of the labelled events' posteriors, summed, and its gradient by each parameter: the prior's
        and the transitions' logits (rows softmaxed), the kinds' and details' log-likelihoods."""
        log_prior = prior - _logsumexp(prior, 0)
        log_transitions = transitions - _logsumexp(transitions, 2)[:, :, None]
        evidence = np.zeros((self.rows, N_INTENTS))
        np.add.at(evidence, self.kind_rows, kind_logs[self.kind_keys])
        np.add.at(evidence, self.detail_rows, detail_logs[self.detail_keys])
        blocks = np.split(evidence, np.cumsum(self.sizes)[:-1])
        posteriors, predicted, loss = [], [], 0.0
        for t, (moves, intents) in enumerate(self.steps):
            if t == 0:
                ahead = np.broadcast_to(log_prior, (len(moves), N_INTENTS))
            else:
                ahead = _logsumexp(posteriors[-1][:len(moves), :, None] + log_transitions[moves], 1)
            joint = ahead + blocks[t]
            posterior = joint - _logsumexp(joint, 1)[:, None]
            known = intents >= 0
            loss -= posterior[known, intents[known]].sum()
            posteriors.append(posterior)
            predicted.append(ahead)
        # Back through the recursion: `carried` is the loss's gradient by step t's log posterior from the steps after.
        d_evidence = np.zeros_like(evidence)
        d_blocks = np.split(d_evidence, np.cumsum(self.sizes)[:-1])
        d_log_transitions, d_log_prior = np.zeros_like(log_transitions), np.zeros(N_INTENTS)
        carried: np.ndarray | None = None
        for t in range(len(self.steps) - 1, -1, -1):
            moves, intents = self.steps[t]
            posterior = posteriors[t]
            grad = np.zeros_like(posterior)
            known = np.flatnonzero(intents >= 0)
            grad[known, intents[known]] -= 1.0
            if carried is not None:
                grad[:len(carried)] += carried
            d_joint = grad - np.exp(posterior) * grad.sum(1, keepdims=True)
            d_blocks[t][:] = d_joint
            if t == 0:
                d_log_prior += d_joint.sum(0)
                break
            paths = posteriors[t - 1][:len(moves), :, None] + log_transitions[moves]
            d_paths = d_joint[:, None, :] * np.exp(paths - predicted[t][:, None, :])
            carried = d_paths.sum(2)
            for k in range(len(TRANSITIONS)):
                d_log_transitions[k] += d_paths[moves == k].sum(0)
        d_kinds = np.zeros_like(kind_logs)
        np.add.at(d_kinds, self.kind_keys, d_evidence[self.kind_rows])
        d_details = np.zeros_like(detail_logs)
        np.add.at(d_details, self.detail_keys, d_evidence[self.detail_rows])
        d_prior = d_log_prior - np.exp(log_prior) * d_log_prior.sum()
        d_transitions = d_log_transitions - np.exp(log_transitions) * d_log_transitions.sum(2, keepdims=True)
        return float(loss), [d_prior, d_transitions, d_kinds, d_details]


def _parameters(intent_filter: IntentFilter, kinds: Sequence[str], details: Sequence[str], *,
                evidence_weight: float = 1.0) -> list[np.ndarray]:
    """A filter's tables as the fit takes them: the prior's and the transitions' logs, and the kinds' and details'
    log-likelihoods (in the order of `kinds` and `details`) times `evidence_weight`."""
    return [np.log(intent_filter.prior), np.log(np.array([intent_filter.transitions[name] for name in TRANSITIONS])),
            evidence_weight * np.log(np.array([intent_filter.kinds[k] for k in kinds]).reshape(-1, N_INTENTS)),
            evidence_weight * np.log(np.array([intent_filter.details[k] for k in details]).reshape(-1, N_INTENTS))]


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _given(kind: str, detail: str) -> str:
    """What a detail's likelihood is given: its kind, and the part of the detail before a "|" (known before it)."""
    return f"{kind}:{detail.split('|', 1)[0]}" if "|" in detail else kind


def _rounded(values: np.ndarray) -> list:
    return np.vectorize(lambda v: float(f"{v:.6g}"))(values).tolist()
