"""The event archive Ingest writes to S3: one gzipped JSON-lines object per shard, day and batch, events as sent;
the compaction that merges a shard's day of such objects into a few parts; and the index of where one shopper's
events are in it, which their shopper row keeps for erasure.

Ingest names each object after the sequence number of its day's first record past the checkpoint, archived or left
out ("<sequence>.jsonl.gz"), and a busy shard
writes one a second: readers of weeks of the archive would list and read millions. `compact_archive` (the
CompactArchive function: hourly over the last COMPACT_DAYS days of events, daily over all) merges a shard-day's
objects into parts named after the first and last sequence they
hold ("c-<first>-<last>.jsonl.gz", the objects' gzip members one after another), in runs between the parts already
there, so that a shard-day reads in sequence order. It merges an object once it is older than COMPACT_AFTER_SECONDS
and Ingest's archive checkpoint of its shard is past it: Ingest writes an object over only while the stream delivers
its batch again. A replay that drops an erased shopper's events rewrites, conditionally, objects the checkpoint is
past (tailor.erasure.take_out_archived); those are minutes old, and a compaction that merged one all the same
abandons its part on the tag check, or the replay follows the object into the part.

A part covers every object of its shard-day whose sequence is in its range: readers take it in place of those
objects (`archived_events`), and the objects are deleted once the part is DELETE_AFTER_SECONDS old, so that a reader
that listed them before finds them. A part is written pending ("p-..."), which readers pass over; once a round of
pending parts is written, the objects' tags are looked at again, and a part whose objects are as they were read is
committed by a copy that fails if the pending part changed since. So the archive reads the same, each event once,
before, during and after a compaction, and a run that stops anywhere leaves it so (the next deletes what it left
pending). Runs never overlap: a run holds a lease in the checkpoints table.

An erasure may rewrite an object while it is merged: the compaction then finds its tag changed and leaves the objects
for its next run. An erasure that rewrites an object after that look finds the pending part when it lists the
shard-day again (tailor.erasure), and rewrites it before it is committed, or the committed part after; a resumed
erasure rewrites again the parts of the shard-days where the stopped one found the shopper.

The index is two short lists. `periods`: the UTC days with archived events of the shopper, as ISO dates, sorted.
Beyond ARCHIVE_PERIODS entries, days merge into their month ("2019-03"), months into their year ("2019"), years into
decades ("201") and so on, choosing each time the merge that widens the index least: each entry is a prefix of the
dates it stands for, so it is one listing of the archive, and the list stays within ARCHIVE_PERIODS entries however
long the shopper's history. `shards`: the stream shards their events came on (their partition key keeps them on one
shard until the stream reshards); ANY_SHARD when not known, or when there were more than ARCHIVE_SHARDS.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import itertools
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from tailor.store.port import BlobInfo, BlobStore, Conflict, StateStore

__all__ = ["ANY_SHARD", "ARCHIVE_PERIODS", "ARCHIVE_PREFIX", "ARCHIVE_SHARDS", "COMPACT_AFTER_SECONDS", "MAX_LISTED_DAYS",
           "Compaction", "archive_checkpoint_id", "archive_day", "archive_key", "archived_events", "compact_archive",
           "covering_parts", "day_prefix", "days_of", "indexed_objects", "is_part", "objects_up_to", "pack_lines",
           "part_key", "periods_between", "shard_day_of", "unpack_lines", "with_period", "with_shard"]

ARCHIVE_PREFIX = "archive/"
# About 1.2 KB of a shopper row (about 8 KB with a few hundred events): a shopper active on no more than this many
# days is indexed to the day.
ARCHIVE_PERIODS = 100
ARCHIVE_SHARDS = 8
READ_AHEAD = 64  # archive objects read ahead of the events taken from them
MAX_LISTED_DAYS = 3660  # a window longer than this lists the whole archive once rather than day by day
ANY_SHARD = "*"
# Compaction. Objects this old are merged, once Ingest's archive checkpoint of their shard is past them (it never
# writes them again then). A part holds up to PART_BYTES of them, compressed: about ten times that as text, which an
# erasure worker holds a few times over while it rewrites one. Objects a part covers are deleted once it is
# DELETE_AFTER_SECONDS old, far longer than any reader of the archive takes between listing a shard-day and reading
# it. A run checks the objects it merged once every ROUND_PARTS parts, holds a lease of LEASE_SECONDS (more than a
# Lambda's 900 s) so that runs never overlap, and stops this long before its deadline.
COMPACT_AFTER_SECONDS = 3600
COMPACT_DAYS = 3  # the days (of the events) a run looks at, up to today; 0: the whole archive
PART_BYTES = 512 * 1024
DELETE_AFTER_SECONDS = 24 * 3600
ROUND_PARTS = 64
LEASE_SECONDS = 1200
LEASE_ID = "compact-archive"
PART_MARK = "c-"
PENDING_MARK = "p-"  # a part written, not yet committed: readers take the objects it merges, not it
OBJECT = "object"  # what Ingest wrote (`_kind`)
STOP_BEFORE_DEADLINE_SECONDS = 60.0
_WIDTHS = (7, 4, 3, 2, 1)
_DAYS = {10: 1.0, 7: 30.44, 4: 365.25, 3: 3652.5, 2: 36525.0, 1: 365250.0}  # days an entry of each width covers
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()  # month, year, decade, century, millennium: the coarser periods, in the order used

logger = logging.getLogger(__name__)


def archive_day(epoch: float) -> str:
    """The day (UTC, ISO) under which Ingest archives an event of that time (epoch seconds)."""
    return _iso_day(int(epoch // 86400))


def archive_key(day: str, shard: str, first_sequence: str) -> str:
    """Where a batch's events of `day` (ISO date) go: named after its first record of that day past the checkpoint
    (archived or left out), so a replay of the batch from the same checkpoint rewrites the same object."""
    return f"{day_prefix(day)}shard={shard}/{first_sequence}.jsonl.gz"


def part_key(directory: str, first: int, last: int, mark: str = PART_MARK) -> str:
    """A compaction part's key in a shard-day's `directory`: the objects from sequence `first` to `last` merged
    (PENDING_MARK: until the compaction commits it)."""
    return f"{directory}{mark}{first}-{last}.jsonl.gz"


def is_part(key: str) -> bool:
    """Whether an archive key is a compaction's part, committed or pending."""
    return _kind(key)[0] in (PART_MARK, PENDING_MARK)


