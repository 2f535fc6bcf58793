"""Versioned ONNX models: a registry in the data bucket, and the defaults shipped in this package."""

from tailor.models.registry import (
    DEFAULT_DIR,
    REGISTRY_RETRY_SECONDS,
    LazyModel,
    ModelRegistry,
    ReadAgain,
    ReadAgainModel,
    RegistryUnreadable,
    StoredModel,
    default_model,
    load_model,
    load_published,
    model_version,
)

__all__ = ["DEFAULT_DIR", "REGISTRY_RETRY_SECONDS", "LazyModel", "ModelRegistry", "ReadAgain", "ReadAgainModel",
           "RegistryUnreadable", "StoredModel", "default_model", "load_model", "load_published", "model_version"]
