"""`tailor catalog load FILE`: a shop's catalog file sent to the API's POST /items, every line checked before anything
is sent, a page of entries a request, each request tried again while the API asks to wait."""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from tailor.catalog import CATALOG_FIELDS, MAX_CATALOG_ENTRIES, CatalogEntry

from .common import at_least_one, running, say

__all__ = ["CatalogFileError", "CatalogSent", "add_parser", "read_catalog_file", "send_catalog"]

COLUMNS = ("item_id", *CATALOG_FIELDS, "updated_at")
API_KEY_VARIABLE = "TAILOR_API_KEY"
# Answers that say "not now": the request is sent again after the API's Retry-After, or a backoff.
TRY_AGAIN = frozenset({429, 500, 502, 503, 504})
TRIES = 6
MAX_WAIT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 60.0
SHOWN_PROBLEMS = 20


class CatalogFileError(ValueError):
    """Lines of a catalog file that are no catalog entry, each as "line N: field: what is wrong"."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(f"{len(problems)} line(s) are no catalog entry")
        self.problems = list(problems)


@dataclass
class CatalogSent:
    """What the API did with a file's entries: requests made, entries that set a field, and the lines of entries whose
    fields stayed as they were (the row holds them updated later)."""

    requests: int = 0
    written: int = 0
    stale: list[dict[str, Any]] = field(default_factory=list)


def add_parser(commands: Any) -> None:
    catalog = commands.add_parser("catalog", help="load a shop's catalog through the API")
    verbs = catalog.add_subparsers(required=True, metavar="VERB")
    load = verbs.add_parser("load", help="send a catalog file to POST /items: CSV with a header (item_id, category, "
                                         "brand, price, name, available, updated_at; an empty cell leaves the field "
                                         "as it is) or JSON lines of catalog entries")
    load.add_argument("path", type=Path)
    load.add_argument("--api", help="the API's base URL, e.g. the stack's ApiUrl output (default: the running local "
                                    "stack's)")
    load.add_argument("--api-key", help=f"its key (default: ${API_KEY_VARIABLE}, else the local stack's)")
    load.add_argument("--batch", type=at_least_one, default=MAX_CATALOG_ENTRIES,
                      help=f"entries a request (at most {MAX_CATALOG_ENTRIES})")
    load.add_argument("--json", type=Path, help="write what was done here")
    load.set_defaults(command=_load)


def read_catalog_file(path: Path) -> list[tuple[int, CatalogEntry]]:
    """Every entry of a catalog file with its line number; CatalogFileError names each line that is none."""
    with path.open(newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's byte order mark too
        records = list(_json_lines(handle) if path.suffix in (".jsonl", ".ndjson") else _csv_rows(handle))
    entries, problems = [], []
    for line, fields in records:
        if isinstance(fields, str):
            problems.append(f"line {line}: {fields}")
            continue
        try:
            entries.append((line, CatalogEntry.model_validate(fields)))
        except ValidationError as error:
            problems += [f"line {line}: {'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors()]
    if problems:
        raise CatalogFileError(problems)
    return entries


def send_catalog(entries: Sequence[tuple[int, CatalogEntry]], api: str, key: str, *, batch: int = MAX_CATALOG_ENTRIES,
                 sleep: Callable[[float], None] = time.sleep,
                 progress: Callable[[int], None] = lambda sent: None) -> CatalogSent:
    """POST the entries to `api`/items, `batch` a request in the file's order; a request the API answers "not now"
    (TRY_AGAIN) is sent again, up to TRIES times. Any other refusal raises RuntimeError with the API's answer."""
    if not 1 <= batch <= MAX_CATALOG_ENTRIES:
        raise ValueError(f"batch: from 1 to {MAX_CATALOG_ENTRIES} entries a request")
    sent = CatalogSent()
    for start in range(0, len(entries), batch):
        page = entries[start:start + batch]
        body = json.dumps({"items": [entry.model_dump(mode="json", exclude_none=True) for _, entry in page]})
        answer = _post(f"{api.rstrip('/')}/items", body.encode(), key, sleep)
        sent.requests += 1
        sent.written += int(answer["written"])
        sent.stale += [{"line": page[stale["index"]][0], "item_id": stale["item_id"], "fields": stale["fields"]}
                       for stale in answer["stale"]]
        progress(start + len(page))
    return sent


