"""Purchase histories with a known shape and a small LTV model trained on them, for the LTV tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from tailor_lab.training.ltv import TrainedLtv, train_ltv

START = datetime(2025, 1, 6, tzinfo=UTC)
AS_OF = START + timedelta(weeks=30)


def purchase_histories(shoppers: int = 160, weeks: int = 40, seed: int = 5, start: datetime = START) -> list[dict]:
    """Purchases of shoppers who join in the first weeks after `start`, buy at their own rate, and some lapse for good."""
    rng = np.random.default_rng(seed)
    events = []
    for s in range(shoppers):
        joined = rng.uniform(0, 6 * 7)
        rate = rng.gamma(1.0, 0.5) / 7  # purchases a day
        lapses = rng.exponential(60) if s % 2 else np.inf  # half of them stop buying at some point
        spend = rng.lognormal(3.0, 0.5)
        day = joined
        while day < weeks * 7 and day - joined <= lapses:
            when = start + timedelta(days=day)
            events.append({"event_id": f"p{s}-{len(events)}", "user_id": f"u{s}", "session_id": f"u{s}-{int(day)}",
                           "timestamp": when.isoformat(), "event_type": "purchase", "item_id": "i1",
                           "price": round(spend * rng.uniform(0.7, 1.3), 2), "quantity": int(rng.integers(1, 3))})
            if s % 3 == 0:
                events.append({"event_id": f"v{s}-{len(events)}", "user_id": f"u{s}", "session_id": f"u{s}-{int(day)}",
                               "timestamp": (when - timedelta(minutes=5)).isoformat(), "event_type": "view",
                               "item_id": "i1", "category": "c1"})
            day += rng.exponential(1 / rate)
    events.sort(key=lambda e: e["timestamp"])
    return events


def small_model(events: list[dict] | None = None) -> TrainedLtv:
    """A model trained in a few seconds: four-week horizon, three windows a week apart, no backtest."""
    return train_ltv(purchase_histories() if events is None else events, AS_OF, horizon_weeks=4, windows=3,
                     step_weeks=1, backtest=False)
