"""Simulated shoppers acting on the feeds a strategy serves (common random numbers, the oracle, Tailor in process),
and the simulator's speed benchmark."""

from __future__ import annotations

import pytest

from tailor_cli.main import main as tailor
from tailor_lab.bench.simulator import format_table as speed_table
from tailor_lab.bench.simulator import measure
from tailor_lab.evaluation.closed_loop import train_vectors
from tailor_lab.simulator.online import format_table, run


@pytest.fixture(scope="module")
def report():
    return run(["oracle", "popularity", "random"], shoppers=200, history_days=10.0, visits=2, seed=3)


def test_the_oracle_beats_popularity_which_beats_random(report):
    ctr = {name: f["ctr"] for name, f in report["strategies"].items()}
    assert ctr["oracle"]["low"] > ctr["popularity"]["high"]
    assert ctr["popularity"]["low"] > ctr["random"]["high"]
    assert report["strategies"]["oracle"]["share_of_oracle_ctr_lift"] == 1.0
    assert report["strategies"]["random"]["share_of_oracle_ctr_lift"] == 0.0
    for figures in report["strategies"].values():
        assert figures["impressions"] == 200 * 2 * 20
        for name in ("ctr", "conversion", "revenue_per_shopper"):
            assert figures[name]["low"] <= figures[name]["value"] <= figures[name]["high"]
    assert "oracle" in format_table(report)


def test_the_same_seed_replays_the_same_shoppers_on_the_same_draws(report):
    again = run(["random", "oracle"], shoppers=200, history_days=10.0, visits=2, seed=3)

    def without_time(figures):
        return {k: v for k, v in figures.items() if k not in ("seconds", "share_of_oracle_ctr_lift")}

    for name in ("random", "oracle"):
        assert without_time(again["strategies"][name]) == without_time(report["strategies"][name])


def test_tailor_serves_the_shoppers_in_process_and_ingests_what_they_did():
    # Ingest refuses an event it cannot take, and the run would stop: every event the shoppers emitted was valid.
    report = run(["current", "random"], shoppers=40, history_days=5.0, visits=2, seed=5)
    current = report["strategies"]["current"]
    assert 0 < current["impressions"] <= 40 * 2 * 20
    assert current["clicks"] > 0


def test_embeddings_retrain_on_what_was_seen_and_the_rows_keep_shopper_vectors_in_their_space():
    from tailor.embeddings.online import stored_vector
    from tailor_lab.simulator import online
    from tailor_lab.simulator.simulation import simulate

    history = simulate(shoppers=30, days=4.0, seed=5)
    strategy = online.VectorStrategy(train_vectors)
    feed = online._strategy("embeddings", history, 20, 5, lambda _: None, strategy)
    first = feed.vectors
    assert first is not None and first.metadata["version"] == f"simulated-{len(history.events)}"
    shopper = history.world.shoppers[0]
    served, feed_id = feed(shopper, "s-new", 0, set(), history.world.end_ms + 1000)
    assert served and feed_id
    moved = [dict(e, event_id=f"again-{k}") for k, e in enumerate(history.events[-5:])]
    feed.learn(moved)
    assert feed.vectors is not first  # trained again on the history and the round
    rows = feed.store.snapshot()["shoppers"]
    touched = {e["user_id"] for e in moved}
    assert all(stored_vector(rows[user].get("vector"), feed.vectors) is not None for user in touched)
    without = online._strategy("embeddings-no-ignores", history, 20, 5, lambda _: None, strategy)
    assert without.vectors.metadata["params"]["ignore_weight"] == 0.0 and without.ingestor.vectors.rule.ignore_weight == 0


def test_a_report_of_embeddings_gives_their_differences_with_intervals():
    from tailor_lab.simulator.online import VectorStrategy

    report = run(["current", "embeddings", "embeddings-no-ignores"], shoppers=20, history_days=3.0, visits=1, seed=4,
                 vectors=VectorStrategy(train_vectors))
    for pair in ("embeddings - current", "embeddings - embeddings-no-ignores"):
        for figure in report["differences"][pair].values():
            assert figure["low"] <= figure["value"] <= figure["high"]
    assert "embeddings - current: CTR" in format_table(report)


