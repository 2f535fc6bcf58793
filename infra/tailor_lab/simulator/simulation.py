"""Shopper simulator: a seeded catalog and shoppers with latent personas, traits and evolving session intents, emitting Tailor events with their ground truth."""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = [
    "CATEGORIES",
    "DEFAULT_START",
    "INTENTS",
    "PERSONAS",
    "REFERRAL_SOURCES",
    "TRAITS",
    "Category",
    "Persona",
    "Simulation",
    "simulate",
]

# A fixed default keeps a seed's output identical from one run to the next; callers that want
# "now" pass start explicitly.
DEFAULT_START = datetime(2026, 11, 2, tzinfo=timezone.utc)

INTENTS: tuple[str, ...] = ("exploratory", "comparative", "research", "intent_to_purchase")
TRAITS: tuple[str, ...] = (
    "budget_conscious", "luxury_seeker", "tech_enthusiast", "home_decorator", "outdoor_adventurer",
    "gift_shopper",
)
REFERRAL_SOURCES: tuple[str, ...] = ("search_engine", "social", "affiliate", "email", "direct", "friend")


@dataclass(frozen=True)
class Category:
    """A catalog category: its brands, the kinds of product it sells, and its price distribution."""

    name: str
    brands: tuple[str, ...]
    kinds: tuple[str, ...]
    median_price: float
    price_sigma: float  # of log price: the long tail of expensive items
    refinements: tuple[str, ...]  # words shoppers add to a query to narrow it


@dataclass(frozen=True)
class Persona:
    """A latent kind of shopper: what they browse, what they pay, how they behave."""

    name: str
    share: float
    categories: dict[str, float]
    price_beta: float  # > 0 prefers items cheap for their category, < 0 expensive ones
    sessions_per_day: float
    purchase_propensity: float
    basket: float  # mean number of extra items a basket grows to
    intents: tuple[float, float, float, float]  # initial intent, in INTENTS order
    referrals: dict[str, float]
    search_rate: float  # multiplies the weight of searching
    zoom_rate: float
    review_rate: float
    wishlist_rate: float
    age: tuple[float, float]  # mean and spread of the stated age
    locations: tuple[str, ...]  # where profiles of this persona lean


CATEGORIES: tuple[Category, ...] = (
    Category("electronics", ("voltix", "sonora", "lumina", "kestrel"),
             ("headphones", "speaker", "camera", "tv", "soundbar"), 120.0, 0.9,
             ("wireless", "4k", "bluetooth", "noise cancelling")),
    Category("computers", ("vertex", "nimbus", "arcon", "qubit"),
             ("laptop", "monitor", "keyboard", "mouse", "ssd"), 380.0, 0.9,
             ("gaming", "16gb", "ultrawide", "mechanical")),
    Category("phones", ("pulse", "orbit", "zephyr"),
             ("phone", "case", "charger", "earbuds", "smartwatch"), 160.0, 1.0,
             ("5g", "fast charging", "unlocked", "128gb")),
    Category("home_decor", ("hearth", "linden", "atelier-nord", "mossgrove"),
             ("lamp", "rug", "vase", "cushion", "mirror", "wall art"), 45.0, 0.8,
             ("boho", "minimalist", "velvet", "handmade")),
    Category("kitchen", ("copperline", "brava", "mise"),
             ("pan", "knife", "blender", "kettle", "coffee maker"), 38.0, 0.9,
             ("nonstick", "stainless", "cast iron", "electric")),
    Category("furniture", ("oakwell", "modulo", "fjell"),
             ("sofa", "chair", "desk", "bookshelf", "bed frame"), 290.0, 0.7,
             ("oak", "modular", "ergonomic", "storage")),
    Category("outdoor", ("ridgeline", "trailhead", "alpenglow"),
             ("tent", "backpack", "hiking boots", "rain jacket", "sleeping bag"), 85.0, 0.9,
             ("waterproof", "ultralight", "4 season", "insulated")),
    Category("sports", ("stride", "apex", "kinetic"),
             ("running shoes", "yoga mat", "dumbbells", "bike helmet", "tennis racket"), 55.0, 0.8,
             ("adjustable", "lightweight", "pro", "breathable")),
    Category("fashion", ("marlowe", "indigo-lane", "basics-co", "saltwater"),
             ("shirt", "dress", "jeans", "sneakers", "coat"), 42.0, 0.7,
             ("slim fit", "linen", "organic cotton", "oversized")),
    Category("luxury_accessories", ("maison-verre", "aurelia", "castellan"),
             ("watch", "handbag", "sunglasses", "wallet", "silk scarf"), 650.0, 0.8,
             ("gold", "leather", "limited edition", "swiss")),
    Category("books", ("penrose-press", "northwind", "quill"),
             ("novel", "cookbook", "biography", "travel guide", "graphic novel"), 16.0, 0.5,
             ("hardcover", "bestseller", "signed", "paperback")),
    Category("toys_gifts", ("jubilee", "kindred", "popwell"),
             ("puzzle", "board game", "gift set", "plush toy", "building blocks"), 28.0, 0.7,
             ("for kids", "for her", "for him", "personalized")),
)