# -- helpers --------------------------------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> int:
    try:
        entries = read_catalog_file(args.path)
    except CatalogFileError as error:
        say(f"tailor: {args.path}: {error}; nothing was sent:")
        for problem in error.problems[:SHOWN_PROBLEMS]:
            say(f"  {problem}")
        if len(error.problems) > SHOWN_PROBLEMS:
            say(f"  ... and {len(error.problems) - SHOWN_PROBLEMS} more")
        return 2
    if args.batch > MAX_CATALOG_ENTRIES:
        say(f"tailor: --batch: at most {MAX_CATALOG_ENTRIES} entries a request")
        return 2
    api, key = args.api, args.api_key or os.environ.get(API_KEY_VARIABLE)
    if api is None:
        handle = running(args)
        api, key = handle.api_url, key or handle.api_key
    if not key:
        say(f"tailor: the API's key: --api-key or ${API_KEY_VARIABLE}")
        return 2
    say(f"Sending {len(entries):,} catalog entries to {api}/items, {args.batch} a request ...")
    with tqdm(total=len(entries), unit="entry", disable=None) as bar:
        try:
            sent = send_catalog(entries, api, key, batch=args.batch, progress=lambda n: bar.update(n - bar.n))
        except RuntimeError as refused:  # the entries before the refused request stay written
            say(f"tailor: {refused}")
            return 1
    report = {"entries": len(entries), "requests": sent.requests, "written": sent.written, "stale": sent.stale}
    print(json.dumps({k: v for k, v in report.items() if k != "stale"} | {"stale": len(sent.stale)}))
    for stale in sent.stale[:SHOWN_PROBLEMS]:
        say(f"  line {stale['line']}: {stale['item_id']}: {', '.join(stale['fields'])} left as they were (updated later)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _csv_rows(handle: Any) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Each data row's fields, typed as CatalogEntry takes them; an empty cell is a field not given."""
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    if "item_id" not in header:
        yield 1, f"the header names no item_id column (found: {', '.join(header) or 'nothing'})"
        return
    if unknown := [name for name in header if name not in COLUMNS]:
        yield 1, f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}"
        return
    for row in reader:
        line = reader.line_num
        if None in row:
            yield line, "more cells than the header has columns"
            continue
        try:
            yield line, {name: _typed(name, value) for name, value in row.items() if value not in (None, "")}
        except ValueError as error:
            yield line, str(error)


def _typed(name: str, text: str) -> Any:
    """A CSV cell as the entry's field takes it: price a number, available true or false, the rest text."""
    if name == "price":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"price: {text!r} is not a number") from None
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
        except json.JSONDecodeError as error:
            yield line, f"not JSON ({error.msg})"
            continue
        yield line, fields if isinstance(fields, dict) else "not a JSON object"


def _post(url: str, body: bytes, key: str, sleep: Callable[[float], None]) -> dict[str, Any]:
    """The API's JSON answer to one request, sent again while it answers TRY_AGAIN or cannot be reached."""
    attempt = 0
    while True:
        attempt += 1
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "content-type": "application/json", "x-api-key": key})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            if error.code not in TRY_AGAIN or attempt == TRIES:
                raise RuntimeError(f"POST {url}: HTTP {error.code}: {text[:500]}") from None
            sleep(_wait(error.headers.get("Retry-After"), attempt))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            if attempt == TRIES:
                raise RuntimeError(f"POST {url}: {getattr(error, 'reason', error)}") from None
            sleep(_wait(None, attempt))


def _wait(retry_after: str | None, attempt: int) -> float:
    """The API's Retry-After in seconds where it gives one, else a doubling backoff; never above MAX_WAIT_SECONDS."""
    try:
        wait = float(retry_after) if retry_after is not None else 2.0 ** (attempt - 1)
    except ValueError:
        wait = 2.0 ** (attempt - 1)
    return min(max(wait, 0.0), MAX_WAIT_SECONDS)
