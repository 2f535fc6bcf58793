"""The event archive Ingest writes to S3: one gzipped JSON-lines object per shard, day and batch, events as sent;
and the index of where one shopper's events are in it, which their shopper row keeps for erasure.

The index is two short lists. `periods`: the UTC days with archived events of the shopper, as ISO dates, sorted.
Beyond ARCHIVE_PERIODS entries, days merge into their month ("2019-03"), months into their year ("2019"), years into
decades ("201") and so on, choosing each time the merge that widens the index least: each entry is a prefix of the
dates it stands for, so it is one listing of the archive, and the list stays within ARCHIVE_PERIODS entries however
long the shopper's history. `shards`: the stream shards their events came on (their partition key keeps them on one
shard until the stream reshards); ANY_SHARD when not known, or when there were more than ARCHIVE_SHARDS.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from tailor.store.port import BlobStore

__all__ = ["ANY_SHARD", "ARCHIVE_PERIODS", "ARCHIVE_PREFIX", "ARCHIVE_SHARDS", "archive_day", "archive_key", "archived_events",
           "day_prefix", "indexed_objects", "pack_lines", "periods_between", "unpack_lines", "with_period", "with_shard"]

ARCHIVE_PREFIX = "archive/"
# About 1.2 KB of a shopper row (about 8 KB with a few hundred events): a shopper active on no more than this many
# days is indexed to the day.
ARCHIVE_PERIODS = 100
ARCHIVE_SHARDS = 8
READ_AHEAD = 64  # archive objects read ahead of the events taken from them
MAX_LISTED_DAYS = 3660  # a window longer than this lists the whole archive once rather than day by day
ANY_SHARD = "*"
_WIDTHS = (7, 4, 3, 2, 1)
_DAYS = {10: 1.0, 7: 30.44, 4: 365.25, 3: 3652.5, 2: 36525.0, 1: 365250.0}  # days an entry of each width covers
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()  # month, year, decade, century, millennium: the coarser periods, in the order used


def archive_day(epoch: float) -> str:
    """The day (UTC, ISO) under which Ingest archives an event of that time (epoch seconds)."""
    return _iso_day(int(epoch // 86400))


def archive_key(day: str, shard: str, first_sequence: str) -> str:
    """Where a batch's events of `day` (ISO date) go: named after the batch's first record, so a replay of the
    batch rewrites the same object."""
    return f"{day_prefix(day)}shard={shard}/{first_sequence}.jsonl.gz"


def day_prefix(day: str) -> str:
    return f"{ARCHIVE_PREFIX}date={day}/"


def archived_events(blobs: BlobStore, *, since: str | None = None, until: str | None = None,
                    workers: int = 8) -> Iterator[dict]:
    """The archived events of the days from `since` to `until` (ISO dates, inclusive; open where None), object by
    object in key order. A window with both ends lists only its days; `workers` objects are read at once (within
    the 10 connections an SDK client keeps by default)."""
    keys = (key for key in _archive_keys(blobs, since, until) if key.endswith(".jsonl.gz"))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while chunk := list(itertools.islice(keys, READ_AHEAD)):
            for body in pool.map(blobs.get, chunk):
                for line in unpack_lines(body):
                    if line.strip():
                        yield json.loads(line)


def pack_lines(lines: list[str]) -> bytes:
    """An archive object's body: the lines (each ending in a newline) gzipped, the same bytes for the same lines."""
    return gzip.compress("".join(lines).encode("utf-8"), mtime=0)


def unpack_lines(body: bytes) -> list[str]:
    return gzip.decompress(body).decode("utf-8").splitlines(keepends=True)


def with_period(periods: Sequence[str], period: str, limit: int = ARCHIVE_PERIODS) -> list[str]:
    """The index `periods` covering `period` too (an ISO date, or an entry of another index): as it was if an entry
    already covers it; else with it in place of the entries it covers and, while that makes more than `limit` entries,
    entries merged into a coarser one (see _merged)."""
    if periods and (periods[-1] == period or any(period[:w] in periods for w in (10, *_WIDTHS) if w <= len(period))):
        return list(periods)
    merged = sorted([p for p in periods if not p.startswith(period)] + [period])
    while len(merged) > limit:
        merged = _merged(merged)
    return merged


