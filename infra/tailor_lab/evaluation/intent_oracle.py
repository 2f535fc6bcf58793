"""The Bayes-optimal session intent on a simulation: forward filtering over the simulator's own intent process, the
ceiling of what any intent model can reach on it.

A session's intent is a hidden Markov chain over its actions (simulator.sessions): drawn at the start from the
persona's intent shares lifted by where the visitor came from, moved after each action by the transition table
(the move into intent to purchase scaled by the shopper's purchase propensity, a purchase starting over from
exploring), and surviving each action with one minus the intent's chance of ending the session. Each action is
drawn from the intent's action weights (shaped by the persona's search and wishlist rates and the cart), and what
the intent shapes within it weighs too: where browsing, viewing and searching move the category (exploring wanders,
by the shopper's category tastes and the neighbouring categories), whether a search refines the last query (only
comparing and buying do), the depth of a listing's scroll, and on each item page the reading time (log-normal
around the intent's median, lengthened by how much the shopper likes the item), the scroll and its depth, the zoom
and the review read, or their absence once the shopper leaves the page.

The filter knows what a shop cannot: the simulator's parameters, the shopper's persona, tastes and propensity, and
the kind of every action the simulator took (a click on a listing that found nothing leaves no event), each known
from the action's first event on. Its posterior after each event is therefore at least as informed as any model's:
its accuracy is a ceiling for theirs, and its macro F1 (of the most probable intent, and with per-intent weights on
the probabilities chosen for macro F1 on the same events) the ceiling the goal is measured against.

Blind to the shopper (`blind=True`: the persona's traits averaged over the personas, no taste for categories or
items, and the actions that left no event summed over as the transitions allow), the same filter tells what the
events alone do, as far as the simulator's structure goes: what a model that read them perfectly could reach.

    sim, recorder = simulate_recorded(shoppers=2000, days=4, seed=8)
    posteriors = intent_posteriors(sim, recorder)   # event id -> P(intent) in tailor.intent.INTENTS order
    blind = intent_posteriors(sim, recorder, blind=True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailor_lab.simulator.catalog import CATEGORY_NAMES, NEIGHBOURS
from tailor_lab.simulator.sessions import (
    _ACTIONS,
    _DWELL,
    _EXPLORATORY,
    _INTENT_TRANSITIONS,
    _PAGE_SUB_EVENTS,
    _PURCHASE,
    _REFERRAL_INTENT_LIFT,
    _SCROLL_SHAPE,
    _SESSION_END,
    Session,
    Sessions,
)
from tailor_lab.simulator.sessions import INTENTS as SIMULATOR_INTENTS
from tailor_lab.simulator.shoppers import PERSONAS

__all__ = ["RecordingSessions", "intent_posteriors", "simulate_recorded"]

_COMPARATIVE = SIMULATOR_INTENTS.index("comparative")
_CATEGORY = {name: k for k, name in enumerate(CATEGORY_NAMES)}
_N = len(SIMULATOR_INTENTS)
_SHARES = np.array([p.share for p in PERSONAS]) / sum(p.share for p in PERSONAS)
# The persona traits a filter that knows nothing of the shopper weighs with: their average over shoppers.
_AVERAGE = {name: float(_SHARES @ [getattr(p, name) for p in PERSONAS])
            for name in ("search_rate", "wishlist_rate", "zoom_rate", "review_rate", "purchase_propensity")}
_AVERAGE_INTENTS = _SHARES @ np.array([p.intents for p in PERSONAS])


@dataclass
class Action:
    """One action of a session as the simulator drew it, with what the filter needs of the state it started from."""

    start: int  # index of the session's first event emitted by it (or that would have been)
    probabilities: list[list[float]]  # per intent, the chance of each of _ACTIONS
    blind: list[list[float]]  # the same with the average persona's search and wishlist rates
    category: int  # the session's category when it started
    query_category: int  # the category of the session's last query then
    viewed: bool  # whether the session had viewed an item (a view may go back to one)
    name: str = ""
    category_after: int = -1
    refined: bool = False  # a search that refined the last query


class RecordingSessions(Sessions):
    """Sessions that record each action they run for the filter, drawing nothing themselves: the simulation they
    take part in is the one plain Sessions produce."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.actions: dict[str, list[Action]] = {}
        self.runs: dict[str, Session] = {}
        self._pending: Action | None = None
        self._current: Action | None = None

    def run(self, shopper: Any, k: int, t0: int) -> Session:
        session = super().run(shopper, k, t0)
        self.runs[session.session_id] = session
        self.actions.setdefault(session.session_id, [])
        return session

    def _action_weights(self, s: Session) -> list[float]:
        own = s.intent
        persona = PERSONAS[s.shopper.persona]
        probabilities, blind = [], []
        for intent in range(_N):
            s.intent = intent
            w = Sessions._action_weights(self, s)
            total = sum(w)
            probabilities.append([v / total for v in w])
            w[1] *= _AVERAGE["search_rate"] / persona.search_rate
            w[5] *= _AVERAGE["wishlist_rate"] / persona.wishlist_rate
            total = sum(w)
            blind.append([v / total for v in w])
        s.intent = own
        self._pending = Action(start=len(s.events), probabilities=probabilities, blind=blind, category=s.category,
                               query_category=s.last_query_category, viewed=bool(s.viewed))
        self.actions.setdefault(s.session_id, []).append(self._pending)
        return Sessions._action_weights(self, s)

    def _query_refinement(self, s: Session, category: Any, words: list[str]) -> str | None:
        if self._current is not None:
            self._current.refined = True
        return Sessions._query_refinement(self, s, category, words)


