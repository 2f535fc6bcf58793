"""Where experiments live: their definitions (experiments table), their daily statistics (outcomes table, written by
Ingest's merge), what they served (exposures table) and their reports (reports/<id>.json in the data bucket).

Definitions change by conditional writes on their `version`, so two starts of one experiment cannot both claim a
slot of its layer; a report reads only the statistics rows of the experiment's days, variants and shards, however many
shoppers it exposed, and of the `revenue_days` after its end, when the realized revenue of the shoppers it exposed
still grows (tailor.experiments.attribution; Ingest must count it over as many days).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tailor.experiments.assignment import Assignment, claim_slot
from tailor.experiments.attribution import DEFAULT_REVENUE_DAYS, DEFAULT_SHARDS, OUTCOMES_TABLE, outcome_key
from tailor.experiments.definitions import DRAFT, RUNNING, Experiment, ExperimentError
from tailor.experiments.feed_ids import INTERLEAVED
from tailor.experiments.report import build_report
from tailor.experiments.statistics import SufficientStatistics
from tailor.store.port import BlobStore, Conflict, StateStore, every_row

__all__ = ["EXPOSURE_TTL_SECONDS", "REPORT_PREFIX", "ExperimentStore", "LiveExperiments", "report_key"]

logger = logging.getLogger(__name__)

TABLE = "experiments"
EXPOSURES = "exposures"
VERSION = "version"
REPORT_PREFIX = "reports/experiments/"
EXPOSURE_TTL_SECONDS = 30 * 86400
LIVE_MAX_AGE_SECONDS = 30.0
RETRY_SECONDS = 5.0  # after a failed read of the running experiments
REPORT_AFTER_SECONDS = 2 * 86400  # an experiment's report is written this long past its realized-revenue window


def report_key(experiment_id: str) -> str:
    return f"{REPORT_PREFIX}{experiment_id}.json"


class ExperimentStore:
    def __init__(self, store: StateStore, blobs: BlobStore | None = None, *, shards: int = DEFAULT_SHARDS,
                 revenue_days: int = DEFAULT_REVENUE_DAYS):
        if isinstance(revenue_days, bool) or not isinstance(revenue_days, int) or revenue_days < 0:
            raise ValueError("revenue_days must be a whole number of days, 0 or more")
        self.store = store
        self.blobs = blobs
        self.shards = shards
        self.revenue_days = revenue_days

    # -- definitions ----------------------------------------------------------------------------------

    def create(self, experiment: Experiment) -> Experiment:
        try:
            self.store.write_state(TABLE, experiment.experiment_id, experiment.to_row(), watermark=VERSION,
                                   expected=None, new=_version(1))
        except Conflict:
            raise ExperimentError("experiment_id", f"experiment {experiment.experiment_id!r} exists already",
                                  409) from None
        return experiment

    def get(self, experiment_id: str) -> Experiment | None:
        row = self.store.read(TABLE, [experiment_id]).get(experiment_id)
        return None if row is None else Experiment.from_row(row)

    def list(self) -> list[Experiment]:
        found = [Experiment.from_row(row) for row in every_row(self.store, TABLE)]
        return sorted(found, key=lambda e: (e.created_at, e.experiment_id), reverse=True)

    def start(self, experiment_id: str, now: datetime) -> Experiment:
        row = self._row(experiment_id)
        experiment = Experiment.from_row(row)
        running = [e for e in self.list() if e.status == RUNNING]
        started = experiment.started(now, claim_slot(experiment, running))
        return self._change(started, row)

    def stop(self, experiment_id: str, now: datetime) -> Experiment:
        row = self._row(experiment_id)
        return self._change(Experiment.from_row(row).stopped(now), row)

    # -- statistics and reports -----------------------------------------------------------------------

    def daily(self, experiment: Experiment, through: date | None = None) -> list[tuple[str, str, SufficientStatistics]]:
        """(variant, day, statistics) of every statistics row of the experiment, through its realized-revenue window,
        up to `through` (default today)."""
        through = through or datetime.now(UTC).date()
        variants = [INTERLEAVED] if experiment.interleaving else [variant.name for variant in experiment.variants]
        keys = [outcome_key(experiment.experiment_id, day, variant, shard)
                for day in experiment.days(through, self.revenue_days) for variant in variants
                for shard in range(self.shards)]
        rows = self.store.read(OUTCOMES_TABLE, keys) if keys else {}
        out = []
        for key, row in rows.items():
            _, day, variant, _ = key.split("#")
            out.append((variant, day, SufficientStatistics.from_item(row)))
        return sorted(out, key=lambda r: (r[1], r[0]))

    def build_report(self, experiment: Experiment, through: date | None = None) -> dict[str, Any]:
        """The experiment's report (tailor.experiments.report) from its statistics rows alone."""
        report = build_report(experiment.public(), self.daily(experiment, through))
        report["surface"], report["holdout"] = experiment.surface, experiment.holdout
        report["strategies"] = {v.name: v.strategy for v in experiment.variants}
        until = experiment.last_day() + timedelta(days=self.revenue_days)
        report["realized_revenue"] = {"days": self.revenue_days, "until": until.isoformat(),
                                      "complete": (through or datetime.now(UTC).date()) > until}
        report["as_of"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return report

    def write_reports(self, now: datetime) -> dict[str, Any]:
        """The report of every running experiment, and of those stopped or ended within `revenue_days` and
        REPORT_AFTER_SECONDS (their realized revenue grows, their last statistics arrive with the merge), each
        written to reports/experiments/<id>.json. A report that fails is logged and the others are written."""
        written, failed = [], []
        for experiment in self.list():
            if experiment.status == DRAFT or not _recent(experiment, now, self.revenue_days):
                continue
            try:
                self.write_report(experiment.experiment_id, self.build_report(experiment, now.date()))
                written.append(experiment.experiment_id)
            except Exception:
                logger.exception("experiment report not written", extra={"experiment_id": experiment.experiment_id})
                failed.append(experiment.experiment_id)
        return {"written": written, "failed": failed}

    def write_report(self, experiment_id: str, report: dict[str, Any]) -> None:
        self._blobs().put(report_key(experiment_id), json.dumps(report, separators=(",", ":")).encode(),
                          "application/json")

    def report(self, experiment_id: str) -> dict[str, Any] | None:
        """The report last written, or None."""
        try:
            return json.loads(self._blobs().get(report_key(experiment_id)))
        except (KeyError, LookupError, FileNotFoundError):
            return None
        except Exception as error:  # S3's NoSuchKey comes as a botocore ClientError
            if "NoSuchKey" in str(error) or "Not Found" in str(error) or "404" in str(error):
                return None
            raise

    # -- exposures ------------------------------------------------------------------------------------

    def log_exposure(self, feed_id: str, assignment: Assignment, *, strategy: str, items: Sequence[str],
                     probabilities: Sequence[float], served_at: float, teams: Sequence[str] | None = None,
                     ranker: str | None = None) -> None:
        """What a list served in an experiment held: items in order (position = index), each slot's probability of
        being shown so under the variant's policy, who saw it, in an interleaved list each slot's ranker, and the
        ranker version that scored it (a strategy's own, or the current one where its own could not be loaded)."""
        extra = ({} if teams is None else {"teams": list(teams)}) | ({} if ranker is None else {"ranker": ranker})
        self.store.replace(EXPOSURES, feed_id, extra | {
            "experiment_id": assignment.experiment.experiment_id, "variant": assignment.variant_name,
            "strategy": strategy, "surface": assignment.experiment.surface, "unit": assignment.unit,
            "unit_kind": assignment.unit_kind, "items": list(items), "probabilities": list(probabilities),
            "served_at": round(served_at, 3), "expires_at": int(served_at) + EXPOSURE_TTL_SECONDS})

    # -- helpers --------------------------------------------------------------------------------------

    def _row(self, experiment_id: str) -> dict[str, Any]:
        row = self.store.read(TABLE, [experiment_id]).get(experiment_id)
        if row is None:
            raise ExperimentError("experiment_id", f"no experiment {experiment_id!r}", 404)
        return row

    def _change(self, changed: Experiment, row: dict[str, Any]) -> Experiment:
        version = row.get(VERSION)
        try:
            self.store.write_state(TABLE, changed.experiment_id, changed.to_row(), watermark=VERSION,
                                   expected=version, new=_version(int(version or 0) + 1))
        except Conflict:
            raise ExperimentError("experiment_id", f"experiment {changed.experiment_id!r} changed meanwhile; "
                                                   "try again", 409) from None
        return changed

    def _blobs(self) -> BlobStore:
        if self.blobs is None:
            raise RuntimeError("this ExperimentStore has no blob store for reports")
        return self.blobs


class LiveExperiments:
    """The running experiments, read at most every `max_age` seconds (a request pays a scan of the few definitions
    once in that time; a failed read keeps the last ones); `refresh()` after a change made here."""

    def __init__(self, experiments: ExperimentStore | Callable[[], Iterable[Experiment]], *,
                 max_age: float = LIVE_MAX_AGE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._list = experiments.list if isinstance(experiments, ExperimentStore) else experiments
        self.max_age = max_age
        self._clock = clock
        self._running: list[Experiment] = []
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, now: float) -> list[Experiment]:
        """The experiments live at `now` (epoch seconds)."""
        checked = self._clock()
        if self._read_at is None or checked - self._read_at >= self.max_age:
            with self._lock:
                if self._read_at is None or checked - self._read_at >= self.max_age:
                    try:
                        self._running = [e for e in self._list() if e.status == RUNNING]
                        self._read_at = checked
                    except Exception:
                        # A feed is served without a fresh list rather than not at all: the last one stays, and a
                        # request a few seconds on reads again.
                        logger.exception("running experiments not read; keeping the last ones")
                        self._read_at = checked - self.max_age + RETRY_SECONDS
        return [e for e in self._running if e.live(now)]

    def refresh(self) -> None:
        self._read_at = None


def _recent(experiment: Experiment, now: datetime, revenue_days: int) -> bool:
    """Running, or stopped or ended less than `revenue_days` and REPORT_AFTER_SECONDS ago."""
    ended = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (experiment.end, experiment.stopped_at) if t]
    return (now - min(ended)).total_seconds() < revenue_days * 86400 + REPORT_AFTER_SECONDS


def _version(number: int) -> str:
    return f"{number:09d}"

