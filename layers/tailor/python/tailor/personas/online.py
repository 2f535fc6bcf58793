"""Personas in Ingest: persona-weighted counters per (persona, item), and per batch each touched shopper's
traits, signals and persona mixture.

Counters. Each item event adds its shopper's persona mixture, as it stood before the batch, to the
item's row: impressions (pi:<persona>), views (pv:), clicks (pc:), cart adds (pa:), purchased units (pp:),
dwell seconds and dwell events (pd:, pn:). They ride on the write Ingest makes to the items row anyway
(one write per touched item per batch, under the same exactly-once watermark as the item's own counters),
and, being from the mixture read with the row, a replayed record adds exactly what it added the first time.

Per batch. The notes folding left in session and shopper state (tailor.evidence) become trait
evidence (tailor.personas.traits) and shopper signals (price percentiles, dwell, recent queries), and are cleared;
each touched shopper's mixture becomes the posterior of their new state (tailor.personas.model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tailor.contribution import Contribution
from tailor.events import Event
from tailor.evidence import PENDING
from tailor.personas.features import shopper_features
from tailor.personas.model import PersonaModel, persona_evidence
from tailor.personas.traits import apply_evidence
from tailor.session import SessionState
from tailor.shopper import ShopperState
from tailor.text import remember

__all__ = ["COUNTERS", "PersonaTracker", "counter_name"]

# Event type -> counter prefix of the persona-weighted item counters.
COUNTERS: dict[str, str] = {"impression": "pi", "view": "pv", "click": "pc", "add_to_cart": "pa",
                            "purchase": "pp", "dwell": "pd"}
DWELL_EVENTS = "pn"
RECENT_QUERIES = 10
MIN_COUNTED_SHARE = 0.02  # mixture shares below this add nothing to counters (keeps item rows small)


def counter_name(prefix: str, persona: int | str) -> str:
    return f"{prefix}:{persona}"


class PersonaTracker:
    def __init__(self, model: Callable[[], PersonaModel | None]):
        """`model` answers the current persona model (tailor.personas.storage.ModelSource), or None before
        the first rebuild: then traits still move, but mixtures and counters wait for a model."""
        self.model = model
        self._starts: dict[tuple, dict[str, float]] = {}  # cold-start mixtures of the batch's shoppers

    def counters(self, event: Event, shopper: ShopperState | None) -> list[Contribution]:
        """The persona-weighted item counters `event` adds, given its shopper before this batch."""
        prefix = COUNTERS.get(event.event_type)
        if prefix is None:
            return []
        model = self.model()
        if model is None:
            return []
        mixture = (shopper.personas.get("mixture") if shopper is not None else None) or self._start(model, shopper)
        shares = {pid: share for pid, share in mixture.items() if share >= MIN_COUNTED_SHARE}
        if event.event_type == "impression":
            increments = {counter_name(prefix, pid): share for pid, share in shares.items()}
            return [Contribution("items", item, dict(increments)) for item in dict.fromkeys(event.item_ids)]
        amount = float(getattr(event, "quantity", 1))
        if event.event_type == "dwell":
            amount = event.dwell_ms / 1000.0
        increments = {counter_name(prefix, pid): round(share * amount, 6) for pid, share in shares.items()}
        if event.event_type == "dwell":
            increments.update({counter_name(DWELL_EVENTS, pid): share for pid, share in shares.items()})
        return [Contribution("items", event.item_id, increments)]

    def settle(self, sessions: Iterable[SessionState], shoppers: Iterable[ShopperState]) -> None:
        """Turn the batch's notes into traits, signals and the shoppers' mixtures, in place."""
        model = self.model()
        percentile = model.space.price_percentile if model is not None else _no_percentile
        self._starts = {}
        for session in sessions:
            state = session.personas
            notes = state.pop(PENDING, None)
            if notes:
                apply_evidence(state.setdefault("traits", {}), state.setdefault("evidence", {}), notes, percentile)
        for shopper in shoppers:
            state = shopper.personas
            notes = state.pop(PENDING, None)
            if notes:
                apply_evidence(state.setdefault("traits", {}), state.setdefault("evidence", {}), notes, percentile)
                _absorb_signals(state, notes, percentile)
            # The posterior of their state after the batch, whether or not it brought notes (an impression alone
            # moves their features): the same however the stream cut their events into batches.
            if model is not None and (notes or "mixture" in state):
                state["mixture"] = model.mixture(shopper_features(shopper, model.space), persona_evidence(shopper))
                state["model"] = model.version

    def _start(self, model: PersonaModel, shopper: ShopperState | None) -> dict[str, float]:
        key = _start_key(model, shopper)
        found = self._starts.get(key)
        if found is None:
            found = self._starts[key] = _starting_mixture(model, shopper)
        return found


def _start_key(model: PersonaModel, shopper: ShopperState | None) -> tuple:
    """What a cold-start mixture depends on: the model, and the shopper's profile and referrals so far."""
    if shopper is None:
        return (model.version,)
    return (model.version, shopper.user_id, shopper.counts.get("profile", 0), shopper.counts.get("referral", 0))


def _starting_mixture(model: PersonaModel, shopper: ShopperState | None) -> dict[str, float]:
    if shopper is None:
        return model.general_mixture()
    return model.cold_start_mixture(shopper.profile, shopper.referral_sources)


def _absorb_signals(state: dict[str, Any], notes: list[list], percentile: Callable[[str, float], float | None]) -> None:
    signals = state.setdefault("signals", {})
    queries = state.get("queries", [])
    for kind, category, price, dwell_ms, text in notes:
        if kind in ("view", "click", "add_to_cart", "purchase", "wishlist") and price >= 0 and category:
            q = percentile(category, price)
            if q is not None:
                signals["price_n"] = signals.get("price_n", 0) + 1
                signals["price_sum"] = round(signals.get("price_sum", 0.0) + q, 6)
        elif kind == "dwell":
            signals["dwell_n"] = signals.get("dwell_n", 0) + 1
            signals["dwell_ms"] = signals.get("dwell_ms", 0) + dwell_ms
        elif kind == "search" and text:
            queries = remember(queries, text, RECENT_QUERIES)
    if queries:
        state["queries"] = queries


def _no_percentile(category: str, price: float) -> None:
    return None
