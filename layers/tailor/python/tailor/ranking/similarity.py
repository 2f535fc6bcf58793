"""A blend term for the vector space (spec 002): each candidate's cosine with the request's query vector."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tailor.embeddings import ItemVectors
from tailor.ranking.candidates import Candidates, embedding_query
from tailor.ranking.context import RankingContext

__all__ = ["FEED_WEIGHT", "Similarity"]

# The feed's weight of the term beside commercial 0.5, probability 0.4 and diversity 0.1 where item vectors are
# published: of 0.2, 0.5, 1 and 2, 1 drew the most clicks from the closed loop's validation shoppers (tailor
# simulate online --seed 7 --strategy embeddings).
FEED_WEIGHT = 1.0


@dataclass
class Similarity:
    """A scorer: each candidate's cosine with the vector the embedding source searches from (the session's and the
    shopper's, tailor.ranking.candidates.embedding_query), negative cosines and items without a vector counting 0,
    over the candidates' largest. A route weighs it by "similarity"; without item vectors it is 0 throughout."""

    vectors: Callable[[], ItemVectors | None] = field(repr=False)
    name: str = "similarity"

    def score(self, ctx: RankingContext, candidates: Candidates,
              features: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        term = np.zeros(len(candidates))
        vectors = self.vectors()
        query = None if vectors is None else embedding_query(ctx, vectors)
        if vectors is None or query is None or not np.any(query):
            return term, {}
        unit_query = (query / np.linalg.norm(query)).astype(np.float32)
        rows = vectors.rows(candidates.ids)
        known = rows >= 0
        if known.any():
            term[known] = np.maximum(vectors.vectors[rows[known]] @ unit_query, 0.0)
        top = term.max(initial=0.0)
        return (term / top if top > 0 else term), {"cosine": term}
