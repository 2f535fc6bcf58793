"""Examples for the session intent classifier from a simulation's ground truth, for its training and its evaluation.

Simulated events are folded session by session with tailor.session.fold_session, the fold Ingest runs, and after
each event whose intent the simulator recorded, the session's features (tailor.intent.intent_features, the function
Ingest and the API call) are one example labelled with that intent: the intent the shopper was in when they did it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from tailor.events import parse_event
from tailor.intent import INTENTS, intent_features
from tailor.session import SessionState, fold_session

__all__ = ["Examples", "simulated_examples"]


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


def simulated_examples(events: Iterable[dict], truth: dict, *, max_examples: int | None = None,
                       seed: int = 0) -> Examples:
    """One example per simulated event with a recorded intent: the session's features after it, its intent."""
    intent_of: dict[str, str] = {}
    for session in truth["sessions"].values():
        intent_of.update(zip(session["event_ids"], session["intents"]))
    states: dict[str, SessionState] = {}
    out = Examples()
    index = {name: k for k, name in enumerate(INTENTS)}
    for raw in events:
        event = parse_event(raw)
        state = fold_session(states.get(event.session_id), event, ttl_seconds=0)
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