_CAT_NAMES = [c.name for c in CATEGORIES]
_CAT_INDEX = {name: i for i, name in enumerate(_CAT_NAMES)}

PERSONAS: tuple[Persona, ...] = (
    Persona("bargain_hunter", 0.22,
            {"electronics": .12, "computers": .05, "phones": .08, "home_decor": .07, "kitchen": .14,
             "furniture": .04, "outdoor": .05, "sports": .08, "fashion": .20, "luxury_accessories": .01,
             "books": .09, "toys_gifts": .07},
            price_beta=1.4, sessions_per_day=1.6, purchase_propensity=1.0, basket=1.2,
            intents=(.35, .35, .10, .20),
            referrals={"search_engine": .30, "social": .10, "affiliate": .25, "email": .20, "direct": .10,
                       "friend": .05},
            search_rate=1.4, zoom_rate=0.7, review_rate=1.0, wishlist_rate=1.3, age=(38, 13),
            locations=("Columbus, US", "Manchester, UK", "Leipzig, DE")),
    Persona("luxury_seeker", 0.10,
            {"electronics": .07, "computers": .03, "phones": .10, "home_decor": .09, "kitchen": .03,
             "furniture": .08, "outdoor": .02, "sports": .03, "fashion": .22, "luxury_accessories": .30,
             "books": .02, "toys_gifts": .01},
            price_beta=-1.5, sessions_per_day=0.9, purchase_propensity=1.2, basket=0.6,
            intents=(.30, .15, .25, .30),
            referrals={"search_engine": .25, "social": .15, "affiliate": .05, "email": .15, "direct": .35,
                       "friend": .05},
            search_rate=0.8, zoom_rate=1.8, review_rate=0.8, wishlist_rate=1.5, age=(46, 11),
            locations=("New York, US", "London, UK", "Paris, FR")),
    Persona("tech_enthusiast", 0.20,
            {"electronics": .30, "computers": .28, "phones": .22, "home_decor": .02, "kitchen": .02,
             "furniture": .02, "outdoor": .02, "sports": .03, "fashion": .03, "luxury_accessories": .01,
             "books": .03, "toys_gifts": .02},
            price_beta=-0.2, sessions_per_day=1.8, purchase_propensity=0.8, basket=0.8,
            intents=(.20, .35, .35, .10),
            referrals={"search_engine": .45, "social": .10, "affiliate": .10, "email": .10, "direct": .20,
                       "friend": .05},
            search_rate=1.6, zoom_rate=1.2, review_rate=1.6, wishlist_rate=0.8, age=(31, 9),
            locations=("San Francisco, US", "Berlin, DE", "Austin, US")),
    Persona("home_decorator", 0.18,
            {"electronics": .03, "computers": .01, "phones": .02, "home_decor": .35, "kitchen": .22,
             "furniture": .25, "outdoor": .03, "sports": .01, "fashion": .04, "luxury_accessories": .01,
             "books": .02, "toys_gifts": .01},
            price_beta=0.2, sessions_per_day=1.4, purchase_propensity=1.0, basket=1.5,
            intents=(.50, .20, .10, .20),
            referrals={"search_engine": .25, "social": .35, "affiliate": .05, "email": .15, "direct": .15,
                       "friend": .05},
            search_rate=0.7, zoom_rate=1.5, review_rate=0.8, wishlist_rate=2.0, age=(41, 12),
            locations=("Portland, US", "Copenhagen, DK", "Bristol, UK")),
    Persona("outdoor_adventurer", 0.15,
            {"electronics": .04, "computers": .01, "phones": .03, "home_decor": .02, "kitchen": .03,
             "furniture": .01, "outdoor": .42, "sports": .30, "fashion": .07, "luxury_accessories": .01,
             "books": .05, "toys_gifts": .02},
            price_beta=0.0, sessions_per_day=1.1, purchase_propensity=0.9, basket=0.9,
            intents=(.30, .25, .30, .15),
            referrals={"search_engine": .30, "social": .20, "affiliate": .05, "email": .10, "direct": .20,
                       "friend": .15},
            search_rate=1.1, zoom_rate=1.0, review_rate=1.4, wishlist_rate=1.0, age=(35, 11),
            locations=("Denver, US", "Seattle, US", "Innsbruck, AT")),
    Persona("gift_shopper", 0.15,
            {"electronics": .07, "computers": .01, "phones": .03, "home_decor": .07, "kitchen": .06,
             "furniture": .01, "outdoor": .02, "sports": .03, "fashion": .08, "luxury_accessories": .05,
             "books": .20, "toys_gifts": .37},
            price_beta=0.5, sessions_per_day=1.2, purchase_propensity=1.3, basket=1.5,
            intents=(.45, .20, .10, .25),
            referrals={"search_engine": .30, "social": .15, "affiliate": .10, "email": .15, "direct": .10,
                       "friend": .20},
            search_rate=1.2, zoom_rate=0.8, review_rate=0.9, wishlist_rate=2.2, age=(44, 14),
            locations=("Chicago, US", "Toronto, CA", "Dublin, IE")),
)

_ALL_LOCATIONS = sorted({loc for p in PERSONAS for loc in p.locations})


