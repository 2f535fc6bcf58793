"""A shop's transaction log (CSV `customer_id,date,amount`) as purchase events, every row checked first.

The file has a header naming at least the columns customer_id, date and amount (in any order;
other columns are ignored). Each row is one purchase line: an ISO date (YYYY-MM-DD, or an ISO
date and time, whose UTC date counts) and a non-negative amount in the shop's currency. Rows of
one customer on one day are one purchase day, as in CDNOW. A bad file raises TransactionsError
naming the row (the file's line, the header being row 1) and the column.

Each row becomes a purchase event of item "item" at price `amount`, quantity 1; a customer-day is
one session, its k-th row timed at 12:00:00 + k seconds UTC (as `load_cdnow` times CDNOW's lines).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from tailor.events import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_ID_LENGTH, MAX_PRICE

__all__ = ["COLUMNS", "Transaction", "TransactionsError", "read_transactions", "transaction_events"]

COLUMNS = ("customer_id", "date", "amount")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class TransactionsError(ValueError):
    """A transaction file that cannot be read; the message names the file, row and column."""


@dataclass(frozen=True)
class Transaction:
    row: int  # the file's line, the header being row 1
    customer_id: str
    day: date
    amount: float


def read_transactions(path: str | os.PathLike[str]) -> list[Transaction]:
    """Every row of the file, checked; TransactionsError on the first bad one."""
    line = 1
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise TransactionsError(f"{path}: empty file; expected a header with columns {','.join(COLUMNS)}")
            names = [name.strip().lower() for name in header]
            missing = [name for name in COLUMNS if name not in names]
            if missing:
                other = next((d for d in (";", "\t", "|") if d in header[0]), None)
                hint = f" (the header holds {other!r}: separate the columns with commas)" if other else ""
                raise TransactionsError(f"{path}: row 1 (header): missing column{'s' if len(missing) > 1 else ''} "
                                        f"{', '.join(missing)}; the header must name {','.join(COLUMNS)}{hint}")
            where = {name: names.index(name) for name in COLUMNS}
            rows = []
            for line, fields in enumerate(reader, 2):
                if not any(field.strip() for field in fields):
                    continue
                if len(fields) > len(header) and any(field.strip() for field in fields[len(header):]):
                    # An amount written 1,234.50 without quotes splits in two: read, it would be a wrong number.
                    raise TransactionsError(f"{path}: row {line}: {len(fields)} fields where the header names "
                                            f"{len(header)} (a number with a thousands separator must be quoted, "
                                            "or written without it)")
                rows.append(_transaction(path, line, fields, where))
    except UnicodeDecodeError as error:
        raise TransactionsError(f"{path}: row {line + 1} or near it: not UTF-8 text ({error.reason} at byte "
                                f"{error.start} of a block); save the file as UTF-8") from None
    except IsADirectoryError:
        raise TransactionsError(f"{path}: a directory, not a transaction file") from None
    return rows


def transaction_events(transactions: list[Transaction]) -> list[dict]:
    """The rows as purchase events (see the module), in time order."""
    per_day: Counter = Counter()
    timed = []
    for t in sorted(transactions, key=lambda t: (t.day, t.row)):
        k = per_day[(t.customer_id, t.day)]
        per_day[(t.customer_id, t.day)] += 1
        moment = datetime.combine(t.day, time(12, tzinfo=UTC)) + timedelta(seconds=k)
        key = f"{t.customer_id}-{t.day.isoformat()}-{k}"
        timed.append({"event_id": key[-MAX_ID_LENGTH:], "user_id": t.customer_id,
                      "session_id": f"{t.customer_id}-{t.day.isoformat()}"[-MAX_ID_LENGTH:],
                      "timestamp": moment.isoformat().replace("+00:00", "Z"), "event_type": "purchase",
                      "item_id": "item", "price": t.amount, "quantity": 1, "order_id": key[-MAX_ID_LENGTH:]})
    return timed


def _transaction(path: str | os.PathLike[str], line: int, fields: list[str], where: dict[str, int]) -> Transaction:
    def value(column: str) -> str:
        index = where[column]
        if index >= len(fields):
            raise TransactionsError(f"{path}: row {line}, column {column}: missing (the row has {len(fields)} fields)")
        return fields[index].strip()

    def bad(column: str, why: str) -> TransactionsError:
        return TransactionsError(f"{path}: row {line}, column {column}: {why}")

    customer, day_text, amount_text = value("customer_id"), value("date"), value("amount")
    if not customer:
        raise bad("customer_id", "empty")
    if len(customer) > MAX_ID_LENGTH or _CONTROL.search(customer):
        raise bad("customer_id", f"{customer[:40]!r} is longer than {MAX_ID_LENGTH} characters or holds control characters")
    day = _day(day_text)
    if day is None:
        raise bad("date", f"{day_text!r} is not an ISO date (YYYY-MM-DD)")
    if not EARLIEST_TIMESTAMP.date() <= day < LATEST_TIMESTAMP.date():
        raise bad("date", f"{day_text} is outside {EARLIEST_TIMESTAMP.date()}..{LATEST_TIMESTAMP.date() - timedelta(days=1)}")
    try:
        amount = float(amount_text)
    except ValueError:
        raise bad("amount", f"{amount_text!r} is not a number") from None
    if not math.isfinite(amount):
        raise bad("amount", f"{amount_text!r} is not a finite number")
    if amount < 0:
        raise bad("amount", f"{amount_text} is negative")
    if amount > MAX_PRICE:
        raise bad("amount", f"{amount_text} is above {MAX_PRICE:,.0f}")
    return Transaction(line, customer, day, amount)


def _day(text: str) -> date | None:
    if len(text) < 10 or text[4] != "-":
        return None  # date.fromisoformat would also take 20240131, which this format does not promise
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()