def test_the_ltv_strategy_scores_every_shopper_and_serves_the_feed_weighed_by_their_ltv():
    from tailor.shopper import predicted_ltv
    from tailor_lab.simulator import online
    from tailor_lab.simulator.simulation import simulate

    history = simulate(shoppers=30, days=4.0, seed=5)
    feed = online._strategy("ltv", history, 20, 5, lambda _: None)
    rows = feed.store.snapshot()["shoppers"]
    assert rows and all(predicted_ltv(row) is not None for row in rows.values())  # RebuildLtv scored the history
    shopper = history.world.shoppers[0]
    feed.now = history.world.end_ms / 1000 + 60
    served = feed.recommender.feed(shopper.user_id, session_id="s-new", n=10, explain=True)
    plain = online._strategy("current", history, 20, 5, lambda _: None).recommender.feed(
        shopper.user_id, session_id="s-new", n=10, explain=True)
    assert served.strategy == "ltv" and plain.strategy is None
    # The purchase-probability term's weight follows the shopper's LTV: not the default feed's.
    assert {item.parts["weight_probability"] for item in served.items} != {
        item.parts["weight_probability"] for item in plain.items}
    report = run(["current", "ltv"], shoppers=20, history_days=3.0, visits=1, seed=4)
    assert all(f["low"] <= f["value"] <= f["high"] for f in report["differences"]["ltv - current"].values())


@pytest.mark.parametrize("surface", ["search", "related"])
def test_a_search_or_an_item_page_asks_tailor_and_the_shoppers_act_on_its_answer(surface, monkeypatch):
    from tailor.serving import Recommender
    from tailor_lab.simulator import online

    asked: list[tuple] = []
    for route in ("rerank", "related"):
        served = getattr(Recommender, route)

        def spy(self, first, *args, _route=route, _served=served, **kwargs):
            asked.append((_route, first, kwargs.get("user_id")))
            return _served(self, first, *args, **kwargs)

        monkeypatch.setattr(Recommender, route, spy)
    sent: list[dict] = []
    learn = online._Current.learn
    monkeypatch.setattr(online._Current, "learn", lambda self, events: (sent.extend(events), learn(self, events)))
    report = run(["current", "oracle", "random"], shoppers=30, history_days=4.0, visits=2, seed=6, surface=surface)

    assert report["surface"] == surface and f"2 {surface} visits" in format_table(report)
    route = "rerank" if surface == "search" else "related"
    assert len(asked) == 30 * 2 and {r for r, _, _ in asked} == {route}  # every visit asked Tailor's route
    if surface == "search":  # the shop's own results go to be re-ranked, and the search comes first in the events
        assert all(isinstance(items, list) and items for _, items, _ in asked)
        searches = [e for e in sent if e["event_type"] == "search" and e["session_id"].startswith("s-online")]
        assert len(searches) == 30 * 2 and all(e["results"] for e in searches)
    else:  # the item page's view comes first, and the viewed item is never among its related items
        views = {e["session_id"]: e["item_id"] for e in sent if e["event_id"].endswith("-ask")}
        assert len(views) == 30 * 2
        shown = [e for e in sent if e["event_type"] == "impression" and e["session_id"] in views]
        assert shown and all(views[e["session_id"]] not in e["item_ids"] for e in shown)
    ctr = {name: f["ctr"]["value"] for name, f in report["strategies"].items()}
    assert ctr["oracle"] > ctr["random"] and report["strategies"]["current"]["clicks"] > 0


def test_the_oracle_and_random_never_serve_the_item_the_related_widget_stands_on():
    from tailor_lab.simulator import online
    from tailor_lab.simulator.simulation import simulate

    history = simulate(shoppers=10, days=2.0, seed=2)
    world = history.world
    shopper = world.shoppers[0]
    ask = online._ask(world, shopper, "related", 0, __import__("numpy").random.default_rng(1))
    assert world.catalog.category_of[ask.item] == 0
    for name in ("oracle", "random", "popularity"):
        served, _ = online._strategy(name, history, 20, 2, lambda _: None)(shopper, "s", 0, set(), 0, ask)
        assert served and ask.item not in served


def test_unknown_surfaces_are_refused():
    with pytest.raises(ValueError, match="unknown surface"):
        run(["random"], shoppers=5, surface="checkout")


def test_the_embeddings_strategies_need_their_training():
    with pytest.raises(ValueError, match="needs item-vector training"):
        run(["embeddings"], shoppers=5, history_days=1.0, visits=1)


def test_unknown_strategies_are_refused():
    with pytest.raises(ValueError, match="unknown strategy"):
        run(["best"], shoppers=5)


def test_the_speed_benchmark_reports_events_per_second():
    report = measure([(30, 1.0)], repeats=1, seed=2)
    (row,) = report["rows"]
    assert row["events"] > 0 and row["events_per_second"] > 0
    assert "events/CPU s" in speed_table(report)


@pytest.mark.parametrize("what", ["calibrate", "online", "speed"])
def test_each_simulate_command_has_help(what, capsys):
    with pytest.raises(SystemExit) as exit:
        tailor(["simulate", what, "--help"])
    assert exit.value.code == 0
    assert f"tailor simulate {what}" in capsys.readouterr().out
