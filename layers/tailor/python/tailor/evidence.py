"""Persona evidence noted while an event is folded into session and shopper state, for Ingest to weigh per batch.

Folding stays pure and model-free: an event leaves a compact note (its type, category, price, dwell,
query) in the state's `personas` field. Once per batch Ingest turns the notes into trait evidence and
a persona-mixture update with the current persona model (tailor.personas.online), and clears them.
"""

from __future__ import annotations

from typing import Any

from tailor.events import Event
from tailor.text import normalize_query

__all__ = ["EVIDENCE_TYPES", "MAX_PENDING", "PENDING", "note_evidence"]

# Event types that say something about what a shopper is like.
EVIDENCE_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "wishlist", "review_read", "spec_compare",
                            "dwell", "zoom", "category_browse", "search", "profile", "referral"})
PENDING = "pending"  # key of the notes in a state's `personas` field
MAX_PENDING = 256  # notes kept between two batches; a transient session folded by the API stops noting here


def note_evidence(personas: dict[str, Any], event: Event) -> None:
    """Add `event`'s note to `personas[PENDING]`: [type, category, price, dwell_ms, text] (text: the query,
    the referral source, or the profile as "age|location|interest,interest")."""
    kind = event.event_type
    if kind not in EVIDENCE_TYPES:
        return
    pending = personas.setdefault(PENDING, [])
    if len(pending) >= MAX_PENDING:
        return
    price = getattr(event, "price", None)
    text = ""
    if kind == "search":
        text = normalize_query(event.query)
    elif kind == "referral":
        text = event.source
    elif kind == "profile":
        text = "|".join([str(event.age or ""), event.location or "", ",".join(event.interests)])
    pending.append([kind, getattr(event, "category", None) or "", -1.0 if price is None else float(price),
                    int(getattr(event, "dwell_ms", 0) or 0), text])
