"""Item vectors as serving holds them: unit rows in one matrix, the items' attributes beside them, and the nearest
items to a query vector by cosine with the business filters applied inside the search.

A vectors file (`ItemVectors.to_npz`) is a numpy .npz archive: `ids` (n item ids), `vectors` (n x d float32, unit
rows), `category` (a code per item into `category_names`, -1 unknown), `price` (NaN unknown), `available` (1, 0, or
NaN unknown), `metadata_only` (1 where the vector came from the item's metadata alone), and optionally an inverted
file index: `centroids` (c x d), `list_offsets` (c + 1) and `list_items` (row numbers grouped by centroid). The
training job (tailor train embeddings) writes it; the model registry carries it as a model's bytes.

Serving searches exactly (every item scored) up to EXACT_UP_TO items, or without an index; above, it searches the
index, probing the lists the training found to keep recall@20 at RECALL_TARGET ("probes" in the metadata), else
INDEX_PROBES (`ItemVectors.search`). tailor bench embeddings measured both (see the README's embeddings section).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np

from tailor.associations import RevisitOdds

__all__ = ["EXACT", "EXACT_UP_TO", "FORMAT", "INDEX_PROBES", "RECALL_TARGET", "ItemVectors", "Search", "VectorFilters",
           "unit"]

FORMAT = "tailor-item-vectors/1"  # the metadata's "format" for a registry model holding a vectors file
ARTIFACT = "vectors.npz"  # that file's name in the registry
# Up to this many items exact search costs about what an index search does and misses nothing: one query's p50 at
# 10k items 0.22 ms exact against 0.14 ms probing 16 lists (d=128), 0.33 against 0.17 ms (d=256); at 20k 0.47
# against 0.18 and 1.96 against 0.31 ms (tailor bench embeddings --items 10000,15000,20000 --probes 4,16).
EXACT_UP_TO = 10_000
RECALL_TARGET = 0.95  # the share of exact search's top 20 an index search must find
# Lists an index search probes when the vectors' metadata names none: the fewest of the training's choices keeping
# recall@20 at RECALL_TARGET on both learned sets measured, on queries folded from their sessions (Diginetica's 43k
# items, 208 lists: 0.999; YooChoose's 2.9k, 54 lists: 0.972; 8 probes gave it 0.937; see the README).
INDEX_PROBES = 16
# An index search a filter would widen to more than this share of the lists scores every item instead: on
# Diginetica's vectors (43k items, d=256, 208 lists) a query's p50 was 1.07-1.15 ms scanning a quarter of the lists,
# 2.44-2.68 ms half, 3.54-4.25 ms three quarters, against 3.78-4.97 ms for exact search, which misses nothing
# (tailor bench embeddings --vectors FILE [DATA] --probes 52,104,156,208).
WIDEST_SHARE = 0.5


@dataclass(frozen=True)
class Search:
    """How a nearest-item search runs: exact (`probes` None: every item scored) or on the inverted file index,
    scoring the items of the `probes` lists nearest the query."""

    probes: int | None = None

    def __post_init__(self) -> None:
        if self.probes is not None and self.probes < 1:
            raise ValueError(f"probes must be at least 1, not {self.probes}")

    def __str__(self) -> str:
        if self.probes is None:
            return "exact"
        return f"index, {self.probes} probe{'' if self.probes == 1 else 's'}"


EXACT = Search()


@dataclass(frozen=True)
class VectorFilters:
    """What a nearest-item search may return: items not known to be unavailable (`available_only`), whose known
    price lies in [min_price, max_price] (an unknown price fails a bound), of one of `categories` (when given),
    and not in `exclude`."""

    available_only: bool = True
    min_price: float | None = None
    max_price: float | None = None
    categories: tuple[str, ...] = ()
    exclude: frozenset[str] = frozenset()


NO_FILTERS = VectorFilters(available_only=False)


@dataclass
class ItemVectors:
    ids: list[str]
    vectors: np.ndarray  # (n, d) float32, unit rows (zero rows for items without a vector)
    category: np.ndarray  # (n,) int32 codes into category_names, -1 unknown
    category_names: list[str]
    price: np.ndarray  # (n,) float32, NaN unknown
    available: np.ndarray  # (n,) float32: 1 available, 0 not, NaN unknown
    metadata_only: np.ndarray  # (n,) bool: the vector came from metadata alone (nobody engaged with the item)
    centroids: np.ndarray | None = None  # inverted file index: (c, d) unit rows
    list_offsets: np.ndarray | None = None  # (c + 1,) int64
    list_items: np.ndarray | None = None  # (n,) int64 row numbers, grouped by centroid
    metadata: dict[str, Any] = field(default_factory=dict)
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("vectors", "category", "price", "available", "metadata_only"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"item vectors: {name} has {len(getattr(self, name))} rows for {n} ids")
        self._index = {item: i for i, item in enumerate(self.ids)}
        self._codes = {name: k for k, name in enumerate(self.category_names)}
        self._layout: tuple[np.ndarray | None, bool] = (None, False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def search(self) -> Search:
        """How serving searches these vectors: exact up to EXACT_UP_TO items or without an index; above, the index,
        probing the lists their metadata's "probes" names (the training's choice for RECALL_TARGET), else
        INDEX_PROBES."""
        if self.centroids is None or len(self.ids) <= EXACT_UP_TO:
            return EXACT
        probes = self.metadata.get("probes")
        return Search(int(probes) if probes else INDEX_PROBES)

    @cached_property
    def revisit_odds(self) -> RevisitOdds | None:
        """The shop's revisit odds, counted from the sessions these vectors were learned on (None in a file from
        before they were)."""
        found = self.metadata.get("revisits")
        return None if found is None else RevisitOdds.from_json(found)

    def row(self, item_id: str) -> int | None:
        return self._index.get(item_id)

    def vector(self, item_id: str) -> np.ndarray | None:
        """The item's unit vector, None for an item the vectors do not know."""
        i = self._index.get(item_id)
        return None if i is None else self.vectors[i]

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Each item's row number, -1 for an item the vectors do not know."""
        return np.fromiter(map(self._index.get, item_ids, repeat(-1)), dtype=np.int64, count=len(item_ids))

    def mask(self, filters: VectorFilters, rows: np.ndarray | None = None) -> np.ndarray | None:
        """True for each item the filters let through (each of `rows`, when given); None when they let every item
        through."""
        keep = None

        def both(more: np.ndarray) -> None:
            nonlocal keep
            keep = more if keep is None else keep & more

        def of(column: np.ndarray) -> np.ndarray:
            return column if rows is None else column[rows]

        if filters.available_only:
            both(of(self.available) != 0.0)  # NaN (unknown) passes
        if filters.min_price is not None or filters.max_price is not None:
            price = of(self.price)
            with np.errstate(invalid="ignore"):
                if filters.min_price is not None:
                    both(price >= filters.min_price)
                if filters.max_price is not None:
                    both(price <= filters.max_price)
        if filters.categories:
            codes = [self._codes[c] for c in filters.categories if c in self._codes]
            both(np.isin(of(self.category), codes))
        if filters.exclude:
            excluded = [self._index[i] for i in filters.exclude if i in self._index]
            if excluded:
                if rows is None:
                    allowed = np.ones(len(self.ids), dtype=bool)
                    allowed[excluded] = False
                    both(allowed)
                else:
                    both(~np.isin(rows, excluded))
        return keep

    def nearest(self, query: np.ndarray, k: int, filters: VectorFilters = NO_FILTERS, *,
                probes: int | None = None) -> list[tuple[str, float]]:
        """The `k` items most similar to `query` by cosine that pass `filters`, best first, with their cosine.
        With `probes` and an index, only the items of the `probes` lists nearest the query are scored
        (approximate), and of more lists when the filters let through only a share of those lists' items: `probes`
        over that share, or every item when that is more than WIDEST_SHARE of the lists. Otherwise every item is
        scored (exact). Filtered-out items are never ranked, so a filter does not take places of the answer."""
        norm = float(np.linalg.norm(query))
        if k <= 0 or norm == 0.0 or not self.ids:
            return []
        q = (np.asarray(query, dtype=np.float32) / norm).astype(np.float32, copy=False)
        if probes is not None and self.centroids is not None:
            order = _best(self.centroids @ q, len(self.centroids))
            rows, scores, scanned = self._probe(q, order[:probes], filters)
            if len(rows) < scanned:
                # The probed lists' share passing the filters says how many lists hold as many passing items.
                wanted = math.ceil(probes * scanned / len(rows)) if len(rows) else len(order)
                if wanted > WIDEST_SHARE * len(order):
                    return self._exact(q, k, filters)
                if wanted > probes:
                    more_rows, more_scores, _ = self._probe(q, order[probes:wanted], filters)
                    rows, scores = np.concatenate([rows, more_rows]), np.concatenate([scores, more_scores])
            return self._top(scores, rows, k)
        return self._exact(q, k, filters)

    def _exact(self, q: np.ndarray, k: int, filters: VectorFilters) -> list[tuple[str, float]]:
        scores = self.vectors @ q
        keep = self.mask(filters)
        if keep is not None:
            # Filtered-out items leave the race before the top k is taken, not after.
            scores[~keep] = -np.inf
        return self._top(scores, None, k)

    def by_list(self) -> ItemVectors:
        """These vectors with their rows laid out list by list (each index list one block, its rows in the order
        the list holds them), as serving holds them: a search then reads each probed list in place. Without an
        index, or already so laid out, these vectors themselves."""
        if self.list_items is None or self._by_list():
            return self
        order = self.list_items
        return ItemVectors([self.ids[i] for i in order.tolist()], self.vectors[order], self.category[order],
                           list(self.category_names), self.price[order], self.available[order],
                           self.metadata_only[order], self.centroids, self.list_offsets,
                           np.arange(len(order), dtype=np.int64), dict(self.metadata))

    def _probe(self, q: np.ndarray, lists: np.ndarray, filters: VectorFilters) -> tuple[np.ndarray, np.ndarray, int]:
        """The rows of `lists` that pass `filters`, their cosine with `q`, and how many rows the lists hold."""
        assert self.list_offsets is not None and self.list_items is not None
        offsets = self.list_offsets
        scores = None
        if self._by_list():
            # Each list is one block of rows: its vectors are read in place, not gathered row by row.
            bounds = [(int(offsets[c]), int(offsets[c + 1])) for c in lists.tolist()]
            rows = np.concatenate([np.arange(start, stop) for start, stop in bounds])
            scores = np.concatenate([self.vectors[start:stop] @ q for start, stop in bounds])
        else:
            rows = np.concatenate([self.list_items[offsets[c]:offsets[c + 1]] for c in lists.tolist()])
        scanned = len(rows)
        keep = self.mask(filters, rows)  # only the probed lists' items are filtered
        if keep is not None:
            rows = rows[keep]
            scores = None if scores is None else scores[keep]
        if scores is None:
            scores = self.vectors[rows] @ q
        return rows, scores, scanned

    def _by_list(self) -> bool:
        """Whether each index list is one block of rows (list_items is 0, 1, 2, ...), checked once per index."""
        items = self.list_items
        if items is None:
            return False
        if self._layout[0] is not items:
            self._layout = (items, bool(np.array_equal(items, np.arange(len(items)))))
        return self._layout[1]

    def _top(self, scores: np.ndarray, rows: np.ndarray | None, k: int) -> list[tuple[str, float]]:
        if len(scores) == 0:
            return []
        if len(scores) > k:
            best = np.argpartition(-scores, k - 1)[:k]
        else:
            best = np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        best = best[scores[best] > 0]  # -inf: filtered out
        ids = self.ids
        return list(zip([ids[i] for i in (best if rows is None else rows[best]).tolist()], scores[best].tolist()))

    # -- the file ------------------------------------------------------------------------------------

    def to_npz(self) -> bytes:
        arrays = {"ids": np.asarray(self.ids, dtype=str), "vectors": self.vectors.astype(np.float32),
                  "category": self.category.astype(np.int32), "category_names": np.asarray(self.category_names, dtype=str),
                  "price": self.price.astype(np.float32), "available": self.available.astype(np.float32),
                  "metadata_only": self.metadata_only.astype(bool),
                  "metadata": np.asarray(json.dumps(self.metadata, sort_keys=True))}
        if self.centroids is not None:
            arrays.update(centroids=self.centroids.astype(np.float32), list_offsets=self.list_offsets,
                          list_items=self.list_items)
        out = io.BytesIO()
        np.savez_compressed(out, **arrays)
        return out.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> ItemVectors:
        """A vectors file's bytes; ValueError naming what is missing or malformed."""
        try:
            archive = np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"not an item vectors file: {exc}") from None
        with archive:
            missing = [name for name in ("ids", "vectors", "category", "category_names", "price", "available",
                                         "metadata_only") if name not in archive.files]
            if missing:
                raise ValueError(f"item vectors file lacks {', '.join(missing)}")
            vectors = archive["vectors"]
            if vectors.ndim != 2:
                raise ValueError(f"item vectors file: vectors must be a matrix, not of shape {vectors.shape}")
            index = {name: archive[name] for name in ("centroids", "list_offsets", "list_items") if name in archive.files}
            metadata = json.loads(str(archive["metadata"])) if "metadata" in archive.files else {}
            return cls([str(i) for i in archive["ids"].tolist()], vectors.astype(np.float32, copy=False),
                       archive["category"].astype(np.int32), [str(c) for c in archive["category_names"].tolist()],
                       archive["price"].astype(np.float32), archive["available"].astype(np.float32),
                       archive["metadata_only"].astype(bool), index.get("centroids"), index.get("list_offsets"),
                       index.get("list_items"), metadata)

    @classmethod
    def from_stored(cls, stored: Any) -> ItemVectors:
        """From a tailor.models.StoredModel whose bytes are a vectors file (metadata "format" FORMAT), laid out list
        by list (`by_list`) as serving searches them."""
        if stored.metadata.get("format") != FORMAT:
            raise ValueError(f"model {stored.name!r} is not item vectors (format {stored.metadata.get('format')!r})")
        vectors = cls.from_npz(stored.onnx).by_list()
        vectors.metadata = {**vectors.metadata, "version": stored.version}
        return vectors

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, *, attributes: Mapping[str, Mapping[str, Any]] | None = None,
              metadata_only: Iterable[bool] | None = None, metadata: Mapping[str, Any] | None = None) -> ItemVectors:
        """Vectors (normalised here) for `ids`, with each item's "category", "price" and "available" from
        `attributes` where known."""
        attributes = attributes or {}
        names: dict[str, int] = {}
        category = np.full(len(ids), -1, dtype=np.int32)
        price = np.full(len(ids), np.nan, dtype=np.float32)
        available = np.full(len(ids), np.nan, dtype=np.float32)
        for i, item in enumerate(ids):
            found = attributes.get(item) or {}
            if found.get("category") is not None:
                category[i] = names.setdefault(str(found["category"]), len(names))
            if found.get("price") is not None:
                price[i] = float(found["price"])
            if found.get("available") is not None:
                available[i] = 1.0 if found["available"] else 0.0
        only = np.zeros(len(ids), dtype=bool) if metadata_only is None else np.fromiter(metadata_only, dtype=bool,
                                                                                        count=len(ids))
        return cls(list(ids), unit(np.asarray(vectors, dtype=np.float32)), category, list(names), price, available,
                   only, metadata=dict(metadata or {}))


def _best(scores: np.ndarray, n: int) -> np.ndarray:
    """The positions of the `n` highest scores, highest first (as a full descending sort's first n)."""
    if n >= len(scores):
        return np.argsort(-scores)
    top = np.argpartition(-scores, n - 1)[:n]
    return top[np.argsort(-scores[top], kind="stable")]


def unit(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(matrix.dtype, copy=False)
