"""A registry model served with onnxruntime: its metadata JSON inside the graph, its features taken by name."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["OnnxModel"]


class OnnxModel:
    """One inference session over a float32 feature matrix. Subclasses say which metadata entry holds the
    model's metadata (`metadata_key`), which features this code computes (`features`, in column order), what
    kind of model it is (`kind`, for messages) and its registry name (`model_name`). The model's metadata names
    the features it was trained on; they are taken from `features` by name, so features added after it was
    trained do not disturb it."""

    metadata_key: str
    features: Sequence[str]
    kind: str
    model_name: str

    def __init__(self, onnx: bytes, *, name: str | None = None, version: str | None = None,
                 metadata: Mapping[str, Any] | None = None, threads: int | None = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            # A request's or a batch's matrix is small: threads cost more to wake than they save (Lambda has one
            # vCPU). None leaves onnxruntime's own choice (every core), for large offline batches.
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])
        if metadata is None:
            embedded = self._session.get_modelmeta().custom_metadata_map.get(self.metadata_key)
            if embedded is None:
                raise ValueError(f"not {self.kind}: its metadata has no {self.metadata_key!r} entry")
            metadata = json.loads(embedded)
        self.metadata = dict(metadata)
        names = list(self.metadata.get("feature_names", ()))
        missing = [n for n in names if n not in self.features]
        if not names or missing:
            raise ValueError(f"{self.kind} needs features this code does not compute: {missing or 'none named'}; "
                             "retrain it")
        self.feature_names = tuple(names)
        columns = [list(self.features).index(n) for n in names]
        self._columns = None if columns == list(range(len(self.features))) else np.array(columns)
        self.name = name or self.model_name
        self.version = version or str(self.metadata.get("version", "unpublished"))

    @classmethod
    def from_stored(cls, stored: Any, **kwargs: Any):
        """From a tailor.models.StoredModel."""
        return cls(stored.onnx, name=stored.name, version=stored.version, **kwargs)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"

    def run(self, output: str, input_name: str, features: np.ndarray) -> np.ndarray:
        """The graph's `output` for a (n, len(features)) matrix of this code's features."""
        (out,) = self.run_all((output,), input_name, features)
        return out

    def run_all(self, outputs: Sequence[str], input_name: str, features: np.ndarray,
                inputs: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
        """The graph's `outputs`, in that order, for a (n, len(features)) matrix of this code's features fed as
        `input_name`, and the graph's other `inputs` (name -> matrix, fed as they are, as float32)."""
        matrix = features if self._columns is None else features[:, self._columns]
        feeds = {input_name: np.ascontiguousarray(matrix, dtype=np.float32)}
        feeds.update({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in (inputs or {}).items()})
        return tuple(np.asarray(out, dtype=np.float64) for out in self._session.run(list(outputs), feeds))