def shard_day_of(key: str) -> str:
    """The shard-day directory ("archive/date=<day>/shard=<shard>/") an archive key is in."""
    return key.rsplit("/", 1)[0] + "/"


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
    objects_deleted: int = 0  # covered by a part written DELETE_AFTER_SECONDS before
    parts_abandoned: int = 0  # an object changed while it was merged (an erasure rewrote it): left for the next run
    stopped: bool = False  # out of time: the next run goes on
    leased: bool = True  # False: another run held the lease, and this one did nothing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compact_archive(blobs: BlobStore, store: StateStore, *, now: float, older_than: float = COMPACT_AFTER_SECONDS,
                    days: int = COMPACT_DAYS, part_bytes: int = PART_BYTES,
                    seconds_left: Callable[[], float] | None = None, workers: int = 8) -> Compaction:
    """Merge each shard-day's archive objects written more than `older_than` seconds before `now`, and archived
    (Ingest's checkpoint of their shard past them), into parts (module doc); delete the objects parts written
    DELETE_AFTER_SECONDS before cover. Looks at the last `days` days of events up to today (0: the whole archive,
    oldest first). With `seconds_left`, stops STOP_BEFORE_DEADLINE_SECONDS before the deadline; the next run goes
    on from what is left. Does nothing while another run holds the lease."""
    report = Compaction()
    lease = _lease(store, now)
    if lease is None:
        report.leased = False
        return report
    archived: dict[str, int | None] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for directory, infos in _shard_days(_described(blobs, now, days)):
                if seconds_left is not None and seconds_left() < STOP_BEFORE_DEADLINE_SECONDS:
                    report.stopped = True
                    break
                shard = _shard_of(directory)
                if shard not in archived:
                    archived[shard] = _archived_through(store, shard)
                if not _compact_shard_day(blobs, directory, infos, now=now, cutoff=now - older_than,
                                          archived=archived[shard], part_bytes=part_bytes, pool=pool, report=report,
                                          seconds_left=seconds_left):
                    report.stopped = True
                    break
    finally:
        _release(store, lease, now)
    return report


def days_of(event: Any, default: int) -> int:
    """The days of events a compaction run looks at, as its firing's input says ({"days": N}, 0 for all), else
    `default`; ValueError naming `days` for anything but a whole number from 0 to MAX_LISTED_DAYS."""
    days = event.get("days", default) if isinstance(event, dict) else default
    if type(days) is not int or not 0 <= days <= MAX_LISTED_DAYS:
        raise ValueError(f"days: {days!r} is not a whole number of days from 0 (the whole archive) to "
                         f"{MAX_LISTED_DAYS}")
    return days


def archive_checkpoint_id(shard: str) -> str:
    """The checkpoints row where Ingest keeps the last record of `shard` it archived (its watermark "sw:<shard>")."""
    return f"archive:{shard}"


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


