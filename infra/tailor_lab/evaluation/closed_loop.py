"""`tailor simulate online` with the lab's item-vector training: the closed-loop simulator
(tailor_lab.simulator.online) serves its embeddings strategies with vectors trained as TrainEmbeddings trains them,
which the simulator cannot import itself (the lab's training imports the simulator)."""

from __future__ import annotations

from typing import Any

from tailor_lab.simulator import online
from tailor_lab.training.embeddings import EmbeddingParams, interactions_from_events, train_item_vectors

__all__ = ["main", "train_vectors"]


def main(argv: list[str] | None = None) -> int:
    return online.main(argv, train_vectors=train_vectors)


def train_vectors(events: list[dict[str, Any]], ignores: bool) -> Any:
    """Item vectors from `events` with the training's defaults, ignored impressions counting as negatives or not."""
    params = EmbeddingParams() if ignores else EmbeddingParams(ignore_weight=0.0)
    return train_item_vectors(interactions_from_events(events), params)