@dataclass
class Simulation:
    """What one simulated run produced: the events, the catalog they refer to, and the ground truth.

    truth = {"seed", "shopper_count", "days", "start", "intents", "personas", "traits",
             "shoppers": {user_id: {"persona", "traits" (strength 0..1 per trait), "trait_flags"
                                    (strength >= 0.5), "whale", "profile" (or None),
                                    "category_affinity", "sessions", "orders", "revenue"}},
             "sessions": {session_id: {"user_id", "referral_source", "referrer_user_id", "start",
                                       "end", "purchased", "revenue", "event_ids", "intents" (the
                                       intent at each of event_ids), "intent_path" (the intents
                                       in the order they took turns), "dominant_intent"}}}
    """

    events: list[dict]
    catalog: list[dict]
    truth: dict

    def counts_by_type(self) -> dict[str, int]:
        """Number of events per event type."""
        return dict(sorted(Counter(e["event_type"] for e in self.events).items()))

    def write(self, out_dir: Path) -> None:
        """Write events.jsonl, catalog.jsonl and truth.json into out_dir (created if missing)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "events.jsonl", "w", encoding="utf-8") as fh:
            for event in self.events:
                fh.write(json.dumps(event, separators=(",", ":")) + "\n")
        with open(out_dir / "catalog.jsonl", "w", encoding="utf-8") as fh:
            for item in self.catalog:
                fh.write(json.dumps(item, separators=(",", ":")) + "\n")
        with open(out_dir / "truth.json", "w", encoding="utf-8") as fh:
            json.dump(self.truth, fh, separators=(",", ":"))


def simulate(shoppers: int = 500, days: float = 1.0, seed: int = 7, start: datetime | None = None,
             *, items: int = 1200) -> Simulation:
    """Simulate `shoppers` shoppers over `days` days from `start`; the same arguments give the same output.

    Every simulated shopper visits at least once. Sessions start within the window; the last
    ones may run a few minutes past its end. The catalog depends only on `seed` and `items`, so
    runs with the same seed share item ids and item data; shopper, session, order and event ids
    carry a tag of all the arguments, so different runs never share them.
    """
    if shoppers < 1:
        raise ValueError("shoppers must be at least 1")
    if not days > 0:
        raise ValueError("days must be positive")
    if items < 10 * len(CATEGORIES):
        raise ValueError(f"items must be at least {10 * len(CATEGORIES)}")
    start = DEFAULT_START if start is None else start
    if start.tzinfo is None:
        raise ValueError("start must carry a timezone")
    return _Simulator(shoppers, days, seed, start.astimezone(timezone.utc), items).run()


# ---------------------------------------------------------------------------------------------
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
# Relative arrivals per hour of the day (the shop's local time = UTC here): quiet at night,
# a lunch bump and an evening peak.
_HOURLY_RHYTHM = (.35, .20, .12, .08, .07, .10, .25, .50, .75, .85, .90, .95,
                  1.05, 1.00, .90, .85, .85, .95, 1.10, 1.30, 1.45, 1.40, 1.10, .70)
_WEEKEND_LIFT = 1.15
_WHALE_SHARE = 0.02
_PROFILE_SHARE = 0.45
_PAGE_SIZE = 12


@dataclass
class _Shopper:
    index: int
    user_id: str
    persona: int
    affinity: np.ndarray  # over categories
    affinity_cum: list[float]
    price_beta: float
    propensity: float
    basket: float
    sessions_per_day: float
    whale: bool
    traits: dict[str, float]
    profile: dict | None
    session_ids: list[str] = field(default_factory=list)
    revenue: float = 0.0
    orders: int = 0


@dataclass
class _Session:
    session_id: str
    shopper: _Shopper
    t: int  # current time, epoch milliseconds
    intent: int
    category: int
    events: list[tuple[int, int, dict]] = field(default_factory=list)  # (t, sequence, event)
    intents: list[int] = field(default_factory=list)
    item: int | None = None
    viewed: list[int] = field(default_factory=list)
    listing: list[int] = field(default_factory=list)
    cart: dict[int, int] = field(default_factory=dict)
    basket_target: int = 1
    last_query: list[str] = field(default_factory=list)
    last_query_category: int = -1
    referral: str = "direct"
    referrer: str | None = None
    ended: bool = False
    revenue: float = 0.0


class _Draws:
    """Random numbers from a numpy Generator, drawn in blocks: the simulation draws them one at a time."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 15):
        self.rng = rng
        self._block = block
        self._uniform: list[float] = []
        self._normal: list[float] = []

    def uniform(self) -> float:
        if not self._uniform:
            self._uniform = self.rng.random(self._block).tolist()
        return self._uniform.pop()

    def normal(self) -> float:
        if not self._normal:
            self._normal = self.rng.standard_normal(self._block).tolist()
        return self._normal.pop()

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(sigma * self.normal())

    def pick(self, cumulative: list[float]) -> int:
        """Index drawn with probability proportional to the increments of `cumulative`."""
        return min(bisect.bisect_right(cumulative, self.uniform() * cumulative[-1]), len(cumulative) - 1)

    def weighted(self, weights) -> int:
        return self.pick(list(accumulate(weights)))

    def poisson(self, mean: float) -> int:
        return int(self.rng.poisson(mean))