def _compact_shard_day(blobs: BlobStore, directory: str, infos: list[BlobInfo], *, now: float, cutoff: float,
                       archived: int | None, part_bytes: int, pool: ThreadPoolExecutor, report: Compaction,
                       seconds_left: Callable[[], float] | None) -> bool:
    """One shard-day: delete what a stopped run left pending and the objects parts cover once they are old enough;
    merge the others, written before `cutoff` and archived, in runs between the parts. False if out of time."""
    parts, pending, objects = _shard_day(infos)
    stale = [key for key, info in pending.items() if info.modified <= cutoff]
    settled = [(first, last) for first, last, info in parts if info.modified <= now - DELETE_AFTER_SECONDS]
    covered = [info.key for sequence, info in objects if _covers(settled, sequence)]
    if stale or covered:
        blobs.delete_many(stale + covered)
        report.objects_deleted += len(covered)
    ranges = [(first, last) for first, last, _ in parts]
    # A lone object is left as it is: a part of one saves no read.
    chunks = [chunk for run in _mergeable_runs(objects, ranges, cutoff, archived)
              for chunk in _chunks(run, part_bytes) if len(chunk) > 1]
    for start in range(0, len(chunks), ROUND_PARTS):
        if seconds_left is not None and seconds_left() < STOP_BEFORE_DEADLINE_SECONDS:
            return False
        _merge(blobs, directory, chunks[start:start + ROUND_PARTS], pool, report)
    return True


def _merge(blobs: BlobStore, directory: str, chunks: list[list[tuple[int, BlobInfo]]], pool: ThreadPoolExecutor,
           report: Compaction) -> None:
    """Write each chunk's part pending, check the objects it merged are as they were read, and commit it."""
    written: list[tuple[str, str, dict[str, str]]] = []  # pending part, its part, the tag of each object it merged
    for chunk in chunks:
        try:
            read = list(pool.map(blobs.get_tagged, [info.key for _, info in chunk]))
        except KeyError:
            continue  # gone since it was listed: nothing else deletes an uncovered object, but be safe
        first, last = chunk[0][0], chunk[-1][0]
        pending = part_key(directory, first, last, PENDING_MARK)
        # gzip members one after another are one gzip stream of their lines, in order (RFC 1952).
        blobs.put(pending, b"".join(body for body, _ in read), "application/gzip")
        written.append((pending, part_key(directory, first, last),
                        {info.key: tag for (_, info), (_, tag) in zip(chunk, read)}))
    if not written:
        return
    # Checked once the round's pending parts are written, so that an erasure's rewrite after the check finds the
    # part when it lists again; committed by a copy that fails if the erasure rewrote the pending part meanwhile.
    current = {info.key: info.tag for info in blobs.describe(directory)}
    for pending, key, tags in written:
        if all(current.get(k) == tag for k, tag in tags.items()) and \
                pending in current and blobs.copy_if(pending, key, current[pending]):
            report.objects_merged += len(tags)
            report.parts_written += 1
        else:
            report.parts_abandoned += 1
            logger.info("archive part abandoned: an object it merged changed", extra={"part": key})
    blobs.delete_many([pending for pending, _, _ in written])


def _mergeable_runs(objects: list[tuple[int, BlobInfo]], ranges: list[tuple[int, int]], cutoff: float,
                    archived: int | None) -> list[list[tuple[int, BlobInfo]]]:
    """The uncovered objects that may be merged, in sequence order up to the first that may not (too young, or past
    the archive checkpoint: a part's range then holds no object it does not merge), in runs between parts' ranges (so
    parts never overlap, and a shard-day reads in sequence order), whether or not the objects parts cover are still
    there."""
    starts = sorted(first for first, _ in ranges)
    runs: list[list[tuple[int, BlobInfo]]] = [[]]
    for sequence, info in objects:
        if _covers(ranges, sequence):
            continue
        if info.modified > cutoff or archived is None or sequence > archived:
            break
        if runs[-1] and bisect.bisect_right(starts, runs[-1][-1][0]) != bisect.bisect_right(starts, sequence):
            runs.append([])  # a part begins between the last object and this one
        runs[-1].append((sequence, info))
    return [run for run in runs if run]


def _lease(store: StateStore, now: float) -> str | None:
    """Take the compaction's lease in the checkpoints table; None while another run holds it."""
    held = store.read("checkpoints", [LEASE_ID]).get(LEASE_ID, {}).get("lease")
    if held is not None and _lease_end(held) > now:
        return None
    mine = f"{now + LEASE_SECONDS:.3f}|{uuid.uuid4().hex}"
    try:
        store.write_state("checkpoints", LEASE_ID, {}, watermark="lease", expected=held, new=mine)
    except Conflict:
        return None
    return mine


def _release(store: StateStore, lease: str, now: float) -> None:
    """Give the lease back (a run that cannot is one whose lease ran out: the next takes it over then)."""
    try:
        store.write_state("checkpoints", LEASE_ID, {}, watermark="lease", expected=lease,
                          new=f"{now:.3f}|{lease.split('|')[1]}")
    except Conflict:
        logger.warning("archive compaction: the lease was taken over before this run released it")
    except Exception:  # not to hide what the run raised, if it did: the lease runs out on its own
        logger.exception("archive compaction: the lease was not released")


