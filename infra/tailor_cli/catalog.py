"""`tailor catalog load FILE`: a shop's catalog file sent to the API's POST /items, every line checked before anything
is sent, a page of entries a request, each request tried again while the API asks to wait."""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from tailor.catalog import CATALOG_FIELDS, MAX_CATALOG_ENTRIES, CatalogEntry

from .common import running, say

__all__ = ["CatalogFileError", "CatalogSent", "add_parser", "catalog_entries", "check_catalog_file", "send_catalog"]

COLUMNS = ("item_id", *CATALOG_FIELDS, "clear", "updated_at")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
API_KEY_VARIABLE = "TAILOR_API_KEY"
# Answers that say "not now": the request is sent again after the API's Retry-After, or a doubling wait.
TRY_AGAIN = frozenset({429, 500, 502, 503, 504})
TRIES = 6
# A request that got no answer: refused, reset, cut short or timed out on the way.
_NOT_ANSWERED = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError)
MAX_WAIT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 60.0
KEPT_PROBLEMS = 1000  # a file wrong throughout is not held line by line
CLOCK_PROBE = "tailor-catalog-load"  # an item id asked for to read the API's clock (its 404 has a Date too)
SHOWN = 20


class CatalogFileError(ValueError):
    """Lines of a catalog file that are no catalog entry, each as "line N: field: what is wrong" (the first
    KEPT_PROBLEMS of `count`)."""

    def __init__(self, problems: list[str], count: int) -> None:
        super().__init__(f"{count} problem(s) in lines that are no catalog entry")
        self.problems, self.count = problems, count


@dataclass
class CatalogSent:
    """What the API did with a file's entries: requests made, entries sent and those that set a field, the lines of
    entries whose fields stayed as they were (the row holds them updated later), and the request refused, if one was
    (what it answered, its first and last line): the requests before it stay written."""

    requests: int = 0
    sent: int = 0
    written: int = 0
    stale: list[dict[str, Any]] = field(default_factory=list)
    refused: dict[str, Any] | None = None


def add_parser(commands: Any) -> None:
    catalog = commands.add_parser("catalog", help="load a shop's catalog through the API")
    verbs = catalog.add_subparsers(required=True, metavar="VERB")
    load = verbs.add_parser("load", help="send a catalog file to POST /items", description=(
        "A file ending in .jsonl or .ndjson holds JSON lines of catalog entries; any other is CSV with a header "
        f"naming some of {', '.join(COLUMNS)} (an empty cell leaves the field as it is; available is true or "
        "false; clear names the fields to hand back to item events, apart by spaces). An entry without updated_at is "
        "stamped with the API's time when the load started, plus its line in microseconds."))
    load.add_argument("path", type=Path)
    load.add_argument("--api", help="the API's base URL, e.g. the stack's ApiUrl output (default: the running local "
                                    "stack's API, with its key)")
    load.add_argument("--api-key", help=f"the key of the API given by --api (default: ${API_KEY_VARIABLE})")
    load.add_argument("--batch", type=_batch_size, default=MAX_CATALOG_ENTRIES,
                      help=f"entries a request (at most {MAX_CATALOG_ENTRIES})")
    load.add_argument("--json", type=Path, help="write what was done here, every stale line among it")
    load.set_defaults(command=_load)


def check_catalog_file(path: Path) -> int:
    """How many entries the file holds; CatalogFileError names each line that is none (or the file, if not text)."""
    count, problems, kept = 0, 0, []
    for line, found in _records(path):
        if isinstance(found, CatalogEntry):
            count += 1
            continue
        for problem in found:
            problems += 1
            if len(kept) < KEPT_PROBLEMS:
                kept.append(_located(line, problem))
    if problems:
        raise CatalogFileError(kept, problems)
    return count


def catalog_entries(path: Path) -> Iterator[tuple[int, CatalogEntry]]:
    """The entries of a checked file (check_catalog_file) with their line numbers, read as they are taken."""
    for line, found in _records(path):
        if not isinstance(found, CatalogEntry):
            raise CatalogFileError([_located(line, problem) for problem in found], len(found))
        yield line, found


