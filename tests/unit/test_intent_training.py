"""Training and evaluating the intent classifier: examples from the simulator's truth, the ONNX export serving runs,
and the metrics it is judged by."""

import numpy as np
import pytest

from tailor.intent import INTENT_FEATURES, INTENTS, IntentModel
from tailor_lab.evaluation.intent import evaluate_purchase_proxy
from tailor_lab.simulator import simulate
from tailor_lab.training.intent import train_intent
from tailor_lab.training.intent_truth import calibration, evaluate_simulated, macro_f1, simulated_examples


@pytest.fixture(scope="module")
def trained():
    sim = simulate(shoppers=60, days=1, seed=3)  # a session or so each: more than 40 sessions
    examples = simulated_examples(sim.events, sim.truth)
    return examples, train_intent(examples, seed=0, source="test")


def test_examples_are_the_sessions_features_after_each_event_labelled_with_its_intent(trained):
    examples, _ = trained
    X, y = examples.arrays()
    assert X.shape == (len(examples), len(INTENT_FEATURES)) and X.dtype == np.float32
    assert set(y.tolist()) == set(range(len(INTENTS)))
    assert len(set(examples.sessions)) > 40


def test_the_exported_graph_is_what_serving_loads_and_matches_the_fitted_classifier(trained):
    examples, model = trained
    served = IntentModel(model.onnx)
    assert served.metadata["feature_names"] == list(INTENT_FEATURES)
    X, _ = examples.arrays()
    np.testing.assert_allclose(served.predict(X[:200]), model.estimator.predict_proba(X[:200]), atol=1e-4)


def test_a_held_out_simulation_scores_well_above_the_intent_share_baseline(trained):
    examples, model = trained
    held_out = simulate(shoppers=20, days=1, seed=4)
    evaluation = evaluate_simulated(model.model(), held_out.events, held_out.truth, train=examples)
    ours, baseline = evaluation["methods"]["intent model"], evaluation["methods"]["intent shares (baseline)"]
    assert ours["macro_f1"] > baseline["macro_f1"] + 0.3
    assert ours["brier"] < baseline["brier"]


def test_metrics_on_known_cases():
    labels = np.array([0, 0, 1, 2, 3, 3])
    assert macro_f1(labels, labels)[0] == 1.0
    f1, per_class = macro_f1(np.array([0, 1, 1, 2, 3, 0]), labels)
    assert per_class == [0.5, pytest.approx(2 / 3), 1.0, pytest.approx(2 / 3)] and f1 == pytest.approx(np.mean(per_class))
    certain = np.eye(4)[labels]
    assert calibration(certain, labels) == {"ece": 0.0, "brier": 0.0}
    uniform = np.full((6, 4), 0.25)
    assert calibration(uniform, labels)["brier"] == pytest.approx(0.75)


def test_the_purchase_proxy_scores_sessions_from_their_first_views(trained):
    _, model = trained
    events = []
    for s in range(30):
        for k in range(3 if s % 3 else 6):
            events.append({"event_id": f"v{s}-{k}", "user_id": f"u{s}", "session_id": f"s{s}",
                           "timestamp": f"2026-11-0{1 + s % 2}T10:00:{k:02d}Z", "event_type": "view", "item_id": f"i{k}"})
        if s % 3 == 0:
            events.append({"event_id": f"p{s}", "user_id": f"u{s}", "session_id": f"s{s}",
                           "timestamp": f"2026-11-0{1 + s % 2}T10:01:00Z", "event_type": "purchase", "item_id": "i0",
                           "price": 1.0})
    proxy = evaluate_purchase_proxy(model.model(), events, ks=(3, 5))
    assert proxy["k=3"]["sessions"] == 30 and proxy["k=3"]["purchasing"] == 10
    assert 0.0 <= proxy["k=3"]["auc"] <= 1.0
    assert proxy["k=5"]["auc"] is None  # only the purchasing sessions have five views: one class


def test_the_command_writes_a_model_serving_loads_with_its_report(tmp_path, capsys):
    import json

    from tailor_lab.evaluation.intent import main as evaluate_main
    from tailor_lab.training.intent import main

    assert main(["--shoppers", "30", "--days", "0.5", "--out", str(tmp_path / "model"), "--json",
                 str(tmp_path / "train.json")]) == 0
    metadata = json.loads((tmp_path / "model" / "metadata.json").read_text())
    served = IntentModel((tmp_path / "model" / "model.onnx").read_bytes())
    assert served.version == metadata["version"] and served.metadata["evaluation"]["methods"]["intent model"]
    assert evaluate_main(["--model", str(tmp_path / "model"), "--shoppers", "10", "--days", "0.3",
                          "--diginetica", str(tmp_path / "none"), "--json", str(tmp_path / "eval.json")]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["model"] == served.label and report["purchase_proxy"] is None
    assert "macro F1" in capsys.readouterr().out


def test_a_retrain_that_scores_below_the_shipped_model_is_not_made_the_default_unless_forced(tmp_path, monkeypatch,
                                                                                           capsys):
    import json

    from tailor_lab.training import model_output
    from tailor_lab.training.intent import main

    monkeypatch.setattr(model_output, "DEFAULT_DIR", tmp_path)
    arguments = ["--shoppers", "30", "--days", "0.5", "--write-default", "--json", str(tmp_path / "train.json")]
    assert main(arguments) == 1
    printed = capsys.readouterr()
    assert "(the layer's default): macro F1" in printed.out and "not made the default" in printed.err
    assert not (tmp_path / "intent.onnx").exists()
    assert json.loads((tmp_path / "train.json").read_text())["refused"] == ["default"]
    assert main(arguments + ["--force"]) == 0
    assert (tmp_path / "intent.onnx").exists()
