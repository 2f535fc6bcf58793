"""Item clusters rebuilt from item vectors and metadata (spec 001), their trait descriptors and global click rates,
with ids matched to the previous build's (tailor.clusters.ItemClusters is what this publishes).

Features per item: its vector (unit length, when there is one) beside its category one-hot (x `category_weight`)
and its price percentile within the category (x `price_weight`); k-means (scikit-learn) groups them. A cluster's
descriptor per trait is the mean of its items' trait strengths (tailor.clusters.item_trait_strengths: category and
price) blended with the mean trait strength of the shoppers who clicked its items (`engaged`: shopper -> trait
means) by `engaged_weight`. Its global click rate is clicks over impressions of its items in the events, with one
prior impression-worth of the shop's rate per `rate_prior`. Each cluster keeps its items' shares by category, and
the clusters the shop's engagements' shares by category, weighed as a shopper's row weighs its category affinity
(tailor.shopper.category_engagement): what a shopper's own affinity is compared with (ItemClusters.category_lift).
Items outside the fit (`placed`: listed on sale, but met by no event of the window) join the nearest fitted cluster:
their clicks and impressions count in its rate, and the centroids, descriptors, top items and category shares come
from the items met.

The scheduled RebuildClusters function runs `rebuild_from_archive`: its build carries this module alone from the lab
(functions/rebuild_clusters/Makefile), so it imports nothing from the lab, only the domain library and scikit-learn.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances_argmin

from tailor.archive import archived_events
from tailor.catalog import CatalogSnapshot
from tailor.clusters import FORMAT, MODEL_NAME, load_item_clusters
from tailor.clusters.model import ARTIFACT, TRAIT_NAMES, ItemClusters, item_trait_strengths, match_cluster_ids
from tailor.embeddings import ItemVectors, load_item_vectors
from tailor.models import ModelRegistry
from tailor.shopper import category_engagement
from tailor.store.port import BlobStore

__all__ = ["ClusterParams", "build_clusters", "catalog_from_events", "category_shares", "click_counts",
           "rebuild_from_archive"]

DAY_SECONDS = 86400.0
MIN_ITEMS = 2  # fewer items make no clusters worth a bandit
PLACE_CHUNK = 20_000  # placed items whose features are built at once
# Items placed at most: every member is a key of the published clusters that Ingest (512 MB) and the API hold.
MAX_PLACED = 200_000


@dataclass(frozen=True)
class ClusterParams:
    clusters: int = 36
    category_weight: float = 1.0
    price_weight: float = 0.6
    engaged_weight: float = 0.3
    rate_prior: float = 50.0
    neighbours: int = 3
    top_items: int = 20
    seed: int = 0


def build_clusters(items: Sequence[Mapping[str, Any]], events: Iterable[Mapping[str, Any]] = (), *,
                   vectors: Mapping[str, np.ndarray] | None = None,
                   engaged: Mapping[str, Mapping[str, float]] | None = None,
                   previous: ItemClusters | None = None, params: ClusterParams = ClusterParams(),
                   placed: Sequence[Mapping[str, Any]] = ()) -> ItemClusters:
    """Clusters of `items` (records with item_id, category, price), with click rates from `events`. Each record of
    `placed` (items on sale that no event of the window names) joins the cluster nearest to it as a member: its
    clicks and impressions count in the cluster's rate, but it moves no centroid, descriptor, top item or share."""
    if not items:
        raise ValueError("clusters: no items to cluster")
    events = list(events)
    ids = [str(record["item_id"]) for record in items]
    categories = sorted({str(record.get("category") or "") for record in items})
    percentile = _price_percentiles(items)
    features = _features(items, percentile, categories, vectors, params)
    kmeans = KMeans(n_clusters=min(params.clusters, len(items)), n_init=4, random_state=params.seed).fit(features)
    # Items of fewer distinct features than clusters leave clusters empty; those are no clusters.
    present = np.unique(kmeans.labels_)
    labels = np.searchsorted(present, kmeans.labels_)
    k = len(present)
    placed_labels = _nearest_clusters(kmeans.cluster_centers_[present], placed, items, categories, vectors, params)
    # Ids follow the members, less the items placed for the first time: a catalog's worth of new listings (or the
    # first build to place items) would otherwise take every id, however little the clusters moved.
    old = previous.members if previous is not None else {}
    names = match_cluster_ids(old, dict(zip(ids, labels.tolist()))
                              | {item: n for item, n in placed_labels.items() if item in old})
    order = sorted(range(k), key=lambda n: names[n])
    cluster_ids = tuple(names[n] for n in order)
    row = {n: r for r, n in enumerate(order)}
    clicks, shown = click_counts(events)
    strengths = np.array([item_trait_strengths(str(record.get("category") or ""), float(percentile[i]))
                          for i, record in enumerate(items)])
    centroids = np.zeros((k, features.shape[1]))
    descriptors = np.zeros((k, len(TRAIT_NAMES)))
    ctr = np.zeros(k)
    total_rate = sum(clicks.values()) / max(sum(shown.values()), 1)
    members, top = {}, {}
    engaged_sum = np.zeros((k, len(TRAIT_NAMES)))
    engaged_weight = np.zeros(k)
    clicks_by_shopper = _clicks_by_shopper(events) if engaged else {}
    placed_in: dict[int, list[str]] = defaultdict(list)
    for item, n in placed_labels.items():
        placed_in[n].append(item)
    for n in range(k):
        r = row[n]
        where = np.flatnonzero(labels == n)
        centroid = features[where].mean(axis=0)
        centroids[r] = centroid / (np.linalg.norm(centroid) or 1.0)
        descriptors[r] = strengths[where].mean(axis=0)
        held = [*(ids[i] for i in where), *placed_in[n]]
        c = sum(clicks.get(item, 0) for item in held)
        s = sum(shown.get(item, 0) for item in held)
        ctr[r] = (c + params.rate_prior * total_rate) / (s + params.rate_prior)
        members.update(dict.fromkeys(held, cluster_ids[r]))
        top[cluster_ids[r]] = tuple(ids[i] for i in sorted(where, key=lambda i: (-clicks.get(ids[i], 0),
                                                                                  -shown.get(ids[i], 0), ids[i])))[
            : params.top_items]
    if engaged:
        for shopper, items_clicked in clicks_by_shopper.items():
            means = engaged.get(shopper)
            if not means:
                continue
            vector = np.array([float(means.get(name, 0.5)) for name in TRAIT_NAMES])
            for item, count in items_clicked.items():
                cid = members.get(item)
                if cid is not None:
                    r = cluster_ids.index(cid)
                    engaged_sum[r] += count * vector
                    engaged_weight[r] += count
        has = engaged_weight > 0
        descriptors[has] = ((1 - params.engaged_weight) * descriptors[has]
                            + params.engaged_weight * engaged_sum[has] / engaged_weight[has, None])
    similarity = centroids @ centroids.T
    neighbours = {}
    for r, cid in enumerate(cluster_ids):
        near = [j for j in np.argsort(-similarity[r], kind="stable") if j != r][: params.neighbours]
        neighbours[cid] = tuple((cluster_ids[j], round(float(similarity[r, j]), 4)) for j in near)
    categories: dict[str, dict[str, float]] = {}
    for n in range(k):
        counted = Counter(str(items[i].get("category") or "") for i in np.flatnonzero(labels == n))
        counted.pop("", None)
        total = sum(counted.values())
        if total:
            categories[cluster_ids[row[n]]] = {name: count / total for name, count in sorted(counted.items())}
    return ItemClusters(ids=cluster_ids, centroids=centroids, descriptors=descriptors, global_ctr=ctr,
                        members=members, top_items=top, neighbours=neighbours, categories=categories,
                        category_shares=category_shares(events))