def with_shard(shards: Sequence[str], shard: str | None) -> list[str]:
    """The shards of an index with `shard` added; ANY_SHARD alone once the shard is unknown (None) or there are more
    than ARCHIVE_SHARDS."""
    if shard is None or ANY_SHARD in shards or (shard not in shards and len(shards) >= ARCHIVE_SHARDS):
        return [ANY_SHARD]
    return list(shards) if shard in shards else sorted([*shards, shard])


def periods_between(first: float, last: float, limit: int = ARCHIVE_PERIODS) -> list[str]:
    """An index covering every day from epoch second `first` to `last`, in at most `limit` entries of one width: for
    shopper rows folded before they kept an index."""
    a, b = archive_day(first), archive_day(last)
    days = date.fromisoformat(b).toordinal() - date.fromisoformat(a).toordinal() + 1
    if days <= limit:
        return [date.fromordinal(date.fromisoformat(a).toordinal() + n).isoformat() for n in range(days)]
    months = [int(a[:4]) * 12 + int(a[5:7]) - 1, int(b[:4]) * 12 + int(b[5:7]) - 1]
    if months[1] - months[0] < limit:
        return [f"{n // 12:04d}-{n % 12 + 1:02d}" for n in range(months[0], months[1] + 1)]
    for width in _WIDTHS[1:-1]:
        low, high = int(a[:width]), int(b[:width])
        if high - low < limit:
            return [f"{n:0{width}d}" for n in range(low, high + 1)]
    return [str(n) for n in range(int(a[0]), int(b[0]) + 1)]


def indexed_objects(blobs: BlobStore, period: str, shards: Sequence[str]) -> list[str]:
    """The archive objects of `period` (an entry of an index) that Ingest wrote from `shards` (any if they hold
    ANY_SHARD)."""
    narrow = bool(shards) and ANY_SHARD not in shards
    if len(period) == 10 and narrow:
        keys = [key for shard in sorted(shards) for key in blobs.list(f"{day_prefix(period)}shard={shard}/")]
    else:
        keys = blobs.list(f"{ARCHIVE_PREFIX}date={period}")
        if narrow:
            keys = [key for key in keys if _shard_of(key) in shards]
    return [key for key in keys if key.endswith(".jsonl.gz")]


def _merged(periods: list[str]) -> list[str]:
    """`periods` with the entries of one month, year, decade, ... merged into it: the merge that makes the archive
    listed on erasure the fewest days longer per entry it saves (a year whose every month is an entry costs nothing),
    the oldest of equals."""
    best: tuple[tuple[float, str], str, set[str]] | None = None
    for width in _WIDTHS:
        groups: dict[str, list[str]] = {}
        for period in periods:
            if len(period) > width:
                groups.setdefault(period[:width], []).append(period)
        for group, members in groups.items():
            if len(members) > 1:
                cost = (_DAYS[width] - sum(_DAYS[len(m)] for m in members)) / (len(members) - 1)
                if best is None or (cost, group) < best[0]:
                    best = ((cost, group), group, set(members))
    assert best is not None, "more entries than one per millennium"
    _, group, members = best
    return sorted([p for p in periods if p not in members] + [group])


def _archive_keys(blobs: BlobStore, since: str | None, until: str | None) -> Iterator[str]:
    """The archive's keys of the days from `since` to `until`: a listing per day of a window (the archive holds
    every day the shop has run), else one of the whole archive, filtered."""
    if since and until and since <= until:
        first, last = date.fromisoformat(since[:10]), date.fromisoformat(until[:10])
        if (last - first).days <= MAX_LISTED_DAYS:
            for ordinal in range(first.toordinal(), last.toordinal() + 1):
                yield from blobs.list(day_prefix(date.fromordinal(ordinal).isoformat()))
            return
    for key in blobs.list(f"{ARCHIVE_PREFIX}date="):
        day = key[len(f"{ARCHIVE_PREFIX}date="):].split("/", 1)[0]
        if not ((since and day < since) or (until and day > until)):
            yield key


@functools.lru_cache(maxsize=4096)
def _iso_day(days_since_epoch: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + days_since_epoch).isoformat()


def _shard_of(key: str) -> str:
    """The shard in an archive key: archive/date=<day>/shard=<shard>/<first sequence>.jsonl.gz."""
    parts = key[len(ARCHIVE_PREFIX):].split("/")
    return parts[1][len("shard="):] if len(parts) > 2 and parts[1].startswith("shard=") else ""
