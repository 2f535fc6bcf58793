"""Feed strategies: named configurations of the one ranking pipeline, built in or defined in AppConfig.

A strategy says, per surface it changes, which candidate sources the route draws from and with what share, the
blend weights (spec 004's feed: 0.5 commercial performance + 0.4 purchase probability + 0.1 diversity), which
version of the purchase-probability ranker scores it, whether the persona term weighs in, and whether the shopper's
predicted lifetime value weighs the purchase-probability term (tailor.ranking.scoring.ltv_adjusted), and whether the
feed is adaptive (its slots filled by the session's cluster bandit from the ranked list: tailor.clusters.feed). What it
leaves unsaid is the default route's. `baseline` (commercial performance alone, the spec's original approach),
`default` (the routes as they are) and `adaptive` (the default feed, adapted; spec 001) are built in; more are
defined without a deploy in the AppConfig profile the template names (STRATEGY_CONFIG_*), read at most once a minute
like the intent factors (tailor.intent_config):

    {"strategies": {"cautious": {"weights": {"commercial": 0.7, "probability": 0.3},
                                 "sources": {"session": 0.5, "popular": 1.0}, "personas": false,
                                 "ranker": "20260101T000000Z", "ltv": true, "ltv_strength": 0.5}}}
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tailor.intent_config import PolledDocument
from tailor.ranking.candidates import (
    CategoryPopularSource,
    PopularSource,
    QuerySource,
    RelatedSource,
    SessionSource,
)
from tailor.ranking.pipeline import Route

__all__ = ["BUILT_IN", "CONFIG_VARIABLES", "SOURCES", "SURFACES", "TERMS", "Strategy", "StrategyError",
           "StrategySource", "parse_strategies"]


SURFACES = ("feed", "search", "related")
# The candidate sources a strategy may name, by name; each takes the share of the candidate budget it is given.
SOURCES: dict[str, Callable[[float], Any]] = {
    "session": lambda share: SessionSource(share=share),
    "query": lambda share: QuerySource(share=share),
    "popular": lambda share: PopularSource(share=share),
    "related": lambda share: RelatedSource(share=share),
    "category_popular": lambda share: CategoryPopularSource(share=share),
}
# The blend terms a strategy may weigh (the scorers tailor.serving registers, and diversity while picking).
TERMS = ("commercial", "probability", "relevance", "diversity", "personas")
PERSONA_TERM = "personas"
DEFAULT_LTV_STRENGTH = 0.5
CONFIG_VARIABLES = ("STRATEGY_CONFIG_APPLICATION", "STRATEGY_CONFIG_ENVIRONMENT", "STRATEGY_CONFIG_PROFILE")
MAX_AGE_SECONDS = 60
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RANKER_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class StrategyError(ValueError):
    """A strategy definition that cannot be used; `field` names where it is wrong."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Strategy:
    """A named configuration of the ranking pipeline. `weights` and `sources` (name -> share) replace the default
    route's on every surface they are given for (None: the default's); `ranker` is a version of the ranker in the
    registry (None: the current one); `personas` False takes the persona term out, True puts it in at
    `persona_weight` where the default route has none; `ltv` True weighs the purchase-probability term by the
    shopper's predicted LTV at `ltv_strength`, False not at all (None: as the deployment does); `adaptive` True has
    the session's cluster bandit fill the feed's slots from the ranked list (with no clusters published, the feed
    is served as ranked)."""

    name: str
    weights: Mapping[str, float] | None = None
    sources: Mapping[str, float] | None = None
    ranker: str | None = None
    personas: bool | None = None
    persona_weight: float = 0.5
    surfaces: tuple[str, ...] = SURFACES
    description: str = ""
    ltv: bool | None = None
    ltv_strength: float = DEFAULT_LTV_STRENGTH
    adaptive: bool = False
    _routes: dict = field(default_factory=dict, compare=False, repr=False)

    def route(self, surface: str, default: Route) -> Route:
        """The route this strategy serves `surface` with, given the default route of that surface."""
        found = self._routes.get((surface, id(default)))
        if found is not None:
            return found
        route = default
        if surface in self.surfaces:
            weights = dict(default.weights if self.weights is None else self.weights)
            if self.personas is False:
                weights.pop(PERSONA_TERM, None)
            elif self.personas is True and not weights.get(PERSONA_TERM):
                weights[PERSONA_TERM] = self.persona_weight
            sources = default.sources if self.sources is None else tuple(
                SOURCES[name](share) for name, share in self.sources.items())
            route = replace(default, sources=sources, weights=weights)
        self._routes[(surface, id(default))] = route
        return route

    def describe(self) -> dict[str, Any]:
        """The strategy as its definition reads (JSON-ready)."""
        return {"name": self.name, "weights": None if self.weights is None else dict(self.weights),
                "sources": None if self.sources is None else dict(self.sources), "ranker": self.ranker,
                "personas": self.personas, "ltv": self.ltv, "ltv_strength": self.ltv_strength,
                "surfaces": list(self.surfaces), "description": self.description, "adaptive": self.adaptive}

    def ltv_strength_given(self, deployed: float) -> float:
        """The LTV weighting's strength this strategy ranks with, given the deployment's."""
        return deployed if self.ltv is None else self.ltv_strength if self.ltv else 0.0


