"""Attribution: what an event that echoes an experiment's feed id (or a purchase soon after a click on one) adds to
its variant's daily sufficient statistics (tailor.experiments.statistics), and to the unit's running totals.

Ingest's fold calls `attribute` for each new event of a shopper who echoes a feed id or has been exposed before: the
unit's totals live in the shopper's row (`experiments`: key -> totals), so they are read and written with it, under
its watermark, and the statistics rows get `increments(before, after)` as a counter contribution, exactly once like
every counter (tailor.ingest.service). Per unit:

* the first event that echoes one of the experiment's feed ids exposes it (n + 1, with its revenue so far as the
  pre-exposure covariate and its predicted lifetime value as of then); it stays in that variant;
* an impression that echoes it adds an impression, a click a click (and starts the attribution window), a purchase
  an order and its revenue; a cart or any other event that echoes it only exposes;
* in an interleaved list, a click at a position adds what the feed id says a click there earns to the unit's credit
  (the slot's centred rank credit, > 0 for ranker A, tailor.experiments.interleaving.live_credits; summed over the
  unit's clicks, what shopper_test tests), once per slot of a list as the evaluation counts a query's slot: the
  entry keeps which slots of the list it last credited, so a click again on one of them earns nothing more; the unit
  counts under INTERLEAVED;
* a purchase that echoes no feed id is an order of every experiment the unit clicked in within `window` seconds;
* every purchase (echoing a feed id or not, attributed or not) adds its value to the realized revenue of each unit
  first exposed less than `revenue_window` seconds before it: the unit's revenue over that window after its
  exposure, which goes on after the experiment ends (the report reads its rows for as long). A unit entry written
  before the exposure time was kept has none.

A unit's entry is forgotten once nothing can count for it any more (`retention` after its first exposure: an
experiment runs at most MAX_DAYS from a start before it, and its report reads rows until `revenue_window` after its
end), so that a shopper row and the work of each of its purchases do not grow with every experiment the shop has run.

The statistics row of (experiment, day, variant) is split in `shards` rows by the unit's hash, so that no row takes
every attributed event of a busy experiment; a report adds them up (tailor.experiments.storage).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from tailor.contribution import Contribution
from tailor.events import Event
from tailor.experiments.definitions import MAX_DAYS
from tailor.experiments.feed_ids import parse_feed_id
from tailor.experiments.statistics import increment_fields, unit_values

__all__ = ["OUTCOMES_TABLE", "Attribution", "outcome_key"]

OUTCOMES_TABLE = "outcomes"
DEFAULT_WINDOW_SECONDS = 24 * 3600
DEFAULT_REVENUE_DAYS = 28
DEFAULT_SHARDS = 4
MAX_SESSION_UNITS = 50  # anonymous units (sessions) kept per shopper row: the last active

# A unit's entry in the shopper row: [variant, impressions, clicks, orders, revenue, predicted_ltv, pre_revenue,
# last attributed click (epoch seconds, or None), first exposure (epoch seconds), realized revenue, credit,
# the interleaved list last credited (CRC-32 of its feed id, or None), the slots of it credited (a bit per slot)].
(_VARIANT, _IMPRESSIONS, _CLICKS, _ORDERS, _REVENUE, _LTV, _PRE, _CLICKED, _EXPOSED, _REALIZED, _CREDIT,
 _CREDITED_LIST, _CREDITED_SLOTS) = range(13)


def outcome_key(experiment_id: str, day: str, variant: str, shard: int) -> str:
    """The statistics row of a variant's day, one of its shards."""
    return f"{experiment_id}#{day}#{variant}#{shard}"


