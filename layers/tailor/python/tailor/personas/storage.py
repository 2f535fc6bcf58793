"""Persona models in the data bucket, beside the model registry's other models, and their per-container cache.

    models/personas/<version>/personas.npz    the model (tailor.personas.model.PersonaModel.to_bytes)
    models/personas/current.json              {"version": ..., "published_at": ...}: what Ingest and the API load

A version is the build time and a digest of the bytes, so versions sort by age. Readers keep the model
they loaded and look at the pointer again once `refresh_seconds` have passed, so a rebuild reaches every
container within that time and no request waits for more than one small read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from tailor.personas.model import PersonaModel
from tailor.store.port import BlobStore

__all__ = ["MODEL_PREFIX", "ModelSource", "current_model", "publish_model", "persona_version"]

logger = logging.getLogger(__name__)

MODEL_PREFIX = "models/personas/"
REFRESH_SECONDS = 300.0


def persona_version(data: bytes, at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{hashlib.sha256(data).hexdigest()[:8]}"


def publish_model(blobs: BlobStore, model: PersonaModel) -> str:
    """Store `model` under its version and make it current; returns the object key."""
    key = f"{MODEL_PREFIX}{model.version}/personas.npz"
    blobs.put(key, model.to_bytes(), "application/octet-stream")
    pointer = {"version": model.version, "key": key, "published_at": datetime.now(UTC).isoformat()}
    blobs.put(f"{MODEL_PREFIX}current.json", json.dumps(pointer).encode(), "application/json")
    return key


def current_model(blobs: BlobStore) -> PersonaModel | None:
    """The current persona model, or None if none was published yet."""
    try:
        pointer = json.loads(blobs.get(f"{MODEL_PREFIX}current.json"))
    except Exception as err:  # no pointer yet: S3's NoSuchKey, a memory store's KeyError
        if _missing(err):
            return None
        raise
    return PersonaModel.from_bytes(blobs.get(pointer["key"]))


class ModelSource:
    """The current persona model for one container: loaded on first use, re-checked every `refresh_seconds`.
    A failed check keeps the model it had (or none) and is tried again after the next interval."""

    def __init__(self, blobs: BlobStore | None, *, refresh_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic, model: PersonaModel | None = None):
        """`refresh_seconds` defaults to REFRESH_SECONDS."""
        self.blobs = blobs
        self.refresh_seconds = REFRESH_SECONDS if refresh_seconds is None else refresh_seconds
        self.clock = clock
        self._model = model
        self._checked: float | None = None if model is None else clock()
        self._lock = threading.Lock()

    def __call__(self) -> PersonaModel | None:
        now = self.clock()
        if self.blobs is None or (self._checked is not None and now - self._checked < self.refresh_seconds):
            return self._model
        with self._lock:
            if self._checked is None or now - self._checked >= self.refresh_seconds:
                self._checked = now
                try:
                    pointer = json.loads(self.blobs.get(f"{MODEL_PREFIX}current.json"))
                    if self._model is None or pointer["version"] != self._model.version:
                        self._model = PersonaModel.from_bytes(self.blobs.get(pointer["key"]))
                except Exception as err:
                    if not _missing(err):
                        logger.exception("could not load the persona model; keeping %s",
                                         self._model.version if self._model else "none")
        return self._model

    @classmethod
    def fixed(cls, model: PersonaModel | None) -> ModelSource:
        """A source that always answers `model` (tests, evaluation)."""
        return cls(None, model=model)


def _missing(err: Exception) -> bool:
    code = getattr(err, "response", {}).get("Error", {}).get("Code") if hasattr(err, "response") else None
    return isinstance(err, KeyError) or code in ("NoSuchKey", "404", "NotFound")
