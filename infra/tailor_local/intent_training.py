"""Train the session intent classifier on the simulator's ground truth, export it to ONNX, publish it.

Examples. Simulated events are folded session by session with tailor.session.fold_session, the fold
Ingest runs, and after each event whose intent the simulator recorded, the session's features
(tailor.intent.intent_features, the function Ingest and the API call) are one example labelled with
that intent: the intent the shopper was in when they did it. Training and serving therefore compute
the same features from the same state.

Model. scikit-learn's HistGradientBoostingClassifier (a small tree ensemble: a batch of a few hundred
sessions scores in about a millisecond), exported with skl2onnx into the graph
tailor.intent.IntentModel runs: input "features" (float32, n x k), output "probabilities" (n x 4,
in tailor.intent.INTENTS order). Its metadata (names of its features, the classes, the training data,
the evaluation) is embedded in the graph and published with it.

    tailor train intent [--shoppers 600 --days 4 --seed 7] [--eval-seed 8] [--out DIR] [--publish]
                        [--write-default] [--json PATH]

`tailor evaluate intent` (tailor_local.intent_eval) measures a model on held-out simulations and on
Diginetica's real sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tailor.events import parse_event
from tailor.intent import INPUT_NAME, INTENT_FEATURES, INTENTS, METADATA_KEY, MODEL_NAME, OUTPUT_NAME, IntentModel, \
    intent_features
from tailor.models import DEFAULT_DIR, ModelRegistry, model_version
from tailor.session import SessionState, fold_session

__all__ = ["BOOSTING", "Examples", "TrainedIntent", "simulated_examples", "train_intent", "main"]

BOOSTING = {"max_iter": 80, "learning_rate": 0.1, "max_leaf_nodes": 15, "min_samples_leaf": 40,
            "l2_regularization": 1.0}
MAX_EXAMPLES = 150_000  # training examples kept (an even sample over sessions) so a fit takes seconds


@dataclass
class Examples:
    """Feature rows with their intent (index into INTENTS) and the session each came from."""

    features: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.features, dtype=np.float32), np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainedIntent:
    onnx: bytes
    metadata: dict[str, Any]
    estimator: Any = field(default=None, repr=False)

    def model(self) -> IntentModel:
        return IntentModel(self.onnx, version=self.metadata.get("version"))


def simulated_examples(events: Iterable[dict], truth: dict, *, max_examples: int | None = None,
                       seed: int = 0) -> Examples:
    """One example per simulated event with a recorded intent: the session's features after it, its intent."""
    intent_of: dict[str, str] = {}
    for session in truth["sessions"].values():
        intent_of.update(zip(session["event_ids"], session["intents"]))
    states: dict[str, SessionState] = {}
    out = Examples()
    index = {name: k for k, name in enumerate(INTENTS)}
    for raw in events:
        event = parse_event(raw)
        state = fold_session(states.get(event.session_id), event, ttl_seconds=0)
        states[event.session_id] = state
        intent = intent_of.get(event.event_id)
        if intent is None:
            continue
        out.features.append(intent_features(state))
        out.labels.append(index[intent])
        out.sessions.append(event.session_id)
    if max_examples is not None and len(out) > max_examples:
        keep = np.sort(np.random.default_rng(seed).choice(len(out), max_examples, replace=False))
        out = Examples([out.features[i] for i in keep], [out.labels[i] for i in keep], [out.sessions[i] for i in keep])
    return out