@dataclass(frozen=True)
class Attribution:
    window: float = DEFAULT_WINDOW_SECONDS  # seconds after an attributed click in which a purchase is its order
    shards: int = DEFAULT_SHARDS
    revenue_window: float = DEFAULT_REVENUE_DAYS * 86400  # seconds after a first exposure its realized revenue counts

    @property
    def retention(self) -> float:
        """Seconds after a unit's first exposure beyond which no event counts for it: its experiment ended (it ran
        at most MAX_DAYS from its start), and so did the window after the end that its report reads."""
        return MAX_DAYS * 86400.0 + self.revenue_window + self.window

    def wants(self, event: Event, units: Mapping[str, Any] | None) -> bool:
        """Whether `event` can change a unit's totals: it echoes a feed id, or it is a purchase of an exposed unit."""
        return vars(event).get("feed_id") is not None or (event.event_type == "purchase" and bool(units))

    def attribute(self, event: Event, units: Mapping[str, list] | None, *, revenue_so_far: float,
                  predicted_ltv: float) -> tuple[dict[str, list], list[Contribution]]:
        """The shopper's unit entries after `event` and the statistics contributions it makes (pure)."""
        kind = event.event_type
        epoch = event.epoch  # worked out from the event's timestamp at each read
        units = _counting(units or {}, epoch - self.retention)
        changed: dict[str, tuple[list | None, list]] = {}
        values = vars(event)
        echoed = parse_feed_id(values.get("feed_id"))
        echoed_key = None
        if echoed is not None:
            session_unit = echoed.unit_kind == "s"
            echoed_key = f"{echoed.experiment_id}/{event.session_id}" if session_unit else echoed.experiment_id
            before = units.get(echoed_key)
            kept = _entry(before) if before is not None else None
            after = list(kept) if kept is not None else [echoed.variant, 0, 0, 0, 0.0, round(float(predicted_ltv), 6),
                                                         round(float(revenue_so_far), 6), None, epoch, 0.0, 0, None, 0]
            if kind == "impression":
                after[_IMPRESSIONS] += 1
            elif kind == "click":
                after[_CLICKS] += 1
                after[_CLICKED] = epoch
                position = values.get("position")
                if echoed.credits is not None and position is not None and position < len(echoed.credits):
                    _credit(after, values["feed_id"], position, echoed.credits[position])
            elif kind == "purchase":
                _order(after, event)
            if after != kept:
                changed[echoed_key] = (before, after)
                units[echoed_key] = after
            if before is None and session_unit:
                _keep_recent_sessions(units, echoed_key)
        if kind == "purchase":
            for key, entry in list(units.items()):
                clicked = entry[_CLICKED]
                if key == echoed_key or clicked is None or not 0 <= epoch - clicked <= self.window:
                    continue
                after = _entry(entry)
                _order(after, event)
                changed[key] = (entry, after)
                units[key] = after
            for key, entry in list(units.items()):
                exposed = _exposed(entry)
                if exposed is None or not 0 <= epoch - exposed < self.revenue_window:
                    continue
                entry = _entry(entry)
                entry[_REALIZED] = round(entry[_REALIZED] + event.price * event.quantity, 6)
                changed[key] = (changed[key][0] if key in changed else units[key], entry)
                units[key] = entry
        if not changed:
            return units, []
        day = _day(int(epoch // 86400))
        out = []
        for key, (before, after) in changed.items():
            experiment_id, _, session = key.partition("/")
            unit = session or event.user_id
            shard = zlib.crc32(unit.encode()) % self.shards
            fields = increment_fields(None if before is None else _values(before), _values(after))
            out.append(Contribution(OUTCOMES_TABLE, outcome_key(experiment_id, day, after[_VARIANT], shard), fields,
                                    {"experiment_id": experiment_id, "day": day, "variant": after[_VARIANT]}))
        return units, out


@lru_cache(maxsize=64)
def _day(days_since_epoch: int) -> str:
    """The UTC date of an epoch day, as the statistics rows name it (a batch's events fall on a day or two)."""
    return (date(1970, 1, 1) + timedelta(days=days_since_epoch)).isoformat()


def _order(entry: list, event: Event) -> None:
    entry[_ORDERS] += 1
    entry[_REVENUE] = round(entry[_REVENUE] + event.price * event.quantity, 6)


def _credit(entry: list, feed_id: str, position: int, credit: float) -> None:
    """Add a click's credit unless the unit's clicks already earned that slot of that list."""
    listed = zlib.crc32(feed_id.encode())
    if entry[_CREDITED_LIST] != listed:
        entry[_CREDITED_LIST], entry[_CREDITED_SLOTS] = listed, 0
    slot = 1 << position  # position < CREDIT_SLOTS: a bit per slot fits a DynamoDB number
    if not entry[_CREDITED_SLOTS] & slot:
        entry[_CREDITED_SLOTS] |= slot
        entry[_CREDIT] += credit


def _entry(entry: list) -> list:
    """A copy of a unit's entry; one kept before exposure times were (8 fields) gets none and no realized revenue,
    one kept before credits were (10 fields) no credit, one kept before credited slots were (11 fields) none."""
    copy = list(entry)
    if len(copy) == _EXPOSED:
        copy += [None, 0.0]
    if len(copy) == _CREDIT:
        copy.append(0)
    if len(copy) == _CREDITED_LIST:
        copy += [None, 0]
    return copy


def _values(entry: list) -> tuple[float, ...]:
    """The unit's quantities (tailor.experiments.statistics.unit_values) from its entry, whose numbers the fold made
    from validated events or read back from the row it wrote."""
    if len(entry) <= _CREDIT:  # kept before realized revenue or credits were (_entry)
        entry = _entry(entry)
    return unit_values(entry[_IMPRESSIONS], entry[_CLICKS], entry[_ORDERS], entry[_REVENUE], entry[_LTV], entry[_PRE],
                       entry[_REALIZED], entry[_CREDIT])


def _counting(units: Mapping[str, list], exposed_after: float) -> dict[str, list]:
    """The unit entries something can still count for: first exposed after `exposed_after` (epoch seconds), or
    kept before exposure times were."""
    return {key: entry for key, entry in units.items()
            if (exposed := _exposed(entry)) is None or exposed > exposed_after}


def _keep_recent_sessions(units: dict[str, list], added: str) -> None:
    """At most MAX_SESSION_UNITS session units: `added`, just exposed, and those last active (exposed or clicked)
    most recently. By their times, not the map's order, which a row read back from the store need not keep; never
    `added` itself, which a late event would otherwise expose again at its every event."""
    sessions = [key for key in units if "/" in key and key != added]
    if len(sessions) < MAX_SESSION_UNITS:
        return
    sessions.sort(key=lambda key: (_last_active(units[key]), key))
    for key in sessions[:len(sessions) - (MAX_SESSION_UNITS - 1)]:
        del units[key]


def _last_active(entry: list) -> float:
    return max(_exposed(entry) or 0.0, entry[_CLICKED] or 0.0)


def _exposed(entry: list) -> float | None:
    """A unit's first exposure (epoch seconds); None for an entry kept before exposure times were."""
    return entry[_EXPOSED] if len(entry) > _EXPOSED else None
