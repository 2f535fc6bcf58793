"""Session intent as a learned forward filter: the posterior over intents, updated by each event a session folds.

The intent is a hidden Markov chain over a session's events. Each event is observed as its kind (its type, refined
by where it happens: an impression, scroll or zoom on an item page rather than on a listing, a click in an item
page's recommendations; a referral by its source, and a profile after it) and one detail the intents shape: on an
item page the time since the view of its first review, scroll and zoom, and the dwell (given whether the shopper
scrolled or zoomed) with whether they read reviews (times in log buckets), a scroll's depth, whether a view, browse
or click stays in the category the shopper browses, goes back to one the session saw or to an item, whether a search
refines the last query and whether its results hold the item the shopper engaged with last or another the session
engaged with, whether a wishlisted item is out of stock. Some events weigh by further details too: the category a
view, browse or click moves to (who browses it), a stated profile's interests, age and location. The filter weighs
each by its likelihood under each intent: P(kind | what came before, intent) x P(detail | kind, intent), where what
came before is the previous event's kind within an action and any action's end when the event starts a new one (the
choice of an action does not depend on how the last one ended, and a session that goes on says so of its intent),
whether the cart holds anything, and whether the session viewed two items or more of the category browsed (a
comparison then needs no new page); between events the intent moves by a transition matrix, the one of a new action
when the event starts one (`action_start`), else (nearly) the identity, and after a purchase the one of starting
over.

The parameters are learned from labelled sessions (tailor_lab.training.intent_filter: counted, then fitted) and
ship in the intent model's metadata (tailor.intent.IntentModel.filter), stamped with FORMAT; `observe` is the one
function training learns with and serving filters with. Parameters of another format (or of none: published before
formats were stamped) are refused rather than read, since their keys would mean other observations than this code's
and the classifier would misread the posterior they give. A session keeps the filter's state in one short string
(SessionState.intent_filter: the posterior, rounded, the page context, the category browsed and the items viewed in
it), updated by tailor.session.fold_session once per event it folds, so a replayed or duplicate event leaves it as it
was, and the state is the same however a stream cuts the session into batches.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from tailor.text import normalize_query

if TYPE_CHECKING:
    from tailor.events import Event
    from tailor.session import SessionState

__all__ = ["ANY_ACTION", "DWELL_EDGES", "FORMAT", "TRANSITIONS", "WIDGET_SECONDS", "IntentFilter", "Observation",
           "action_start", "filter_posterior", "kind_context", "observe"]

N_INTENTS = 4  # tailor.intent.INTENTS, in that order
# The parameters' format: a new one whenever `observe`, the kept state or the step change what the parameters mean.
FORMAT = 2
ANY_ACTION = "action"  # what comes before an event that starts a new action, in its kind's likelihood
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
_MOVES_OUT = frozenset({"first", "other", "back"})  # category moves whose category weighs too (who browses it)
_CATEGORIZED = frozenset({"view", "category_browse", "click"})
_NOTHING = "-"  # nothing happened on the open page yet
_PAGE_EVENTS = {"review_read": "r", "scroll": "s", "zoom": "z"}  # what the kept state notes of an open page
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # the kept state is split at spaces, the parameters' keys at ">" and ":"
_SOURCE_CHARS = 40
# A click this soon after a page's dwell is in the page's recommendations: leaving the page was the click itself.
WIDGET_SECONDS = 0.5
# Kinds after which a new action is one more of the session's actions (the first action has no transition before it,
# and after a purchase the session starts over).
_BEFORE_ACTIONS = frozenset({"start", "purchase"})


class Observation(NamedTuple):
    """What the filter sees of one event: the previous event's kind, this one's kind, its detail, and what else its
    kind's likelihood is given ("+cart": the cart holds something)."""

    previous: str
    kind: str
    detail: str
    context: str = ""
    extra: tuple[str, ...] = ()  # further details' keys, each weighed by its likelihood too

    @property
    def given(self) -> str:
        """What the kind's likelihood is given: the previous kind within an action, ANY_ACTION when this starts one."""
        if self.previous not in _BEFORE_ACTIONS and not self.previous.startswith(_ARRIVALS) \
                and action_start(self.previous, self.kind):
            return ANY_ACTION + self.context
        return self.previous + self.context

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


def kind_context(state: SessionState | None, parts: list[str] | None = None) -> str:
    """What else an event's kind is weighed given, besides what came before it: "+cart" when the cart holds something,
    "+pair" when the session viewed two items or more of the category browsed (a comparison needs no new page then)
    (`parts`: the session's filter state split at its spaces, if split already)."""
    if state is None:
        return ""
    out = "+cart" if state.cart_units > 0 else ""
    if parts is None and state.intent_filter:
        parts = state.intent_filter.split(" ")
    if _viewed_in_browsed(parts) >= 2:
        out += "+pair"
    return out


def _viewed_in_browsed(parts: list[str] | None) -> int:
    """Items viewed in the category browsed since the shopper came to it, as the kept state notes it (at most 9)."""
    return int(parts[N_INTENTS + 4]) if parts is not None and len(parts) > N_INTENTS + 4 else 0


