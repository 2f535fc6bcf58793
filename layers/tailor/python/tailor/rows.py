"""State kept in one DynamoDB row per key: conversion to and from rows, and the resent-event check."""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any, ClassVar, TypeVar

from tailor.text import event_digest

__all__ = ["RowState", "copied"]

S = TypeVar("S", bound="RowState")


class RowState:
    """Base of the dataclasses folded from events; `seen` holds digests of their recent event ids."""

    # A field only the state itself writes: a row without it holds only counters others added to it.
    STATE_FIELD: ClassVar[str]
    seen: list[str]

    @classmethod
    def from_row(cls: type[S], row: dict[str, Any], *, owned: bool = False) -> S | None:
        """The state kept in `row`, or None if the row holds no state yet. Its values are copies, so the state and
        the row change apart; `owned` says the row is the caller's to give away (a scan's row read once), and the
        state takes its values as they are."""
        if cls.STATE_FIELD not in row:
            return None
        names = _field_names(cls)
        if owned:
            return cls(**{k: v for k, v in row.items() if k in names})
        return cls(**{k: copied(v) for k, v in row.items() if k in names})

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def has_seen(self, event_id: str) -> bool:
        return event_digest(event_id) in self.seen


def copied(value: Any) -> Any:
    """A deep copy of a row's value: its dicts and lists walked directly (copy.deepcopy asks each member how to copy
    it and keeps a memo, several times the cost on a row of nested maps), anything else as copy.deepcopy copies it
    (strings, numbers, booleans and None are kept, being immutable)."""
    kind = type(value)
    if kind is dict:
        return {k: copied(v) for k, v in value.items()}
    if kind is list:
        return [copied(v) for v in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    """A state class's field names (dataclasses.fields walks the class each time: a scan asks for every row)."""
    return frozenset(f.name for f in dataclasses.fields(cls))
