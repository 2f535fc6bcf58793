"""The event archive Ingest writes to S3: one gzipped JSON-lines object per shard, day and batch, events as sent;
the compaction that merges a shard's day of such objects into a few parts; and the index of where one shopper's
events are in it, which their shopper row keeps for erasure.

Ingest names each object after the sequence number of its first record ("<sequence>.jsonl.gz"), and a busy shard
writes one a second: readers of weeks of the archive would list and read millions. `compact_archive` (the
CompactArchive function, hourly) merges a shard-day's objects older than COMPACT_AFTER_SECONDS, in sequence order,
into parts named after the first and last sequence they hold ("c-<first>-<last>.jsonl.gz", the objects' gzip members
one after another), then deletes the objects. A part covers every object of its shard-day whose sequence is in its
range: once it is there, readers take it in place of those objects (`archived_events`). It is written as a pending
part ("p-..."), which readers pass over; once every pending part of the shard-day is written, the objects' tags are
looked at again, and a part whose objects are as they were read is committed by a copy that fails if the pending part
changed since. So the archive reads the same before, during and after a compaction, and a run that stops anywhere
leaves it so (the next run deletes what it left pending, and the objects its parts cover).

Objects that old are never written again by Ingest, which rewrites one only when the stream delivers its batch again,
within its few retries. An erasure may rewrite one while it is merged: the compaction then finds its tag changed and
leaves the objects for its next run. An erasure that rewrites an object after that look finds the pending part when
it lists the shard-day again (tailor.erasure), and rewrites it before it is committed, or the committed part after.

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
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date

from tailor.store.port import BlobInfo, BlobStore

__all__ = ["ANY_SHARD", "ARCHIVE_PERIODS", "ARCHIVE_PREFIX", "ARCHIVE_SHARDS", "COMPACT_AFTER_SECONDS", "Compaction",
           "archive_day", "archive_key", "archived_events", "compact_archive", "day_prefix", "indexed_objects",
           "pack_lines", "part_key", "periods_between", "unpack_lines", "with_period", "with_shard"]

ARCHIVE_PREFIX = "archive/"
# About 1.2 KB of a shopper row (about 8 KB with a few hundred events): a shopper active on no more than this many
# days is indexed to the day.
ARCHIVE_PERIODS = 100
ARCHIVE_SHARDS = 8
READ_AHEAD = 64  # archive objects read ahead of the events taken from them
MAX_LISTED_DAYS = 3660  # a window longer than this lists the whole archive once rather than day by day
ANY_SHARD = "*"
# Compaction: objects this old are merged (hours past Ingest's last possible rewrite of one: 5 retries of 120 s);
# a part holds up to PART_BYTES of them (compressed); a run stops this long before its deadline.
COMPACT_AFTER_SECONDS = 6 * 3600
PART_BYTES = 64 * 2**20
PART_MARK = "c-"
PENDING_MARK = "p-"  # a part written, not yet committed: readers take the objects it merges, not it
STOP_BEFORE_DEADLINE_SECONDS = 60.0
_WIDTHS = (7, 4, 3, 2, 1)
_DAYS = {10: 1.0, 7: 30.44, 4: 365.25, 3: 3652.5, 2: 36525.0, 1: 365250.0}  # days an entry of each width covers
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()  # month, year, decade, century, millennium: the coarser periods, in the order used

logger = logging.getLogger(__name__)


def archive_day(epoch: float) -> str:
    """The day (UTC, ISO) under which Ingest archives an event of that time (epoch seconds)."""
    return _iso_day(int(epoch // 86400))


def archive_key(day: str, shard: str, first_sequence: str) -> str:
    """Where a batch's events of `day` (ISO date) go: named after the batch's first record, so a replay of the
    batch rewrites the same object."""
    return f"{day_prefix(day)}shard={shard}/{first_sequence}.jsonl.gz"


def part_key(directory: str, first: int, last: int, mark: str = PART_MARK) -> str:
    """A compaction part's key in a shard-day's `directory`: the objects from sequence `first` to `last` merged
    (PENDING_MARK: until the compaction commits it)."""
    return f"{directory}{mark}{first}-{last}.jsonl.gz"


def day_prefix(day: str) -> str:
    return f"{ARCHIVE_PREFIX}date={day}/"


def archived_events(blobs: BlobStore, *, since: str | None = None, until: str | None = None,
                    workers: int = 8) -> Iterator[dict]:
    """The archived events of the days from `since` to `until` (ISO dates, inclusive; open where None), object by
    object in key order (a shard-day's in sequence order once compaction merged some), each event once. A window with
    both ends lists only its days; `workers` objects are read at once (within the 10 connections an SDK client keeps
    by default)."""
    keys = _uncovered(key for key in _archive_keys(blobs, since, until) if key.endswith(".jsonl.gz"))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while chunk := list(itertools.islice(keys, READ_AHEAD)):
            for body in pool.map(blobs.get, chunk):
                for line in unpack_lines(body):
                    if line.strip():
                        yield json.loads(line)


@dataclass
class Compaction:
    """What a compaction run did."""

    objects_merged: int = 0
    parts_written: int = 0
    objects_deleted: int = 0  # merged now, or by a run that stopped before deleting them
    parts_abandoned: int = 0  # an object changed while it was merged (an erasure rewrote it): left for the next run
    shard_days_left: int = 0  # not reached before the deadline: the next run's

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def compact_archive(blobs: BlobStore, *, now: float, older_than: float = COMPACT_AFTER_SECONDS,
                    part_bytes: int = PART_BYTES, seconds_left: Callable[[], float] | None = None,
                    workers: int = 8) -> Compaction:
    """Merge each shard-day's archive objects written more than `older_than` seconds before `now` into parts (module
    doc), and delete the objects parts cover. With `seconds_left`, stops STOP_BEFORE_DEADLINE_SECONDS before the
    deadline; the next run goes on from what is left."""
    report = Compaction()
    cutoff = now - older_than
    groups = [(directory, infos) for directory, infos in _shard_days(blobs.describe(f"{ARCHIVE_PREFIX}date="))
              if _work(infos, cutoff)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for n, (directory, infos) in enumerate(groups):
            if seconds_left is not None and seconds_left() < STOP_BEFORE_DEADLINE_SECONDS:
                report.shard_days_left = len(groups) - n
                break
            _compact_shard_day(blobs, directory, infos, cutoff, part_bytes, pool, report)
    return report


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


def _compact_shard_day(blobs: BlobStore, directory: str, infos: list[BlobInfo], cutoff: float, part_bytes: int,
                       pool: ThreadPoolExecutor, report: Compaction) -> None:
    """One shard-day: delete the objects its parts cover and what a stopped run left pending; merge the oldest
    others, written before `cutoff` (module doc)."""
    parts, pending, objects = _shard_day(infos)
    stale = [key for key, info in pending.items() if info.modified <= cutoff]
    covered = [info.key for sequence, info in objects if _covers(parts, sequence)]
    if stale or covered:
        blobs.delete_many(stale + covered)
        report.objects_deleted += len(covered)
    # In sequence order up to the first too young: a part's range then holds no object it does not merge.
    mergeable: list[tuple[int, BlobInfo]] = []
    for sequence, info in objects:
        if _covers(parts, sequence):
            continue
        if info.modified > cutoff:
            break
        mergeable.append((sequence, info))
    if len(mergeable) < 2:
        return
    written: list[tuple[str, str, dict[str, str]]] = []  # pending part, its part, the tag of each object it merged
    for chunk in _chunks(mergeable, part_bytes):
        try:
            read = list(pool.map(blobs.get_tagged, [info.key for _, info in chunk]))
        except KeyError:
            continue  # deleted meanwhile: another run's, which merged it
        first, last = chunk[0][0], chunk[-1][0]
        # gzip members one after another are one gzip stream of their lines, in order (RFC 1952).
        blobs.put(part_key(directory, first, last, PENDING_MARK), b"".join(body for body, _ in read), "application/gzip")
        written.append((part_key(directory, first, last, PENDING_MARK), part_key(directory, first, last),
                        {info.key: tag for (_, info), (_, tag) in zip(chunk, read)}))
    # Checked once every pending part is written, so that an erasure's rewrite after the check finds the part when
    # it lists again; committed by a copy that fails if the erasure rewrote the pending part meanwhile.
    current = {info.key: info.tag for info in blobs.describe(directory)}
    merged: list[str] = []
    for pending_key, key, tags in written:
        if all(current.get(k) == tag for k, tag in tags.items()) and \
                pending_key in current and blobs.copy_if(pending_key, key, current[pending_key]):
            merged += tags
            report.parts_written += 1
        else:
            report.parts_abandoned += 1
            logger.info("archive part abandoned: an object it merged changed", extra={"part": key})
    blobs.delete_many([pending for pending, _, _ in written] + merged)
    report.objects_merged += len(merged)
    report.objects_deleted += len(merged)


def _shard_days(infos: Iterable[BlobInfo]) -> Iterator[tuple[str, list[BlobInfo]]]:
    """The archive's objects by shard-day directory ("archive/date=<day>/shard=<shard>/"), in key order."""
    for directory, group in itertools.groupby((i for i in infos if i.key.endswith(".jsonl.gz")),
                                              key=lambda i: i.key.rsplit("/", 1)[0] + "/"):
        yield directory, list(group)


