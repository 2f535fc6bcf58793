"""Experiments as defined: a surface, variants with their strategies and traffic shares, an optional holdout, a
layer, a start and an end; and their life (draft -> running -> stopped).

Two designs: an A/B test ("ab") shows each shopper one variant; an interleaving experiment ("interleaving") shows
every shopper in it the team draft of its two variants' rankings (tailor.experiments.interleaving), A being the
first variant, and credits each click by how much higher one ranker put the item than the other.

Checked field by field: ExperimentError names the field at fault, which the API answers with a 4xx.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tailor.events import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from tailor.experiments.feed_ids import INTERLEAVED
from tailor.experiments.strategies import SURFACES

__all__ = ["AB", "DESIGNS", "DRAFT", "INTERLEAVING", "RUNNING", "STATUSES", "STOPPED", "Experiment", "ExperimentError",
           "Variant", "new_experiment"]

DRAFT, RUNNING, STOPPED = "draft", "running", "stopped"
AB, INTERLEAVING = "ab", "interleaving"
DESIGNS = (AB, INTERLEAVING)
STATUSES = (DRAFT, RUNNING, STOPPED)
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
VARIANT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_VARIANTS = 8
MAX_DAYS = 366
MAX_PLANNED_UNITS = 10**9
SHARE_TOLERANCE = 1e-6


class ExperimentError(ValueError):
    """An experiment definition or change that cannot be made; `field` names where, `status` the HTTP answer."""

    def __init__(self, field_name: str, message: str, status: int = 422):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Variant:
    name: str
    strategy: str
    share: float


@dataclass(frozen=True)
class Experiment:
    """An experiment. `holdout`: the share of the layer's shoppers it takes who get the default strategy and are
    not counted; `traffic`: the share of the layer's shoppers it takes at all (the rest are free for other
    experiments of the layer); `slot`: [low, high) of the layer's hash space, claimed when it starts;
    `planned_units`: the exposed units it is planned to reach, at which its reports' confidence sequences are
    tightest (None: the reports' default, stats.DEFAULT_TUNING); `design`: AB or INTERLEAVING (module docstring)."""

    experiment_id: str
    name: str
    surface: str
    variants: tuple[Variant, ...]
    start: str  # ISO 8601, UTC
    end: str
    holdout: float = 0.0
    traffic: float = 1.0
    layer: str = ""
    salt: str = ""
    status: str = DRAFT
    slot: tuple[float, float] | None = None
    created_at: str = ""
    started_at: str | None = None
    stopped_at: str | None = None
    description: str = ""
    planned_units: int | None = None
    design: str = AB

    @property
    def interleaving(self) -> bool:
        return self.design == INTERLEAVING

    @property
    def layer_name(self) -> str:
        """Experiments of one surface and layer never share a shopper; those of different layers are independent."""
        return f"{self.surface}/{self.layer or 'main'}"

    def days(self, through: date | None = None, after: int = 0) -> list[str]:
        """The UTC days from its start to its end and `after` days more (or to `through`, if sooner)."""
        first = _parse_time("start", self.start).date()
        last = self.last_day()
        last += timedelta(days=after)
        if through is not None:
            last = min(last, through)
        return [(first + timedelta(days=i)).isoformat() for i in range(max(0, (last - first).days + 1))]

    def last_day(self) -> date:
        """The UTC day it ends on, or was stopped on."""
        last = _parse_time("end", self.end).date()
        if self.stopped_at:
            last = min(last, _parse_time("stopped_at", self.stopped_at).date())
        return last

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def live(self, now: float) -> bool:
        """Running, and `now` between its start and end."""
        return (self.status == RUNNING and _parse_time("start", self.start).timestamp() <= now
                < _parse_time("end", self.end).timestamp())

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["variants"] = [asdict(v) for v in self.variants]
        row["slot"] = None if self.slot is None else list(self.slot)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Experiment:
        names = {f for f in cls.__dataclass_fields__} - {"variants", "slot"}
        values = {k: _plain(v) for k, v in row.items() if k in names}
        slot = row.get("slot")
        return cls(**values, variants=tuple(Variant(str(v["name"]), str(v["strategy"]), float(v["share"]))
                                            for v in row.get("variants", ())),
                   slot=None if not slot else (float(slot[0]), float(slot[1])))

    def public(self) -> dict[str, Any]:
        """What the API and the CLI show (the salt aside)."""
        shown = self.to_row()
        shown.pop("salt")
        return shown

    def started(self, now: datetime, slot: tuple[float, float]) -> Experiment:
        if self.status != DRAFT:
            raise ExperimentError("status", f"experiment {self.experiment_id!r} is {self.status}, not draft", 409)
        if _parse_time("end", self.end) <= now:
            raise ExperimentError("end", f"experiment {self.experiment_id!r} ended at {self.end}", 409)
        return replace(self, status=RUNNING, slot=slot, started_at=_iso(now))

    def stopped(self, now: datetime) -> Experiment:
        if self.status != RUNNING:
            raise ExperimentError("status", f"experiment {self.experiment_id!r} is {self.status}, not running", 409)
        return replace(self, status=STOPPED, stopped_at=_iso(now))


def new_experiment(body: Mapping[str, Any], *, now: datetime,
                   known_strategies: Mapping[str, Collection[str]] | Collection[str]) -> Experiment:
    """An experiment from a request's body, checked field by field. `known_strategies`: the strategies a variant
    may serve, each with the surfaces it serves where known (a name alone serves every surface)."""
    if not isinstance(body, Mapping):
        raise ExperimentError("body", "must be a JSON object")
    allowed = {"experiment_id", "name", "surface", "variants", "holdout", "traffic", "layer", "start", "end",
               "days", "description", "planned_units", "design"}
    unknown = set(body) - allowed
    if unknown:
        raise ExperimentError(sorted(unknown)[0], "is not an experiment field")
    experiment_id = body.get("experiment_id")
    if experiment_id is None:
        experiment_id = f"exp-{secrets.token_hex(4)}"
    if not isinstance(experiment_id, str) or not ID_PATTERN.match(experiment_id):
        raise ExperimentError("experiment_id", "1 to 48 of a-z, 0-9 and -, starting with a letter or digit")
    name = body.get("name", experiment_id)
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 200:
        raise ExperimentError("name", "text of 1 to 200 characters")
    surface = body.get("surface", "feed")
    if surface not in SURFACES:
        raise ExperimentError("surface", f"one of {', '.join(SURFACES)}")
    design = body.get("design", AB)
    if design not in DESIGNS:
        raise ExperimentError("design", f"one of {', '.join(DESIGNS)}")
    variants = _variants(body.get("variants"), known_strategies, surface)
    if design == INTERLEAVING:
        _interleaved(body["variants"], variants)
    holdout = _share("holdout", body.get("holdout", 0.0), upper_open=True)
    traffic = _share("traffic", body.get("traffic", 1.0))
    if traffic == 0:
        raise ExperimentError("traffic", "must be above 0")
    layer = body.get("layer", "")
    if not isinstance(layer, str) or (layer and not VARIANT_PATTERN.match(layer)):
        raise ExperimentError("layer", "1 to 32 of letters, digits, _ and -")
    # Whole seconds, as kept: the checks below hold for the times the experiment keeps.
    start = (_parse_time("start", body["start"]) if body.get("start") is not None else now).replace(microsecond=0)
    if "end" in body and "days" in body:
        raise ExperimentError("days", "give end or days, not both")
    if body.get("end") is not None:
        end = _parse_time("end", body["end"])
    else:
        days = body.get("days", 14)
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= MAX_DAYS:
            raise ExperimentError("days", f"a number of days in (0, {MAX_DAYS}]")
        end = start + timedelta(days=days)
        if end > LATEST_TIMESTAMP:
            raise ExperimentError("days", f"it would end after {LATEST_TIMESTAMP.year}")
    end = end.replace(microsecond=0)
    if end <= start:
        raise ExperimentError("end", "must be after start")
    if end - start > timedelta(days=MAX_DAYS):
        raise ExperimentError("end", f"an experiment runs at most {MAX_DAYS} days")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        raise ExperimentError("description", "text of at most 2000 characters")
    planned = body.get("planned_units")
    if planned is not None and (isinstance(planned, bool) or not isinstance(planned, int)
                                or not 2 <= planned <= MAX_PLANNED_UNITS):
        raise ExperimentError("planned_units", f"a whole number of units from 2 to {MAX_PLANNED_UNITS:,}")
    return Experiment(experiment_id, name.strip(), surface, variants, _iso(start), _iso(end), holdout, traffic,
                      layer, secrets.token_hex(8), DRAFT, None, _iso(now), description=description,
                      planned_units=planned, design=design)


def _variants(value: Any, known: Mapping[str, Collection[str]] | Collection[str], surface: str
              ) -> tuple[Variant, ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_VARIANTS:
        raise ExperimentError("variants", f"a list of 2 to {MAX_VARIANTS} variants")
    out = []
    for i, entry in enumerate(value):
        where = f"variants[{i}]"
        if not isinstance(entry, Mapping):
            raise ExperimentError(where, "an object with name, strategy and share")
        extra = set(entry) - {"name", "strategy", "share"}
        if extra:
            raise ExperimentError(f"{where}.{sorted(extra)[0]}", "is not a variant field")
        name = entry.get("name")
        if not isinstance(name, str) or not VARIANT_PATTERN.match(name):
            raise ExperimentError(f"{where}.name", "1 to 32 of letters, digits, _ and -")
        if any(v.name == name for v in out):
            raise ExperimentError(f"{where}.name", f"{name!r} is named twice")
        strategy = entry.get("strategy")
        if not isinstance(strategy, str) or strategy not in known:
            raise ExperimentError(f"{where}.strategy", f"unknown strategy {strategy!r}; one of {', '.join(sorted(known))}")
        serves = known[strategy] if isinstance(known, Mapping) else SURFACES
        if surface not in serves:
            # Served on another surface, it would rank as the default does: the variant would test nothing.
            raise ExperimentError(f"{where}.strategy", f"{strategy!r} serves {', '.join(serves)}, not {surface}")
        share = _share(f"{where}.share", entry.get("share", 1.0 / len(value)))
        if share == 0:
            raise ExperimentError(f"{where}.share", "must be above 0")
        out.append(Variant(name, strategy, share))
    total = sum(v.share for v in out)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ExperimentError("variants", f"the shares add up to {total:g}, not 1")
    return tuple(out)


def _interleaved(given: list, variants: tuple[Variant, ...]) -> None:
    """An interleaving experiment's variants: two rankers, each in every shopper's list (so no shares)."""
    if len(variants) != 2:
        raise ExperimentError("variants", "an interleaving experiment compares exactly 2 variants")
    for i, (entry, variant) in enumerate(zip(given, variants)):
        if "share" in entry and abs(variant.share - 0.5) > SHARE_TOLERANCE:
            raise ExperimentError(f"variants[{i}].share", "an interleaving experiment shows both variants to every "
                                                          "shopper: leave shares out")
        if variant.name == INTERLEAVED:
            raise ExperimentError(f"variants[{i}].name", f"{INTERLEAVED!r} names an interleaving experiment's "
                                                         "statistics; choose another")


def _share(where: str, value: Any, *, upper_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ExperimentError(where, "a number between 0 and 1")
    if not 0 <= value <= 1 or (upper_open and value >= 1):
        raise ExperimentError(where, "a number between 0 and 1" + (" (below 1)" if upper_open else ""))
    return float(value)


def _parse_time(where: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        if not isinstance(value, str):
            raise ExperimentError(where, "an ISO 8601 time, such as 2026-12-01T00:00:00Z")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ExperimentError(where, f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not EARLIEST_TIMESTAMP <= parsed <= LATEST_TIMESTAMP:
        raise ExperimentError(where, f"between {EARLIEST_TIMESTAMP.year} and {LATEST_TIMESTAMP.year}")
    return parsed.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals as the ints and floats they hold."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