def rebuild_from_archive(blobs: BlobStore, now: float | datetime, *, history_days: float = 28.0,
                         params: ClusterParams = ClusterParams(), publish: bool = True,
                         catalog: CatalogSnapshot | None = None) -> dict[str, Any]:
    """Cluster the items of the archived events of the last `history_days` before `now` (their latest category and
    price, or the items' rows' where `catalog` has them: tailor.catalog.read_catalog; the registry's current item
    vectors where published), with ids matched to the current clusters', and publish them as current. The items the
    shop's catalog lists that no event of the window names join their nearest cluster (`placed`; the latest listed
    first, at most MAX_PLACED), so one the shop has just listed can fill an adaptive feed's slot. An item its row says
    is off sale is in no cluster. The report says what was built, or why nothing was (status "skipped": too few
    items, and the current clusters stay)."""
    end = now.timestamp() if isinstance(now, datetime) else float(now)
    start = end - history_days * DAY_SECONDS
    since = datetime.fromtimestamp(start, tz=UTC).date().isoformat()
    until = datetime.fromtimestamp(end, tz=UTC).date().isoformat()
    events = [e for e in archived_events(blobs, since=since, until=until) if start <= _epoch(e) < end]
    catalog = catalog or CatalogSnapshot({}, {})
    met = catalog_from_events(events)
    items = _as_catalog_says(met, catalog.attributes)
    report: dict[str, Any] = {"model": MODEL_NAME, "events": len(events), "items": len(items), "since": since,
                              "as_of": _iso(end)}
    if len(items) < MIN_ITEMS:
        return {**report, "status": "skipped", "reason": f"{len(items)} items in the archive's window, fewer than "
                                                         f"{MIN_ITEMS}", "clusters": 0}
    unmet = _listed_not_met(catalog, {record["item_id"] for record in met})
    placed = unmet[:MAX_PLACED]
    registry = ModelRegistry(blobs)
    # A registry that cannot be read now fails the run (the next one tries again): clusters numbered afresh would
    # take the ids under which sessions keep evidence of the current ones, and without the vectors they are others.
    vectors = load_item_vectors(registry, unreadable_raises=True)
    previous = load_item_clusters(registry, unreadable_raises=True)
    built = build_clusters(items, events, previous=previous, params=params, placed=placed,
                           vectors=None if vectors is None else _PublishedVectors(vectors))
    kept = len(set(built.ids) & set(previous.ids)) if previous is not None else 0
    report = {**report, "status": "built", "clusters": len(built.ids), "ids_kept": kept, "items_placed": len(placed),
              "items_not_placed": len(unmet) - len(placed), "with_vectors": vectors is not None}
    if publish:
        report["version"] = registry.publish(MODEL_NAME, built.to_json().encode(), {
            "format": FORMAT, "trained_at": _iso(end), **{k: report[k] for k in ("events", "items", "items_placed",
                                                                                  "items_not_placed", "since",
                                                                                  "clusters", "ids_kept")},
            "params": vars(params) | {}}, artifact=ARTIFACT)
    return report