def _work(infos: list[BlobInfo], cutoff: float) -> bool:
    """Whether a shard-day has objects its parts cover, pending parts left, or two or more objects old enough to
    merge."""
    parts, pending, objects = _shard_day(infos)
    return bool(pending) or any(_covers(parts, sequence) for sequence, _ in objects) or \
        sum(1 for _, info in objects if info.modified <= cutoff) >= 2


def _shard_day(infos: Iterable[BlobInfo]) -> tuple[list[tuple[int, int]], dict[str, BlobInfo],
                                                   list[tuple[int, BlobInfo]]]:
    """A shard-day's parts' ranges, its pending parts, and its Ingest objects with their sequence numbers, in
    sequence order."""
    parts: list[tuple[int, int]] = []
    pending: dict[str, BlobInfo] = {}
    objects: list[tuple[int, BlobInfo]] = []
    for info in infos:
        name = _name(info.key)
        span = _part_range(name)
        if span is not None:
            parts.append(span)
        elif _part_range(name, PENDING_MARK) is not None:
            pending[info.key] = info
        elif name.isdigit():
            objects.append((int(name), info))
    return parts, pending, sorted(objects, key=lambda pair: pair[0])


def _part_range(name: str, mark: str = PART_MARK) -> tuple[int, int] | None:
    if not name.startswith(mark):
        return None
    first, _, last = name[len(mark):].partition("-")
    return (int(first), int(last)) if first.isdigit() and last.isdigit() else None


