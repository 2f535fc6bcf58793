"""A simulated run: catalog, shoppers and their sessions, put together into time-ordered events and their truth."""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .catalog import CATEGORIES, CATEGORY_NAMES, Catalog
from .choices import Draws, ItemChoice
from .parameters import DEFAULT_PARAMETERS, Parameters
from .sessions import INTENTS, Sessions
from .shoppers import PERSONAS, TRAITS, Shopper, make_shoppers, session_starts

__all__ = ["DEFAULT_START", "Simulation", "World", "simulate"]

# A fixed default keeps a seed's output identical from one run to the next; callers that want
# "now" pass start explicitly.
DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)


@dataclass
class World:
    """What a run's shoppers are behind their events: the catalog with its latent side, the shoppers with their
    tastes, and the choice model that reads them (what the online evaluation lets shoppers act with)."""

    catalog: Catalog
    shoppers: list[Shopper]
    choice: ItemChoice
    params: Parameters
    end_ms: int  # when the simulated window ends, epoch ms


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
                                       in the order they took turns), "dominant_intent"}},
             "widget": {"impressions", "clicks"} (per slot of the shop's recommendation widget)}
    """

    events: list[dict]
    catalog: list[dict]
    truth: dict
    world: World | None = field(default=None, repr=False, compare=False)

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
             *, items: int = 1200, params: Parameters | None = None,
             sessions_type: Callable[..., Sessions] = Sessions) -> Simulation:
    """Simulate `shoppers` shoppers over `days` days from `start`; the same arguments give the same output.

    Every simulated shopper visits at least once. Sessions start within the window; the last
    ones may run a few minutes past its end. The catalog depends only on `seed` and `items`, so
    runs with the same seed share item ids and item data; shopper, session, order and event ids
    carry a tag of all the arguments, so different runs never share them. `params` are the choice model's
    (parameters.py; the calibrated defaults without them). `sessions_type` makes what runs the sessions (given
    Sessions' arguments): a subclass may watch them (the intent oracle records each action) but must draw nothing, or
    the run changes.
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
    return _run(shoppers, float(days), seed, start.astimezone(UTC), items, params or DEFAULT_PARAMETERS, sessions_type)


def _run(n_shoppers: int, days: float, seed: int, start: datetime, items: int, params: Parameters,
         sessions_type: Callable[..., Sessions] = Sessions) -> Simulation:
    start_ms = int(round(start.timestamp() * 1000))
    end_ms = start_ms + int(days * 86_400_000)
    run_tag = hashlib.sha1(f"{seed}|{n_shoppers}|{days!r}|{start.isoformat()}".encode()).hexdigest()[:6]
    catalog = Catalog(np.random.default_rng([seed, 0]), items, params)
    draw = Draws(np.random.default_rng([seed, 1]))
    choice = ItemChoice(catalog, draw, params)
    shoppers = make_shoppers(draw.rng, n_shoppers, run_tag, params)
    sessions = sessions_type(catalog, draw, choice, run_tag, shoppers)
    all_events: list[tuple[int, int, dict]] = []
    sessions_truth: dict[str, dict] = {}
    session_events: dict[str, list[tuple[int, int, dict]]] = {}
    session_intents: dict[str, list[int]] = {}
    for shopper, starts in zip(shoppers, session_starts(draw.rng, shoppers, start_ms, end_ms, days)):
        choice.next_shopper()
        previous_end = None
        for k, t0 in enumerate(starts):
            if previous_end is not None and t0 < previous_end + 60_000:
                # A shopper's sessions do not overlap: the next one begins after a break.
                t0 = previous_end + int(draw.lognormal(20 * 60_000, 0.8))
                if t0 >= end_ms:
                    break
            session = sessions.run(shopper, k, t0)
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
    stamps = _iso_all([t for t, _, _ in all_events])
    for n, (_, _, body) in enumerate(all_events):
        body["event_id"] = f"e-{run_tag}-{n:07d}"
        body["timestamp"] = stamps[n]
        events.append(body)
    for session_id, entry in sessions_truth.items():
        entry["event_ids"] = [e[2]["event_id"] for e in session_events[session_id]]
        intents = [INTENTS[i] for i in session_intents[session_id]]
        entry["intents"] = intents
        entry["intent_path"] = [x for j, x in enumerate(intents) if j == 0 or intents[j - 1] != x]
        entry["dominant_intent"] = Counter(intents).most_common(1)[0][0]
    truth = {
        "seed": seed,
        "shopper_count": n_shoppers,
        "days": days,
        "start": _iso(start_ms),
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
                "category_affinity": {name: round(float(a), 4) for name, a in zip(CATEGORY_NAMES, s.affinity)},
                "sessions": s.session_ids,
                "orders": s.orders,
                "revenue": round(s.revenue, 2),
            }
            for s in shoppers
        },
        "sessions": sessions_truth,
        "widget": {"impressions": [sessions.widget_views] * params.widget_slots,
                   "clicks": list(sessions.widget_clicks)},
    }
    world = World(catalog=catalog, shoppers=shoppers, choice=choice, params=params, end_ms=end_ms)
    return Simulation(events=events, catalog=catalog.records, truth=truth, world=world)


def _iso(t_ms: int) -> str:
    seconds, millis = divmod(t_ms, 1000)
    days, second_of_day = divmod(seconds, 86_400)
    hours, rest = divmod(second_of_day, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{_date_of_epoch_day(days)}T{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}Z"


def _iso_all(times_ms: list[int]) -> list[str]:
    """_iso of many times at once (numpy formats them far faster than one by one)."""
    if not times_ms:
        return []
    stamps = np.datetime_as_string(np.asarray(times_ms, dtype="datetime64[ms]"), unit="ms")
    return np.char.add(stamps, "Z").tolist()


@functools.lru_cache(maxsize=4096)
def _date_of_epoch_day(days: int) -> str:
    return datetime.fromtimestamp(days * 86_400, tz=UTC).strftime("%Y-%m-%d")
