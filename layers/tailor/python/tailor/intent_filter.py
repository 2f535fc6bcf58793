"""Session intent as a learned forward filter: the posterior over intents, updated by each event a session folds.

The intent is a hidden Markov chain over a session's events. Each event is observed as its kind (its type, refined
by where it happens: an impression, scroll or zoom on an item page rather than on a listing, a click in an item
page's recommendations; a referral by its source, and a profile after it) and one detail the intents shape: on an
item page the time since the view of its first review, scroll and zoom, and the dwell with whether the shopper read
reviews, scrolled or zoomed (times in log buckets), a scroll's depth, whether a view, browse or click stays in the
session's category or goes back to an item, whether a search refines the last query. The filter
weighs each by its likelihood under each intent: P(kind | the previous event's kind, intent) x P(detail | kind,
intent); between events the intent moves by a transition matrix, the one of a new action when the event starts one
(`action_start`), else (nearly) the identity, and after a purchase the one of starting over.

The parameters are counted from labelled sessions (tailor_lab.training.intent_filter) and ship in the intent
model's metadata (tailor.intent.IntentModel.filter); `observe` is the one function training counts with and serving
filters with. A session keeps the filter's state in one short string (SessionState.intent_filter: the posterior,
rounded, and the page context), updated by tailor.session.fold_session once per event it folds, so a replayed or
duplicate event leaves it as it was, and the state is the same however a stream cuts the session into batches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from tailor.text import normalize_query

if TYPE_CHECKING:
    from tailor.events import Event
    from tailor.session import SessionState

__all__ = ["DWELL_EDGES", "TRANSITIONS", "IntentFilter", "Observation", "action_start", "filter_posterior",
           "observe"]

N_INTENTS = 4  # tailor.intent.INTENTS, in that order
# Bucket edges, in seconds, of a page's reading time: log-spaced over what shoppers spend on a page.
DWELL_EDGES: tuple[float, ...] = (1.5, 3, 5, 7, 9, 12, 16, 21, 28, 37, 50, 65, 85, 110, 150, 220)
DEPTH_BUCKETS = 10
TRANSITIONS: tuple[str, ...] = ("action", "within", "after_purchase")
# Event types that always start a new action; a view starts one unless a click led to it, a click always does.
_ACTION_TYPES = frozenset({"category_browse", "search", "spec_compare", "wishlist", "add_to_cart", "remove_from_cart",
                           "checkout_view", "click"})
_LED_TO_VIEW = frozenset({"click", "click_in_page", "start", "referral", "profile"})
_ON_PAGE = frozenset({"impression", "scroll", "zoom"})
_ARRIVALS = ("referral_", "profile_")  # a landing page comes with the arrival, no action of the shopper's
_NO_PAGE = "-"
_NOTHING = "-"  # nothing happened on the open page yet
_PAGE_EVENTS = {"review_read": "r", "scroll": "s", "zoom": "z"}  # what the kept state notes of an open page
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # the kept state is split at spaces, the parameters' keys at ">" and ":"
_SOURCE_CHARS = 40


class Observation(NamedTuple):
    """What the filter sees of one event: the previous event's kind, this one's kind, its detail."""

    previous: str
    kind: str
    detail: str

    @property
    def transition(self) -> str:
        """Which transition matrix moves the intent into this event (one of TRANSITIONS)."""
        if self.previous == "purchase" and self.kind != "purchase":
            return "after_purchase"
        return "action" if action_start(self.previous, self.kind) else "within"


def action_start(previous: str, kind: str) -> bool:
    """Whether an event of `kind` after one of `previous` starts a new action (where an intent may change)."""
    if kind == "view":
        return not (previous in _LED_TO_VIEW or previous.startswith(_ARRIVALS))
    return kind in _ACTION_TYPES


def observe(state: SessionState | None, event: Event) -> Observation:
    """The observation of `event` in its session as it was before it (None: its first event)."""
    kept = "" if state is None else state.intent_filter
    return _observe(state, event, kept.split(" ") if kept else None)


def filter_posterior(kept: str) -> list[float] | None:
    """The posterior a session's filter state holds (tailor.intent.INTENTS order), or None without one."""
    if not kept:
        return None
    return [float(v) for v in kept.split(" ", N_INTENTS)[:N_INTENTS]]


