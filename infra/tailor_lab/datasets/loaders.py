"""Loaders that turn the public data sets (YooChoose, Diginetica, CDNOW) into Tailor event streams.

Each loader yields event dicts valid per `tailor.events.parse_event`, sorted by timestamp. The
files are ordered by session or customer rather than by time, so a loader reads its files once
into compact rows, sorts them, and then yields events one by one.

Event ids are deterministic: loading the same file again yields the same ids, so a replay is
recognised as one by the ingest.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

__all__ = ["json_lines", "load_cdnow", "load_diginetica", "load_yoochoose"]

PathLike = str | os.PathLike[str]

_DAY_MS = 86_400_000
_MISSING = {"", "NA", "na", "null", "NULL", "None"}


def load_yoochoose(path: PathLike) -> Iterator[dict]:
    """YooChoose clicks (`SessionId ItemId Time`, tab separated, epoch seconds) as view events.

    A YooChoose click is an item page view. The data has no shopper ids, so each session stands
    for its own shopper: user_id = session_id = "yc-<SessionId>". Event ids are
    "yc-<file stem>-<line number>".
    """
    path = Path(path)
    stem = path.stem
    rows: list[tuple[int, int, str, str]] = []  # (epoch ms, line number, session, item)
    columns = {"sessionid": 0, "itemid": 1, "time": 2}
    for lineno, line, fields in _whitespace_rows(path):
        if lineno == 1 and not _is_number(fields[0]):
            columns = _header_columns(path, fields, ("sessionid", "itemid", "time"))
            continue
        try:
            session = fields[columns["sessionid"]]
            item = fields[columns["itemid"]]
            t_ms = round(float(fields[columns["time"]]) * 1000)
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{lineno}: expected SessionId, ItemId, Time; got {line.strip()!r}") from None
        rows.append((t_ms, lineno, session, item))
    rows.sort()
    for t_ms, lineno, session, item in rows:
        yield {"event_id": f"yc-{stem}-{lineno}", "user_id": f"yc-{session}", "session_id": f"yc-{session}",
               "timestamp": _iso(t_ms), "event_type": "view", "item_id": item}


def load_diginetica(views_path: PathLike, purchases_path: PathLike | None = None,
                    categories_path: PathLike | None = None, *, viewed_sessions_only: bool = False) -> Iterator[dict]:
    """Diginetica (CIKM Cup 2016) item views, and optionally purchases and item categories, as events.

    Times: the data gives each event's date (`eventdate`) and its `timeframe`, the milliseconds
    since its session began, but not the session's start. Each session start is placed in the
    middle of the interval that keeps every one of its events on its stated date, so the order
    and gaps within a session are exact and every event lands on its date.

    Shoppers: a session is one shopper's, user_id = "dg-u<userId>" of the userId its rows name
    most (the least of equals; a few sessions name two), else "dg-s<sessionId>".
    session_id = "dg-<sessionId>".

    Purchases carry no price in the data: they get price 0.0 and quantity 1, so revenue from this
    data set is unknown (counts of purchases are real). order_id = "dg-<ordernumber>". Rows that
    repeat in the file are kept, one event each.

    With `viewed_sessions_only`, purchases are kept only in the sessions the views file holds: the views file
    may be a sample of the sessions (the shared one is), and purchases of sessions outside it are of shoppers
    the data shows nothing else of.

    Categories (`itemId;categoryId`) become the `category` of item events, the id as it is.
    Event ids are "dg-<file stem>-<line number>".
    """
    categories = _read_diginetica_categories(Path(categories_path)) if categories_path is not None else {}
    # (session, timeframe ms, day ms, line number, stem, user or None, item, order or None)
    rows: list[tuple[str, int, int, int, str, str | None, str, str | None]] = []
    rows += _read_diginetica(Path(views_path), ("sessionid", "userid", "itemid", "timeframe", "eventdate"))
    if purchases_path is not None:
        viewed = {r[0] for r in rows}
        rows += [r for r in _read_diginetica(Path(purchases_path),
                                             ("sessionid", "userid", "timeframe", "eventdate", "ordernumber", "itemid"))
                 if not viewed_sessions_only or r[0] in viewed]
    earliest: dict[str, int] = {}
    latest: dict[str, int] = {}
    users: dict[str, Counter] = {}
    for session, timeframe, day, _, _, user, _, _ in rows:
        lo, hi = day - timeframe, day + _DAY_MS - 1 - timeframe
        earliest[session] = max(earliest.get(session, lo), lo)
        latest[session] = min(latest.get(session, hi), hi)
        if user is not None:
            users.setdefault(session, Counter())[user] += 1
    session_start = {}
    for session, lo in earliest.items():
        hi = latest[session]
        # An empty interval means the dates disagree; the earliest consistent start is the best guess.
        session_start[session] = (lo + hi) // 2 if lo <= hi else lo
    session_user = {s: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for s, c in users.items()}
    timed = sorted(((session_start[r[0]] + r[1], r[4], r[3]), r) for r in rows)
    for (t_ms, stem, lineno), (session, _, _, _, _, _, item, order) in timed:
        user = session_user.get(session)
        event = {"event_id": f"dg-{stem}-{lineno}",
                 "user_id": f"dg-u{user}" if user is not None else f"dg-s{session}",
                 "session_id": f"dg-{session}", "timestamp": _iso(t_ms),
                 "event_type": "view" if order is None else "purchase", "item_id": item}
        if order is not None:
            event.update(price=0.0, quantity=1, order_id=f"dg-{order}")
        category = categories.get(item)
        if category is not None:
            event["category"] = category
        yield event


def load_cdnow(path: PathLike) -> Iterator[dict]:
    """CDNOW transactions as purchase events; reads the master file and the 1/10 sample file.

    Master lines are `customer_id date(YYYYMMDD) number_of_cds dollar_value` (a header line is
    skipped); sample lines are `master_id sample_id date cds dollars`, and use the master id so
    both files name a customer the same way. Each line is one order of item "cd": quantity = the
    CDs (at least 1), price = dollars / quantity, so price x quantity is the line's value. The
    data has dates only: a customer-day is one session, "cdnow-<customer>-<date>", its k-th line
    timed at 12:00:00 + k seconds UTC. user_id = "cdnow-<customer>". The event id and order id are
    "cdnow-<customer>-<date>-<k>", the same in both files, so the sample replays as a part of the
    master.
    """
    path = Path(path)
    rows: list[tuple[int, int, str, str, int, float, int]] = []  # (ms, line, customer, date, cds, $, k)
    lines_per_day: Counter = Counter()
    for lineno, line, fields in _whitespace_rows(path):
        if lineno == 1 and not _is_number(fields[0]):
            continue  # the master file's header
        if len(fields) not in (4, 5):
            raise ValueError(f"{path}:{lineno}: expected 4 (master) or 5 (sample) columns; got {line.strip()!r}")
        customer_field, day_field, cds_field, dollars_field = (
            fields if len(fields) == 4 else (fields[0], fields[2], fields[3], fields[4]))
        if len(day_field) != 8:
            raise ValueError(f"{path}:{lineno}: date {day_field!r} is not YYYYMMDD")
        try:
            customer = str(int(customer_field))
            day = date(int(day_field[:4]), int(day_field[4:6]), int(day_field[6:8]))
            cds = int(cds_field)
            dollars = float(dollars_field)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: unreadable CDNOW line {line.strip()!r}") from None
        if cds < 0 or dollars < 0:
            raise ValueError(f"{path}:{lineno}: negative CDs or dollars in {line.strip()!r}")
        k = lines_per_day[(customer, day_field)]
        lines_per_day[(customer, day_field)] += 1
        t_ms = _day_ms(day) + 12 * 3_600_000 + k * 1000
        rows.append((t_ms, lineno, customer, day_field, cds, dollars, k))
    rows.sort()
    for t_ms, _, customer, day_field, cds, dollars, k in rows:
        quantity = max(cds, 1)
        key = f"cdnow-{customer}-{day_field}-{k}"
        yield {"event_id": key, "user_id": f"cdnow-{customer}", "session_id": f"cdnow-{customer}-{day_field}",
               "timestamp": _iso(t_ms), "event_type": "purchase", "item_id": "cd", "price": dollars / quantity,
               "quantity": quantity, "order_id": key}


def _whitespace_rows(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, line, fields) of every non-blank line of a whitespace-separated file."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.split()
            if fields:
                yield lineno, line, fields


def _read_diginetica(path: Path, required: tuple[str, ...]):
    stem = path.stem
    rows = []
    with open(path, encoding="utf-8") as fh:
        header = fh.readline()
        columns = _header_columns(path, header.strip().split(";"), required)
        has_order = "ordernumber" in required
        for lineno, line in enumerate(fh, 2):
            line = line.strip()
            if not line:
                continue
            fields = line.split(";")
            try:
                session = fields[columns["sessionid"]]
                user = fields[columns["userid"]].strip()
                item = fields[columns["itemid"]]
                timeframe = int(fields[columns["timeframe"]])
                day = _day_ms(date.fromisoformat(fields[columns["eventdate"]]))
                order = fields[columns["ordernumber"]] if has_order else None
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{lineno}: expected {';'.join(required)}; got {line!r}") from None
            if not session or not item or timeframe < 0:
                raise ValueError(f"{path}:{lineno}: missing session or item, or negative timeframe: {line!r}")
            rows.append((session, timeframe, day, lineno, stem, None if user in _MISSING else user, item,
                         order))
    return rows


def _read_diginetica_categories(path: Path) -> dict[str, str]:
    categories: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        columns = _header_columns(path, fh.readline().strip().split(";"), ("itemid", "categoryid"))
        for lineno, line in enumerate(fh, 2):
            fields = line.strip().split(";")
            if fields == [""]:
                continue
            try:
                categories[fields[columns["itemid"]]] = fields[columns["categoryid"]]
            except IndexError:
                raise ValueError(f"{path}:{lineno}: expected itemId;categoryId; got {line.strip()!r}") from None
    return categories


def _header_columns(path: Path, names: list[str], required: tuple[str, ...]) -> dict[str, int]:
    """Column positions by name, matched loosely (session_id = sessionId = SessionId)."""
    index = {name.strip().replace("_", "").lower(): i for i, name in enumerate(names)}
    missing = [name for name in required if name not in index]
    if missing:
        raise ValueError(f"{path}: header {names!r} lacks column(s) {', '.join(missing)}")
    return {name: index[name] for name in required}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _day_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * _DAY_MS


def _iso(t_ms: int) -> str:
    moment = datetime.fromtimestamp(t_ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{t_ms % 1000:03d}Z"


def json_lines(path: PathLike) -> Iterator[dict]:
    """Events as JSON lines, one object a line, from a plain or a gzipped (.gz) file."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)