class _Simulator:
    def __init__(self, shoppers: int, days: float, seed: int, start: datetime, items: int):
        self.n_shoppers = shoppers
        self.days = float(days)
        self.seed = seed
        self.start = start
        self.start_ms = int(round(start.timestamp() * 1000))
        self.end_ms = self.start_ms + int(days * 86_400_000)
        self.run_tag = hashlib.sha1(f"{seed}|{shoppers}|{float(days)!r}|{start.isoformat()}".encode()).hexdigest()[:6]
        self._build_catalog(np.random.default_rng([seed, 0]), items)
        self.draw = _Draws(np.random.default_rng([seed, 1]))
        self._sequence = 0
        self._orders = 0
        self._preference_cache: dict[tuple[int, int], tuple[list[int], list[float]]] = {}

    # -- catalog ---------------------------------------------------------------------------------

    def _build_catalog(self, rng: np.random.Generator, items: int) -> None:
        per_category = np.full(len(CATEGORIES), items // len(CATEGORIES))
        per_category[: items % len(CATEGORIES)] += 1
        self.catalog: list[dict] = []
        self.item_fields: list[dict] = []
        self.item_category: list[int] = []
        self.item_kind: list[str] = []
        self.item_brand: list[str] = []
        self.item_price: list[float] = []
        self.item_available: list[bool] = []
        self.item_log_price_ratio: list[float] = []  # log(price / category median)
        popularity: list[float] = []
        for c, category in enumerate(CATEGORIES):
            brand_tier = {b: float(rng.lognormal(0.0, 0.35)) for b in category.brands}
            kind_tier = {k: float(rng.lognormal(0.0, 0.4)) for k in category.kinds}
            for _ in range(int(per_category[c])):
                idx = len(self.catalog)
                brand = category.brands[int(rng.integers(len(category.brands)))]
                kind = category.kinds[int(rng.integers(len(category.kinds)))]
                raw = category.median_price * brand_tier[brand] * kind_tier[kind] * float(
                    rng.lognormal(0.0, category.price_sigma))
                price = float(math.floor(raw)) + 0.99 if raw >= 5 else round(max(raw, 0.99), 2)
                available = bool(rng.random() < 0.93)
                item_id = f"item-{idx:05d}"
                title = f"{brand.replace('-', ' ').title()} {kind.title()} {int(rng.integers(100, 1000))}"
                self.catalog.append({"item_id": item_id, "title": title, "category": category.name,
                                     "brand": brand, "kind": kind, "price": price,
                                     "available": available})
                self.item_fields.append({"item_id": item_id, "price": price, "category": category.name,
                                         "brand": brand, "available": available})
                self.item_category.append(c)
                self.item_kind.append(kind)
                self.item_brand.append(brand)
                self.item_price.append(price)
                self.item_available.append(available)
                self.item_log_price_ratio.append(math.log(price / category.median_price))
                popularity.append(float(rng.lognormal(0.0, 1.2)))  # a few items draw most traffic
        self.item_popularity = popularity
        self.category_items: list[list[int]] = [[] for _ in CATEGORIES]
        for i, c in enumerate(self.item_category):
            self.category_items[c].append(i)
        # Listings show a category best-sellers first; searches match kind (and brand) the same way.
        for c in range(len(CATEGORIES)):
            self.category_items[c].sort(key=lambda i: -popularity[i])
        self.kind_items: dict[tuple[int, str], list[int]] = {}
        for c in range(len(CATEGORIES)):
            for i in self.category_items[c]:
                self.kind_items.setdefault((c, self.item_kind[i]), []).append(i)

    # -- shoppers --------------------------------------------------------------------------------

    def _make_shoppers(self) -> list[_Shopper]:
        rng = self.draw.rng
        shares = np.array([p.share for p in PERSONAS])
        personas = rng.choice(len(PERSONAS), size=self.n_shoppers, p=shares / shares.sum())
        whales = rng.random(self.n_shoppers) < _WHALE_SHARE
        has_profile = rng.random(self.n_shoppers) < _PROFILE_SHARE
        shoppers = []
        for i in range(self.n_shoppers):
            persona = PERSONAS[int(personas[i])]
            prefs = np.array([persona.categories[name] for name in _CAT_NAMES])
            affinity = rng.dirichlet(15.0 * prefs / prefs.sum() + 0.1)
            whale = bool(whales[i])
            price_beta = persona.price_beta + float(rng.normal(0.0, 0.5)) - (0.8 if whale else 0.0)
            propensity = persona.purchase_propensity * float(rng.lognormal(0.0, 0.8)) * (4.0 if whale else 1.0)
            basket = persona.basket * float(rng.lognormal(0.0, 0.5)) + (2.0 if whale else 0.0)
            sessions_per_day = persona.sessions_per_day * float(rng.lognormal(0.0, 0.6)) * (1.5 if whale else 1.0)
            traits = _traits(affinity, price_beta, persona, float(rng.normal(0.0, 0.08)))
            profile = _profile(rng, persona, affinity) if has_profile[i] else None
            shoppers.append(_Shopper(
                index=i, user_id=f"u-{self.run_tag}-{i:05d}", persona=int(personas[i]),
                affinity=affinity, affinity_cum=list(accumulate(affinity.tolist())),
                price_beta=price_beta, propensity=propensity, basket=basket,
                sessions_per_day=sessions_per_day, whale=whale, traits=traits, profile=profile))
        return shoppers

    def _session_starts(self, shoppers: list[_Shopper]) -> list[list[int]]:
        """Session start times (epoch ms) per shopper, following the daily rhythm; at least one each."""
        rng = self.draw.rng
        counts = [max(1, self.draw.poisson(s.sessions_per_day * self.days)) for s in shoppers]
        minutes = max(1, int(math.ceil(self.days * 1440)))
        minute_starts = self.start_ms + np.arange(minutes, dtype=np.int64) * 60_000
        seconds_of_day = (minute_starts // 1000) % 86_400
        weekday = ((minute_starts // 86_400_000) + 3) % 7  # 1970-01-01 was a Thursday (3, Monday = 0)
        weights = np.asarray(_HOURLY_RHYTHM)[seconds_of_day // 3600] * np.where(weekday >= 5, _WEEKEND_LIFT, 1.0)
        cumulative = np.cumsum(weights)
        total = sum(counts)
        picked = np.searchsorted(cumulative, rng.random(total) * cumulative[-1], side="right")
        picked = np.minimum(picked, minutes - 1)
        times = minute_starts[picked] + (rng.random(total) * 60_000).astype(np.int64)
        times = np.minimum(times, self.end_ms - 1)
        starts, at = [], 0
        for n in counts:
            starts.append(sorted(times[at:at + n].tolist()))
            at += n
        return starts

    # -- run -------------------------------------------------------------------------------------

    def run(self) -> Simulation:
        shoppers = self._make_shoppers()
        by_persona: dict[int, list[int]] = {}
        for s in shoppers:
            by_persona.setdefault(s.persona, []).append(s.index)
        all_events: list[tuple[int, int, dict]] = []
        sessions_truth: dict[str, dict] = {}
        session_events: dict[str, list[tuple[int, int, dict]]] = {}
        session_intents: dict[str, list[int]] = {}
        for shopper, starts in zip(shoppers, self._session_starts(shoppers)):
            self._preference_cache.clear()  # it only serves this shopper's sessions
            previous_end = None
            for k, t0 in enumerate(starts):
                if previous_end is not None and t0 < previous_end + 60_000:
                    # A shopper's sessions do not overlap: the next one begins after a break.
                    t0 = previous_end + int(self.draw.lognormal(20 * 60_000, 0.8))
                    if t0 >= self.end_ms:
                        break
                session = self._run_session(shopper, k, t0, shoppers, by_persona)
                previous_end = session.t
                all_events.extend(session.events)
                session_events[session.session_id] = session.events
                session_intents[session.session_id] = session.intents
                sessions_truth[session.session_id] = {
                    "user_id": shopper.user_id,
                    "referral_source": session.referral,
                    "referrer_user_id": session.referrer,
                    "start": _iso(session.events[0][0]),
                    "end": _iso(session.events[-1][0]),
                    "purchased": session.revenue > 0,
                    "revenue": round(session.revenue, 2),
                }
        all_events.sort(key=lambda e: (e[0], e[1]))
        events = []
        for n, (t, _, body) in enumerate(all_events):
            body["event_id"] = f"e-{self.run_tag}-{n:07d}"
            body["timestamp"] = _iso(t)
            events.append(body)
        for session_id, entry in sessions_truth.items():
            entry["event_ids"] = [e[2]["event_id"] for e in session_events[session_id]]
            intents = [INTENTS[i] for i in session_intents[session_id]]
            entry["intents"] = intents
            entry["intent_path"] = [x for j, x in enumerate(intents) if j == 0 or intents[j - 1] != x]
            entry["dominant_intent"] = Counter(intents).most_common(1)[0][0]
        truth = {
            "seed": self.seed,
            "shopper_count": self.n_shoppers,
            "days": self.days,
            "start": _iso(self.start_ms),
            "intents": list(INTENTS),
            "personas": [p.name for p in PERSONAS],
            "traits": list(TRAITS),
            "shoppers": {
                s.user_id: {
                    "persona": PERSONAS[s.persona].name,
                    "traits": s.traits,
                    "trait_flags": {k: v >= 0.5 for k, v in s.traits.items()},
                    "whale": s.whale,
                    "profile": s.profile,
                    "category_affinity": {name: round(float(a), 4) for name, a in zip(_CAT_NAMES, s.affinity)},
                    "sessions": s.session_ids,
                    "orders": s.orders,
                    "revenue": round(s.revenue, 2),
                }
                for s in shoppers
            },
            "sessions": sessions_truth,
        }
        return Simulation(events=events, catalog=self.catalog, truth=truth)

    def _run_session(self, shopper: _Shopper, k: int, t0: int, shoppers: list[_Shopper],
                     by_persona: dict[int, list[int]]) -> _Session:
        persona = PERSONAS[shopper.persona]
        draw = self.draw
        session_id = f"s-{self.run_tag}-{shopper.index:05d}-{k:03d}"
        shopper.session_ids.append(session_id)
        referral = REFERRAL_SOURCES[draw.weighted([persona.referrals.get(r, 0.0) for r in REFERRAL_SOURCES])]
        referrer = None
        if referral == "friend":
            referrer = self._pick_friend(shopper, shoppers, by_persona)
            if referrer is None:
                referral = "direct"
        intent_weights = list(persona.intents)
        for target, lift in _REFERRAL_INTENT_LIFT.get(referral, ()):
            intent_weights[target] *= lift
        s = _Session(session_id=session_id, shopper=shopper, t=t0, intent=draw.weighted(intent_weights),
                     category=draw.pick(shopper.affinity_cum), referral=referral, referrer=referrer)
        s.basket_target = 1 + draw.poisson(shopper.basket)
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
            self._page_visit(s, self._preferred_item(shopper, s.category), after_click=True)
        for _ in range(150):
            action = _ACTIONS[draw.weighted(self._action_weights(s))]
            getattr(self, "_do_" + action)(s)
            if s.ended or draw.uniform() < _SESSION_END[s.intent]:
                break
            s.intent = self._next_intent(s)
        return s

    def _pick_friend(self, shopper: _Shopper, shoppers: list[_Shopper], by_persona: dict[int, list[int]]) -> str | None:
        if len(shoppers) < 2:
            return None
        # Friends tend to be alike: most referrers share the shopper's persona.
        alike = by_persona[shopper.persona]
        pool = alike if len(alike) > 1 and self.draw.uniform() < 0.7 else range(len(shoppers))
        while True:
            friend = pool[int(self.draw.uniform() * len(pool)) % len(pool)]
            if friend != shopper.index:
                return shoppers[friend].user_id

    def _action_weights(self, s: _Session) -> list[float]:
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

    def _next_intent(self, s: _Session) -> int:
        row = list(_INTENT_TRANSITIONS[s.intent])
        if s.intent != _PURCHASE:
            row[_PURCHASE] *= min(s.shopper.propensity, 4.0)
        nxt = self.draw.weighted(row)
        if nxt != s.intent and nxt == _COMPARATIVE and s.item is not None:
            s.category = self.item_category[s.item]  # comparing happens within what was just seen
        return nxt

    # -- actions ---------------------------------------------------------------------------------

    def _do_browse(self, s: _Session) -> None:
        draw = self.draw
        if s.intent == _EXPLORATORY and draw.uniform() < 0.25:
            s.category = int(draw.uniform() * len(CATEGORIES)) % len(CATEGORIES)
        elif s.intent == _EXPLORATORY or draw.uniform() < 0.3:
            s.category = draw.pick(s.shopper.affinity_cum)
        self._think(s, "browse")
        self._emit(s, "category_browse", {"category": _CAT_NAMES[s.category]})
        ranked = self.category_items[s.category]
        s.listing = ranked[:_PAGE_SIZE]
        s.t += int(draw.lognormal(350, 0.4))
        self._emit(s, "impression", {"item_ids": [self.item_fields[i]["item_id"] for i in s.listing]})
        if draw.uniform() < 0.6:
            depth = draw.uniform() ** _SCROLL_SHAPE[s.intent]
            s.t += int(draw.lognormal(2500, 0.6) * (0.5 + 2 * depth))
            self._emit(s, "scroll", {"depth": round(depth, 3)})
            if depth > 0.6 and len(ranked) > _PAGE_SIZE:
                # Scrolling to the bottom loads the next page of the listing.
                page = ranked[_PAGE_SIZE:2 * _PAGE_SIZE]
                s.listing = s.listing + page
                s.t += int(draw.lognormal(400, 0.4))
                self._emit(s, "impression", {"item_ids": [self.item_fields[i]["item_id"] for i in page]})

    def _do_search(self, s: _Session) -> None:
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
            if s.item is not None and self.item_category[s.item] == s.category and draw.uniform() < 0.5:
                kind = self.item_kind[s.item]
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
        results = self._search_results(s.category, words)
        self._think(s, "search")
        self._emit(s, "search", {"query": " ".join(words),
                                 "results": [self.item_fields[i]["item_id"] for i in results]})
        s.listing = results[:10]
        if s.listing:
            s.t += int(draw.lognormal(400, 0.4))
            self._emit(s, "impression", {"item_ids": [self.item_fields[i]["item_id"] for i in s.listing]})

    def _query_refinement(self, s: _Session, category: Category, words: list[str]) -> str | None:
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

    def _search_results(self, category: int, words: list[str]) -> list[int]:
        cat = CATEGORIES[category]
        query = " ".join(words)
        kinds = [k for k in cat.kinds if k in query]
        brands = [b for b in cat.brands if b in words]
        cap = next((float(w[6:]) for w in words if w.startswith("under-")), None)
        pool = self.kind_items.get((category, kinds[0]), []) if kinds else self.category_items[category]
        matches = [i for i in pool
                   if (not brands or self.item_brand[i] in brands) and (cap is None or self.item_price[i] <= cap)]
        if "cheap" in words:
            matches.sort(key=lambda i: self.item_price[i])
        elif "premium" in words:
            matches.sort(key=lambda i: -self.item_price[i])
        if len(matches) < 5:
            # Too few exact matches: the shop pads the page with the category's best-sellers.
            seen = set(matches)
            matches += [i for i in self.category_items[category] if i not in seen][: 20 - len(matches)]
        return matches[:20]

    def _do_click(self, s: _Session) -> None:
        if not s.listing:
            self._do_browse(s)
        draw = self.draw
        beta = s.shopper.price_beta
        # Position bias times the shopper's taste for the item's price level.
        weights = [math.exp(-beta * self.item_log_price_ratio[i]) / (pos + 1) ** 0.8
                   for pos, i in enumerate(s.listing)]
        pos = draw.weighted(weights)
        item = s.listing[pos]
        self._think(s, "click")
        self._emit(s, "click", {**self.item_fields[item], "position": pos})
        self._page_visit(s, item, after_click=True)

    def _do_view(self, s: _Session) -> None:
        draw = self.draw
        if s.intent == _EXPLORATORY and draw.uniform() < 0.3:
            s.category = draw.pick(s.shopper.affinity_cum)
        self._page_visit(s, self._preferred_item(s.shopper, s.category))

    def _do_compare(self, s: _Session) -> None:
        current = s.item
        if current is None or self.item_category[current] != s.category:
            self._page_visit(s, self._preferred_item(s.shopper, s.category))
            current = s.item
        others = [i for i in reversed(s.viewed) if i != current and self.item_category[i] == self.item_category[current]]
        if not others:
            self._page_visit(s, self._preferred_item(s.shopper, self.item_category[current], exclude=current))
            others = [current]
            current = s.item
            if others[0] == current:
                return
        compared = list(dict.fromkeys(others))[:3]
        self._think(s, "compare")
        self._emit(s, "spec_compare", {**self.item_fields[current],
                                       "compared_with": [self.item_fields[i]["item_id"] for i in compared]})
        s.t += int(self.draw.lognormal(15_000, 0.6))  # reading the comparison table

    def _do_wishlist(self, s: _Session) -> None:
        if s.item is None:
            self._page_visit(s, self._preferred_item(s.shopper, s.category))
        self._think(s, "wishlist")
        self._emit(s, "wishlist", dict(self.item_fields[s.item]))

    def _do_cart(self, s: _Session) -> None:
        draw = self.draw
        item = s.item
        if item is not None and not self.item_available[item]:
            if draw.uniform() < 0.5:
                self._think(s, "wishlist")
                self._emit(s, "wishlist", dict(self.item_fields[item]))  # saved for when it is back
            item = None
        if item is None or item in s.cart:
            self._page_visit(s, self._preferred_item(s.shopper, s.category, exclude=item))
            item = s.item
            if not self.item_available[item] or item in s.cart:
                return
        quantity = 1
        if draw.uniform() < (0.35 if s.shopper.whale else 0.1):
            quantity += 1 + draw.poisson(1.0)
        s.cart[item] = s.cart.get(item, 0) + quantity
        self._think(s, "cart")
        self._emit(s, "add_to_cart", {**self.item_fields[item], "quantity": quantity})

    def _do_remove(self, s: _Session) -> None:
        if not s.cart:
            return
        # Price-sensitive shoppers drop the most expensive line; others drop one at random.
        lines = list(s.cart)
        if s.shopper.traits["budget_conscious"] > 0.5:
            item = max(lines, key=lambda i: self.item_price[i])
        else:
            item = lines[int(self.draw.uniform() * len(lines)) % len(lines)]
        quantity = s.cart.pop(item)
        self._think(s, "remove")
        self._emit(s, "remove_from_cart", {**self.item_fields[item], "quantity": quantity})

    def _do_checkout(self, s: _Session) -> None:
        if not s.cart:
            self._do_cart(s)
            return
        draw = self.draw
        cart_value = round(sum(self.item_price[i] * q for i, q in s.cart.items()), 2)
        self._think(s, "checkout")
        self._emit(s, "checkout_view", {"cart_value": cart_value})
        if draw.uniform() < min(0.85, 0.2 * s.shopper.propensity + 0.05):
            self._think(s, "pay")
            self._orders += 1
            order_id = f"o-{self.run_tag}-{self._orders:06d}"
            for item, quantity in s.cart.items():
                self._emit(s, "purchase", {**self.item_fields[item], "quantity": quantity, "order_id": order_id})
                s.t += 1
            s.revenue += cart_value
            s.shopper.revenue += cart_value
            s.shopper.orders += 1
            s.cart = {}
            s.basket_target = 1 + draw.poisson(s.shopper.basket)
            if draw.uniform() < 0.7:
                s.ended = True
            else:
                s.intent = _EXPLORATORY
        elif draw.uniform() < 0.4:
            self._do_remove(s)
        elif draw.uniform() < 0.5:
            s.ended = True  # cart abandoned

    # -- building blocks -------------------------------------------------------------------------

    def _page_visit(self, s: _Session, item: int, after_click: bool = False) -> None:
        """An item page: view on arrival, scroll/zoom/review while there, dwell when leaving."""
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
        self._emit(s, "view", dict(self.item_fields[item]))
        median, sigma = _DWELL[s.intent]
        read = draw.lognormal(median * 1000, sigma)
        p_scroll, p_zoom, p_review = _PAGE_SUB_EVENTS[s.intent]
        sub: list[tuple[float, str, dict]] = []
        if draw.uniform() < p_scroll:
            depth = draw.uniform() ** _SCROLL_SHAPE[s.intent]
            sub.append((read * (0.2 + 0.6 * draw.uniform()), "scroll",
                        {"item_id": self.item_fields[item]["item_id"], "depth": round(depth, 3)}))
        if draw.uniform() < min(0.95, p_zoom * persona.zoom_rate):
            sub.append((read * (0.1 + 0.5 * draw.uniform()), "zoom",
                        {**self.item_fields[item], "level": (1.5, 2.0, 3.0, 4.0)[int(draw.uniform() * 4) % 4]}))
        extra = 0.0
        if draw.uniform() < min(0.95, p_review * persona.review_rate):
            reviews = 2 if draw.uniform() < 0.4 else 1
            for _ in range(reviews):
                duration = draw.lognormal(35_000, 0.6)
                sub.append((read + extra, "review_read", {**self.item_fields[item], "duration_ms": int(duration)}))
                extra += duration + draw.lognormal(2_000, 0.5)
        sub.sort(key=lambda x: x[0])
        for offset, event_type, fields in sub:
            s.t = start + max(1, int(offset))
            self._emit(s, event_type, fields)
        dwell = max(int(read + extra), s.t - start + 500)
        s.t = start + dwell
        self._emit(s, "dwell", {**self.item_fields[item], "dwell_ms": dwell})

    def _preferred_item(self, shopper: _Shopper, category: int, exclude: int | None = None) -> int:
        key = (shopper.index, category)
        cached = self._preference_cache.get(key)
        if cached is None:
            items = self.category_items[category]
            weights = [self.item_popularity[i] * math.exp(-shopper.price_beta * self.item_log_price_ratio[i])
                       for i in items]
            cached = (items, list(accumulate(weights)))
            self._preference_cache[key] = cached
        items, cumulative = cached
        for _ in range(4):
            item = items[self.draw.pick(cumulative)]
            if item != exclude:
                return item
        return item

    def _think(self, s: _Session, action: str) -> None:
        median, sigma = _THINK[action]
        s.t += int(self.draw.lognormal(median * 1000, sigma))

    def _emit(self, s: _Session, event_type: str, fields: dict) -> None:
        self._sequence += 1
        body = {"event_id": "", "user_id": s.shopper.user_id, "session_id": s.session_id,
                "timestamp": "", "event_type": event_type, **fields}
        s.events.append((s.t, self._sequence, body))
        s.intents.append(s.intent)


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


def _traits(affinity: np.ndarray, price_beta: float, persona: Persona, noise: float) -> dict[str, float]:
    """Named trait strengths in [0, 1], read off the shopper's own tastes (which their persona shapes)."""
    a = {name: float(x) for name, x in zip(_CAT_NAMES, affinity)}
    gift_lean = 0.15 if persona.name == "gift_shopper" else 0.0
    raw = {
        "budget_conscious": _sigmoid(2.0 * (price_beta - 0.5)),
        "luxury_seeker": 0.5 * _sigmoid(-2.0 * (price_beta + 0.5)) + 0.5 * min(1.0, 3.0 * a["luxury_accessories"]),
        "tech_enthusiast": min(1.0, 1.4 * (a["electronics"] + a["computers"] + a["phones"])),
        "home_decorator": min(1.0, 1.4 * (a["home_decor"] + a["kitchen"] + a["furniture"])),
        "outdoor_adventurer": min(1.0, 1.8 * (a["outdoor"] + a["sports"])),
        "gift_shopper": min(1.0, 1.8 * a["toys_gifts"] + 0.8 * a["books"] + gift_lean),
    }
    return {k: round(min(1.0, max(0.0, v + noise)), 4) for k, v in raw.items()}


def _profile(rng: np.random.Generator, persona: Persona, affinity: np.ndarray) -> dict:
    """A stated profile: only weakly tied to the persona (the spec treats it as a weak signal)."""
    age = int(np.clip(rng.normal(*persona.age), 18, 85))
    if rng.random() < 0.3:
        location = persona.locations[int(rng.integers(len(persona.locations)))]
    else:
        location = _ALL_LOCATIONS[int(rng.integers(len(_ALL_LOCATIONS)))]
    count = int(rng.integers(1, 4))
    interests: list[str] = []
    for _ in range(count):
        pool = affinity if rng.random() < 0.5 else np.full(len(_CAT_NAMES), 1.0 / len(_CAT_NAMES))
        name = _CAT_NAMES[int(rng.choice(len(_CAT_NAMES), p=pool / pool.sum()))]
        if name not in interests:
            interests.append(name)
    return {"age": age, "location": location, "interests": interests}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _iso(t_ms: int) -> str:
    seconds, millis = divmod(t_ms, 1000)
    days, second_of_day = divmod(seconds, 86_400)
    hours, rest = divmod(second_of_day, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{_date_of_epoch_day(days)}T{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _date_of_epoch_day(days: int) -> str:
    return datetime.fromtimestamp(days * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")