def _lease_end(held: Any) -> float:
    """When a lease as kept ("<end>|<run>") runs out; a value this module did not write has run out."""
    try:
        return float(str(held).split("|")[0])
    except ValueError:
        return 0.0


def _described(blobs: BlobStore, now: float, days: int) -> Iterator[BlobInfo]:
    """The archive's objects of the last `days` days up to today (UTC), or all of them (0), listed as they are taken."""
    if days <= 0:
        yield from blobs.describe(f"{ARCHIVE_PREFIX}date=")
        return
    today = int(now // 86400)
    for day in range(today - days + 1, today + 1):
        yield from blobs.describe(day_prefix(_iso_day(day)))


def _archived_through(store: StateStore, shard: str) -> int | None:
    """The sequence number of the last record of `shard` Ingest archived, or None if none yet."""
    position = store.read("checkpoints", [archive_checkpoint_id(shard)]).get(
        archive_checkpoint_id(shard), {}).get(f"sw:{shard}")
    return int(position[3:]) if isinstance(position, str) and position[3:].isdigit() else None


def _shard_days(infos: Iterable[BlobInfo]) -> Iterator[tuple[str, list[BlobInfo]]]:
    """The archive's objects by shard-day directory ("archive/date=<day>/shard=<shard>/"), in key order."""
    for directory, group in itertools.groupby((i for i in infos if i.key.endswith(".jsonl.gz")),
                                              key=lambda i: shard_day_of(i.key)):
        yield directory, list(group)


def _shard_day(infos: Iterable[BlobInfo]) -> tuple[list[tuple[int, int, BlobInfo]], dict[str, BlobInfo],
                                                   list[tuple[int, BlobInfo]]]:
    """A shard-day's parts with their ranges, its pending parts, and its Ingest objects with their sequence numbers,
    in sequence order."""
    parts: list[tuple[int, int, BlobInfo]] = []
    pending: dict[str, BlobInfo] = {}
    objects: list[tuple[int, BlobInfo]] = []
    for info in infos:
        kind, first, last = _kind(info.key)
        if kind == PART_MARK:
            parts.append((first, last, info))
        elif kind == PENDING_MARK:
            pending[info.key] = info
        elif kind == OBJECT:
            objects.append((first, info))
    return parts, pending, sorted(objects, key=lambda pair: pair[0])


def objects_up_to(keys: Iterable[str], days: Iterable[str], last_sequence: int) -> list[str]:
    """Those of Ingest's object `keys` that are of these days and begin at or before `last_sequence`: the ones that
    may hold a record of those days up to it."""
    prefixes = tuple(day_prefix(day) for day in set(days))
    return [key for key in keys
            if key.startswith(prefixes) and (found := _kind(key))[0] == OBJECT and found[1] <= last_sequence]


def covering_parts(blobs: BlobStore, key: str) -> list[str]:
    """The parts, committed or pending, of an Ingest object's shard-day whose range holds its sequence: where its
    lines went if a compaction merged it."""
    kind, sequence, _ = _kind(key)
    if kind != OBJECT:
        return []
    return [part for part in blobs.list(shard_day_of(key)) if (found := _kind(part))[0] in (PART_MARK, PENDING_MARK)
            and found[1] <= sequence <= found[2]]


def _kind(key: str) -> tuple[str | None, int, int]:
    """What an archive key names, and the sequences it holds: a part (PART_MARK), a pending part (PENDING_MARK) or
    Ingest's object (OBJECT), each with its first and last sequence; (None, 0, 0) for anything else."""
    name = key.rsplit("/", 1)[-1].removesuffix(".jsonl.gz")
    if name.isdigit():
        return OBJECT, int(name), int(name)
    for mark in (PART_MARK, PENDING_MARK):
        if name.startswith(mark):
            first, _, last = name[len(mark):].partition("-")
            if first.isdigit() and last.isdigit():
                return mark, int(first), int(last)
    return None, 0, 0


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
    """`keys` (in key order) but for the objects a part of their shard-day covers and pending parts: what to read of
    the archive, a shard-day's in sequence order (its objects' and parts' first), as Ingest wrote them."""
    for _, group in itertools.groupby(keys, key=shard_day_of):
        found = [(key, *_kind(key)) for key in group]
        parts = [(first, last) for _, kind, first, last in found if kind == PART_MARK]
        live = [(kind is None, first, key) for key, kind, first, _ in found
                if kind != PENDING_MARK and not (kind == OBJECT and _covers(parts, first))]
        yield from (key for *_, key in sorted(live))


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
    for info in blobs.describe(f"{ARCHIVE_PREFIX}date="):  # a page at a time: a day is listed just before it is read
        key = info.key
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
