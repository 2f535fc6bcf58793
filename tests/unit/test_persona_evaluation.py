"""The persona evaluation's lists, oracles and shares of the oracle's lift."""

from __future__ import annotations

import numpy as np

from tailor_lab.evaluation.personas import _headline, _lift, _listing_samples, _oracles, _resamples, _Sample, _share
from tailor_lab.simulator import simulate


def _event(kind: str, second: int, session: str = "s1", **fields) -> dict:
    return {"event_type": kind, "user_id": "u1", "session_id": session,
            "timestamp": f"2026-11-02T10:00:{second:02d}.000Z", **fields}


def test_a_listing_grows_by_its_next_page_and_a_widget_is_its_own_list():
    events = [
        _event("category_browse", 0, category="books"),
        _event("impression", 1, item_ids=["a", "b", "c"]),
        _event("scroll", 2, depth=0.9),
        _event("impression", 3, item_ids=["d", "e"]),
        _event("click", 4, item_id="d", position=3),  # on the listing's second page
        _event("view", 5, item_id="d", category="books"),
        _event("impression", 6, item_ids=["x", "y", "z"]),  # the item page's widget
        _event("dwell", 7, item_id="d"),
        _event("click", 8, item_id="y", position=1),
        _event("impression", 9, session="s2", item_ids=["p", "q"]),  # never clicked from
    ]
    listing, widget = _listing_samples(events)
    assert (listing.items, listing.clicked, listing.surface, listing.category) == (
        ["a", "b", "c", "d", "e"], {"d"}, "listing", "books")
    assert (widget.items, widget.clicked, widget.surface, widget.seen) == (["x", "y", "z"], {"y"}, "widget", {"d"})


def test_the_oracles_rank_by_the_true_chance_of_a_click_where_items_were_shown():
    simulation = simulate(shoppers=30, days=1, seed=3)
    world = simulation.world
    shopper = world.shoppers[0]
    items = world.catalog.category_items[0][:12]
    ids = world.catalog.ids(items)
    utility = world.choice.utility(shopper)
    best = int(np.argmax(utility[items]))
    oracles = _oracles(simulation)
    sample = _Sample(shopper.user_id, "s", ids, set(), category=None)
    ranked = oracles["utility_oracle"](sample)
    assert sorted(ranked) == sorted(ids)
    # the first item is examined most; beyond it, the best liked item at the top of the list stays first
    sample_top = _Sample(shopper.user_id, "s", [ids[best]] + [i for i in ids if i != ids[best]], set())
    assert oracles["utility_oracle"](sample_top)[0] == ids[best]
    # an item bought in the session loses the bought penalty: the same list then puts another first
    bought = _Sample(shopper.user_id, "s", sample_top.items, set(), bought={ids[best]})
    assert oracles["utility_oracle"](bought)[0] != ids[best]
    assert sorted(oracles["oracle"](sample)) == sorted(ids)


def test_the_share_of_the_oracle_lift_and_its_interval():
    base = np.array([0.5, 0.5, 0.5, 0.5])
    oracle = np.array([1.0, 1.0, 1.0, 1.0])
    model = np.array([0.75, 0.75, 0.75, 0.75])
    picks = _resamples(4, np.random.default_rng(0), rounds=50)
    assert _share(base, model, oracle, picks) == (0.5, [0.5, 0.5])
    assert _lift(base, model, picks) == (0.5, [0.5, 0.5])
    assert _share(base, model, base, picks) == (None, None)  # no gap to share
    ranking = {"oracle": 1.0, "oracle_lift": 1.0, "oracle_lift_ci95": [1.0, 1.0], "utility_oracle_lift": 1.2,
               "utility_oracle_lift_ci95": [1.1, 1.3],
               "by_weight": [{"weight": 0.5, "mixture_lift": 0.5, "mixture_ci95": [0.5, 0.5],
                              "mixture_share_of_oracle": 0.5, "mixture_share_of_oracle_ci95": [0.5, 0.5]}]}
    headline = _headline(ranking)
    assert {k: headline[k] for k in ("lift", "oracle_lift", "share_of_oracle")} == {
        "lift": 0.5, "oracle_lift": 1.0, "share_of_oracle": 0.5}


