"""Simulated sessions: a shopper's intent as it moves, the actions it leads to, and the events each action emits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from .catalog import CATEGORIES, CATEGORY_NAMES, NEIGHBOURS, Catalog, Category
from .choices import Draws, ItemChoice
from .shoppers import PERSONAS, Shopper

__all__ = ["INTENTS", "REFERRAL_SOURCES", "Session", "Sessions"]

INTENTS: tuple[str, ...] = ("exploratory", "comparative", "research", "intent_to_purchase")
REFERRAL_SOURCES: tuple[str, ...] = ("search_engine", "social", "affiliate", "email", "direct", "friend")

# Behaviour tables. Rows follow INTENTS: exploratory, comparative, research, intent_to_purchase.

_EXPLORATORY, _COMPARATIVE, _RESEARCH, _PURCHASE = range(4)

_ACTIONS = ("browse", "search", "click", "view", "compare", "wishlist", "cart", "remove", "checkout")
_ACTION_WEIGHTS = (
    (.30, .14, .30, .17, .01, .04, .04, .00, .00),
    (.05, .18, .27, .22, .20, .04, .04, .00, .00),
    (.03, .10, .17, .50, .12, .04, .04, .00, .00),
    (.02, .04, .08, .16, .02, .02, .40, .06, .20),
)
# Per action, the chance of a move to each intent; the column into intent_to_purchase is scaled
# by the shopper's purchase propensity.
_INTENT_TRANSITIONS = (
    (.90, .05, .03, .02),
    (.02, .88, .05, .05),
    (.02, .05, .88, .05),
    (.02, .02, .02, .94),
)
_SESSION_END = (.085, .06, .06, .04)  # chance the session ends after an action
_DWELL = ((9.0, .7), (28.0, .7), (55.0, .6), (18.0, .7))  # item page: median seconds, log sigma
_PAGE_SUB_EVENTS = ((.35, .05, .02), (.60, .35, .15), (.85, .45, .75), (.40, .20, .10))  # scroll, zoom, review
_SCROLL_SHAPE = (1.5, 0.8, 0.4, 1.0)  # depth = u ** shape: shallow when exploring, deep when researching
_THINK = {  # seconds before an action: median, log sigma
    "browse": (7.0, .7), "search": (9.0, .6), "click": (4.0, .7), "view": (6.0, .8),
    "compare": (6.0, .6), "wishlist": (3.0, .6), "cart": (4.0, .6), "remove": (6.0, .7),
    "checkout": (5.0, .6), "pay": (45.0, .5),
}
_PAGE_SIZE = 12
_first = itemgetter(0)

# Where a visitor comes from shifts what they came for.
_REFERRAL_INTENT_LIFT = {
    "email": ((_PURCHASE, 2.0),),
    "affiliate": ((_PURCHASE, 1.8), (_COMPARATIVE, 1.3)),
    "search_engine": ((_COMPARATIVE, 1.4), (_RESEARCH, 1.4)),
    "social": ((_EXPLORATORY, 1.8),),
    "friend": ((_PURCHASE, 1.3), (_EXPLORATORY, 1.2)),
}
_CAMPAIGNS = {
    "email": ("weekly-newsletter", "cart-reminder", "winter-sale"),
    "affiliate": ("deals-blog", "price-compare", "cashback-club"),
    "social": ("insta-feed", "video-unboxing", "creator-picks"),
}
_CAMPAIGN_CUM = {k: [0.5, 0.8, 1.0] for k in _CAMPAIGNS}


@dataclass
class Session:
    """One session as it runs: where the shopper is, what they look at and hold, and the events so far."""

    session_id: str
    shopper: Shopper
    t: int  # current time, epoch milliseconds
    intent: int
    category: int
    events: list[tuple[int, int, dict]] = field(default_factory=list)  # (t, sequence, event)
    intents: list[int] = field(default_factory=list)
    item: int | None = None
    viewed: list[int] = field(default_factory=list)
    listing: list[int] = field(default_factory=list)
    cart: dict[int, int] = field(default_factory=dict)
    bought: set[int] = field(default_factory=set)
    basket_target: int = 1
    last_query: list[str] = field(default_factory=list)
    last_query_category: int = -1
    referral: str = "direct"
    referrer: str | None = None
    ended: bool = False
    revenue: float = 0.0


class Sessions:
    """Runs sessions one after another on one catalog and one stream of draws; events and orders are numbered
    across all of them."""

    def __init__(self, catalog: Catalog, draw: Draws, choice: ItemChoice, run_tag: str, shoppers: Sequence[Shopper]):
        self.catalog = catalog
        self.draw = draw
        self.choice = choice
        self.run_tag = run_tag
        self.shoppers = shoppers
        self.params = choice.params
        # The shop's recommendation widget under item pages, per slot: what the truth keeps for calibration.
        self.widget_views = 0  # each shows every slot once
        self.widget_clicks = [0] * self.params.widget_slots
        self.by_persona: dict[int, list[int]] = {}
        for s in shoppers:
            self.by_persona.setdefault(s.persona, []).append(s.index)
        self._sequence = 0
        self._orders = 0

    def run(self, shopper: Shopper, k: int, t0: int) -> Session:
        """The shopper's `k`th session, from `t0` (epoch ms) until it ends."""
        persona = PERSONAS[shopper.persona]
        draw = self.draw
        session_id = f"s-{self.run_tag}-{shopper.index:05d}-{k:03d}"
        shopper.session_ids.append(session_id)
        referral = REFERRAL_SOURCES[draw.weighted([persona.referrals.get(r, 0.0) for r in REFERRAL_SOURCES])]
        referrer = None
        if referral == "friend":
            referrer = self._pick_friend(shopper)
            if referrer is None:
                referral = "direct"
        intent_weights = list(persona.intents)
        for target, lift in _REFERRAL_INTENT_LIFT.get(referral, ()):
            intent_weights[target] *= lift
        s = Session(session_id=session_id, shopper=shopper, t=t0, intent=draw.weighted(intent_weights),
                    category=draw.pick(shopper.affinity_cum), referral=referral, referrer=referrer)
        s.basket_target = self._basket_target(shopper)
        if referral != "direct":
            fields = {"source": referral}
            if referral in _CAMPAIGNS:
                fields["campaign"] = _CAMPAIGNS[referral][draw.pick(_CAMPAIGN_CUM[referral])]
            if referrer is not None:
                fields["referrer_user_id"] = referrer
            self._emit(s, "referral", fields)
        if k == 0 and shopper.profile is not None:
            s.t += int(draw.lognormal(800, 0.5))
            self._emit(s, "profile", dict(shopper.profile))
        if referral in ("email", "affiliate", "social"):
            # These links land on a promoted item page.
            s.t += int(draw.lognormal(1500, 0.5))
            self._page_visit(s, self.choice.preferred(shopper, s.category), after_click=True)
        end_scale = self.params.session_end_scale
        for _ in range(150):
            action = _ACTIONS[draw.weighted(self._action_weights(s))]
            getattr(self, "_do_" + action)(s)
            if s.ended or draw.uniform() < _SESSION_END[s.intent] * end_scale:
                break
            s.intent = self._next_intent(s)
        return s

    def _pick_friend(self, shopper: Shopper) -> str | None:
        shoppers = self.shoppers
        if len(shoppers) < 2:
            return None
        # Friends tend to be alike: most referrers share the shopper's persona.
        alike = self.by_persona[shopper.persona]
        pool = alike if len(alike) > 1 and self.draw.uniform() < 0.7 else range(len(shoppers))
        while True:
            friend = pool[int(self.draw.uniform() * len(pool)) % len(pool)]
            if friend != shopper.index:
                return shoppers[friend].user_id

    def _action_weights(self, s: Session) -> list[float]:
        persona = PERSONAS[s.shopper.persona]
        w = list(_ACTION_WEIGHTS[s.intent])
        w[1] *= persona.search_rate
        w[5] *= persona.wishlist_rate
        if s.intent == _PURCHASE:
            if not s.cart:
                w[7] = w[8] = 0.0
            elif len(s.cart) >= s.basket_target:
                w[8] *= 4.0
                w[6] *= 0.3
        return w

    def _next_intent(self, s: Session) -> int:
        row = list(_INTENT_TRANSITIONS[s.intent])
        if s.intent != _PURCHASE:
            row[_PURCHASE] *= min(s.shopper.propensity, 4.0)
        nxt = self.draw.weighted(row)
        if nxt != s.intent and nxt == _COMPARATIVE and s.item is not None:
            s.category = self.catalog.category[s.item]  # comparing happens within what was just seen
        return nxt

    # -- actions ---------------------------------------------------------------------------------

    def _do_browse(self, s: Session) -> None:
        draw = self.draw
        if s.intent == _EXPLORATORY and draw.uniform() < self.params.neighbour_drift:
            s.category = self._neighbour(s)
        elif s.intent == _EXPLORATORY and draw.uniform() < 0.25:
            s.category = int(draw.uniform() * len(CATEGORIES)) % len(CATEGORIES)
        elif s.intent == _EXPLORATORY or draw.uniform() < 0.3:
            s.category = draw.pick(s.shopper.affinity_cum)
        self._think(s, "browse")
        self._emit(s, "category_browse", {"category": CATEGORY_NAMES[s.category]})
        ranked = self.catalog.category_items[s.category]
        s.listing = ranked[:_PAGE_SIZE]
        s.t += int(draw.lognormal(350, 0.4))
        self._emit(s, "impression", {"item_ids": self.catalog.ids(s.listing)})
        if draw.uniform() < 0.6:
            depth = draw.uniform() ** _SCROLL_SHAPE[s.intent]
            s.t += int(draw.lognormal(2500, 0.6) * (0.5 + 2 * depth))
            self._emit(s, "scroll", {"depth": round(depth, 3)})
            if depth > 0.6 and len(ranked) > _PAGE_SIZE:
                # Scrolling to the bottom loads the next page of the listing.
                page = ranked[_PAGE_SIZE:2 * _PAGE_SIZE]
                s.listing = s.listing + page
                s.t += int(draw.lognormal(400, 0.4))
                self._emit(s, "impression", {"item_ids": self.catalog.ids(page)})

    def _do_search(self, s: Session) -> None:
        draw = self.draw
        shopper = s.shopper
        refining = (s.intent in (_COMPARATIVE, _PURCHASE) and s.last_query_category == s.category
                    and draw.uniform() < 0.6)
        if not refining and s.intent == _EXPLORATORY:
            s.category = draw.pick(shopper.affinity_cum)
        category = CATEGORIES[s.category]
        if refining:
            words = list(s.last_query)
            extra = self._query_refinement(s, category, words)
            if extra and extra not in words:
                words.append(extra)
        else:
            if s.item is not None and self.catalog.category[s.item] == s.category and draw.uniform() < 0.5:
                kind = self.catalog.kind[s.item]
            else:
                kind = category.kinds[int(draw.uniform() * len(category.kinds)) % len(category.kinds)]
            words = [kind]
            if draw.uniform() < 0.3:
                words.insert(0, category.brands[int(draw.uniform() * len(category.brands)) % len(category.brands)])
            if shopper.traits["budget_conscious"] > 0.6 and draw.uniform() < 0.35:
                words.insert(0, "cheap")
            elif shopper.traits["luxury_seeker"] > 0.6 and draw.uniform() < 0.35:
                words.insert(0, "premium")
        s.last_query, s.last_query_category = words, s.category
        results = self.catalog.search(s.category, words)
        self._think(s, "search")
        self._emit(s, "search", {"query": " ".join(words), "results": self.catalog.ids(results)})
        s.listing = results[:10]
        if s.listing:
            s.t += int(draw.lognormal(400, 0.4))
            self._emit(s, "impression", {"item_ids": self.catalog.ids(s.listing)})

    def _query_refinement(self, s: Session, category: Category, words: list[str]) -> str | None:
        draw = self.draw
        u = draw.uniform()
        if u < 0.35:
            return category.brands[int(draw.uniform() * len(category.brands)) % len(category.brands)]
        if u < 0.65 and s.shopper.traits["budget_conscious"] > 0.4:
            cap = max(5, int(round(category.median_price * draw.lognormal(1.0, 0.3), -1)))
            for w in list(words):
                if w.startswith("under-"):
                    words.remove(w)
            return f"under-{cap}"
        return category.refinements[int(draw.uniform() * len(category.refinements)) % len(category.refinements)]

    def _do_click(self, s: Session) -> None:
        if not s.listing:
            self._do_browse(s)
        pos = self.choice.scan(s.shopper, s.listing, "listing", s.category, s.viewed, s.bought)
        self._think(s, "click")
        if pos is None:
            s.listing = []  # nothing there appealed: the shopper moves on to another list
            return
        item = s.listing[pos]
        self._emit(s, "click", {**self.catalog.fields[item], "position": pos})
        self._page_visit(s, item, after_click=True)

    def _do_view(self, s: Session) -> None:
        draw = self.draw
        if s.viewed and draw.uniform() < self.params.revisit:
            self._page_visit(s, self.choice.revisited(s.shopper, s.viewed))  # back to an item seen before
            return
        if s.intent == _EXPLORATORY and draw.uniform() < 0.3:
            s.category = draw.pick(s.shopper.affinity_cum)
        self._page_visit(s, self.choice.preferred(s.shopper, s.category))

    def _do_compare(self, s: Session) -> None:
        category_of = self.catalog.category
        current = s.item
        if current is None or category_of[current] != s.category:
            self._page_visit(s, self.choice.preferred(s.shopper, s.category))
            current = s.item
        others = [i for i in reversed(s.viewed) if i != current and category_of[i] == category_of[current]]
        if not others:
            self._page_visit(s, self.choice.preferred(s.shopper, category_of[current], exclude=current))
            others = [current]
            current = s.item
            if others[0] == current:
                return
        compared = list(dict.fromkeys(others))[:3]
        self._think(s, "compare")
        self._emit(s, "spec_compare", {**self.catalog.fields[current],
                                       "compared_with": self.catalog.ids(compared)})
        s.t += int(self.draw.lognormal(15_000, 0.6))  # reading the comparison table

    def _do_wishlist(self, s: Session) -> None:
        if s.item is None:
            self._page_visit(s, self.choice.preferred(s.shopper, s.category))
        self._think(s, "wishlist")
        self._emit(s, "wishlist", self.catalog.fields[s.item])

    def _do_cart(self, s: Session) -> None:
        draw = self.draw
        item = s.item
        if item is not None and not self.catalog.available[item]:
            if draw.uniform() < 0.5:
                self._think(s, "wishlist")
                self._emit(s, "wishlist", self.catalog.fields[item])  # saved for when it is back
            item = None
        if item is not None and not self.choice.likes(s.shopper, item):
            item = None  # not good enough to buy: the shopper looks for another
        if item is None or item in s.cart:
            self._page_visit(s, self.choice.preferred(s.shopper, s.category, exclude=item))
            item = s.item
            if not self.catalog.available[item] or item in s.cart or not self.choice.likes(s.shopper, item):
                return
        quantity = 1
        if draw.uniform() < self.params.multi_unit * (3.5 if s.shopper.whale else 1.0):
            quantity += 1 + draw.poisson(1.0)
        s.cart[item] = s.cart.get(item, 0) + quantity
        self._think(s, "cart")
        self._emit(s, "add_to_cart", {**self.catalog.fields[item], "quantity": quantity})

    def _do_remove(self, s: Session) -> None:
        if not s.cart:
            return
        # Price-sensitive shoppers drop the most expensive line; others drop one at random.
        lines = list(s.cart)
        if s.shopper.traits["budget_conscious"] > 0.5:
            item = max(lines, key=lambda i: self.catalog.price[i])
        else:
            item = lines[int(self.draw.uniform() * len(lines)) % len(lines)]
        quantity = s.cart.pop(item)
        self._think(s, "remove")
        self._emit(s, "remove_from_cart", {**self.catalog.fields[item], "quantity": quantity})

    def _do_checkout(self, s: Session) -> None:
        if not s.cart:
            self._do_cart(s)
            return
        draw = self.draw
        cart_value = round(sum(self.catalog.price[i] * q for i, q in s.cart.items()), 2)
        self._think(s, "checkout")
        self._emit(s, "checkout_view", {"cart_value": cart_value})
        if draw.uniform() < min(0.85, self.params.pay_rate * s.shopper.propensity + 0.05):
            self._think(s, "pay")
            self._orders += 1
            order_id = f"o-{self.run_tag}-{self._orders:06d}"
            for item, quantity in s.cart.items():
                self._emit(s, "purchase", {**self.catalog.fields[item], "quantity": quantity, "order_id": order_id})
                s.t += 1
            s.revenue += cart_value
            s.shopper.revenue += cart_value
            s.shopper.orders += 1
            s.bought.update(s.cart)
            s.cart = {}
            s.basket_target = self._basket_target(s.shopper)
            if draw.uniform() < 0.7:
                s.ended = True
            else:
                s.intent = _EXPLORATORY
        elif draw.uniform() < 0.4:
            self._do_remove(s)
        elif draw.uniform() < 0.5:
            s.ended = True  # cart abandoned

    # -- building blocks -------------------------------------------------------------------------

    def _page_visit(self, s: Session, item: int, after_click: bool = False) -> None:
        """An item page: view on arrival, scroll/zoom/review while there, dwell when leaving; and the item clicked
        in its recommendation widget, if any, visited next."""
        for _ in range(20):
            followed = self._one_page(s, item, after_click)
            if followed is None:
                return
            item, after_click = followed, True

    def _one_page(self, s: Session, item: int, after_click: bool) -> int | None:
        draw = self.draw
        persona = PERSONAS[s.shopper.persona]
        if after_click:
            s.t += int(draw.lognormal(600, 0.4))
        else:
            self._think(s, "view")
        s.item = item
        s.viewed.append(item)
        if len(s.viewed) > 20:
            del s.viewed[0]
        start = s.t
        self._emit(s, "view", self.catalog.fields[item])
        widget, clicked = self._widget(s, item)
        median, sigma = _DWELL[s.intent]
        liking = max(-3.0, min(3.0, self.choice.liking(s.shopper, item)))
        read = draw.lognormal(median * 1000 * math.exp(self.params.dwell_utility * liking), sigma)
        p_scroll, p_zoom, p_review = _PAGE_SUB_EVENTS[s.intent]
        sub: list[tuple[float, str, dict]] = []
        if widget:
            # The widget renders just after the page: its impression is timed among the page's own events.
            sub.append((draw.lognormal(300, 0.4), "impression", {"item_ids": self.catalog.ids(widget)}))
        if draw.uniform() < p_scroll:
            depth = draw.uniform() ** _SCROLL_SHAPE[s.intent]
            sub.append((read * (0.2 + 0.6 * draw.uniform()), "scroll",
                        {"item_id": self.catalog.fields[item]["item_id"], "depth": round(depth, 3)}))
        if draw.uniform() < min(0.95, p_zoom * persona.zoom_rate):
            sub.append((read * (0.1 + 0.5 * draw.uniform()), "zoom",
                        {**self.catalog.fields[item], "level": (1.5, 2.0, 3.0, 4.0)[int(draw.uniform() * 4) % 4]}))
        extra = 0.0
        if draw.uniform() < min(0.95, p_review * persona.review_rate):
            reviews = 2 if draw.uniform() < 0.4 else 1
            for _ in range(reviews):
                duration = draw.lognormal(35_000, 0.6)
                sub.append((read + extra, "review_read", {**self.catalog.fields[item], "duration_ms": int(duration)}))
                extra += duration + draw.lognormal(2_000, 0.5)
        sub.sort(key=_first)
        for offset, event_type, fields in sub:
            s.t = start + max(1, int(offset))
            self._emit(s, event_type, fields)
        dwell = max(int(read + extra), s.t - start + 500)
        s.t = start + dwell
        self._emit(s, "dwell", {**self.catalog.fields[item], "dwell_ms": dwell})
        if clicked is None:
            return None
        self._emit(s, "click", {**self.catalog.fields[widget[clicked]], "position": clicked})
        return widget[clicked]

    def _widget(self, s: Session, item: int) -> tuple[list[int], int | None]:
        """The shop's recommendation widget under the item page: items drawn at random from what is in stock (the
        shop's own policy, like the Open Bandit Dataset's uniform one), and the slot clicked if any."""
        slots = self.params.widget_slots
        if not slots:
            return [], None
        pool = self.catalog.available_list
        size = len(pool)
        uniform = self.draw.uniform
        shown: list[int] = []
        while len(shown) < slots:
            candidate = pool[int(uniform() * size) % size]
            if candidate != item and candidate not in shown:
                shown.append(candidate)
        clicked = self.choice.scan(s.shopper, shown, "widget", s.category, s.viewed, s.bought)
        self.widget_views += 1
        if clicked is not None:
            self.widget_clicks[clicked] += 1
        return shown, clicked

    def _neighbour(self, s: Session) -> int:
        """A category next to the current one, by the shopper's taste for each: interest drifting."""
        near = NEIGHBOURS[s.category]
        return near[self.draw.weighted([float(s.shopper.affinity[c]) for c in near])]

    def _basket_target(self, shopper: Shopper) -> int:
        return 1 + self.draw.poisson(shopper.basket * self.params.basket_scale)

    def _think(self, s: Session, action: str) -> None:
        median, sigma = _THINK[action]
        s.t += int(self.draw.lognormal(median * 1000, sigma))

    def _emit(self, s: Session, event_type: str, fields: dict) -> None:
        """An event of `fields` (copied: callers pass the catalog's own) at the session's time."""
        self._sequence += 1
        body = {"event_id": "", "user_id": s.shopper.user_id, "session_id": s.session_id,
                "timestamp": "", "event_type": event_type, **fields}
        s.events.append((s.t, self._sequence, body))
        s.intents.append(s.intent)
