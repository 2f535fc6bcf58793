"""Session and shopper vectors as Ingest keeps them in their rows, by tailor.embeddings.update's rule, exactly once.

Ingest's fold (tailor.ingest.fold) notes each record a session or a shopper row absorbs (past the row's watermark,
never a producer's duplicate) and applies the noted records at the end of the batch, in record order, once the
session intent at each engagement is known (tailor.ingest.intent scores them in the batch's one model call):

* An engagement pulls the vector toward its item's, weighted by its event type and its session's intent: the factor
  its association pairs weigh with (tailor.ingest.intent; 1 for a session's first engagement, which makes none).
* Ignores count only what the shop can know was seen and passed over. A row holds the last impression's items (its
  first SHOWN positions). An engagement echoing that impression's feed and a position settles the items above it as
  ignored (a full ignore each); the next impression settles the rest of the last one as rendered and never engaged
  (`unseen_share` of an ignore each). An item engaged with is never an ignore.
* The row's `vector` field holds {"m": a digest of the item vectors' version, "v": base64 of its float16
  components, "f": the last impression's feed, "p": its items by position, "" once settled, joined by
  SEPARATOR}. Every update is
  quantised as it is stored, so a batch folded whole or in parts leaves the same bytes.
* Vectors trained anew live in another space: a row whose digest is not the current vectors' starts again from its
  recent items (as views), and serving uses only a row's vector of the version it holds (`stored_vector`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from tailor.associations import EVENT_WEIGHTS
from tailor.embeddings.update import DEFAULT_UPDATE, VectorUpdate, update_vector
from tailor.embeddings.vectors import ItemVectors
from tailor.events import ITEM_EVENT_TYPES
from tailor.text import event_digest

__all__ = ["SHOWN", "HeldVector", "OnlineVectors", "VectorBatch", "stored_vector", "vectors_tag"]

SHOWN = 20  # an impression's positions whose ignores are kept (a feed's page); those below are never settled
MAX_COMPONENT = 1000.0  # a stored vector's components stay within this (float16 holds up to 65,504)
SEPARATOR = "\x1f"  # between a row's held items: no id holds a control character (tailor.events.ID_PATTERN)

logger = logging.getLogger(__name__)


def vectors_tag(vectors: ItemVectors) -> str:
    """A short digest naming the item vectors' version (their space), kept beside each row's vector."""
    return _digest(str(vectors.metadata.get("version") or f"{len(vectors)}x{vectors.dim}"))


def stored_vector(field_value: Any, vectors: ItemVectors) -> np.ndarray | None:
    """A row's vector (its `vector` field) when it is of `vectors`' space and not zero, else None."""
    tag = field_value.get("m") if isinstance(field_value, Mapping) else None
    if not tag or tag != vectors_tag(vectors):  # a row without a vector needs no digest
        return None
    found = _decode(field_value.get("v"))
    if found is None or len(found) != vectors.dim or not np.any(found):
        return None
    return found.astype(np.float32)


class OnlineVectors:
    """What Ingest keeps vectors with: the item vectors in force (`vectors()`, None while there are none) and the
    update rule. Ingest's fold asks for a `batch()` per fold."""

    def __init__(self, vectors: Callable[[], ItemVectors | None], rule: VectorUpdate = DEFAULT_UPDATE):
        self.vectors = vectors
        self.rule = rule
        self.ready = True  # False while `vectors()` would still read them (see `load`)

    @classmethod
    def load(cls, registry: Any, rule: VectorUpdate = DEFAULT_UPDATE) -> OnlineVectors:
        """The registry's current item vectors, read by the first batch that needs them (not at a cold start) and
        kept for the container's life, as serving keeps them. A registry that cannot be read raises
        (tailor.models.RegistryUnreadable): the batch is delivered again, and the next one reads again, rather than
        fold past its rows' watermarks without the vectors."""
        from tailor.embeddings import load_item_vectors

        lock, loaded = threading.Lock(), []

        def vectors() -> ItemVectors | None:
            if not loaded:
                with lock:
                    if not loaded:
                        found = load_item_vectors(registry, unreadable_raises=True)
                        logger.info("item vectors for session and shopper vectors: %s",
                                    "none" if found is None else found.metadata.get("version"))
                        loaded.append(found)
                        online.ready = True
            return loaded[0]

        online = cls(vectors, rule)
        online.ready = False
        return online

    def batch(self) -> VectorBatch | None:
        """A fold's notes, or None when there are no item vectors (rows keep their vectors as they are)."""
        vectors = self.vectors()
        return None if vectors is None else VectorBatch(vectors, self.rule, vectors_tag(vectors))


@dataclass
class HeldVector:
    """A row's `vector` field, decoded."""

    vector: np.ndarray | None = None  # float32, `half` widened; None before any engagement
    half: np.ndarray | None = None  # float16, as the row holds it
    tag: str | None = None
    feed: str | None = None
    shown: list[str] = field(default_factory=list)

    @classmethod
    def decode(cls, value: Any) -> HeldVector:
        if not value or not isinstance(value, Mapping):
            return cls()  # none yet, or not one this module wrote: the row starts again
        shown = value.get("p")
        held = cls(tag=value.get("m"), feed=value.get("f"), shown=shown.split(SEPARATOR) if isinstance(shown, str) else [])
        found = _decode(value.get("v"))
        if found is not None:
            held.half, held.vector = found, found.astype(np.float32)
        return held

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"m": self.tag}
        if self.half is not None:
            out["v"] = base64.b64encode(self.half.tobytes()).decode("ascii")
        if self.feed is not None:
            # Kept once every item is settled too: the same feed rendered again in a later batch is not a new one.
            out["f"] = self.feed
            if any(self.shown):
                out["p"] = SEPARATOR.join(self.shown)
        return out