def _recording(name: str) -> Callable[[RecordingSessions, Session], None]:
    run = getattr(Sessions, "_do_" + name)

    def action(self: RecordingSessions, s: Session) -> None:
        record, self._pending = self._pending, None
        if record is None:  # an action another one runs inside itself
            run(self, s)
            return
        record.name = name
        self._current = record
        try:
            run(self, s)
        finally:
            self._current = None
        record.category_after = s.category

    return action


for _name in _ACTIONS:
    setattr(RecordingSessions, "_do_" + _name, _recording(_name))


def simulate_recorded(**kwargs: Any) -> tuple[Any, RecordingSessions]:
    """tailor_lab.simulator.simulate(**kwargs), with the sessions that ran it and their recorded actions."""
    from tailor_lab.simulator import simulate

    made: list[RecordingSessions] = []

    def sessions(*args: Any) -> RecordingSessions:
        made.append(RecordingSessions(*args))
        return made[-1]

    sim = simulate(**kwargs, sessions_type=sessions)
    return sim, made[0]


def intent_posteriors(sim: Any, recorder: RecordingSessions, *, blind: bool = False) -> dict[str, np.ndarray]:
    """P(intent | the session's events so far) after each event of a simulation `recorder` ran, by event id, in
    tailor.intent.INTENTS order.

    `blind`: the filter knows nothing of the shopper (the persona's traits averaged over personas by their
    shares, no category taste, reading times as if every item were liked as much) and not the actions that
    left no event (any number of them may come between two that did, each a look down a listing that found
    nothing, with the simulation's share of such looks); it still knows the kind of each action that left events
    (which the events mostly tell). What events alone tell, as far as the simulator's structure goes."""
    from tailor.intent import INTENTS

    order = [SIMULATOR_INTENTS.index(name) for name in INTENTS]
    world = sim.world
    item_index = {item_id: i for i, item_id in enumerate(world.catalog.item_ids)}
    unseen = _unseen_looks(recorder) if blind else None
    out: dict[str, np.ndarray] = {}
    for session_id, session in recorder.runs.items():
        entry = sim.truth["sessions"][session_id]
        shopper = session.shopper
        posterior = _filter(session, recorder.actions.get(session_id, []), entry["referral_source"], shopper,
                            world, item_index, unseen)
        for event_id, p in zip(entry["event_ids"], posterior[:, order]):
            out[event_id] = p
    return out


# -- the filter -------------------------------------------------------------------------------------

def _unseen_looks(recorder: RecordingSessions) -> float:
    """The share of looks down a listing (click actions) that found nothing and so left no event."""
    looks = unseen = 0
    for session_id, actions in recorder.actions.items():
        n = len(recorder.runs[session_id].events)
        for k, action in enumerate(actions):
            if action.name == "click":
                looks += 1
                unseen += (actions[k + 1].start if k + 1 < len(actions) else n) == action.start
    return unseen / looks if looks else 0.0


