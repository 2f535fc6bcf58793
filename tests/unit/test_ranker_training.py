"""The ranker's training replays state as Ingest keeps it, computes the features serving computes, and
exports a model that scores in ONNX as it did in scikit-learn."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest

from tailor.ingest.intent import SessionIntent
from tailor.ingest.service import Ingestor
from tailor.intent import MODEL_NAME as INTENT_MODEL
from tailor.intent import IntentModel
from tailor.models import default_model, load_model
from tailor.ranking import FEATURE_NAMES, MODEL_NAME, Pipeline, RankingModel, Request
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.simulator import BUSY_PARAMETERS, simulate
from tailor_lab.training import model_output
from tailor_lab.training import ranker as ranker_training
from tailor_lab.training.ranker import Replay, ReplayStore, _dcg, build_examples, evaluate, parse_events, train_ranker

from tests.helpers.events import to_records


@cache
def simulated(shoppers: int = 40, days: float = 4.0, seed: int = 11) -> tuple[dict, ...]:
    # A busier shop than the calibrated default: 40 shoppers' 4 days hold purchases in both windows.
    return tuple(simulate(shoppers=shoppers, days=days, seed=seed, params=BUSY_PARAMETERS).events)


@cache
def examples():
    return build_examples(simulated(), eval_days=2.0, horizon_hours=24.0, max_moments=300, max_eval_moments=150,
                          max_candidates=80, seed=3)


@cache
def trained():
    return train_ranker(examples()[0], seed=1, iterations=30)


@pytest.mark.parametrize("with_intent", [False, True], ids=["base weights", "intent-weighted"])
def test_training_and_serving_compute_the_same_features_on_the_same_events(with_intent):
    intent = SessionIntent(load_model(INTENT_MODEL, build=IntentModel.from_stored)) if with_intent else None
    factors = intent.factors if intent is not None else None
    stream = parse_events(simulated())
    raw = sorted(simulated(), key=lambda e: e["timestamp"])
    # A moment inside a session that has engaged items and a recent search behind it.
    index = next(i for i in range(len(stream) // 2, len(stream))
                 if _session_has_history(stream, i))
    event = stream[index]
    request = Request("feed", user_id=event.user_id, session_id=event.session_id)

    replay = Replay(intent)
    for e in stream[:index]:
        replay.apply(e)
    trained_view = Pipeline(ReplayStore(replay), [], read_waves=None, wave_keys=None, prefetch=False, factors=factors)
    training = trained_view.gather(request, event.epoch)

    store, blobs = MemoryStateStore(), MemoryBlobStore()
    outcome = Ingestor(store, blobs, max_workers=1, intent=intent).ingest(to_records(raw[:index]))
    assert not outcome.failed
    unlimited = Pipeline(store, [], read_waves=None, wave_keys=None, prefetch=False,
                         factors=factors).gather(request, event.epoch)
    assert unlimited.candidates.ids == training.candidates.ids
    assert len(training.candidates) > 50
    assert training.ctx.session is not None and training.ctx.session.items
    assert bool(training.ctx.session.intent) == with_intent  # kept by the fold at the end of the replayed batch
    np.testing.assert_allclose(unlimited.features, training.features, rtol=1e-5, atol=1e-6)

    # With serving's read budget a cold cache leaves some candidates out; those it keeps have the same features.
    budget = Pipeline(store, [], factors=factors)
    served = budget.gather(request, event.epoch)
    assert served.ctx.round_trips <= 2
    assert served.left_out and set(served.left_out) | set(served.candidates.ids) == set(training.candidates.ids)
    rows = {item: i for i, item in enumerate(training.candidates.ids)}
    np.testing.assert_allclose(served.features, training.features[[rows[i] for i in served.candidates.ids]],
                               rtol=1e-5, atol=1e-6)


def test_examples_come_from_an_earlier_window_than_the_evaluation_and_label_later_purchases():
    train, held_out = examples()
    assert train.requests and held_out.gathered
    # training keeps its requests' features, not the rows each read (the evaluation re-ranks its own, so keeps them)
    assert not train.gathered and len(train.features) == train.requests
    assert train.end + 24 * 3600 <= held_out.start
    assert train.positives > 0 and held_out.positives > 0
    stream = parse_events(simulated())
    bought_after: dict[tuple[str, float], set[str]] = {}
    for gathered, labels in zip(held_out.gathered[:40], held_out.labels[:40]):
        user, now = gathered.ctx.request.user_id, gathered.ctx.now
        key = (user, now)
        bought_after[key] = {e.item_id for e in stream if e.user_id == user and e.event_type == "purchase"
                             and now <= e.epoch <= now + 24 * 3600}
        assert {i for i, y in zip(gathered.candidates.ids, labels) if y} == bought_after[key] & set(gathered.candidates.ids)
    assert any(bought_after.values())


def test_the_exported_model_scores_as_scikit_learn_did():
    train, _ = examples()
    model = RankingModel(trained().onnx, version="test")
    X, _ = train.arrays()
    expected = trained().estimator.predict_proba(X[:500])[:, 1]
    np.testing.assert_allclose(model.predict(X[:500]), expected, rtol=1e-4, atol=1e-5)
    assert model.feature_names == FEATURE_NAMES
    assert trained().metadata["training"] == {"requests": train.requests, "rows": train.rows,
                                            "positives": train.positives}


def test_evaluation_ranks_each_strategy_over_the_later_window():
    _, held_out = examples()
    scoring = Pipeline(ReplayStore(Replay()), [])

    class Oracle:
        """Knows which candidates each request's shopper will buy: the best any strategy can do."""
        label = "oracle"
        base_rate = 0.0
        answers = {id(g.features): y for g, y in zip(held_out.gathered, held_out.labels)}

        def predict(self, features):
            return self.answers[id(features)].astype(float)

    results = evaluate(scoring, held_out, {"model": (trained().model(), {"probability": 1.0})})
    assert 0.5 < results["model"]["auc"] <= 1.0
    assert 0.0 < results["model"]["ndcg_at_10"] <= 1.0
    assert results["model"]["requests_with_purchase"] == sum(1 for y in held_out.labels if y.any())
    perfect = evaluate(scoring, held_out, {"oracle": (Oracle(), {"probability": 1.0})})["oracle"]
    assert perfect["auc"] == pytest.approx(1.0)
    # Filters hide unavailable items, so even the oracle may miss one that was bought.
    assert perfect["ndcg_at_10"] > 0.95


