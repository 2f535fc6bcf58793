"""The model registry: versioned ONNX models with their metadata in the data bucket, and a current pointer.

Layout under the bucket's models/ prefix, one folder per model name:

    models/<name>/<version>/model.onnx       the ONNX graph (or the artifact its metadata names: vectors, say)
    models/<name>/<version>/metadata.json    feature names, training window, metrics, library versions
    models/<name>/current.json               {"version": ..., "promoted_at": ...}: what serving loads

A version is the training time and a digest of the graph ("20261102T101500Z-1a2b3c4d"), so versions
sort by age and the same graph always gets the same name. Serving loads a model once per container
with `load_model`, which falls back to the default shipped in this package (tailor/models/default/
<name>.onnx and <name>.json) when the registry has no current version, cannot be read, or holds a
model the caller rejects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from tailor.store.port import BlobStore

__all__ = ["DEFAULT_DIR", "REGISTRY_RETRY_SECONDS", "LazyModel", "ModelRegistry", "ReadAgain", "ReadAgainModel",
           "RegistryUnreadable", "StoredModel", "default_model", "load_model", "load_published", "model_version"]

logger = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
# Seconds after which serving reads a registry again that could not be read at its container's start.
REGISTRY_RETRY_SECONDS = 300.0
PREFIX = "models/"
ONNX_ARTIFACT = "model.onnx"  # a version's file, unless its metadata's "artifact" names another
T = TypeVar("T")


@dataclass(frozen=True)
class StoredModel:
    """One version of a model: the ONNX bytes, their metadata, and where they were loaded from."""

    name: str
    version: str
    onnx: bytes = field(repr=False)
    metadata: dict[str, Any]
    origin: str  # "registry" or "default"

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"


def model_version(onnx: bytes, trained_at: str | None = None) -> str:
    """The version name of a graph: when it was trained (UTC, to the second) and a digest of its bytes."""
    moment = datetime.fromisoformat(trained_at.replace("Z", "+00:00")) if trained_at else datetime.now(UTC)
    stamp = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{hashlib.sha256(onnx).hexdigest()[:8]}"


class ModelRegistry:
    def __init__(self, blobs: BlobStore, prefix: str = PREFIX):
        self.blobs = blobs
        self.prefix = prefix

    def publish(self, name: str, onnx: bytes, metadata: dict[str, Any], *, make_current: bool = True,
                artifact: str = ONNX_ARTIFACT) -> str:
        """Store a new version (its metadata gains "name" and "version") and, by default, make it current. A model
        that is not an ONNX graph (item vectors, clusters) is stored under the file name `artifact` says."""
        _check_name(name)
        _check_name(artifact)
        version = model_version(onnx, metadata.get("trained_at"))
        stored = {**metadata, "name": name, "version": version}
        if artifact != ONNX_ARTIFACT:
            stored["artifact"] = artifact
        folder = f"{self.prefix}{name}/{version}/"
        self.blobs.put(folder + artifact, onnx, "application/octet-stream")
        # Metadata last: a version whose metadata exists is complete.
        self.blobs.put(folder + "metadata.json", _json(stored), "application/json")
        if make_current:
            self.promote(name, version)
        return version

    def promote(self, name: str, version: str) -> None:
        """Make `version` the one serving loads."""
        if version not in self.versions(name):
            raise LookupError(f"model {name!r} has no version {version!r}")
        pointer = {"version": version, "promoted_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        self.blobs.put(self._pointer(name), _json(pointer), "application/json")

    def versions(self, name: str) -> list[str]:
        """Every complete version of `name`, oldest first."""
        _check_name(name)
        folder = f"{self.prefix}{name}/"
        return sorted(key[len(folder):-len("/metadata.json")] for key in self.blobs.list(folder)
                      if key.endswith("/metadata.json") and key.count("/") == folder.count("/") + 1)

    def current_version(self, name: str) -> str | None:
        pointer = self._pointer(name)
        if pointer not in self.blobs.list(pointer):
            return None
        return json.loads(self.blobs.get(pointer))["version"]

    def fetch(self, name: str, version: str | None = None) -> StoredModel:
        """One version (the current one by default); LookupError if there is none."""
        version = version or self.current_version(name)
        if version is None:
            raise LookupError(f"model {name!r} has no current version in the registry")
        folder = f"{self.prefix}{name}/{version}/"
        metadata = json.loads(self.blobs.get(folder + "metadata.json"))
        artifact = metadata.get("artifact", ONNX_ARTIFACT)
        return StoredModel(name, version, self.blobs.get(folder + artifact), metadata, "registry")

    def _pointer(self, name: str) -> str:
        _check_name(name)
        return f"{self.prefix}{name}/current.json"


def default_model(name: str, directory: Path = DEFAULT_DIR) -> StoredModel:
    """The model shipped in the package: <directory>/<name>.onnx with its metadata in <name>.json."""
    metadata = json.loads((directory / f"{name}.json").read_text())
    return StoredModel(name, metadata["version"], (directory / f"{name}.onnx").read_bytes(), metadata, "default")


def _as_is(stored: StoredModel) -> Any:
    return stored


def load_model(name: str, registry: ModelRegistry | None = None, *, build: Callable[[StoredModel], T] = _as_is,
               directory: Path = DEFAULT_DIR, unreadable_raises: bool = False) -> T:
    """`build` applied to the registry's current version of `name`, else to the shipped default.

    `build` (a model class's constructor, say) may raise to refuse a registry model, one trained on
    features this code no longer computes for instance; the default is used then, and the reason
    logged. With `unreadable_raises`, a registry whose store cannot be read just now raises RegistryUnreadable
    rather than fall back (ReadAgain then tries it again later). Call once per container: nothing here is cached.
    """
    found = _current(name, registry, build, "using the shipped default", unreadable_raises)
    return found if found is not None else build(default_model(name, directory))


def load_published(name: str, registry: ModelRegistry | None, *, build: Callable[[StoredModel], T],
                   without: str, unreadable_raises: bool = False) -> T | None:
    """`build` applied to the registry's current version of `name`, or None when there is none or it cannot be used:
    for what no default ships with (item vectors, clusters: they name the shop's own items). `without` says what
    serving goes on without, for the log. With `unreadable_raises`, a registry that cannot be read just now (its
    store failing, not a version that is missing or unusable) raises RegistryUnreadable instead: for Ingest, which
    must not fold records past its rows' watermarks without what the registry holds."""
    return _current(name, registry, build, f"serving without {without}", unreadable_raises)


class RegistryUnreadable(OSError):
    """The registry's store could not be read just now (it may hold a current version, or not): an I/O fault, which
    fails Ingest's batch (it comes again) rather than any record of it."""


class ReadAgain:
    """What `load()` gives (it raises RegistryUnreadable where the registry's store cannot be read): loaded at once,
    and where the registry could not be read, `fallback()` stands in and the registry is read again `retry_seconds`
    on (and again, while it cannot be), rather than leave a container on the fallback for its life. Calling it gives
    the value; a read again runs on a thread of its own, started by the first call that finds it due, so no request
    waits on a store that may still not answer."""

    def __init__(self, load: Callable[[], T], fallback: Callable[[], T], *, retry_seconds: float | None = None,
                 clock: Callable[[], float] | None = None):
        retry_seconds = REGISTRY_RETRY_SECONDS if retry_seconds is None else retry_seconds
        clock = clock or time.monotonic
        self._load, self._retry, self._clock = load, retry_seconds, clock
        self._lock = threading.Lock()
        self._retry_at: float | None = None
        self.read = True  # whether `value` is what the registry gave, not the fallback
        try:
            self.value = load()
        except RegistryUnreadable as exc:
            self.read = False
            logger.warning("%s; serving without it for now", exc)
            self.value = fallback()
            self._retry_at = clock() + retry_seconds

    def __call__(self) -> Any:
        if self._retry_at is not None and self._clock() >= self._retry_at:
            with self._lock:
                if self._retry_at is not None and self._clock() >= self._retry_at:
                    self._retry_at = None  # one read at a time
                    threading.Thread(target=self._read_again, name="registry-read-again", daemon=True).start()
        return self.value

    def _read_again(self) -> None:
        try:
            self.value, self.read = self._load(), True
        except RegistryUnreadable as exc:
            logger.warning("%s; tried again later", exc)
            self._retry_at = self._clock() + self._retry
        except (LookupError, ValueError):  # what the store now gives cannot be used: reading again won't mend it
            logger.exception("the registry read again found nothing this code can use; the fallback stays")
        except Exception:  # whatever else goes wrong, the fallback goes on serving
            logger.exception("the registry read again failed; tried again later")
            self._retry_at = self._clock() + self._retry


class ReadAgainModel(ReadAgain):
    """A ReadAgain of a model, standing for it: attributes are the current value's (`predict`, `label`, ...)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "value":
            raise AttributeError(name)
        return getattr(self(), name)


def _current(name: str, registry: ModelRegistry | None, build: Callable[[StoredModel], T], instead: str,
             unreadable_raises: bool) -> T | None:
    """`build` of the registry's current version of `name`; None (logged, with what is done `instead`) where there is
    none, or it is not one this code reads, or `build` refuses it, or (unless `unreadable_raises`) the store fails."""
    if registry is None:
        return None
    try:
        stored = registry.fetch(name)
    except LookupError:
        logger.info("no current %s model in the registry; %s", name, instead)
        return None
    except ValueError as exc:  # what it holds is not a model this code reads: looking again will not mend it
        logger.warning("cannot use the registry's %s (%s); %s", name, exc, instead)
        return None
    except Exception as exc:  # the store, now: a broken or unreadable registry must not take serving down
        if unreadable_raises:
            raise RegistryUnreadable(f"cannot read the registry's {name}: {exc}") from exc
        logger.warning("cannot read the registry's %s (%s); %s", name, exc, instead)
        return None
    try:
        return build(stored)
    except Exception as exc:
        logger.warning("cannot use the registry's %s (%s); %s", name, exc, instead)
        return None


class LazyModel:
    """`load_model(name, registry, build=build)`, called on first use rather than at once: for a model that few
    requests need, so that a cold start pays for its registry reads and its inference session only when one does.
    Attributes are the loaded model's."""

    def __init__(self, name: str, registry: ModelRegistry | None, *, build: Callable[[StoredModel], Any]):
        self._load = lambda: load_model(name, registry, build=build)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self) -> Any:
        """The model, loaded now if it has not been."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.model(), attribute)


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid model or file name {name!r}")


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