def send_catalog(entries: Iterable[tuple[int, CatalogEntry]], api: str, key: str, *,
                 batch: int = MAX_CATALOG_ENTRIES, stamp: datetime | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 progress: Callable[[int], None] = lambda sent: None) -> CatalogSent:
    """POST the entries to `api`/items, `batch` a request in the file's order, each without an updated_at stamped
    `stamp` (default: now) plus its line in microseconds, so that a request sent again changes nothing and a later
    line of one item wins over an earlier one. A request the API answers "not now" (TRY_AGAIN), or that does not reach
    it, is sent again up to TRIES times; one refused otherwise ends the load (CatalogSent.refused)."""
    if not 1 <= batch <= MAX_CATALOG_ENTRIES:
        raise ValueError(f"batch: from 1 to {MAX_CATALOG_ENTRIES} entries a request")
    stamp = stamp or datetime.now(UTC)
    url = f"{api.rstrip('/')}/items"
    outcome = CatalogSent()
    entries = iter(entries)
    while page := list(islice(entries, batch)):
        body = json.dumps({"items": [{"updated_at": (stamp + timedelta(microseconds=line)).isoformat()}
                                     | entry.model_dump(mode="json", exclude_defaults=True)
                                     for line, entry in page]}).encode()
        outcome.requests += 1
        try:
            answer = _post(url, body, key, sleep)
        except _Refused as refused:
            outcome.refused = {"answer": str(refused), "first_line": page[0][0], "last_line": page[-1][0]}
            return outcome
        outcome.sent += len(page)
        outcome.written += answer["written"]
        outcome.stale += [{"line": page[stale["index"]][0], "item_id": stale["item_id"], "fields": stale["fields"]}
                          for stale in answer["stale"]]
        progress(outcome.sent)
    return outcome


# -- helpers --------------------------------------------------------------------------------------------------------


class _Refused(Exception):
    """The API refused a request for good, or never answered it, or answered something that is not its answer."""


