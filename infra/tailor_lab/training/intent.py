"""Train the session intent classifier on the simulator's ground truth, export it to ONNX, publish it.

Examples (tailor_lab.training.intent_truth). Simulated events are folded session by session with
tailor.session.fold_session, the fold Ingest runs, and after each event whose intent the simulator
recorded, the session's features (tailor.intent.intent_features, the function Ingest and the API call)
are one example labelled with that intent: the intent the shopper was in when they did it. Training
and serving therefore compute the same features from the same state.

Filter. The session intent filter (tailor.intent_filter) is learned from the same sessions, counted then fitted
(tailor_lab.training.intent_filter); the examples' filter features come from filters learned without
their session (two folds), the published one from all of them, in the model's metadata ("filter").

Model. scikit-learn's HistGradientBoostingClassifier (a tree ensemble: a batch of a few hundred
sessions scores in a few milliseconds), exported with skl2onnx into the graph
tailor.intent.IntentModel runs: input "features" (float32, n x k), output "probabilities" (n x 4,
in tailor.intent.INTENTS order). Its metadata (names of its features, the classes, the training data,
the evaluation) is embedded in the graph and published with it.

    tailor train intent [--shoppers 48000 --days 4 --seed 7] [--eval-seed 8] [--out DIR] [--publish]
                        [--write-default] [--force] [--json PATH]

The model the layer ships (and, with --publish, the registry's current one) is scored on the same held-out events;
one that scores a lower macro F1 than the model it would replace is neither made the default nor published (the
command exits 1) unless --force.

`tailor evaluate intent` (tailor_lab.evaluation.intent) measures a model on held-out simulations and on
Diginetica's real sessions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tailor.intent import INPUT_NAME, INTENT_FEATURES, INTENTS, METADATA_KEY, MODEL_NAME, OUTPUT_NAME, IntentModel
from tailor.intent_filter import IntentFilter
from tailor.models import model_version

from .intent_truth import Examples, evaluate_simulated, format_simulated, learned_filters, simulated_examples
from .model_output import (
    Incumbent,
    add_output_arguments,
    check_output_arguments,
    deliver,
    incumbents_from,
    replaced_models,
)
from .onnx_export import classifier_graph, with_metadata

__all__ = ["BOOSTING", "TrainedIntent", "train_intent", "main"]

BOOSTING = {"max_iter": 160, "learning_rate": 0.05, "max_leaf_nodes": 31, "min_samples_leaf": 40,
            "l2_regularization": 1.0}
MAX_EXAMPLES = 1_000_000  # training examples kept (an even sample over sessions) so a fit takes minutes, not hours


@dataclass
class TrainedIntent:
    onnx: bytes
    metadata: dict[str, Any]
    estimator: Any = field(default=None, repr=False)

    def model(self) -> IntentModel:
        return IntentModel(self.onnx, version=self.metadata.get("version"))


def train_intent(train: Examples, *, seed: int = 0, threads: int = 1, source: str = "",
                 intent_filter: IntentFilter | None = None) -> TrainedIntent:
    """Fit the classifier and export it to ONNX with its metadata, and `intent_filter`'s parameters: the filter
    sessions are folded with, whose posterior the examples' filter features hold."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    X, y = train.arrays()
    missing = sorted(set(range(len(INTENTS))) - set(y.tolist()))
    if missing:
        raise ValueError(f"the training examples hold no {[INTENTS[k] for k in missing]} sessions")
    # One OpenMP thread unless told otherwise: the machine is shared and waiting threads spin.
    with threadpool_limits(limits=threads, user_api="openmp"):
        classifier = HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **BOOSTING).fit(X, y)
    trained_at = datetime.now(UTC).replace(microsecond=0)
    metadata = {
        "name": MODEL_NAME,
        "feature_names": list(INTENT_FEATURES),
        "intents": list(INTENTS),
        "output": OUTPUT_NAME,
        "target": "the shopper's intent at the session's latest event",
        "trained_at": trained_at.isoformat().replace("+00:00", "Z"),
        "training": {"data": source, "examples": len(train), "sessions": len(set(train.sessions)),
                     "per_intent": {INTENTS[k]: int((y == k).sum()) for k in range(len(INTENTS))}},
        "model": {"library": "scikit-learn", "estimator": "HistGradientBoostingClassifier", **BOOSTING},
        "library": _library_versions(),
    }
    if intent_filter is not None:
        metadata["filter"] = intent_filter.to_json()
    return TrainedIntent(_export(classifier, metadata), metadata, classifier)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor train intent", description=__doc__.split("\n\n")[0])
    # Calibrated shoppers visit about once in three weeks: a few days give about a session per shopper.
    parser.add_argument("--shoppers", type=int, default=48000, help="simulated shoppers (default 48000)")
    parser.add_argument("--days", type=float, default=4.0, help="simulated days (default 4)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed of the training data (default 7)")
    parser.add_argument("--eval-seed", type=int, default=8, help="seed of the held-out simulation (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="threads to fit with (default 1)")
    add_output_arguments(parser, compared=True)
    args = parser.parse_args(argv)
    check_output_arguments(parser, args)

    from tailor_lab.simulator import simulate

    started = time.perf_counter()
    sim = simulate(shoppers=args.shoppers, days=args.days, seed=args.seed)
    source = f"simulator ({args.shoppers} shoppers, {args.days:g} days, seed {args.seed})"
    intent_filter, held_out_filter = learned_filters(sim.events, sim.truth)
    examples = simulated_examples(sim.events, sim.truth, max_examples=MAX_EXAMPLES, seed=args.seed,
                                  intent_filter=held_out_filter)
    fit_started = time.perf_counter()
    trained = train_intent(examples, seed=args.seed, threads=args.threads, source=source, intent_filter=intent_filter)
    fit_seconds = time.perf_counter() - fit_started
    held_out = simulate(shoppers=max(args.shoppers // 2, 1), days=args.days, seed=args.eval_seed)
    evaluation = evaluate_simulated(trained.model(), held_out.events, held_out.truth, train=examples)
    evaluation["data"] = f"simulator ({max(args.shoppers // 2, 1)} shoppers, {args.days:g} days, seed {args.eval_seed})"
    metadata = {**trained.metadata, "evaluation": {k: evaluation[k] for k in ("data", "examples", "methods")}}
    # The version names the graph with its metadata, evaluation included, and is then embedded in it too.
    version = model_version(with_metadata(trained.onnx, METADATA_KEY, metadata), metadata["trained_at"])
    metadata["version"] = version
    trained = TrainedIntent(with_metadata(trained.onnx, METADATA_KEY, metadata), metadata, trained.estimator)
    print(f"intent {version}   data: {source}; {len(examples)} examples, fitted in {fit_seconds:.1f}s")
    print(format_simulated(evaluation))
    replaced = _replaced(evaluation, held_out, args)
    for incumbent in {id(i): i for i in replaced.values()}.values():
        print(f"{incumbent.label}: macro F1 {incumbent.score:.4f} on the same events")

    delivery = deliver(args, MODEL_NAME, trained.onnx, trained.metadata, incumbents=replaced)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"version": version, "data": source, "training": trained.metadata["training"],
                                         "evaluation": evaluation, "seconds": round(time.perf_counter() - started, 1),
                                         **delivery.report}, indent=2) + "\n")
    return delivery.exit_code