def _filter(session: Session, actions: list[Action], referral: str, shopper: Any, world: Any,
            item_index: dict[str, int], unseen: float | None = None) -> np.ndarray:
    """The posterior over the simulator's intents after each of the session's events (`unseen`: the blind
    filter, with that share of looks down a listing leaving no event)."""
    params = world.params
    blind = unseen is not None
    persona = PERSONAS[shopper.persona]
    events = session.events
    n = len(events)
    prior = _AVERAGE_INTENTS.copy() if blind else np.array(persona.intents, dtype=float)
    for target, lift in _REFERRAL_INTENT_LIFT.get(referral, ()):
        prior[target] *= lift
    transitions = np.array(_INTENT_TRANSITIONS, dtype=float)
    propensity = _AVERAGE["purchase_propensity"] if blind else min(shopper.propensity, 4.0)
    for j in range(_N):
        if j != _PURCHASE:
            transitions[j, _PURCHASE] *= propensity
    transitions /= transitions.sum(axis=1, keepdims=True)
    survival = 1.0 - np.array(_SESSION_END) * params.session_end_scale
    affinity = np.asarray(shopper.affinity, dtype=float)
    affinity = np.full(len(affinity), 1.0 / len(affinity)) if blind else affinity / affinity.sum()
    zoom_rate, review_rate = ((_AVERAGE["zoom_rate"], _AVERAGE["review_rate"]) if blind
                              else (persona.zoom_rate, persona.review_rate))
    utility = None if blind else world.choice.utility(shopper)
    page = _PageModel(params, zoom_rate, review_rate, utility, item_index)
    if blind:
        ends = [actions[k + 1].start if k + 1 < len(actions) else n for k in range(len(actions))]
        actions = [a for a, end in zip(actions, ends) if end > a.start]
        click = _ACTIONS.index("click")

    # Everything the filter learns, at the index of the event from which on it is known.
    steps: list[tuple[int, str, Any]] = [(0, "set", prior)]
    first = actions[0].start if actions else n
    page.factors(events, 0, first, steps)
    for k, action in enumerate(actions):
        end = actions[k + 1].start if k + 1 < len(actions) else n
        if k > 0:
            previous = actions[k - 1]
            bought = any(events[j][2]["event_type"] == "purchase" for j in range(previous.start, action.start))
            steps.append((action.start, "move", bought))
            if blind:
                # Before this action, any number of looks that left no event: sum over how many.
                looks = np.diag([action.blind[i][click] * unseen for i in range(_N)])
                steps.append((action.start, "matrix",
                              np.linalg.inv(np.eye(_N) - looks @ np.diag(survival) @ transitions)))
        a = _ACTIONS.index(action.name)
        chances = action.blind if blind else action.probabilities
        steps.append((action.start, "factor", np.array([chances[i][a] for i in range(_N)])))
        steps.extend((action.start, "factor", f) for f in _category_factors(action, events, end, affinity, params))
        page.factors(events, action.start, end, steps)

    alpha = prior
    posterior = np.empty((n, _N))
    step = 0
    for j in range(n):
        while step < len(steps) and steps[step][0] <= j:
            _, kind, value = steps[step]
            if kind == "set":
                alpha = value.copy()
            elif kind == "move":
                alpha = transitions[_EXPLORATORY].copy() if value else (alpha * survival) @ transitions
            elif kind == "matrix":
                alpha = alpha @ value
            else:
                alpha = alpha * value
            total = alpha.sum()
            alpha = alpha / total if total > 0 else np.full(_N, 1.0 / _N)
            step += 1
        posterior[j] = alpha
    return posterior


