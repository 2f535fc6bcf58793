"""Simulated shoppers: latent personas, each shopper's own tastes and traits, stated profiles, and when they visit."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from .catalog import CATEGORIES, CATEGORY_NAMES
from .parameters import DEFAULT_PARAMETERS, Parameters

__all__ = ["PERSONAS", "TRAITS", "Persona", "Shopper", "make_shoppers", "persona_tastes", "session_starts"]

TRAITS: tuple[str, ...] = (
    "budget_conscious", "luxury_seeker", "tech_enthusiast", "home_decorator", "outdoor_adventurer",
    "gift_shopper",
)


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
    intents: tuple[float, float, float, float]  # initial intent, in the order of sessions.INTENTS
    referrals: dict[str, float]
    search_rate: float  # multiplies the weight of searching
    zoom_rate: float
    review_rate: float
    wishlist_rate: float
    age: tuple[float, float]  # mean and spread of the stated age
    locations: tuple[str, ...]  # where profiles of this persona lean


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
# Relative arrivals per hour of the day (the shop's local time = UTC here): quiet at night,
# a lunch bump and an evening peak.
_HOURLY_RHYTHM = (.35, .20, .12, .08, .07, .10, .25, .50, .75, .85, .90, .95,
                  1.05, 1.00, .90, .85, .85, .95, 1.10, 1.30, 1.45, 1.40, 1.10, .70)
_WEEKEND_LIFT = 1.15
_WHALE_SHARE = 0.02
_PROFILE_SHARE = 0.45


@dataclass
class Shopper:
    """One simulated shopper: their persona, their own tastes drawn around it, and what they did (filled in as their
    sessions run)."""

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
    brand_taste: np.ndarray  # over catalog brand names, sorted
    style: np.ndarray  # a point in the items' style space
    utility: np.ndarray | None = None  # over items, once the choice model has worked it out
    session_ids: list[str] = field(default_factory=list)
    revenue: float = 0.0
    orders: int = 0


def make_shoppers(rng: np.random.Generator, count: int, run_tag: str,
                  params: Parameters = DEFAULT_PARAMETERS) -> list[Shopper]:
    """`count` shoppers: personas by their shares, a few whales, profiles for some, tastes drawn around the persona's."""
    shares = np.array([p.share for p in PERSONAS])
    personas = rng.choice(len(PERSONAS), size=count, p=shares / shares.sum())
    whales = rng.random(count) < _WHALE_SHARE
    has_profile = rng.random(count) < _PROFILE_SHARE
    shoppers = []
    for i in range(count):
        persona = PERSONAS[int(personas[i])]
        prefs = np.array([persona.categories[name] for name in CATEGORY_NAMES])
        affinity = rng.dirichlet(15.0 * prefs / prefs.sum() + 0.1)
        whale = bool(whales[i])
        price_beta = persona.price_beta + float(rng.normal(0.0, 0.5)) - (0.8 if whale else 0.0)
        propensity = (persona.purchase_propensity * float(rng.lognormal(0.0, params.propensity_sd))
                      * (4.0 if whale else 1.0))
        basket = persona.basket * float(rng.lognormal(0.0, 0.5)) + (2.0 if whale else 0.0)
        sessions_per_day = (params.visit_scale * persona.sessions_per_day * float(rng.lognormal(0.0, params.visit_sd))
                            * (1.5 if whale else 1.0))
        traits = _traits(affinity, price_beta, persona, float(rng.normal(0.0, 0.08)))
        profile = _profile(rng, persona, affinity) if has_profile[i] else None
        brands, style = persona_tastes(params)
        brand_taste = brands[int(personas[i])] + rng.normal(0.0, params.shopper_brand_sd, brands.shape[1])
        own_style = style[int(personas[i])] + rng.normal(0.0, params.shopper_style_sd, params.style_dims)
        shoppers.append(Shopper(
            index=i, user_id=f"u-{run_tag}-{i:05d}", persona=int(personas[i]),
            affinity=affinity, affinity_cum=list(accumulate(affinity.tolist())),
            price_beta=price_beta, propensity=propensity, basket=basket,
            sessions_per_day=sessions_per_day, whale=whale, traits=traits, profile=profile,
            brand_taste=brand_taste, style=own_style))
    return shoppers


@functools.lru_cache(maxsize=8)
def persona_tastes(params: Parameters = DEFAULT_PARAMETERS) -> tuple[np.ndarray, np.ndarray]:
    """Each persona's brand preferences (personas x brands, sorted by name) and style (personas x style_dims): drawn
    from a fixed seed, the same in every run, as the personas themselves are."""
    rng = np.random.default_rng(20261102)
    brands = sorted({b for c in CATEGORIES for b in c.brands})
    brand = rng.normal(0.0, params.persona_brand_sd, (len(PERSONAS), len(brands)))
    style = rng.normal(0.0, params.persona_style_sd, (len(PERSONAS), params.style_dims))
    brand.setflags(write=False)
    style.setflags(write=False)
    return brand, style


def session_starts(rng: np.random.Generator, shoppers: list[Shopper], start_ms: int, end_ms: int,
                   days: float) -> list[list[int]]:
    """Session start times (epoch ms) per shopper, following the daily rhythm; at least one each."""
    counts = [max(1, int(rng.poisson(s.sessions_per_day * days))) for s in shoppers]
    minutes = max(1, int(math.ceil(days * 1440)))
    minute_starts = start_ms + np.arange(minutes, dtype=np.int64) * 60_000
    seconds_of_day = (minute_starts // 1000) % 86_400
    weekday = ((minute_starts // 86_400_000) + 3) % 7  # 1970-01-01 was a Thursday (3, Monday = 0)
    weights = np.asarray(_HOURLY_RHYTHM)[seconds_of_day // 3600] * np.where(weekday >= 5, _WEEKEND_LIFT, 1.0)
    cumulative = np.cumsum(weights)
    total = sum(counts)
    picked = np.searchsorted(cumulative, rng.random(total) * cumulative[-1], side="right")
    picked = np.minimum(picked, minutes - 1)
    times = minute_starts[picked] + (rng.random(total) * 60_000).astype(np.int64)
    times = np.minimum(times, end_ms - 1)
    starts, at = [], 0
    for n in counts:
        starts.append(sorted(times[at:at + n].tolist()))
        at += n
    return starts


def _traits(affinity: np.ndarray, price_beta: float, persona: Persona, noise: float) -> dict[str, float]:
    """Named trait strengths in [0, 1], read off the shopper's own tastes (which their persona shapes)."""
    a = {name: float(x) for name, x in zip(CATEGORY_NAMES, affinity)}
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
        # Half the stated interests follow the shopper's tastes, half are any category.
        if rng.random() < 0.5:
            cumulative = np.cumsum(affinity)
            picked = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        else:
            picked = int(rng.integers(len(CATEGORY_NAMES)))
        name = CATEGORY_NAMES[min(picked, len(CATEGORY_NAMES) - 1)]
        if name not in interests:
            interests.append(name)
    return {"age": age, "location": location, "interests": interests}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