class IntentFilter:
    """The filter's parameters: the first event's prior, the transition matrices, the kinds' and details' likelihoods."""

    def __init__(self, prior: Sequence[float], transitions: Mapping[str, Sequence[Sequence[float]]],
                 kinds: Mapping[str, Sequence[float]], details: Mapping[str, Sequence[float]]):
        self.prior = _vector(prior, "prior")
        missing = sorted(set(TRANSITIONS) - set(transitions))
        if missing:
            raise ValueError(f"intent filter: transitions {missing} missing")
        self.transitions = {name: [_vector(row, f"transitions.{name}") for row in _rows(transitions[name], name)]
                            for name in TRANSITIONS}
        self.kinds = {key: _vector(v, f"kinds.{key}") for key, v in kinds.items()}
        self.details = {key: _vector(v, f"details.{key}") for key, v in details.items()}
        self._columns = {name: tuple(tuple(row[j] for row in m) for j in range(N_INTENTS))
                         for name, m in self.transitions.items()}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> IntentFilter:
        if not isinstance(document, Mapping):
            raise ValueError("intent filter: expected an object with prior, transitions, kinds and details")
        for name in ("prior", "transitions", "kinds", "details"):
            if name not in document:
                raise ValueError(f"intent filter: {name} missing")
        return cls(document["prior"], document["transitions"], document["kinds"], document["details"])

    def to_json(self) -> dict[str, Any]:
        return {"prior": self.prior, "transitions": self.transitions, "kinds": self.kinds, "details": self.details}

    def step(self, state: SessionState | None, event: Event) -> str:
        """The session's filter state after `event` (`state`: the session before it)."""
        kept = "" if state is None else state.intent_filter
        parts = kept.split(" ") if kept else None
        seen = _observe(state, event, parts)
        if parts is None:
            p0, p1, p2, p3 = self.prior
        else:
            b0, b1, b2, b3 = (float(v) for v in parts[:N_INTENTS])
            c0, c1, c2, c3 = self._columns[seen.transition]
            # Written out for four intents: a step is a few dozen multiplications, once per event Ingest folds.
            p0 = b0 * c0[0] + b1 * c0[1] + b2 * c0[2] + b3 * c0[3]
            p1 = b0 * c1[0] + b1 * c1[1] + b2 * c1[2] + b3 * c1[3]
            p2 = b0 * c2[0] + b1 * c2[1] + b2 * c2[2] + b3 * c2[3]
            p3 = b0 * c3[0] + b1 * c3[1] + b2 * c3[2] + b3 * c3[3]
        for likelihood in (self.kinds.get(f"{seen.previous}>{seen.kind}"), self.details.get(f"{seen.kind}:{seen.detail}")):
            if likelihood is not None:
                p0, p1, p2, p3 = p0 * likelihood[0], p1 * likelihood[1], p2 * likelihood[2], p3 * likelihood[3]
        total = p0 + p1 + p2 + p3
        if not (total > 0 and math.isfinite(total)):
            p0, p1, p2, p3 = self.prior
            total = 1.0
        page, happened = (None, _NOTHING) if parts is None else _page(parts)
        if seen.kind == "view":
            page, happened = event.epoch, _NOTHING
        elif seen.kind == "dwell":
            page, happened = None, _NOTHING
        elif page is not None:
            letter = _PAGE_EVENTS.get(event.event_type)
            if letter is not None and letter not in happened:
                happened = "".join(f for f in "rsz" if f in happened or f == letter)
        where = _NO_PAGE if page is None else f"{page:.3f}"
        # Rounded as the row keeps it, so that the next event steps from the same numbers however batches fall.
        return (f"{p0 / total:.6g} {p1 / total:.6g} {p2 / total:.6g} {p3 / total:.6g} {seen.kind} {where} "
                f"{happened}")


