"""Named shopper traits as Beta posteriors, updated from the evidence events leave (tailor.evidence).

Each trait's posterior is Beta(alpha, beta), starting at Beta(1, 1). A piece of evidence with strength
s in [0, 1] (how much it speaks for the trait) and weight w adds w*s*(1-e) to alpha and w*(1-s)*e to
beta, where e is the trait's even-odds point: the average strength at which a shopper is as likely
to have the trait as not. So a tech enthusiast (a shopper whose engagement is at least about a third
tech categories) ends above 0.5 even though most of what anyone views is not tech. The same update
runs on the session (this visit's traits) and on the shopper (all visits so far).

Evidence sources: the item's price percentile within its category (budget-conscious, luxury seeker),
the share of engagement in a trait's categories (tech, home, outdoor, gifts, luxury), specification
reading (spec comparisons and long dwell on tech items) and query words ("cheap", "premium", "gift").
"""

from __future__ import annotations

import functools
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ENGAGEMENT_WEIGHTS", "TRAITS", "Trait", "apply_evidence", "summarize_traits", "trait_means"]

# How much one event of a type counts as evidence of taste.
ENGAGEMENT_WEIGHTS: dict[str, float] = {
    "view": 1.0, "click": 1.0, "add_to_cart": 2.0, "purchase": 3.0, "wishlist": 1.5, "spec_compare": 1.0,
    "review_read": 0.5, "zoom": 0.5, "category_browse": 0.5,
}
QUERY_WEIGHT = 2.0
LONG_DWELL_MS = 40_000  # an item page read this long counts as reading its specifications
MAX_REASONS = 12  # kinds of evidence tallied per trait
PRICE_WEIGHTED = frozenset({"view", "click", "add_to_cart", "purchase", "wishlist"})


@dataclass(frozen=True)
class Trait:
    name: str
    categories: tuple[str, ...] = ()  # words found in the names of the trait's categories
    category_even: float = 0.5  # share of engagement in those categories at even odds
    partial_categories: tuple[tuple[str, float], ...] = ()  # (word, strength) of categories that count in part
    price: str | None = None  # "low" or "high": cheap or expensive items speak for it
    price_even: float = 0.5
    query_words: tuple[str, ...] = ()  # words (or prefixes ending in "-") in queries that speak for it
    specs: bool = False  # spec comparisons and long dwell on its categories' items speak for it


TRAITS: tuple[Trait, ...] = (
    Trait("budget_conscious", price="low", price_even=0.56,
          query_words=("cheap", "budget", "deal", "deals", "sale", "discount", "under-")),
    Trait("luxury_seeker", categories=("luxury", "jewel", "designer"), category_even=0.2, price="high",
          price_even=0.6, query_words=("premium", "luxury", "designer", "gold", "swiss", "limited")),
    Trait("tech_enthusiast", categories=("electronic", "computer", "phone", "tech", "gaming", "camera"),
          category_even=0.36, specs=True),
    Trait("home_decorator", categories=("home", "decor", "kitchen", "furniture", "garden", "interior"),
          category_even=0.36),
    Trait("outdoor_adventurer", categories=("outdoor", "sport", "camping", "hiking", "fitness"),
          category_even=0.28),
    Trait("gift_shopper", categories=("gift", "toy"), category_even=0.26, partial_categories=(("book", 0.45),),
          query_words=("gift", "for kids", "for her", "for him", "personalized")),
)
_WORDS = re.compile(r"[a-z0-9]+-?")


