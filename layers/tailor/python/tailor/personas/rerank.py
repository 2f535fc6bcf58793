"""Personas in the API: the persona scorer that re-ranks search results and caller lists by the shopper's
persona mixture, the settings that put it in the routes' blends, and the persona part of a shopper's profile.

The scorer's term for an item is the adjustment of the shopper's personas for it (their mixture's weighted
sum of the item's adjustment vector, or the dominant persona's alone), through a logistic so it lies in
(0, 1) and an item without any adjustment sits in the middle. The blend then adds it to the base list's
own scores with the configured weight, as in score = base + weight * adjustment. A shopper Tailor has no
mixture for gets the default persona their profile's weak signals point to, or the general-interest one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tailor.personas.model import PersonaModel, mixture_vector
from tailor.personas.traits import summarize_traits
from tailor.session import SessionState
from tailor.shopper import ShopperState

__all__ = ["DEFAULT_WEIGHT", "MODES", "PersonaScorer", "describe_personas", "persona_ranking", "shopper_mixture"]

MODES = ("mixture", "dominant")
DEFAULT_WEIGHT = 0.5  # chosen on validation windows (tailor evaluate personas --validation)
PERSONA_ROUTES = ("search", "rerank")
SCALE = 0.5  # adjustment at which the term is 0.73 (and -SCALE: 0.27)


class PersonaScorer:
    name = "personas"

    def __init__(self, model: Callable[[], PersonaModel | None], *, mode: str = "mixture"):
        if mode not in MODES:
            raise ValueError(f"persona mode must be one of {MODES}, not {mode!r}")
        self.model = model
        self.mode = mode

    def score(self, ctx: Any, candidates: Any, features: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = len(candidates)
        model = self.model()
        if model is None or n == 0:
            return np.full(n, 0.5), {}
        mixture, _ = shopper_mixture(ctx.shopper, model)
        weights = mixture_vector(mixture, model)
        if self.mode == "dominant":
            weights = np.eye(model.k)[int(np.argmax(weights))]
        adjustment = model.adjustment_rows(list(candidates.ids)) @ weights
        return 1.0 / (1.0 + np.exp(-adjustment / SCALE)), {"persona_adjustment": adjustment}


def persona_ranking(model: Callable[[], PersonaModel | None], routes: Mapping[str, Any], *,
                    weight: float | None = None, mode: str | None = None) -> dict[str, Any]:
    """Recommender arguments that add the persona scorer to the search and rerank blends with `weight` (default
    DEFAULT_WEIGHT; 0 turns it off) and `mode` ("mixture", the default, or "dominant")."""
    weight = DEFAULT_WEIGHT if weight is None else weight
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError("PERSONA_WEIGHT must be a number >= 0")
    scorer = PersonaScorer(model, mode=mode or "mixture")
    weights = {route: {**routes[route].weights, "personas": weight} for route in PERSONA_ROUTES}
    return {"weights": weights, "scorers": [scorer]}


def shopper_mixture(shopper: ShopperState | None, model: PersonaModel) -> tuple[dict[str, float], str]:
    """The shopper's persona mixture and where it comes from: "behaviour" (the posterior Ingest keeps), "profile"
    (cold start from weak signals) or "general interest" (nothing known)."""
    if shopper is not None:
        mixture = (shopper.personas or {}).get("mixture")
        if mixture:
            return mixture, "behaviour"
        if shopper.profile or shopper.referral_sources:
            return model.cold_start_mixture(shopper.profile, shopper.referral_sources), "profile"
    return model.general_mixture(), "general interest"


def describe_personas(model: Callable[[], PersonaModel | None]) -> Callable[[ShopperState, SessionState | None], dict]:
    """The profile's "personas" section: mixture (with each persona's description), traits of the shopper and of
    the current session with the evidence behind them, and the signals the mixture was computed from."""

    def describe(shopper: ShopperState, session: SessionState | None) -> dict[str, Any]:
        current = model()
        state = shopper.personas or {}
        out: dict[str, Any] = {"model": None if current is None else current.version, "mixture": [], "source": None}
        if current is not None:
            mixture, source = shopper_mixture(shopper, current)
            labels = dict(zip(map(str, current.ids), current.labels))
            out["mixture"] = [{"persona": pid, "share": share, "description": labels.get(pid, "retired persona")}
                              for pid, share in sorted(mixture.items(), key=lambda kv: -kv[1])]
            out["source"] = source
        out["traits"] = summarize_traits(state.get("traits", {}), state.get("evidence", {}))
        session_state = (session.personas or {}) if session is not None else {}
        out["session_traits"] = (summarize_traits(session_state.get("traits", {}), session_state.get("evidence", {}))
                                 if session_state.get("traits") else None)
        signals = state.get("signals", {})
        out["signals"] = {
            "price_percentile": round(signals["price_sum"] / signals["price_n"], 3) if signals.get("price_n") else None,
            "mean_dwell_seconds": round(signals["dwell_ms"] / signals["dwell_n"] / 1000, 1) if signals.get("dwell_n") else None,
            "recent_queries": list(reversed(state.get("queries", []))),
        }
        return out

    return describe