@dataclass
class VectorBatch:
    """The records a fold's rows absorbed, to be applied to their vectors at the end of the batch."""

    vectors: ItemVectors
    rule: VectorUpdate
    tag: str
    _rows: dict[int, tuple[Any, Sequence[str], list[tuple[str, Any]]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        weights = EVENT_WEIGHTS if self.rule.event_weights is None else self.rule.event_weights
        self._pulling = frozenset(kind for kind, weight in weights.items() if weight > 0) & ITEM_EVENT_TYPES

    def note(self, row: Any, recent: Sequence[str] | None, position: str, event: Any) -> None:
        """`row` (whose `state` has a `vector` field once the fold is done) absorbed `event`; `recent` is the row's
        recent items, most recent last, as they were before the batch's first record of it."""
        if event.event_type != "impression" and not self.engages(event):
            return  # it neither pulls nor says what was passed over
        found = self._rows.get(id(row))
        if found is None:
            found = self._rows[id(row)] = (row, list(recent or ()), [])
        found[2].append((position, event))

    def forget(self, row: Any) -> None:
        """Drop what `row` absorbed so far in this batch: its state started again (an expired session), as it would
        at a batch boundary there."""
        self._rows.pop(id(row), None)

    def engages(self, event: Any) -> bool:
        """Whether `event` pulls a vector (an engagement with an item, of some weight): what wants an intent factor."""
        return event.event_type in self._pulling  # item events all: their item_id is required

    def apply(self, factor: Callable[[str, str], float] | None = None) -> None:
        """Fold the noted records into their rows' vectors; `factor(position, event type)` is an engagement's
        session intent factor (1 without)."""
        for row, recent, records in self._rows.values():
            held = HeldVector.decode(getattr(row.state, "vector", None))
            if held.tag != self.tag:  # another space, or none yet: start again from the row's recent items
                held = HeldVector(tag=self.tag)
                _store(held, self._pulled(None, recent))
            for position, event in records:
                _store(held, self._fold(held, event, 1.0 if factor is None else factor(position, event.event_type)))
            row.state.vector = held.encode()

    def _fold(self, held: HeldVector, event: Any, intent_factor: float) -> np.ndarray | None:
        """The vector after `event`, not yet quantised (a row holds whole records, so only they are), and the
        impression's items it settles."""
        vector = held.vector
        if event.event_type == "impression":
            key = event.feed_id or f"#{event_digest(event.event_id)}"
            if key == held.feed:
                return vector  # the same feed rendered again: its items are held already
            vector = self._ignored(vector, [item for item in held.shown if item], self.rule.unseen_share)
            held.feed, held.shown = key, list(event.item_ids[:SHOWN])
            return vector
        item, position = event.item_id, event.position
        if event.feed_id is not None and event.feed_id == held.feed and position is not None:
            vector = self._ignored(vector, [shown for shown in held.shown[:position] if shown and shown != item], 1.0)
            held.shown = [shown if k >= position else "" for k, shown in enumerate(held.shown)]
        if item in held.shown:
            held.shown = ["" if shown == item else shown for shown in held.shown]
        return update_vector(vector, self.vectors.vector(item), event.event_type, rule=self.rule,
                             intent_factor=intent_factor)

    def _ignored(self, vector: np.ndarray | None, items: Sequence[str], share: float) -> np.ndarray | None:
        """`vector` pushed away from `items` at once (ignores do not decay what is there, so their order is moot)."""
        rows = [row for row in map(self.vectors.row, items) if row is not None]
        if not rows:
            return vector
        pushed = update_vector(vector, self.vectors.vectors[rows].sum(axis=0), "ignore", rule=self.rule,
                               intent_factor=share)
        if pushed is not None and pushed is not vector:
            # Ignores do not decay what is there: a shopper shown a great deal and engaging seldom grows a long
            # vector. Its direction is what counts; its length is kept within what float16 holds.
            peak = float(np.abs(pushed).max())
            if peak > MAX_COMPONENT:
                pushed = pushed * np.float32(MAX_COMPONENT / peak)
        return pushed

    def _pulled(self, vector: np.ndarray | None, items: Sequence[str]) -> np.ndarray | None:
        for item in items:
            vector = update_vector(vector, self.vectors.vector(item), "view", rule=self.rule)
        return vector


def _store(held: HeldVector, vector: np.ndarray | None) -> None:
    """`vector` into `held` as its encoding keeps it (float16): the next update starts from what a row read back
    holds."""
    if vector is None or vector is held.vector:
        return
    held.half = np.asarray(vector, dtype=np.float32).astype(np.float16)
    held.vector = held.half.astype(np.float32)


@lru_cache(maxsize=8)
def _digest(version: str) -> str:
    """vectors_tag's digest: worked out once per version, as every request and every batch asks for it."""
    return hashlib.blake2b(version.encode("utf-8"), digest_size=4).hexdigest()


def _decode(text: Any) -> np.ndarray | None:
    """The float16 components a row's "v" holds, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        return None
    if len(raw) % 2:
        return None
    found = np.frombuffer(raw, dtype=np.float16)
    return found if np.isfinite(found).all() else None
