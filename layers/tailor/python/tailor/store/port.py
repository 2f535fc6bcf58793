"""The state-store port: the few conditional operations that make replayed batches apply once."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["INDEXES", "TABLES", "BlobInfo", "BlobStore", "Conflict", "Queue", "StateStore", "check_segment", "every_row"]

# Logical table -> its hash key. Adapters map logical names to physical ones.
TABLES: dict[str, str] = {
    "shoppers": "user_id",
    "sessions": "session_id",
    "items": "item_id",
    "associations": "item_id",
    "queries": "query",
    "trends": "period",
    "checkpoints": "id",
    "buffers": "id",  # counters on their way to the shared tables (tailor.ingest.buffer)
    "experiments": "experiment_id",  # experiments as defined (tailor.experiments.definitions)
    "outcomes": "id",  # experiments' daily sufficient statistics per variant (tailor.experiments.attribution)
    "exposures": "feed_id",  # what an experiment served, by feed id (tailor.experiments.exposure)
}

# The secondary indexes `StateStore.query` reads: (logical table, attribute) -> (index name, the attributes it projects
# besides the keys). The template's tables and tailor_local's create_state_tables declare the same.
INDEXES: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("sessions", "user_id"): ("user_id-index", ("started_at",)),
    ("exposures", "unit"): ("unit-index", ("unit_kind", "served_at")),  # found for an erasure
}


class Conflict(Exception):
    """A conditional write found the row's watermark elsewhere than the writer expected, or a field it wrote over
    changed since it was read (`write_state`'s `unchanged`)."""

    def __init__(self, table: str, key: str, watermark: str | None):
        super().__init__(f"{table}[{key}] watermark is {watermark!r}")
        self.table = table
        self.key = key
        self.watermark = watermark


class StateStore(Protocol):
    """Rows are plain dicts of JSON-like values; watermarks are strings that order like the stream."""

    def read(self, table: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The current rows for `keys` (strongly consistent); keys without a row are left out."""
        ...

    def read_many(self, requests: Mapping[str, Iterable[str]]) -> dict[str, dict[str, dict[str, Any]]]:
        """Rows of several tables in one round trip: {table: keys} -> {table: {key: row}}."""
        ...

    def write_state(
        self,
        table: str,
        key: str,
        fields: Mapping[str, Any],
        *,
        watermark: str,
        expected: str | None,
        new: str,
        unchanged: tuple[str, Any] | None = None,
    ) -> None:
        """Set `fields` and move `watermark` from `expected` (None: absent) to `new`, or raise Conflict; with
        `unchanged` (a field and its value as read, None: absent), also raise Conflict if that field changed."""
        ...

    def add(
        self,
        table: str,
        key: str,
        increments: Mapping[str, float],
        latest: Mapping[str, Any],
        *,
        watermark: str,
        first: str,
        last: str,
    ) -> None:
        """Add `increments`, set `latest` and move `watermark` to `last`, unless it already reached
        `first` (then raise Conflict carrying the current watermark, and change nothing)."""
        ...

    def delete(self, table: str, key: str) -> None:
        ...

    def delete_many(self, table: str, keys: Iterable[str]) -> None:
        """Delete the rows of `keys` (those that exist), in as few round trips as the store allows."""
        ...

    def replace(self, table: str, key: str, fields: Mapping[str, Any]) -> None:
        """Make the row of `key` hold `fields` (and its key) and nothing else, whatever it held before, its
        watermarks too: a writer that read it before then finds its watermark moved and writes nothing."""
        ...

    def query(self, table: str, attribute: str, value: str) -> list[dict[str, Any]]:
        """Every row of `table` whose `attribute` is `value`, found through the table's index on it (INDEXES), with
        only the table's key, `attribute` and what the index projects. The index may lag a write by a moment (a
        DynamoDB global secondary index is eventually consistent)."""
        ...

    def scan(self, table: str, *, limit: int, start: str | None = None,
             attributes: Sequence[str] | None = None, segment: int = 0,
             segments: int = 1) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` rows in the table's own order, after the key `start` (only their `attributes`,
        if given); and the key to go on from, None when the table has no more rows. For jobs that
        visit every row, page by page. The rows are the caller's: nothing else holds them. With `segments`
        above 1, the table is split into that many disjoint parts and this reads part `segment` (0 to segments - 1):
        the parts together hold every row once, and may be read at once (a DynamoDB parallel scan)."""
        ...

    def annotate(self, table: str, key: str, fields: Mapping[str, Any], *, requires: str, stamp: str,
                 at: str) -> bool:
        """Set `fields` and `stamp` = `at` on the row of `key` if it holds `requires` and its `stamp`
        is absent or not after `at`; False, writing nothing, otherwise. A job's own attributes, set
        beside those the stream writes without touching them, never on a row erased meanwhile, and
        never back to an older job's values."""
        ...


def check_segment(segment: int, segments: int) -> None:
    """A scan's part, as `StateStore.scan` takes it: one of `segments` (0 to segments - 1), or ValueError."""
    if not 0 <= segment < segments:
        raise ValueError(f"segment {segment} is not one of {segments} segments")


def every_row(store: StateStore, table: str, attributes: Sequence[str] | None = None, *,
              page_size: int = 1000, segments: int = 1) -> Iterator[dict[str, Any]]:
    """Every row of `table`, page by page (only `attributes` of each, if given): for jobs that read a whole table
    in one run. With `segments` above 1, that many parts of the table are read at once, each on a thread of its own
    a few pages ahead at most, and their pages given in turn (the first of each part, then the second of each, ...),
    so the same table gives its rows in the same order."""
    if segments <= 1:
        start: str | None = None
        while True:
            rows, start = store.scan(table, limit=page_size, start=start, attributes=attributes)
            yield from rows
            if start is None:
                return
    pages = [queue.Queue(maxsize=_PAGES_AHEAD) for _ in range(segments)]
    stop = threading.Event()

    def read(segment: int) -> None:
        try:
            after: str | None = None
            while not stop.is_set():
                rows, after = store.scan(table, limit=page_size, start=after, attributes=attributes, segment=segment,
                                         segments=segments)
                _hand_over(pages[segment], rows, stop)
                if after is None:
                    break
            _hand_over(pages[segment], _SEGMENT_DONE, stop)
        except BaseException as exc:  # the reader's error is the caller's
            _hand_over(pages[segment], exc, stop)

    try:
        for segment in range(segments):
            threading.Thread(target=read, args=(segment,), name=f"scan-{table}-{segment}", daemon=True).start()
        reading = list(range(segments))
        while reading:
            for segment in list(reading):
                page = pages[segment].get()
                if page is _SEGMENT_DONE:
                    reading.remove(segment)
                elif isinstance(page, BaseException):
                    raise page
                else:
                    yield from page
    finally:
        stop.set()  # a caller that stops early, an error, a reader that did not start: the readers stop


class Queue(Protocol):
    """A message queue: what is sent is delivered to its consumer at least once."""

    def send(self, message: Mapping[str, Any]) -> None:
        """Send `message` (JSON-ready), or raise."""
        ...


class BlobStore(Protocol):
    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        ...

    def get(self, key: str) -> bytes:
        """The object's body; KeyError when there is no such object."""
        ...

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object's body and a tag of this version of it (KeyError when there is none), for `replace_if`."""
        ...

    def replace_if(self, key: str, body: bytes, tag: str, content_type: str = "application/octet-stream") -> bool:
        """Write the object only if it is still the version `tag` names; False (nothing written) if it changed."""
        ...

    def list(self, prefix: str) -> list[str]:
        ...

    def describe(self, prefix: str) -> Iterator[BlobInfo]:
        """The objects under `prefix`, in key order, each with its tag (as `get_tagged` gives it), when it was last
        written and its size; listed as they are taken (a page at a time)."""
        ...

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete the objects (one gone already is no error), or raise."""
        ...

    def copy_if(self, source: str, target: str, tag: str) -> bool:
        """Copy object `source` to `target` only if it is still the version `tag` names; False if it changed."""
        ...


@dataclass(frozen=True)
class BlobInfo:
    key: str
    tag: str
    modified: float  # epoch seconds
    size: int


_SEGMENT_DONE = object()
_PAGES_AHEAD = 2  # pages a part's reader may hold ready beyond the one being given


def _hand_over(pages: queue.Queue, item: Any, stop: threading.Event) -> None:
    """Put `item` on `pages`, unless the reader is told to stop while the queue is full."""
    while not stop.is_set():
        try:
            pages.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