# -- helpers ----------------------------------------------------------------------------------------

def _observe(state: SessionState | None, event: Event, parts: list[str] | None) -> Observation:
    """The observation of `event`, given the session's filter state split at its spaces (None: none yet)."""
    previous = "start" if parts is None else parts[N_INTENTS]
    page, seen = (None, "") if parts is None else _page(parts)
    kind = event.event_type
    detail = ""
    if kind == "view":
        detail = _category_move(state, event.category)
        if state is not None and event.item_id in state.items:
            detail += " again"
    elif kind in ("category_browse", "click"):
        detail = _category_move(state, event.category)
    elif kind == "search":
        detail = _search(None if state is None else state.last_query, event.query)
    elif kind == "referral":
        # Where the shopper came from is the kind itself: what follows (a landing page or not) depends on it.
        kind = "referral_" + _UNSAFE.sub("_", event.source)[:_SOURCE_CHARS]
    elif kind == "profile" and previous.startswith("referral_"):
        kind = "profile_after_" + previous
    elif kind == "scroll":
        detail = str(min(int(event.depth * DEPTH_BUCKETS), DEPTH_BUCKETS - 1))
        if page is not None:
            detail += f" {_bucket(event.epoch - page)}"  # scrolled a share of the reading time in
    elif kind == "zoom" and page is not None:
        detail = str(_bucket(event.epoch - page))
    elif kind == "review_read" and page is not None:
        detail = "more" if "r" in seen else str(_bucket(event.epoch - page))
    elif kind == "dwell":
        detail = ("after reviews " if "r" in seen else "") + str(_bucket(event.dwell_ms / 1000.0))
        detail += " " + ("".join(f for f in "sz" if f in seen) or "-")  # scrolled or zoomed on the page, or neither
    if page is not None and kind in _ON_PAGE:
        kind += "_in_page"
    elif kind == "click" and previous == "dwell":
        kind = "click_in_page"
    return Observation(previous, kind, detail)


def _page(parts: list[str]) -> tuple[float | None, str]:
    """When the open item page was viewed (None: none open) and what happened on it (letters of _PAGE_EVENTS),
    from the kept state."""
    page = parts[N_INTENTS + 1]
    return None if page == _NO_PAGE else float(page), parts[N_INTENTS + 2]


def _category_move(state: SessionState | None, category: str | None) -> str:
    last = state.categories[-1] if state is not None and state.categories else None
    if last is None:
        return "first"
    return "same" if category == last else "other"


def _search(last_query: str | None, query: str) -> str:
    """Whether a search starts the session's searching, refines the last query (keeps its words, adds some) or not."""
    if last_query is None:
        return "first"
    words = normalize_query(query).split()
    kept = [w for w in last_query.split() if not w.startswith("under-")]  # a price cap is replaced, not kept
    return "refine" if words != last_query.split() and all(w in words for w in kept) else "new"


def _bucket(seconds: float) -> int:
    for k, edge in enumerate(DWELL_EDGES):
        if seconds < edge:
            return k
    return len(DWELL_EDGES)


def _vector(values: Sequence[float], name: str) -> list[float]:
    if isinstance(values, (str, bytes)) or len(values) != N_INTENTS:
        raise ValueError(f"intent filter: {name} must hold {N_INTENTS} numbers, one per intent")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"intent filter: {name} must hold non-negative numbers, not {v!r}")
        out.append(float(v))
    return out


def _rows(matrix: Sequence[Sequence[float]], name: str) -> Sequence[Sequence[float]]:
    if isinstance(matrix, (str, bytes)) or len(matrix) != N_INTENTS:
        raise ValueError(f"intent filter: transitions.{name} must have {N_INTENTS} rows")
    return matrix
