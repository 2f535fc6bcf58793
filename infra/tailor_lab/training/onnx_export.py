"""Trained scikit-learn classifiers as ONNX graphs for the model registry: probabilities out, metadata inside."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["classifier_graph", "with_metadata"]


def classifier_graph(classifier: Any, input_name: str, features: int) -> tuple[Any, str]:
    """The classifier as an onnx ModelProto over one float32 input (n x `features`), and the name of its
    class-probabilities output (n x classes); the caller shapes the outputs it serves."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        # skl2onnx 1.20 hands ONNX a Python bool where it wants an int: protobuf 6 warns, 7 refuses.
        warnings.filterwarnings("ignore", message=".*Expected an int, got a boolean", category=DeprecationWarning)
        model = to_onnx(classifier, initial_types=[(input_name, FloatTensorType([None, features]))],
                        options={id(classifier): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    probabilities = next(o.name for o in model.graph.output if o.name != "label" and "prob" in o.name)
    model.producer_name = "tailor"
    return model, probabilities


def with_metadata(onnx_bytes: bytes, key: str, metadata: Mapping[str, Any]) -> bytes:
    """The model with `metadata` as JSON under the custom metadata `key` (replacing any there), checked."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    del model.metadata_props[:]
    helper.set_model_props(model, {key: json.dumps(dict(metadata), sort_keys=True)})
    onnx.checker.check_model(model)
    return model.SerializeToString()