def _category_factors(action: Action, events: list, end: int, affinity: np.ndarray, params: Any) -> list[np.ndarray]:
    """What the category an action moved to (or kept) says of the intent."""
    c0, c1 = action.category, action.category_after
    stay = np.array([1.0 if c1 == c0 else 0.0] * _N)
    if action.name == "browse" or action.name == "click":
        if action.name == "click":
            browsed = [e for e in events[action.start:end] if e[2]["event_type"] == "category_browse"][:1]
            if not browsed:
                return []
            c1 = _CATEGORY[browsed[0][2]["category"]]
        same = 1.0 if c1 == c0 else 0.0
        near = NEIGHBOURS[c0]
        to_neighbour = affinity[c1] / affinity[list(near)].sum() if c1 in near else 0.0
        drift = params.neighbour_drift
        exploring = drift * to_neighbour + (1 - drift) * (0.25 / len(CATEGORY_NAMES) + 0.75 * affinity[c1])
        other = 0.3 * affinity[c1] + 0.7 * same
        return [np.array([exploring if i == _EXPLORATORY else other for i in range(_N)])]
    if action.name == "view":
        back = params.revisit if action.viewed else 0.0
        exploring = back * stay[0] + (1 - back) * (0.7 * stay[0] + 0.3 * affinity[c1])
        return [np.array([exploring if i == _EXPLORATORY else stay[0] for i in range(_N)])]
    if action.name == "search":
        eligible = action.query_category == c0
        factor = np.empty(_N)
        for i in range(_N):
            refine = 0.6 if eligible and i in (_COMPARATIVE, _PURCHASE) else 0.0
            if action.refined:
                factor[i] = refine
            else:
                factor[i] = (1 - refine) * (affinity[c1] if i == _EXPLORATORY else stay[0])
        return [factor]
    return []


@dataclass
class _PageModel:
    """What an item page and a listing's scroll say of the intent: reading time, scroll and its depth, zoom, reviews."""

    params: Any
    zoom_rate: float
    review_rate: float
    utility: np.ndarray | None  # None: every item liked as much as the category's typical one
    item_index: dict[str, int]
    p_scroll: np.ndarray = field(init=False)
    p_zoom: np.ndarray = field(init=False)
    p_review: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        sub = np.array(_PAGE_SUB_EVENTS)
        self.p_scroll = sub[:, 0]
        self.p_zoom = np.minimum(0.95, sub[:, 1] * self.zoom_rate)
        self.p_review = np.minimum(0.95, sub[:, 2] * self.review_rate)
        self.shape = np.array(_SCROLL_SHAPE)
        self.median = np.array([m for m, _ in _DWELL]) * 1000.0
        self.sigma = np.array([s for _, s in _DWELL])

    def factors(self, events: list, lo: int, hi: int, steps: list) -> None:
        page: dict | None = None
        for j in range(lo, hi):
            t, _, body = events[j]
            kind = body["event_type"]
            if kind == "view":
                page = {"start": t, "item": self.item_index[body["item_id"]], "seen": set(), "last": 0}
            elif kind == "scroll" and "item_id" not in body:
                steps.append((j, "factor", self._depth(body["depth"])))
            elif page is None:
                continue
            elif kind in ("impression", "scroll", "zoom", "review_read"):
                page["last"] = t - page["start"]
                if kind == "scroll":
                    steps.append((j, "factor", self.p_scroll * self._depth(body["depth"])))
                elif kind == "zoom":
                    steps.append((j, "factor", self.p_zoom.copy()))
                elif kind == "review_read" and "review_read" not in page["seen"]:
                    read = self._read(page["item"], t - page["start"] + 0.5, censored=False)
                    steps.append((j, "factor", self.p_review * read))
                page["seen"].add(kind)
            elif kind == "dwell":
                factor = np.ones(_N)
                for name, p in (("scroll", self.p_scroll), ("zoom", self.p_zoom), ("review_read", self.p_review)):
                    if name not in page["seen"]:
                        factor = factor * (1 - p)
                if "review_read" not in page["seen"]:
                    dwell = body["dwell_ms"]
                    # The dwell is the reading time unless the page's last event came within half a second of it.
                    censored = dwell == page["last"] + 500
                    factor = factor * self._read(page["item"], dwell + (1 if censored else 0.5), censored)
                steps.append((j, "factor", factor))
                page = None

    def _depth(self, depth: float) -> np.ndarray:
        """P(the depth rounds to `depth`) per intent: depth = uniform ** shape."""
        hi, lo = min(1.0, depth + 0.0005), max(0.0, depth - 0.0005)
        return np.maximum(hi ** (1 / self.shape) - lo ** (1 / self.shape), 1e-12)

    def _read(self, item: int, read_ms: float, censored: bool) -> np.ndarray:
        """The density (or, censored, the chance of at most) of a page's reading time per intent."""
        liking = 0.0 if self.utility is None else max(-3.0, min(3.0, float(self.utility[item]) - self.params.click_threshold))
        z = (math.log(read_ms) - np.log(self.median * math.exp(self.params.dwell_utility * liking))) / self.sigma
        if censored:
            return np.maximum(0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2))), 1e-12)
        return np.exp(-0.5 * z * z) / self.sigma
