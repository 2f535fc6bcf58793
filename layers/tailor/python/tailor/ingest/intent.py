"""Session intent in Ingest: every touched session's intent probabilities, and association pairs weighed by them.

Ingest's fold (tailor.ingest.fold) folds a batch's records into their sessions. For every record that
engages an item after other items, `PendingPairs` keeps the session's items before the record and
its intent features after it; `resolve` adds each touched session's features at the end of the fold
and scores them all with ONE call of the ONNX intent model. Then:

* each record's association pairs (tailor.associations.pair_increments) are added with the weight
  WeightedEventScore = BaseEventScore x the blended intent factor of its session at that record
  (tailor.intent.IntentFactors). A record's weight depends on its session's events up to and
  including it, never on how the stream was cut into batches, so a replayed or bisected batch adds
  the same increments (as long as the model and the factors stay the same in between);
* each touched session's state keeps its current intent probabilities (SessionState.intent).
* each such record's factor stays in `factors`, for the pull of its session's and shopper's vectors
  (tailor.embeddings.online). A record whose counters were added before (its shopper row holds it, its session row
  does not) is scored for its factor alone (`counted=False`): its pairs are not added twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tailor.associations import EVENT_WEIGHTS
from tailor.ingest.derive import Contribution, association_contributions
from tailor.intent import MODEL_NAME, IntentFactors, IntentModel, as_mapping, intent_features, intent_matrix
from tailor.session import SessionState

__all__ = ["PendingPairs", "SessionIntent"]

logger = logging.getLogger(__name__)


@dataclass
class SessionIntent:
    """What Ingest needs to keep intent: the classifier and the scaling factors in force (called per batch)."""

    model: IntentModel
    factors: Callable[[], IntentFactors] | None = None  # default: the shipped factors, read once
    base: Mapping[str, float] = field(default_factory=lambda: dict(EVENT_WEIGHTS))  # BaseEventScore per event type

    def __post_init__(self) -> None:
        if self.factors is None:
            shipped = IntentFactors.default()
            self.factors = lambda: shipped

    @classmethod
    def load(cls, registry: Any = None, environ: Mapping[str, str] | None = None) -> SessionIntent:
        """The registry's current intent model (or the shipped default), the factors from AppConfig or the file.
        The model's registry reads wait on a thread of their own while the factors are read, so that a cold start
        waits for the longer of the two rather than their sum."""
        from concurrent.futures import ThreadPoolExecutor

        from tailor.intent_config import FactorsSource
        from tailor.models import load_model

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="intent-load") as pool:
            loading = pool.submit(load_model, MODEL_NAME, registry, build=IntentModel.from_stored)
            factors = FactorsSource(environ)
            origin = factors().origin  # read at start, not in a batch
            model = loading.result()
        logger.info("intent model %s, factors from %s", model.label, origin)
        return cls(model, factors)

    @classmethod
    def shipped(cls) -> SessionIntent:
        """The intent model and factors shipped in the layer: what a new stack keeps intent with."""
        from tailor.models import load_model

        return cls(load_model(MODEL_NAME, build=IntentModel.from_stored))

    def pairs(self) -> PendingPairs:
        return PendingPairs(self)


@dataclass
class PendingPairs:
    """A fold's records whose association pairs wait for their intent weight."""

    intent: SessionIntent
    positions: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    previous: list[list[str]] = field(default_factory=list)
    features: list[list[float]] = field(default_factory=list)
    counted: list[bool] = field(default_factory=list)  # whether the record's pairs are added, or only its factor kept
    factors: dict[str, float] = field(default_factory=dict)  # once resolved: position -> the record's intent factor

    def wants(self, event_type: str, previous_items: list[str]) -> bool:
        """Whether such a record makes pairs at all (an engagement with weight, after other items)."""
        return bool(previous_items) and self.intent.base.get(event_type, 0.0) > 0

    def add(self, position: str, item_id: str, event_type: str, previous_items: list[str],
            session_after: SessionState, counted: bool = True) -> None:
        """A record at `position`: its item, type, the session's items before it and the session after it."""
        self.positions.append(position)
        self.items.append(item_id)
        self.kinds.append(event_type)
        self.previous.append(previous_items)
        self.features.append(intent_features(session_after))
        self.counted.append(counted)

    def resolve(self, sessions: Iterable[SessionState]) -> list[tuple[str, Contribution]]:
        """Score the records and `sessions` in one model call; store each session's intent; return the records'
        association contributions, in record order."""
        sessions = list(sessions)
        if not self.positions and not sessions:
            return []
        import numpy as np

        matrix = intent_matrix(sessions)
        if self.features:
            matrix = np.vstack([np.asarray(self.features, dtype=np.float32), matrix])
        probabilities = self.intent.model.predict(matrix)
        n = len(self.positions)
        for state, row in zip(sessions, probabilities[n:]):
            state.intent = as_mapping(row)
        factors = self.intent.factors().blend_rows(probabilities[:n], self.kinds)
        self.factors = dict(zip(self.positions, factors.tolist()))
        base = self.intent.base
        out: list[tuple[str, Contribution]] = []
        for k in range(n):
            if not self.counted[k]:
                continue
            kind = self.kinds[k]
            weights = {kind: base[kind] * float(factors[k])}
            out.extend((self.positions[k], c)
                       for c in association_contributions(self.items[k], kind, self.previous[k], weights))
        return out