BUILT_IN: dict[str, Strategy] = {
    "default": Strategy("default", description="the routes as configured: spec 004's blend and every source"),
    "baseline": Strategy("baseline", weights={"commercial": 1.0}, personas=False, ltv=False,
                         description="commercial performance alone (spec 004's original approach)"),
    "adaptive": Strategy("adaptive", surfaces=("feed",), adaptive=True,
                         description="the default feed, its slots filled by the session's cluster bandit (spec 001)"),
}


def parse_strategies(document: Any) -> dict[str, Strategy]:
    """The strategies a configuration document defines ({"strategies": {name: definition}}), checked field by field;
    StrategyError names the first wrong one. Built-in names cannot be redefined."""
    if isinstance(document, (bytes, str)):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as error:
            raise StrategyError("strategies", f"not JSON: {error}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("strategies", {}), Mapping):
        raise StrategyError("strategies", "must be an object of name -> definition")
    found = {}
    for name, definition in document.get("strategies", {}).items():
        found[name] = _strategy(name, definition)
    return found


class StrategySource:
    """The strategies in force: the built-in ones and those in AppConfig (read at most once every `max_age` seconds;
    unreachable or invalid: the last valid ones, logged once). Call it per request; `get(name)` finds one."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, max_age: float = MAX_AGE_SECONDS,
                 fetch: Callable[[str, str, str, int], Any] | None = None, clock: Callable[[], float] = time.monotonic):
        self._polled = PolledDocument("feed strategies", CONFIG_VARIABLES, dict(BUILT_IN),
                                      lambda document: {**parse_strategies(document), **BUILT_IN}, environ=environ,
                                      max_age=max_age, fetch=fetch, clock=clock,
                                      describe=lambda known: ", ".join(sorted(known)))

    @property
    def location(self) -> tuple[str, str, str] | None:
        return self._polled.location

    def __call__(self) -> dict[str, Strategy]:
        return self._polled()

    def get(self, name: str) -> Strategy | None:
        return self().get(name)


def _strategy(name: Any, definition: Any) -> Strategy:
    where = f"strategies.{name}"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise StrategyError(where, "a strategy's name is 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit")
    if name in BUILT_IN:
        raise StrategyError(where, f"{name!r} is built in and cannot be redefined")
    if not isinstance(definition, Mapping):
        raise StrategyError(where, "must be an object")
    unknown = set(definition) - {"weights", "sources", "ranker", "personas", "persona_weight", "surfaces",
                                 "description", "ltv", "ltv_strength", "adaptive"}
    if unknown:
        raise StrategyError(f"{where}.{sorted(unknown)[0]}", "is not a strategy field")
    weights = definition.get("weights")
    if weights is not None:
        weights = _numbers(f"{where}.weights", weights, TERMS)
        if not any(weights.values()):
            raise StrategyError(f"{where}.weights", "must weigh at least one term above 0")
    sources = definition.get("sources")
    if sources is not None:
        sources = _numbers(f"{where}.sources", sources, tuple(SOURCES))
        if not sources or any(not 0 < share <= 1 for share in sources.values()):
            raise StrategyError(f"{where}.sources", "each source's share is in (0, 1], and at least one is named")
    ranker = definition.get("ranker")
    if ranker is not None and (not isinstance(ranker, str) or not RANKER_PATTERN.match(ranker)):
        raise StrategyError(f"{where}.ranker", "a ranker version in the registry (letters, digits, . _ : -)")
    personas = definition.get("personas")
    if personas is not None and not isinstance(personas, bool):
        raise StrategyError(f"{where}.personas", "true or false")
    persona_weight = definition.get("persona_weight", 0.5)
    if isinstance(persona_weight, bool) or not isinstance(persona_weight, int | float) or not (
            math.isfinite(persona_weight) and persona_weight >= 0):
        raise StrategyError(f"{where}.persona_weight", "a number >= 0")
    ltv = definition.get("ltv")
    if ltv is not None and not isinstance(ltv, bool):
        raise StrategyError(f"{where}.ltv", "true or false")
    ltv_strength = definition.get("ltv_strength", DEFAULT_LTV_STRENGTH)
    if isinstance(ltv_strength, bool) or not isinstance(ltv_strength, int | float) or not 0 <= ltv_strength <= 1:
        raise StrategyError(f"{where}.ltv_strength", "a number between 0 and 1")
    surfaces = definition.get("surfaces", list(SURFACES))
    if not isinstance(surfaces, list) or not surfaces or any(s not in SURFACES for s in surfaces):
        raise StrategyError(f"{where}.surfaces", f"a list of {', '.join(SURFACES)}")
    adaptive = definition.get("adaptive", False)
    if not isinstance(adaptive, bool):
        raise StrategyError(f"{where}.adaptive", "true or false")
    description = definition.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise StrategyError(f"{where}.description", "text of at most 500 characters")
    return Strategy(name, weights, sources, ranker, personas, float(persona_weight), tuple(dict.fromkeys(surfaces)),
                    description, ltv, float(ltv_strength), adaptive)


def _numbers(where: str, value: Any, names: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise StrategyError(where, "must be an object of name -> number")
    out = {}
    for key, number in value.items():
        if key not in names:
            raise StrategyError(f"{where}.{key}", f"unknown; one of {', '.join(names)}")
        if isinstance(number, bool) or not isinstance(number, int | float) or not (math.isfinite(number)
                                                                                   and number >= 0):
            raise StrategyError(f"{where}.{key}", "a number >= 0")
        out[key] = float(number)
    return out