def train_intent(train: Examples, *, seed: int = 0, threads: int = 1, source: str = "") -> TrainedIntent:
    """Fit the classifier and export it to ONNX with its metadata."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    X, y = train.arrays()
    missing = sorted(set(range(len(INTENTS))) - set(y.tolist()))
    if missing:
        raise ValueError(f"the training examples hold no {[INTENTS[k] for k in missing]} sessions")
    # One OpenMP thread unless told otherwise: the machine is shared and waiting threads spin.
    with threadpool_limits(limits=threads, user_api="openmp"):
        classifier = HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **BOOSTING).fit(X, y)
    trained_at = datetime.now(timezone.utc).replace(microsecond=0)
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
    return TrainedIntent(_export(classifier, metadata), metadata, classifier)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor train intent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=600, help="simulated shoppers (default 600)")
    parser.add_argument("--days", type=float, default=4.0, help="simulated days (default 4)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed of the training data (default 7)")
    parser.add_argument("--eval-seed", type=int, default=8, help="seed of the held-out simulation (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="threads to fit with (default 1)")
    parser.add_argument("--out", type=Path, help="write model.onnx and metadata.json here")
    parser.add_argument("--publish", action="store_true",
                        help="publish to the registry in --bucket (or DATA_BUCKET) and make it current")
    parser.add_argument("--bucket", default=os.environ.get("DATA_BUCKET"), help="the data bucket (default: DATA_BUCKET)")
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help="S3 endpoint, e.g. the local stack's (default: AWS_ENDPOINT_URL)")
    parser.add_argument("--write-default", action="store_true", help=f"make it the default shipped in {DEFAULT_DIR}")
    parser.add_argument("--json", type=Path, help="write the training report as JSON here")
    args = parser.parse_args(argv)
    if args.publish and not args.bucket:
        parser.error("--publish needs --bucket or DATA_BUCKET")

    from tailor_local.intent_eval import evaluate_simulated, format_simulated
    from tailor_local.simulator import simulate

    started = time.perf_counter()
    sim = simulate(shoppers=args.shoppers, days=args.days, seed=args.seed)
    source = f"simulator ({args.shoppers} shoppers, {args.days:g} days, seed {args.seed})"
    examples = simulated_examples(sim.events, sim.truth, max_examples=MAX_EXAMPLES, seed=args.seed)
    fit_started = time.perf_counter()
    trained = train_intent(examples, seed=args.seed, threads=args.threads, source=source)
    fit_seconds = time.perf_counter() - fit_started
    held_out = simulate(shoppers=max(args.shoppers // 2, 1), days=args.days, seed=args.eval_seed)
    evaluation = evaluate_simulated(trained.model(), held_out.events, held_out.truth, train=examples)
    evaluation["data"] = f"simulator ({max(args.shoppers // 2, 1)} shoppers, {args.days:g} days, seed {args.eval_seed})"
    metadata = {**trained.metadata, "evaluation": {k: evaluation[k] for k in ("data", "examples", "methods")}}
    # The version names the graph with its metadata, evaluation included, and is then embedded in it too.
    version = model_version(_with_metadata(trained.onnx, metadata), metadata["trained_at"])
    metadata["version"] = version
    trained = TrainedIntent(_with_metadata(trained.onnx, metadata), metadata, trained.estimator)
    print(f"intent {version}   data: {source}; {len(examples)} examples, fitted in {fit_seconds:.1f}s")
    print(format_simulated(evaluation))

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "model.onnx").write_bytes(trained.onnx)
        (args.out / "metadata.json").write_text(json.dumps(trained.metadata, indent=2, sort_keys=True) + "\n")
        print(f"written to {args.out}")
    if args.write_default:
        (DEFAULT_DIR / f"{MODEL_NAME}.onnx").write_bytes(trained.onnx)
        (DEFAULT_DIR / f"{MODEL_NAME}.json").write_text(json.dumps(trained.metadata, indent=2, sort_keys=True) + "\n")
        print(f"default model written to {DEFAULT_DIR}")
    if args.publish:
        published = ModelRegistry(_s3(args)).publish(MODEL_NAME, trained.onnx, trained.metadata)
        print(f"published {MODEL_NAME}:{published} to s3://{args.bucket}/models/{MODEL_NAME}/ (current)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"version": version, "data": source, "training": trained.metadata["training"],
                                         "evaluation": evaluation, "seconds": round(time.perf_counter() - started, 1)},
                                        indent=2) + "\n")
    return 0


# -- helpers ----------------------------------------------------------------------------------------

def _export(classifier: Any, metadata: dict[str, Any]) -> bytes:
    """The classifier as one ONNX graph: "features" (float32, n x k) -> "probabilities" (n x 4)."""
    from onnx import TensorProto, helper
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    if list(classifier.classes_) != list(range(len(INTENTS))):
        raise ValueError(f"the classifier's classes {classifier.classes_} are not 0..{len(INTENTS) - 1}")
    with warnings.catch_warnings():
        # skl2onnx 1.20 hands ONNX a Python bool where it wants an int: protobuf 6 warns, 7 refuses.
        warnings.filterwarnings("ignore", message=".*Expected an int, got a boolean", category=DeprecationWarning)
        model = to_onnx(classifier, initial_types=[(INPUT_NAME, FloatTensorType([None, len(INTENT_FEATURES)]))],
                        options={id(classifier): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    graph = model.graph
    probabilities = next(o for o in graph.output if o.name != "label" and "prob" in o.name)
    if probabilities.name != OUTPUT_NAME:
        graph.node.append(helper.make_node("Identity", [probabilities.name], [OUTPUT_NAME]))
    del graph.output[:]  # the predicted label is the caller's argmax
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, len(INTENTS)]))
    model.producer_name = "tailor"
    return _with_metadata(model.SerializeToString(), metadata)


def _with_metadata(onnx_bytes: bytes, metadata: dict[str, Any]) -> bytes:
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    del model.metadata_props[:]
    helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _s3(args: argparse.Namespace):
    import boto3

    from tailor.store.aws import S3BlobStore

    client = boto3.client("s3", endpoint_url=args.endpoint_url) if args.endpoint_url else boto3.client("s3")
    return S3BlobStore(client, args.bucket)


def _library_versions() -> dict[str, str]:
    import onnx
    import skl2onnx
    import sklearn

    return {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__}


if __name__ == "__main__":
    sys.exit(main())