def _covers(parts: Sequence[tuple[int, int]], sequence: int) -> bool:
    return any(first <= sequence <= last for first, last in parts)


def _chunks(objects: list[tuple[int, BlobInfo]], limit: int) -> Iterator[list[tuple[int, BlobInfo]]]:
    """Consecutive runs of `objects` of at most `limit` bytes (at least one object each)."""
    chunk: list[tuple[int, BlobInfo]] = []
    size = 0
    for pair in objects:
        if chunk and size + pair[1].size > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(pair)
        size += pair[1].size
    if chunk:
        yield chunk


def _uncovered(keys: Iterable[str]) -> Iterator[str]:
    """`keys` (in key order) but for the objects a part of their shard-day covers: what to read of the archive. A
    shard-day with parts is read in sequence order, as its objects were before they were merged."""
    for _, group in itertools.groupby(keys, key=lambda k: k.rsplit("/", 1)[0]):
        found = list(group)
        starts = {key: _start(key) for key in found}
        parts = [span for span in map(_part_range, map(_name, found)) if span]
        if not parts and not any(_name(key).startswith(PENDING_MARK) for key in found):
            yield from found
            continue
        live = [key for key in found if not (_name(key).isdigit() and _covers(parts, int(_name(key))))
                and _part_range(_name(key), PENDING_MARK) is None]
        yield from sorted(live, key=lambda key: (starts[key] is None, starts[key] or 0, key))


def _name(key: str) -> str:
    """An archive object's name without its directory and extension."""
    return key.rsplit("/", 1)[-1].removesuffix(".jsonl.gz")


def _start(key: str) -> int | None:
    """The first sequence an archive object holds: its own, or a part's first."""
    name = _name(key)
    span = _part_range(name)
    return span[0] if span else int(name) if name.isdigit() else None


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
