"""Versioned ONNX models: a registry in the data bucket, and the defaults shipped in this package."""

from tailor.models.registry import DEFAULT_DIR, ModelRegistry, StoredModel, default_model, load_model, model_version

__all__ = ["DEFAULT_DIR", "ModelRegistry", "StoredModel", "default_model", "load_model", "model_version"]