def catalog_from_events(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every item the events name, with the latest category and price they carry (what build_clusters takes)."""
    catalog: dict[str, dict[str, Any]] = {}
    for event in events:
        item = event.get("item_id")
        if not item:
            continue
        record = catalog.setdefault(str(item), {"item_id": str(item), "category": None, "price": None})
        for key in ("category", "price"):
            if event.get(key) is not None:
                record[key] = event[key]
    return [catalog[item] for item in sorted(catalog)]


def click_counts(events: Iterable[Mapping[str, Any]]) -> tuple[Counter, Counter]:
    """Clicks and impressions per item in events."""
    clicks: Counter = Counter()
    shown: Counter = Counter()
    for event in events:
        kind = event.get("event_type")
        if kind == "impression":
            shown.update(event.get("item_ids") or ())
        elif kind == "click" and event.get("item_id"):
            clicks[event["item_id"]] += 1
    return clicks, shown


def category_shares(events: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The events' shares of weighed engagements by category, as shoppers' rows weigh their category affinity (the
    event's own category, tailor.shopper.category_engagement)."""
    weighed: Counter = Counter()
    for event in events:
        category = event.get("category")
        engaged = category_engagement(str(event.get("event_type")), float(event.get("quantity") or 1))
        if category and engaged:
            weighed[str(category)] += engaged
    total = sum(weighed.values())
    return {name: value / total for name, value in sorted(weighed.items())} if total else {}


def _clicks_by_shopper(events: Iterable[Mapping[str, Any]]) -> dict[str, Counter]:
    out: dict[str, Counter] = defaultdict(Counter)
    for event in events:
        if event.get("event_type") == "click" and event.get("item_id"):
            out[str(event.get("user_id"))][event["item_id"]] += 1
    return out


def _features(records: Sequence[Mapping[str, Any]], percentile: np.ndarray, categories: Sequence[str],
              vectors: Mapping[str, np.ndarray] | None, params: ClusterParams) -> np.ndarray:
    """Each record's category one-hot (none for a category outside `categories`), price percentile and unit vector
    (zeros without one), weighed by `params`."""
    column = {name: j for j, name in enumerate(categories)}
    one_hot = np.zeros((len(records), len(categories)))
    for i, record in enumerate(records):
        j = column.get(str(record.get("category") or ""))
        if j is not None:
            one_hot[i, j] = params.category_weight
    parts = [one_hot, params.price_weight * percentile[:, None]]
    if vectors:
        dim = len(next(iter(vectors.values())))
        matrix = np.zeros((len(records), dim))
        for i, record in enumerate(records):
            v = vectors.get(str(record["item_id"]))
            if v is not None:
                norm = float(np.linalg.norm(v))
                matrix[i] = np.asarray(v) / norm if norm else 0.0
        parts.append(matrix)
    return np.hstack(parts)


def _nearest_clusters(centers: np.ndarray, placed: Sequence[Mapping[str, Any]], items: Sequence[Mapping[str, Any]],
                      categories: Sequence[str], vectors: Mapping[str, np.ndarray] | None,
                      params: ClusterParams) -> dict[str, int]:
    """The row of `centers` nearest each placed record (those of `items` left out), a chunk of features at a time so
    a whole catalog never sits in one matrix; price percentiles are read against the fitted items' prices."""
    fitted = {str(record["item_id"]) for record in items}
    placed = [record for record in placed if str(record["item_id"]) not in fitted]
    prices: dict[str, list[float]] = defaultdict(list)
    for record in items:
        if (price := _price(record)) is not None:
            prices[str(record.get("category") or "")].append(price)
    sorted_prices = {name: np.sort(values) for name, values in prices.items()}
    out: dict[str, int] = {}
    for start in range(0, len(placed), PLACE_CHUNK):
        chunk = placed[start:start + PLACE_CHUNK]
        percentile = np.array([_percentile_among(sorted_prices.get(str(record.get("category") or "")),
                                                 _price(record)) for record in chunk])
        nearest = pairwise_distances_argmin(_features(chunk, percentile, categories, vectors, params), centers)
        out.update(zip((str(record["item_id"]) for record in chunk), nearest.tolist()))
    return out


def _percentile_among(prices: np.ndarray | None, price: float | None) -> float:
    """Where `price` falls among a category's sorted fitted `prices`, as _price_percentiles ranks them (0.5 unknown)."""
    if prices is None or price is None:
        return 0.5
    return float(np.searchsorted(prices, price, "left") + np.searchsorted(prices, price, "right")) / (2 * len(prices))


def _price(record: Mapping[str, Any]) -> float | None:
    price = record.get("price")
    return float(price) if isinstance(price, (int, float)) and price >= 0 else None


def _price_percentiles(items: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Each item's price percentile within its category (0.5 where the price is missing)."""
    by_category: dict[str, list[tuple[float, int]]] = defaultdict(list)
    out = np.full(len(items), 0.5)
    for i, record in enumerate(items):
        if (price := _price(record)) is not None:
            by_category[str(record.get("category") or "")].append((price, i))
    for rows in by_category.values():
        rows.sort()
        for rank, (_, i) in enumerate(rows):
            out[i] = (rank + 0.5) / len(rows)
    return out


def _epoch(event: Mapping[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(event.get("timestamp")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("nan")  # outside every window


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def _listed_not_met(catalog: CatalogSnapshot, met: set[str]) -> list[dict[str, Any]]:
    """The items the catalog lists on sale that the window's events do not name, the latest listed first, as
    build_clusters takes them."""
    latest_first = sorted(catalog.listed.items(), key=lambda listing: (listing[1], listing[0]), reverse=True)
    out = []
    for item, _ in latest_first:
        found = catalog.attributes.get(item) or {}
        if item not in met and found.get("available") is not False:
            out.append({"item_id": item, "category": found.get("category"), "price": found.get("price")})
    return out


class _PublishedVectors(Mapping[str, np.ndarray]):
    """The registry's item vectors by item id, each a view of its row: a catalog's worth of items makes no copies."""

    def __init__(self, published: ItemVectors) -> None:
        self._published = published

    def __getitem__(self, item: str) -> np.ndarray:
        row = self._published.row(item)
        if row is None:
            raise KeyError(item)
        return self._published.vectors[row]

    def __iter__(self) -> Iterator[str]:
        return iter(self._published.ids)

    def __len__(self) -> int:
        return len(self._published.ids)


def _as_catalog_says(items: list[dict[str, Any]], catalog: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The items with the category and price their rows hold, those off sale left out (they are never served)."""
    out = []
    for record in items:
        found = catalog.get(record["item_id"]) or {}
        if found.get("available") is False:
            continue
        out.append({**record, **{key: found[key] for key in ("category", "price") if found.get(key) is not None}})
    return out
