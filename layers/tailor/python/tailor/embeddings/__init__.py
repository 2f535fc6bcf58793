"""Items and shoppers in one vector space (spec 002): item vectors learned offline (tailor train embeddings),
session and shopper vectors kept current by one update rule, nearest items by cosine with filters inside the
search. Serving loads the registry's current vectors once per container (`load_item_vectors`)."""

from tailor.embeddings.update import DEFAULT_UPDATE, VectorUpdate, fold_vector, update_vector
from tailor.embeddings.vectors import (
    ARTIFACT,
    EXACT,
    EXACT_UP_TO,
    FORMAT,
    INDEX_PROBES,
    RECALL_TARGET,
    ItemVectors,
    Search,
    VectorFilters,
    unit,
)
from tailor.models.registry import load_published

__all__ = ["ARTIFACT", "DEFAULT_UPDATE", "EXACT", "EXACT_UP_TO", "FORMAT", "INDEX_PROBES", "MODEL_NAME", "RECALL_TARGET",
           "ItemVectors", "Search", "VectorFilters", "VectorUpdate", "fold_vector", "load_item_vectors", "unit",
           "update_vector"]

MODEL_NAME = "item-vectors"


def load_item_vectors(registry=None, *, unreadable_raises: bool = False) -> ItemVectors | None:
    """The registry's current item vectors, or None when there are none or they cannot be used (no default ships:
    item ids are the shop's own, so vectors trained elsewhere would name no item of it); `unreadable_raises` as
    tailor.models.load_published takes it."""
    return load_published(MODEL_NAME, registry, build=ItemVectors.from_stored, without="item vectors",
                          unreadable_raises=unreadable_raises)
