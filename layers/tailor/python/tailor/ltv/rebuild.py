"""RebuildLtv: score every shopper with the current LTV model, page by page, resumable across invocations.

A run scores all shoppers as of the moment it started, with one model version. It walks the
shoppers table a page at a time; after each page it moves a checkpoint row (CHECKPOINT_ID in the
checkpoints table) to the next page with a conditional write, so an invocation that runs out of
time, or fails, leaves the run where the next invocation picks it up, and two invocations never
work the same run at once (the second finds the checkpoint moved and stops). A finished run is
followed by a new one once `every_seconds` have passed since it started.

Each shopper's row gets one attribute of its own, LTV_FIELD (expected purchase days and spend over
the model's horizon, the whole purchase days and the spend to quote (see LtvPrediction), the
percentile of the expected spend and the main drivers of it), and the moment it was computed as of,
STAMP_FIELD. The update sets only those, on rows that still hold
shopper state, and never over a later run's values: Ingest's concurrent writes of the same row,
which set only the state's own fields, are left as they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tailor.ltv.features import row_features
from tailor.ltv.scoring import MODEL_NAME, LtvModel
from tailor.models.registry import DEFAULT_DIR, ModelRegistry, StoredModel, default_model
from tailor.shopper import LTV_FIELD, LTV_STAMP_FIELD, ShopperState, predicted_ltv
from tailor.store.port import Conflict, StateStore

__all__ = ["CHECKPOINT_ID", "LTV_FIELD", "STAMP_FIELD", "LtvRebuild", "ltv_entries", "predicted_ltv"]

logger = logging.getLogger(__name__)

CHECKPOINT_ID = "ltv-rebuild"
STAMP_FIELD = LTV_STAMP_FIELD
LEASE = "lease"  # the checkpoint's watermark: "<run as_of>#<pages done>", moved by every page
DRIVERS = 3


@dataclass
class _Run:
    as_of: str
    model_version: str
    cursor: str | None
    pages: int
    scored: int
    skipped: int
    stale: int
    lease: str

    def fields(self, done: bool) -> dict[str, Any]:
        return {"as_of": self.as_of, "model_version": self.model_version, "cursor": self.cursor, "pages": self.pages,
                "scored": self.scored, "skipped": self.skipped, "stale": self.stale, "done": done}


class LtvRebuild:
    def __init__(self, store: StateStore, registry: ModelRegistry, *, clock: Callable[[], float] = time.time,
                 page_size: int = 500, every_seconds: float = 86_400.0, margin_seconds: float = 60.0,
                 writers: int = 16, model_threads: int | None = None, default_dir: Path = DEFAULT_DIR):
        """`margin_seconds`: the time an invocation keeps in hand to finish a page and checkpoint it;
        `writers`: concurrent row updates per page."""
        self.store = store
        self.registry = registry
        self.clock = clock
        self.page_size = page_size
        self.every_seconds = every_seconds
        self.margin_seconds = margin_seconds
        self.writers = writers
        self.model_threads = model_threads
        self.default_dir = default_dir
        self._models: dict[str, LtvModel] = {}

    def run(self, remaining_seconds: Callable[[], float] | None = None) -> dict[str, Any]:
        """Carry the current run on (or start one), a page at a time, until it is done or `remaining_seconds()`
        falls to the margin."""
        started = time.perf_counter()
        checkpoint = self.store.read("checkpoints", [CHECKPOINT_ID]).get(CHECKPOINT_ID)
        now = self.clock()
        if checkpoint is not None and checkpoint.get("done") and now - _epoch(checkpoint["as_of"]) < self.every_seconds:
            return {"status": "up_to_date", "as_of": checkpoint["as_of"], "scored": 0}
        try:
            run, model = self._resume(checkpoint, now)
        except LookupError as missing:
            logger.warning("no LTV model to score with: %s", missing)
            return {"status": "no_model", "scored": 0}
        except Conflict:
            return {"status": "busy", "scored": 0}

        as_of = _epoch(run.as_of)
        scored_now = 0
        status = "paused"
        while True:  # a page at least, so that every invocation moves the run on
            rows, following = self.store.scan("shoppers", limit=self.page_size, start=run.cursor)
            entries, skipped = ltv_entries(model, rows, as_of)
            written = self._write(entries, run.as_of)
            run.cursor = following
            run.pages += 1
            run.scored += written
            run.stale += len(entries) - written
            run.skipped += skipped
            scored_now += written
            lease = f"{run.as_of}#{run.pages:09d}"
            try:
                self.store.write_state("checkpoints", CHECKPOINT_ID, run.fields(following is None), watermark=LEASE,
                                       expected=run.lease, new=lease)
            except Conflict:
                status = "busy"  # another invocation took the run over; it carries on from its own page
                break
            run.lease = lease
            if following is None:
                status = "done"
                break
            if remaining_seconds is not None and remaining_seconds() <= self.margin_seconds:
                break
        return {"status": status, "as_of": run.as_of, "model": f"{MODEL_NAME}:{run.model_version}",
                "scored": scored_now, "run_scored": run.scored, "run_skipped": run.skipped, "run_stale": run.stale,
                "pages": run.pages, "seconds": round(time.perf_counter() - started, 3)}

    def _resume(self, checkpoint: dict[str, Any] | None, now: float) -> tuple[_Run, LtvModel]:
        if checkpoint is not None and not checkpoint.get("done"):
            run = _Run(checkpoint["as_of"], checkpoint["model_version"], checkpoint.get("cursor"),
                       int(checkpoint.get("pages", 0)), int(checkpoint.get("scored", 0)),
                       int(checkpoint.get("skipped", 0)), int(checkpoint.get("stale", 0)), checkpoint[LEASE])
            try:
                return run, self._model(run.model_version)
            except (LookupError, ValueError) as gone:
                # Its model is no longer to be had (a deploy shipped another default, or changed the features it
                # reads): the run starts over with the current model rather than wait for one that will not come.
                logger.warning("LTV run as of %s set aside: its model %s cannot be loaded (%s)", run.as_of,
                               run.model_version, gone)
        version = self.registry.current_version(MODEL_NAME)
        if version is None:
            # A shop with no model of its own yet is scored with the one shipped in the package.
            version = self._default_version()
        model = self._model(version)
        as_of = _iso(now)
        lease = f"{as_of}#{0:09d}"
        run = _Run(as_of, version, None, 0, 0, 0, 0, lease)
        self.store.write_state("checkpoints", CHECKPOINT_ID, run.fields(False), watermark=LEASE,
                               expected=None if checkpoint is None else checkpoint.get(LEASE), new=lease)
        return run, model

    def _model(self, version: str) -> LtvModel:
        if version not in self._models:
            # One version per run, however many invocations it takes; a newer one waits for the next run.
            shipped = self._shipped()
            stored = shipped if shipped is not None and shipped.version == version else \
                self.registry.fetch(MODEL_NAME, version)
            self._models = {version: LtvModel.from_stored(stored, threads=self.model_threads)}
        return self._models[version]

    def _default_version(self) -> str:
        shipped = self._shipped()
        if shipped is None:
            raise LookupError(f"the registry has no current {MODEL_NAME!r} model and none is shipped")
        return shipped.version

    def _shipped(self) -> StoredModel | None:
        if not (self.default_dir / f"{MODEL_NAME}.onnx").exists():
            return None
        return default_model(MODEL_NAME, self.default_dir)

    def _write(self, entries: Sequence[tuple[str, dict[str, Any]]], as_of: str) -> int:
        def write(entry: tuple[str, dict[str, Any]]) -> bool:
            user_id, ltv = entry
            return self.store.annotate("shoppers", user_id, {LTV_FIELD: ltv}, requires=ShopperState.STATE_FIELD,
                                       stamp=STAMP_FIELD, at=as_of)

        if self.writers <= 1 or len(entries) <= 1:
            return sum(map(write, entries))
        with ThreadPoolExecutor(max_workers=self.writers) as pool:
            return sum(pool.map(write, entries))


def ltv_entries(model: LtvModel, rows: Sequence[Mapping[str, Any]], as_of: float) -> tuple[list[tuple[str, dict]], int]:
    """(user_id, LTV attribute) of each row that holds shopper state, and how many rows held none."""
    users, vectors = [], []
    for row in rows:
        vector = row_features(row, as_of)
        if vector is not None:
            users.append(row["user_id"])
            vectors.append(vector)
    if not vectors:
        return [], len(rows)
    features = np.vstack(vectors)
    prediction = model.predict(features)
    percentiles = model.percentile(prediction.spend)
    typical_spend = prediction.typical_spend
    drivers = model.drivers(features, top=DRIVERS)
    entries = [
        (user, {"horizon_weeks": prediction.horizon_weeks,
                "expected_purchases": round(float(prediction.transactions[i]), 4),
                "expected_spend": round(float(prediction.spend[i]), 2),
                "typical_purchases": int(prediction.typical_transactions[i]),
                "typical_spend": round(float(typical_spend[i]), 2),
                "percentile": round(float(percentiles[i]), 1),
                "drivers": [{"group": group, "effect": effect} for group, effect in drivers[i]],
                "model": model.label})
        for i, user in enumerate(users)
    ]
    return entries, len(rows) - len(users)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