def apply_evidence(traits: dict[str, list[float]], evidence: dict[str, dict[str, float]],
                   notes: Iterable[list], price_percentile: Callable[[str, float], float | None]) -> None:
    """Fold the notes (tailor.evidence) into `traits` ({name: [alpha, beta]}) and tally, per trait,
    the weight of each kind of evidence in `evidence` ({name: {reason: weight}}, "+"/"-" prefixed)."""
    alpha: dict[str, float] = defaultdict(float)
    beta: dict[str, float] = defaultdict(float)
    tally: dict[tuple[str, str], float] = defaultdict(float)

    def add(name: str, strength: float, weight: float, even: float, reason: str) -> None:
        alpha[name] += weight * strength * (1.0 - even)
        beta[name] += weight * (1.0 - strength) * even
        tally[(name, reason)] += weight

    for kind, category, price, dwell_ms, text in notes:
        category = category.lower()
        weight = ENGAGEMENT_WEIGHTS.get(kind, 0.0)
        q = price_percentile(category, price) if kind in PRICE_WEIGHTED and price >= 0 and category else None
        words = _WORDS.findall(text.lower()) if kind == "search" else []
        strengths = _category_strengths(category) if category else None
        for i, trait in enumerate(TRAITS):
            if weight and trait.categories and strengths is not None:
                strength = strengths[i]
                add(trait.name, strength, weight, trait.category_even,
                    f"{'+' if strength >= 0.5 else '-'}category:{category}")
            if q is not None and trait.price:
                strength = 1.0 - q if trait.price == "low" else q
                label = "low-priced items" if q < 0.5 else "high-priced items"
                add(trait.name, strength, weight, trait.price_even,
                    f"{'+' if strength >= trait.price_even else '-'}{label}")
            if words and trait.query_words and _mentions(text.lower(), words, trait.query_words):
                add(trait.name, 1.0, QUERY_WEIGHT, 0.5, f"+query:{text}")
            if trait.specs and strengths is not None and strengths[i] >= 0.5 and (
                    kind == "spec_compare" or (kind == "dwell" and dwell_ms >= LONG_DWELL_MS)):
                add(trait.name, 1.0, 1.0, trait.category_even, "+reading specifications")

    for name in alpha.keys() | beta.keys():
        posterior = traits.setdefault(name, [1.0, 1.0])
        posterior[0] = round(posterior[0] + alpha[name], 6)
        posterior[1] = round(posterior[1] + beta[name], 6)
    for (name, reason), weight in tally.items():
        reasons = evidence.setdefault(name, {})
        reasons[reason] = round(reasons.get(reason, 0.0) + weight, 6)
    for reasons in evidence.values():
        while len(reasons) > MAX_REASONS:  # the row stays small: the lightest reasons go
            del reasons[min(reasons, key=lambda r: (reasons[r], r))]


def trait_means(traits: Mapping[str, list[float]]) -> dict[str, float]:
    """Posterior mean per trait (0.5 for a trait without evidence)."""
    out = {}
    for trait in TRAITS:
        alpha, beta = traits.get(trait.name, (1.0, 1.0))
        out[trait.name] = alpha / (alpha + beta)
    return out


def summarize_traits(traits: Mapping[str, list[float]], evidence: Mapping[str, Mapping[str, float]],
                     *, reasons: int = 4) -> dict[str, dict[str, Any]]:
    """Per trait: posterior mean and standard deviation, Beta parameters, and the weightiest evidence."""
    out: dict[str, dict[str, Any]] = {}
    for trait in TRAITS:
        alpha, beta = traits.get(trait.name, (1.0, 1.0))
        n = alpha + beta
        mean = alpha / n
        tally = evidence.get(trait.name, {})
        top = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))[:reasons]
        out[trait.name] = {
            "probability": round(mean, 4),
            "sd": round(math.sqrt(mean * (1 - mean) / (n + 1)), 4),
            "alpha": round(alpha, 3), "beta": round(beta, 3),
            "evidence": [{"for": reason[0] == "+", "what": reason[1:], "weight": round(w, 2)} for reason, w in top],
        }
    return out


@functools.lru_cache(maxsize=4096)
def _category_strengths(category: str) -> tuple[float, ...]:
    """How much engaging with an item of `category` speaks for each trait (TRAITS order)."""
    out = []
    for trait in TRAITS:
        strength = 1.0 if any(word in category for word in trait.categories) else 0.0
        if not strength:
            strength = next((s for word, s in trait.partial_categories if word in category), 0.0)
        out.append(strength)
    return tuple(out)


def _mentions(text: str, words: list[str], wanted: tuple[str, ...]) -> bool:
    for w in wanted:
        if w.endswith("-"):
            if any(word.startswith(w) for word in words):
                return True
        elif (" " in w and w in text) or w in words:
            return True
    return False
