"""What candidate blocks of shopper evidence add to persona recovery: the adjusted Rand index against the simulator's
true personas of mixtures fitted on each, beside today's features, on the same replayed shoppers.

A simulation's training window (all but its last --test-days) is replayed through Ingest with the persona jobs on
schedule, as `tailor evaluate personas` does (use another --seed than the evaluation's to choose with). On the
shopper rows it leaves, each candidate is measured three ways:

* supervised: a logistic regression told the true personas (5-fold cross-validated predictions), the information a
  block carries whatever clustering makes of it;
* Gaussian: the rebuild's spherical Gaussian mixture (tailor.personas.clustering.fit_mixture) on today's standardized
  features with the block appended (each block scaled to today's features' root mean square norm times its weight),
  k by BIC over 2..12 and at the true 6;
* items: the rebuild's mixture with the personas' item distributions over each shopper's recent items (the shipped
  model), for several weights of the features' log-likelihood, k by held-out deviance over 2..12.

Blocks: brand shares (square roots of each shopper's engagement shares per brand), the price level relative to the
category (mean log of price / the category's median price), and item vectors from `tailor train embeddings`' job
(trained on the training window) averaged over each shopper's engagements (64 dimensions, PCA to 16) or decayed as
Ingest's shopper vector is (tailor.embeddings.update).

    python -m tailor_lab.evaluation.persona_blocks [--shoppers 2000 --days 28 --test-days 7 --seed 12] [--json F]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tailor.personas.clustering as clustering
import tailor.personas.model as persona_model
from tailor.embeddings.update import update_vector
from tailor.personas.features import batch_features
from tailor.shopper import ShopperState
from tailor_lab import report_json

__all__ = ["main", "measure"]

ENGAGEMENT = {"view": 1.0, "click": 1.0, "add_to_cart": 2.0, "purchase": 3.0, "wishlist": 1.5}
KS = tuple(range(2, 13))
TRUE_K = 6
FEATURE_WEIGHTS = (1.0, 0.1, 0.03, 0.01)
# (brand, item vectors, price level) weights of the Gaussian variants, beside today's features at 1.
GAUSSIAN_VARIANTS = ((1, 0, 0), (0, 1, 0), (1, 1, 0), (0.5, 1, 0.5), (1, 2, 0.5))
VECTOR_DIMS, VECTOR_PCA = 64, 16


def measure(*, shoppers: int, days: float, test_days: float, seed: int,
            echo: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    from tailor_lab.evaluation.personas import Replay, _persona_oracle, _train
    from tailor_lab.simulator import simulate
    from tailor_lab.stream import epoch_of

    simulation = simulate(shoppers=shoppers, days=days, seed=seed)
    split = epoch_of(simulation.truth["start"]) + (days - test_days) * 86400
    train = [e for e in simulation.events if epoch_of(e["timestamp"]) < split]
    echo(f"replaying {len(train)} training events of {shoppers} shoppers (seed {seed})")
    replay = Replay(seed=seed)
    built = _train(replay, train)
    truth = simulation.truth["shoppers"]
    states = sorted((s for s in map(ShopperState.from_row, replay.store.tables["shoppers"].values())
                     if s is not None and s.events > 0), key=lambda s: s.user_id)
    compared = np.array([bool((s.personas or {}).get("mixture")) and s.user_id in truth for s in states])
    y = np.array([truth[s.user_id]["persona"] for s, kept in zip(states, compared) if kept])
    oracle = _persona_oracle(simulation, train)
    out: dict[str, Any] = {"seed": seed, "shoppers": shoppers, "days": days, "test_days": test_days,
                           "shoppers_compared": int(compared.sum()), "replay_k": built["k"],
                           "ari_oracle": _ari(y, [oracle.get(s.user_id, -1) for s, k in zip(states, compared) if k])}

    space = clustering.feature_space(states, list(replay.store.tables["items"].values()),
                                     list(replay.store.tables.get("queries", {}).values()))
    x = batch_features(states, space)
    center, scale = clustering.standardization(x, space)
    z = (x - center) / scale
    blocks = _blocks(states, train, seed)
    echo("supervised")
    out["supervised"] = {name: _supervised(block[compared], y, seed) for name, block in
                         {"features": z, **blocks, "features+brand+price": np.hstack([z, blocks["brand"], blocks["price"]]),
                          "features+mean_vector": np.hstack([z, blocks["mean_vector"]])}.items()}
    echo("Gaussian mixtures")
    norm = math.sqrt(float((z ** 2).sum(axis=1).mean()))
    out["gaussian"] = []
    for brand, vector, price in ((0, 0, 0),) + GAUSSIAN_VARIANTS:
        parts = [z / norm] + [_scaled(blocks[name], w) for name, w in
                              (("brand", brand), ("mean_vector_pca", vector), ("price", price)) if w]
        joined = np.hstack(parts)
        fit, _ = clustering.choose_k(joined, KS, seed=seed)
        six, _ = clustering.choose_k(joined, [TRUE_K], seed=seed)
        out["gaussian"].append({"brand": brand, "item_vectors": vector, "price_level": price, "k": fit.means.shape[0],
                                "ari": _ari(y, fit.responsibilities(joined).argmax(axis=1)[compared]),
                                "ari_k6": _ari(y, six.responsibilities(joined).argmax(axis=1)[compared])})
        echo(f"  {out['gaussian'][-1]}")
    recent = [s.recent_items for s in states]
    items = clustering.ItemCounts(recent, sorted(i for i, _ in Counter(i for own in recent for i in own).most_common(
        clustering.MAX_ITEMS)))
    out["items"] = []
    shipped = persona_model.FEATURE_WEIGHT
    try:
        for weight in FEATURE_WEIGHTS:
            clustering.FEATURE_WEIGHT = persona_model.FEATURE_WEIGHT = weight
            fit, deviance = clustering.choose_k(z, KS, seed=seed, items=items)
            six, _ = clustering.choose_k(z, [TRUE_K], seed=seed, items=items)
            out["items"].append({"feature_weight": weight, "k": fit.means.shape[0],
                                 "ari": _ari(y, fit.responsibilities(z, items).argmax(axis=1)[compared]),
                                 "ari_k6": _ari(y, six.responsibilities(z, items).argmax(axis=1)[compared]),
                                 "deviance": deviance})
            echo(f"  items, feature weight {weight}: k {out['items'][-1]['k']} ARI {out['items'][-1]['ari']}")
    finally:
        clustering.FEATURE_WEIGHT = persona_model.FEATURE_WEIGHT = shipped
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tailor_lab.evaluation.persona_blocks",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--shoppers", type=int, default=2000)
    parser.add_argument("--days", type=float, default=28.0)
    parser.add_argument("--test-days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=12, help="the validation simulation's (the evaluation's is 11)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = measure(shoppers=args.shoppers, days=args.days, test_days=args.test_days, seed=args.seed,
                     echo=lambda message: print(message, file=sys.stderr, flush=True))
    print(report_json.dumps(report), end="")
    if args.json:
        report_json.write(args.json, report)
    return 0


def _blocks(states: list[ShopperState], events: list[dict], seed: int) -> dict[str, np.ndarray]:
    """The candidate blocks, a row per shopper of `states`, from the training window's events."""
    from sklearn.decomposition import PCA

    from tailor_lab.training.embeddings import EmbeddingParams, interactions_from_events, train_item_vectors

    row = {s.user_id: i for i, s in enumerate(states)}
    brands = {b: j for j, b in enumerate(sorted({e["brand"] for e in events if e.get("brand")}))}
    prices: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e["event_type"] == "view" and e.get("price") is not None:
            prices[e["category"]].append(e["price"])
    median = {c: float(np.median(p)) for c, p in prices.items()}
    brand = np.zeros((len(states), len(brands)))
    price_sum, price_n = np.zeros(len(states)), np.zeros(len(states))
    engaged: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for e in events:
        i = row.get(e["user_id"])
        if i is None or e["event_type"] not in ENGAGEMENT or not e.get("item_id"):
            continue
        w = ENGAGEMENT[e["event_type"]]
        if e.get("brand") in brands:
            brand[i, brands[e["brand"]]] += w
        if e.get("price") and e.get("category") in median:
            price_sum[i] += w * math.log(e["price"] / median[e["category"]])
            price_n[i] += w
        engaged[i].append((e["item_id"], e["event_type"]))
    vectors = train_item_vectors(interactions_from_events(events), EmbeddingParams(dim=VECTOR_DIMS, seed=seed),
                                 index=False)
    mean, decayed = np.zeros((len(states), vectors.dim)), np.zeros((len(states), vectors.dim))
    for i, found in engaged.items():
        held, total, weight = None, np.zeros(vectors.dim), 0.0
        for item, kind in found:
            v = vectors.vector(item)
            if v is not None:
                held = update_vector(held, v, kind)
                total += ENGAGEMENT[kind] * v
                weight += ENGAGEMENT[kind]
        if weight:
            mean[i] = total / weight
        if held is not None:
            decayed[i] = held / max(float(np.linalg.norm(held)), 1e-9)
    return {"brand": np.sqrt(brand / np.maximum(brand.sum(axis=1, keepdims=True), 1e-9)),
            "price": (price_sum / np.maximum(price_n, 1e-9))[:, None], "mean_vector": mean,
            "mean_vector_pca": PCA(VECTOR_PCA, random_state=seed).fit_transform(mean - mean.mean(axis=0)),
            "decayed_vector": decayed}


def _scaled(block: np.ndarray, weight: float) -> np.ndarray:
    centred = block - block.mean(axis=0)
    return weight * centred / max(math.sqrt(float((centred ** 2).sum(axis=1).mean())), 1e-9)


def _supervised(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    spread = x.std(axis=0)
    standardized = (x - x.mean(axis=0)) / np.where(spread > 1e-9, spread, 1.0)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return _ari(y, cross_val_predict(LogisticRegression(max_iter=2000), standardized, y, cv=folds))


def _ari(truth: Sequence[Any], found: Sequence[Any]) -> float:
    from sklearn.metrics import adjusted_rand_score

    return round(float(adjusted_rand_score(truth, found)), 4)


if __name__ == "__main__":
    raise SystemExit(main())