def _viewed_after(parts: list[str] | None, browsed: str, seen: Observation) -> int:
    """The items viewed in the category browsed after an event (`browsed`: the category browsed after it)."""
    if browsed != _browsed(parts):
        return 1 if seen.kind == "view" else 0
    n = _viewed_in_browsed(parts)
    return min(n + 1, 9) if seen.kind == "view" and seen.detail == "same" else n


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
        stamped = document.get("format")
        if stamped != FORMAT:
            raise ValueError(f"intent filter: parameters of format {stamped or 'unstamped'}, this code reads format "
                             f"{FORMAT}; retrain the intent model")
        for name in ("prior", "transitions", "kinds", "details"):
            if name not in document:
                raise ValueError(f"intent filter: {name} missing")
        return cls(document["prior"], document["transitions"], document["kinds"], document["details"])

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "prior": self.prior, "transitions": self.transitions, "kinds": self.kinds,
                "details": self.details}

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
        details = self.details
        for likelihood in (self.kinds.get(f"{seen.given}>{seen.kind}"), details.get(f"{seen.kind}:{seen.detail}"),
                           *(details.get(key) for key in seen.extra)):
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
        browsed = _browsed_after(parts, seen, event)
        # Rounded as the row keeps it, so that the next event steps from the same numbers however batches fall.
        return (f"{p0 / total:.6g} {p1 / total:.6g} {p2 / total:.6g} {p3 / total:.6g} {seen.kind} {where} "
                f"{happened} {browsed} {_viewed_after(parts, browsed, seen)}")


# -- helpers ----------------------------------------------------------------------------------------

def _observe(state: SessionState | None, event: Event, parts: list[str] | None) -> Observation:
    """The observation of `event`, given the session's filter state split at its spaces (None: none yet)."""
    previous = "start" if parts is None else parts[N_INTENTS]
    page, seen = (None, "") if parts is None else _page(parts)
    kind = event.event_type
    detail = ""
    if kind == "view":
        if previous == "click_in_page":
            detail = "recommended"  # the recommendations' items come from anywhere in the shop
        else:
            detail = _category_move(state, parts, event.category)
            if state is not None and event.item_id in state.items:
                detail += " again"
    elif kind in ("category_browse", "click"):
        detail = _category_move(state, parts, event.category)
    elif kind == "search":
        detail = _search(None if state is None else state.last_query, event.query)
        if state is not None and state.items and event.results:
            # Whether the results hold the item the shopper engaged with last, or another the session engaged with:
            # a search in the category the shopper is in, or one that moves on.
            items, results = state.items, event.results
            detail += " last" if items[-1] in results else " seen" if any(r in items for r in results) else " unseen"
    elif kind == "referral":
        # Where the shopper came from is the kind itself: what follows (a landing page or not) depends on it.
        kind = "referral_" + _safe(event.source)
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
        # Whether the shopper scrolled or zoomed is known before the dwell (their events weighed already): the
        # dwell's likelihood is given it (before the "|"), not of it.
        detail = ("".join(f for f in "sz" if f in seen) or "-") + "|"
        detail += ("after reviews " if "r" in seen else "") + str(_bucket(event.dwell_ms / 1000.0))
    elif kind == "wishlist" and event.available is False:
        detail = "unavailable"  # saved for when it is back: often an item the shopper meant to buy
    if page is not None and kind in _ON_PAGE:
        kind += "_in_page"
    elif kind == "click" and previous == "dwell" and abs(event.epoch - state.last_seen) < WIDGET_SECONDS:
        kind = "click_in_page"  # as the page was left (either event may come first); an older click came late
    extra: tuple[str, ...] = ()
    if kind in _CATEGORIZED and detail.split(" ", 1)[0] in _MOVES_OUT and event.category:
        # The category the shopper moves to: who browses it (and so what they tend to come for).
        extra = (f"category:{_safe(event.category)}",)
    elif event.event_type == "profile":
        # A stated profile says a little of who the shopper is: each interest, the age by decade, the location.
        extra = tuple(f"interest:{_safe(i)}" for i in event.interests)
        if event.age is not None:
            extra += (f"age:{event.age // 10}",)
        if event.location:
            extra += (f"location:{_safe(event.location)}",)
    return Observation(previous, kind, detail, kind_context(state, parts), extra)


def _page(parts: list[str]) -> tuple[float | None, str]:
    """When the open item page was viewed (None: none open) and what happened on it (letters of _PAGE_EVENTS),
    from the kept state."""
    page = parts[N_INTENTS + 1]
    return None if page == _NO_PAGE else float(page), parts[N_INTENTS + 2]


def _category_move(state: SessionState | None, parts: list[str] | None, category: str | None) -> str:
    """Whether `category` is the one the shopper browses, one the session saw before, or another."""
    if state is None or not state.categories:
        return "first"
    browsed = _browsed(parts)
    # Before the kept state notes a browsed category (and in rows kept before it did): the last event's category.
    same = (category == state.categories[-1]) if browsed in (None, _NO_PAGE) else (_safe(category) == browsed)
    if same:
        return "same"
    return "back" if category in state.categories else "other"


def _browsed_after(parts: list[str] | None, seen: Observation, event: Event) -> str:
    """The category the shopper browses after `event`, as the kept state notes it: set by a browse, a click in a
    listing and a view of an item the session had not seen that no recommendation led to (the shop's recommendations
    and a return to an item leave it as it was)."""
    category = getattr(event, "category", None)
    first_view = seen.kind == "view" and seen.previous != "click_in_page" and not seen.detail.endswith("again")
    if category and (seen.kind in ("category_browse", "click") or first_view):
        return _safe(category)
    return _browsed(parts) or _NO_PAGE


def _browsed(parts: list[str] | None) -> str | None:
    """The category browsed as the kept state notes it (None: a state kept before it was noted; "-": none yet)."""
    return parts[N_INTENTS + 3] if parts is not None and len(parts) > N_INTENTS + 3 else None


@functools.lru_cache(maxsize=4096)
def _safe(text: str | None) -> str:
    """`text` as the kept state and the parameters' keys can hold it (cached: a shop has few categories and sources)."""
    return _UNSAFE.sub("_", str(text))[:_SOURCE_CHARS]


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
