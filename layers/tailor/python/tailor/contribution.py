"""What one event adds to one row of a shared table: the unit Ingest's fold hands to its counter writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Contribution"]


@dataclass
class Contribution:
    """Increments and latest values that one event gives one row of a shared table."""

    table: str
    key: str
    increments: dict[str, float] = field(default_factory=dict)
    latest: dict[str, Any] = field(default_factory=dict)
