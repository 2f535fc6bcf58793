"""Items and shoppers in one vector space (spec 002): item vectors learned offline (tailor train embeddings),
session and shopper vectors kept current by one update rule, nearest items by cosine with filters inside the
search. Serving loads the registry's current vectors once per container (`load_item_vectors`)."""

import logging

from tailor.embeddings.update import DEFAULT_UPDATE, VectorUpdate, fold_vector, update_vector
from tailor.embeddings.vectors import ARTIFACT, FORMAT, ItemVectors, VectorFilters, unit

__all__ = ["ARTIFACT", "DEFAULT_UPDATE", "FORMAT", "MODEL_NAME", "ItemVectors", "VectorFilters", "VectorUpdate", "fold_vector",
           "load_item_vectors", "unit", "update_vector"]

MODEL_NAME = "item-vectors"

logger = logging.getLogger(__name__)


def load_item_vectors(registry=None) -> ItemVectors | None:
    """The registry's current item vectors, or None when there are none or they cannot be used (no default ships:
    item ids are the shop's own, so vectors trained elsewhere would name no item of it)."""
    if registry is None:
        return None
    try:
        return ItemVectors.from_stored(registry.fetch(MODEL_NAME))
    except LookupError:
        return None
    except Exception as exc:  # a broken or unreadable registry must not take serving down
        logger.warning("cannot use the registry's %s (%s); serving without item vectors", MODEL_NAME, exc)
        return None