def test_the_persona_oracle_tells_most_shoppers_personas_from_their_events():
    from sklearn.metrics import adjusted_rand_score

    from tailor_lab.evaluation.personas import _persona_oracle

    simulation = simulate(shoppers=300, days=14, seed=5)
    assigned = _persona_oracle(simulation, simulation.events)
    assert set(assigned) == {e["user_id"] for e in simulation.events}
    true = [simulation.truth["shoppers"][u]["persona"] for u in assigned]
    assert adjusted_rand_score(true, list(assigned.values())) > 0.5
    # Without their events, every shopper gets the commonest persona: the index falls to nothing.
    blind = _persona_oracle(simulation, [{**e, "event_type": "search"} for e in simulation.events])
    assert adjusted_rand_score(true, list(blind.values())) < 0.1


def test_the_block_measurement_runs_end_to_end_on_a_small_simulation(monkeypatch):
    import tailor.personas.clustering as clustering
    from tailor_lab.evaluation import persona_blocks

    monkeypatch.setattr(persona_blocks, "KS", (2, 3))
    monkeypatch.setattr(clustering, "STARTS", 1)
    report = persona_blocks.measure(shoppers=300, days=8, test_days=1, seed=5)
    assert report["shoppers_compared"] > 100 and 0.0 < report["ari_oracle"] <= 1.0
    assert set(report["supervised"]) >= {"features", "brand", "price", "mean_vector"}
    assert len(report["gaussian"]) == 6 and len(report["items"]) == 4
    assert all(-1.0 <= row["ari"] <= 1.0 for row in report["gaussian"] + report["items"])


def test_recovery_alone_replays_the_training_window_and_ranks_nothing(tmp_path, monkeypatch, capsys):
    import json

    import tailor.personas.clustering as clustering
    from tailor_lab.evaluation.personas import main

    monkeypatch.setattr(clustering, "STARTS", 1)
    out = tmp_path / "recovery.json"
    assert main(["--recovery-only", "--shoppers", "300", "--days", "8", "--test-days", "1", "--seed", "5",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    simulated = report["simulator"]
    assert "diginetica" not in report and "ranking" not in simulated and "lift" not in simulated
    assert simulated["shoppers_compared"] > 100 and 0.0 < simulated["ari_oracle"] <= 1.0
    assert -1.0 <= simulated["ari_rebuild"] <= 1.0 and -1.0 <= simulated["ari_online"] <= 1.0
    printed = capsys.readouterr().out
    assert "ARI vs true personas" in printed and "Re-ranking" not in printed


def test_missing_diginetica_files_are_refused_before_the_simulator_runs(tmp_path, monkeypatch, capsys):
    import tailor_lab.evaluation.personas as personas

    def never(**_):
        raise AssertionError("the simulator ran before the Diginetica files were checked")

    monkeypatch.setattr(personas, "evaluate_simulated", never)
    assert personas.main(["--diginetica", str(tmp_path / "none")]) == 2
    assert f"no Diginetica files in {tmp_path / 'none'}" in capsys.readouterr().err


def test_the_bayes_oracle_weighs_personas_by_the_shoppers_events_before_the_list():
    from tailor_lab.evaluation.personas import _PersonaPosterior
    from tailor_lab.stream import epoch_of

    simulation = simulate(shoppers=300, days=14, seed=5)
    world = simulation.world
    end = epoch_of(simulation.events[-1]["timestamp"]) + 1.0
    posterior = _PersonaPosterior(simulation)
    for event in simulation.events:
        posterior.add(event)
    sure = next(s for s in world.shoppers
                if np.exp(posterior.log_posterior(s.user_id)).max() > 0.999
                and int(np.argmax(posterior.log_posterior(s.user_id))) == s.persona)
    other = next(s for s in world.shoppers if s.persona != sure.persona)
    ids = world.catalog.ids(world.catalog.category_items[0][:20])
    # After all their events, a shopper the events leave no doubt about is ranked as by their true persona.
    oracles = _oracles(simulation)
    late = _Sample(sure.user_id, "s", ids, set(), at=end)
    assert oracles["bayes_oracle"](late) == oracles["oracle"](late)
    # Before any event, the posterior is the personas' shares alone: shoppers of different personas rank alike,
    # where the oracle that knows their personas does not.
    oracles = _oracles(simulation)
    early = [_Sample(s.user_id, "s", ids, set(), at=0.0) for s in (sure, other)]
    assert oracles["bayes_oracle"](early[0]) == oracles["bayes_oracle"](early[1])
    assert oracles["oracle"](early[0]) != oracles["oracle"](early[1])