# -- helpers ----------------------------------------------------------------------------------------

def _replaced(evaluation: dict[str, Any], held_out: Any, args: argparse.Namespace) -> dict[str, Incumbent]:
    """The intent models the trained one would replace (the layer's default, the registry's current), each scored by
    macro F1 on the held-out events the trained one was, its sessions folded with its own filter."""
    def scored(model: IntentModel | None) -> tuple[str, float] | None:
        if model is None:
            return None
        return model.label, evaluate_simulated(model, held_out.events, held_out.truth)["methods"]["intent model"]["macro_f1"]

    shipped, published = replaced_models(MODEL_NAME, IntentModel.from_stored, args)
    return incumbents_from("macro F1", evaluation["methods"]["intent model"]["macro_f1"],
                           f"the same {evaluation['examples']:,} held-out events",
                           default=scored(shipped), registry=scored(published))


def _export(classifier: Any, metadata: dict[str, Any]) -> bytes:
    """The classifier as one ONNX graph: "features" (float32, n x k) -> "probabilities" (n x 4)."""
    from onnx import TensorProto, helper

    if list(classifier.classes_) != list(range(len(INTENTS))):
        raise ValueError(f"the classifier's classes {classifier.classes_} are not 0..{len(INTENTS) - 1}")
    model, probabilities = classifier_graph(classifier, INPUT_NAME, len(INTENT_FEATURES))
    graph = model.graph
    if probabilities != OUTPUT_NAME:
        graph.node.append(helper.make_node("Identity", [probabilities], [OUTPUT_NAME]))
    del graph.output[:]  # the predicted label is the caller's argmax
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, len(INTENTS)]))
    return with_metadata(model.SerializeToString(), METADATA_KEY, metadata)


def _library_versions() -> dict[str, str]:
    import onnx
    import skl2onnx
    import sklearn

    return {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__}


if __name__ == "__main__":
    sys.exit(main())