def test_dcg():
    assert _dcg(np.array([1.0, 0.0, 1.0])) == pytest.approx(1.0 + 1.0 / np.log2(4))


def test_command_trains_evaluates_and_writes_the_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(model_output, "DEFAULT_DIR", tmp_path / "default")
    (tmp_path / "default").mkdir()
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in simulated()) + "{\"not\": \"an event\"}\n")
    arguments = ["--events", str(events), "--eval-days", "2", "--max-moments", "200", "--max-eval-moments", "100",
                 "--max-candidates", "60", "--iterations", "20", "--out", str(tmp_path / "out"), "--write-default",
                 "--json", str(tmp_path / "report.json")]
    # A toy retrain scores below the shipped ranker on the same requests: it is written where asked, not made the
    # default, and the command says so and fails.
    assert ranker_training.main(arguments) == 1
    refused = capsys.readouterr()
    assert "not made the default" in refused.err and "--force" in refused.err
    assert not (tmp_path / "default" / "ranker.onnx").exists() and (tmp_path / "out" / "model.onnx").exists()
    assert json.loads((tmp_path / "report.json").read_text())["refused"] == ["default"]
    code = ranker_training.main(arguments + ["--force"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trained blend (served)" in printed and "untrained blend" in printed
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert metadata["feature_names"] == list(FEATURE_NAMES)
    metrics = metadata["evaluation"]["metrics"]
    assert set(metrics) == {"commercial performance alone", "untrained blend (purchase rate as probability)",
                            "shipped model alone", "shipped blend (served today)",
                            "trained model alone", "trained blend (served)"}
    # the shipped ranker is scored on the very requests the new one is, so a retrain's gain reads off the table
    assert metadata["evaluation"]["shipped_version"] == default_model(MODEL_NAME).version
    assert len({m["requests_with_purchase"] for m in metrics.values()}) == 1
    assert metadata["training_window"]["end"] < metadata["evaluation"]["window"]["start"]
    model = RankingModel((tmp_path / "out" / "model.onnx").read_bytes(), version=metadata["version"])
    assert model.metadata["evaluation"] == metadata["evaluation"]  # the graph carries its metrics too
    assert (tmp_path / "default" / "ranker.onnx").read_bytes() == (tmp_path / "out" / "model.onnx").read_bytes()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["version"] == metadata["version"] and report["refused"] == []


def _session_has_history(stream, i) -> bool:
    event = stream[i]
    before = [e for e in stream[max(0, i - 400):i] if e.session_id == event.session_id]
    return (sum(e.event_type == "view" for e in before) >= 3 and any(e.event_type == "search" for e in before[-15:])
            and event.event_type in ("view", "click"))


def test_busy_trains_on_the_busy_shop_which_buys_more_than_the_calibrated_one():
    import argparse

    def simulated_source(busy):
        args = argparse.Namespace(events=None, archive=None, diginetica=None, shoppers=40, days=2.0, seed=3, busy=busy)
        events, source = ranker_training._events(args, None)
        return sum(e["event_type"] == "purchase" for e in events), source

    busy, busy_source = simulated_source(True)
    calm, calm_source = simulated_source(False)
    assert busy_source.startswith("busy simulator") and calm_source.startswith("simulator (40 shoppers")
    assert busy > calm


def _evaluation(shipped: float, trained: float, published: float | None = None) -> dict:
    metrics = {ranker_training.SHIPPED_BLEND: {"ndcg_at_10": shipped},
               ranker_training.TRAINED_BLEND: {"ndcg_at_10": trained, "requests_with_purchase": 12}}
    if published is not None:
        metrics[ranker_training.PUBLISHED_BLEND] = {"ndcg_at_10": published}
    return {"metrics": metrics, "shipped_version": "S", "published_version": None if published is None else "P"}


def test_a_retrain_is_weighed_against_the_ranker_each_target_serves():
    alone = ranker_training.incumbents(_evaluation(shipped=0.30, trained=0.25))
    assert alone[model_output.DEFAULT].score == 0.30 and alone[model_output.DEFAULT].beats_new
    # a registry without a current version serves the layer's default, so publishing weighs against it too
    assert alone[model_output.REGISTRY] == alone[model_output.DEFAULT]
    both = ranker_training.incumbents(_evaluation(shipped=0.30, trained=0.25, published=0.20))
    assert both[model_output.DEFAULT].beats_new and not both[model_output.REGISTRY].beats_new
    assert "ranker:P (the registry's current)" in both[model_output.REGISTRY].label
    assert "on the same 12 requests followed by a purchase" in both[model_output.DEFAULT].refusal(model_output.DEFAULT)
    tie = ranker_training.incumbents(_evaluation(shipped=0.25, trained=0.25))
    assert not tie[model_output.DEFAULT].beats_new  # a retrain as good as the model it replaces goes ahead


def test_deliver_leaves_a_better_incumbent_in_place_unless_forced(tmp_path, monkeypatch, capsys):
    import argparse

    monkeypatch.setattr(model_output, "DEFAULT_DIR", tmp_path)
    better = model_output.Incumbent("ranker:S", "NDCG@10", score=0.3, new_score=0.2)
    worse = model_output.Incumbent("ranker:S", "NDCG@10", score=0.1, new_score=0.2)
    args = argparse.Namespace(out=None, write_default=True, publish=False, force=False)
    delivery = model_output.deliver(args, "ranker", b"graph", {}, incumbents={model_output.DEFAULT: better})
    assert delivery == model_output.Delivery(refused=(model_output.DEFAULT,))
    assert not (tmp_path / "ranker.onnx").exists()
    assert "not made the default: it scores NDCG@10 0.2000 where ranker:S" in capsys.readouterr().err
    assert model_output.deliver(args, "ranker", b"graph", {}, incumbents={model_output.DEFAULT: worse}).refused == ()
    assert (tmp_path / "ranker.onnx").read_bytes() == b"graph"
    args.force = True
    assert model_output.deliver(args, "ranker", b"forced", {}, incumbents={model_output.DEFAULT: better}).refused == ()
    assert (tmp_path / "ranker.onnx").read_bytes() == b"forced"