def _load(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    try:
        count = check_catalog_file(args.path)
    except CatalogFileError as error:
        say(f"tailor: {args.path}: {error}; nothing was sent:")
        for problem in error.problems[:SHOWN]:
            say(f"  {problem}")
        if error.count > SHOWN:
            say(f"  ... and {error.count - SHOWN} more")
        return 2
    api, key = _api_and_key(args, os.environ)
    if not key:
        say(f"tailor: the key of {api}: --api-key or ${API_KEY_VARIABLE}")
        return 2
    try:
        started = _api_clock(api, key) or started
    except _Refused as refused:
        say(f"tailor: {api}: {refused}; nothing was sent")
        return 1
    say(f"Sending {count:,} catalog entries to {api.rstrip('/')}/items, {args.batch} a request ...")
    with tqdm(total=count, unit="entry", disable=None) as bar:
        sent = send_catalog(catalog_entries(args.path), api, key, batch=args.batch, stamp=started,
                            progress=lambda n: bar.update(n - bar.n))
    report = {"entries": count, "requests": sent.requests, "sent": sent.sent, "written": sent.written,
              "stale": sent.stale, "refused": sent.refused}
    print(json.dumps(report | {"stale": len(sent.stale)}))
    for stale in sent.stale[:SHOWN]:
        say(f"  line {stale['line']}: {stale['item_id']}: {', '.join(stale['fields'])} left as they were (updated "
            "later)")
    if len(sent.stale) > SHOWN:
        say(f"  ... and {len(sent.stale) - SHOWN} more stale lines" + (f" (in {args.json})" if args.json else ""))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if sent.refused:
        say(f"tailor: the request of lines {sent.refused['first_line']} to {sent.refused['last_line']} was refused: "
            f"{sent.refused['answer']}; the {sent.sent:,} entries before it were sent, the rest were not")
        return 1
    return 0


def _api_clock(api: str, key: str) -> datetime | None:
    """The API's time (its answer's Date) to a keyed request, so that entries are stamped by its clock, not one that
    runs ahead of it (refused) or behind it (left stale); None if it gives no Date. _Refused if the key is refused or
    the API cannot be reached."""
    request = urllib.request.Request(f"{api.rstrip('/')}/items/{CLOCK_PROBE}", headers={"x-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            date = response.headers.get("Date")
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise _Refused(f"HTTP {error.code}: the key is refused") from None
        date = error.headers.get("Date")
    except _NOT_ANSWERED as error:
        raise _Refused(f"no answer: {getattr(error, 'reason', error)}") from None
    try:
        return parsedate_to_datetime(date).astimezone(UTC) if date else None
    except (TypeError, ValueError):
        return None


def _api_and_key(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """--api with --api-key or the environment's key; without --api, the running local stack's API and key (a
    deployed API's key in the environment is not sent to it)."""
    if args.api:
        return args.api, args.api_key or environ.get(API_KEY_VARIABLE)
    handle = running(args)
    return handle.api_url, args.api_key or handle.api_key


def _records(path: Path) -> Iterator[tuple[int, CatalogEntry | list[str]]]:
    """Each entry of the file with its (first) line, or what is wrong with that line (line 0: with the file)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's byte order mark too
        rows = _json_lines(handle) if path.suffix.lower() in JSON_LINES_SUFFIXES else _csv_rows(handle)
        try:
            for line, fields in rows:
                if isinstance(fields, str):
                    yield line, [fields]
                    continue
                try:
                    yield line, CatalogEntry.model_validate(fields)
                except ValidationError as error:
                    yield line, [f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors()]
        except UnicodeDecodeError as error:
            yield 0, [f"the file is not UTF-8 text ({error.reason} at byte {error.start} of a read)"]


def _located(line: int, problem: str) -> str:
    """A problem with the line it is on (line 0: the file's own)."""
    return f"line {line}: {problem}" if line else problem


def _csv_rows(handle: Any) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Each data row's fields, typed as CatalogEntry takes them, with the row's first line; an empty cell is a field
    not given."""
    reader = csv.reader(handle)
    header = [name.strip() for name in next(reader, [])]
    first_row = reader.line_num + 1
    if "item_id" not in header:
        hint = "; a JSON lines file ends in .jsonl" if header[:1] and header[0].startswith("{") else ""
        yield 1, f"the header names no item_id column (found: {', '.join(map(repr, header)) or 'nothing'}){hint}"
        return
    unknown = [name for name in header if name not in COLUMNS]
    twice = sorted({name for name in header if header.count(name) > 1})
    if unknown or twice:
        yield 1, "; ".join([*([f"unknown column(s) {', '.join(map(repr, unknown))}; the columns are "
                               f"{', '.join(COLUMNS)}"] if unknown else []),
                            *([f"column(s) named twice: {', '.join(twice)}"] if twice else [])])
        return
    for cells in reader:
        line, first_row = first_row, reader.line_num + 1
        if not cells:  # a blank line
            continue
        if len(cells) != len(header):
            yield line, f"{len(cells)} cells where the header has {len(header)} columns"
            continue
        try:
            yield line, {name: _typed(name, value) for name, value in zip(header, cells) if value != ""}
        except ValueError as error:
            yield line, str(error)


def _typed(name: str, text: str) -> Any:
    """A CSV cell as the entry's field takes it: price a decimal number, available true or false, clear the names of
    fields apart by spaces, the rest text."""
    if name == "price":
        if not re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", text):
            raise ValueError(f"price: {text!r} is not a number")
        return float(text)
    if name == "clear":
        names = text.split()
        if unknown := [n for n in names if n not in CATALOG_FIELDS]:
            raise ValueError(f"clear: {', '.join(map(repr, unknown))} names no field; the fields, apart by spaces, are "
                             f"{', '.join(CATALOG_FIELDS)}")
        return names
    if name == "available":
        flag = text.strip().lower()
        if flag not in ("true", "false"):
            raise ValueError(f"available: {text!r} is neither true nor false")
        return flag == "true"
    return text


def _json_lines(handle: Any) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            fields = json.loads(text)
        except ValueError as error:  # JSONDecodeError, and numbers past int's digit limit
            yield line, f"not JSON ({getattr(error, 'msg', error)})"
            continue
        yield line, fields if isinstance(fields, dict) else "not a JSON object"


def _post(url: str, body: bytes, key: str, sleep: Callable[[float], None]) -> dict[str, Any]:
    """The API's answer to one request ({"written": n, "stale": [...]}), sent again while it answers TRY_AGAIN or
    cannot be reached; _Refused otherwise."""
    attempt = 0
    while True:
        attempt += 1
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "content-type": "application/json", "x-api-key": key})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            answer = error.read().decode(errors="replace")
            if error.code not in TRY_AGAIN or attempt == TRIES:
                raise _Refused(f"HTTP {error.code}: {answer[:500]}") from None
            sleep(_wait(error.headers.get("Retry-After"), attempt))
            continue
        except _NOT_ANSWERED as error:
            if attempt == TRIES:
                raise _Refused(f"no answer after {TRIES} tries: {getattr(error, 'reason', error)}") from None
            sleep(_wait(None, attempt))
            continue
        try:
            answer = json.loads(text)
            return {"written": int(answer["written"]), "stale": list(answer["stale"])}
        except (ValueError, KeyError, TypeError):
            raise _Refused(f"not POST /items' answer (is {url} the API?): {text[:200]!r}") from None


def _wait(retry_after: str | None, attempt: int) -> float:
    """The API's Retry-After in seconds where it gives one, else a doubling wait; never above MAX_WAIT_SECONDS."""
    try:
        wait = float(retry_after) if retry_after is not None else math.nan
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait):
        wait = 2.0 ** (attempt - 1)
    return min(max(wait, 0.0), MAX_WAIT_SECONDS)


def _batch_size(text: str) -> int:
    """An argparse type: 1 to MAX_CATALOG_ENTRIES entries a request."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_CATALOG_ENTRIES:
        raise argparse.ArgumentTypeError(f"{value}: from 1 to {MAX_CATALOG_ENTRIES} entries a request")
    return value
