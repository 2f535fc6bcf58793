"""Fitting personas: the feature space from the tables, mixtures with k chosen on held-out shoppers, persona ids
kept across rebuilds, mini-batch refinement between rebuilds, and the cold-start tables.

Plain numpy (the Lambda runtime carries no scikit-learn): each persona is a spherical Gaussian over the shopper
features and, given the shoppers' recent items, a multinomial over the items (the persona's tastes for items:
brands, styles, quality and price within a category, which no summary feature keeps) and their signals (where
their visits came from, a stated age band, location and interests: tailor.personas.model.persona_evidence), fitted
together by EM from the best of STARTS k-means++ starts and, in a rebuild, of the previous personas (their
responsibilities for today's shoppers; for one persona more, each split in turn; for one fewer, the two closest
merged); several k are tried and the one whose fits best explain held-out shoppers kept (without items, the one
with the lowest Bayesian information criterion).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tailor.personas.features import BEHAVIOUR, PRICE_QUANTILES, QUERY_DIMS, FeatureSpace, tokens
from tailor.personas.model import FEATURE_WEIGHT, PersonaModel, age_band, token_columns
from tailor.shopper import ShopperState

__all__ = ["BLOCK_WEIGHTS", "PRICE_WEIGHT", "Fit", "ItemCounts", "choose_k", "cold_start_tables", "feature_space",
           "feature_space_of",
           "best_fit", "fit_mixture", "held_out_deviance",
           "match_ids", "persona_labels", "query_vectors", "refine", "refine_sums", "refined", "standardization",
           "starts_near"]

MAX_CATEGORIES = 24  # categories with a feature of their own; the rest share "other"
MAX_TOKENS = 2000  # query words with a vector
MIN_VARIANCE = 1e-3
VARIANCE_FLOOR = 0.05  # a persona's variance is at least this share of the data's mean variance
MIN_PERSONA_SHOPPERS = 3
MIN_PERSONA_SHARE = 0.01
MIN_SPREAD = 0.1  # of a behaviour feature, in its own units
BLOCK_WEIGHTS = {"events": 0.3, "categories": 1.0, "queries": 0.2, "behaviour": 0.15}
# The price level a shopper looks at weighs more than the rest of behaviour: it is what tells budget-conscious
# from luxury-seeking shoppers of the same categories, and what they click in a listing follows it.
PRICE_WEIGHT = 0.5
COLD_START_PRIOR = 10.0  # shoppers' worth of the general mixture every cold-start table entry starts from
MIN_SIGNAL_SHOPPERS = 5
STARTS = 10  # EM starts per k: the mixture over items has many local optima, and the best of 3 lands in a poor one often
FOLDS = 2  # with items, k is chosen by the log-likelihood of held-out shoppers over this many folds
MAX_ITEMS = 20_000  # items with a taste of their own in the item term; the rest share one
ITEM_PRIOR = 0.5  # pseudo-count of every item in every persona's item distribution


class ItemCounts:
    """Shoppers' recent items as a sparse shopper x item count matrix over a vocabulary (the last column: any
    item outside it), kept as (row, column) pairs: plain numpy, no scipy in the Lambda runtime."""

    def __init__(self, items: Sequence[Sequence[str]], vocabulary: Sequence[str]):
        index = {item: j for j, item in enumerate(vocabulary)}
        self.columns = len(vocabulary) + 1
        rows, cols = [], []
        for i, shopper_items in enumerate(items):
            found = token_columns(shopper_items, index, len(vocabulary))
            rows += [i] * len(found)
            cols += found
        self.n = len(items)
        self.rows, self.cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)

    def take(self, shoppers: np.ndarray) -> ItemCounts:
        """The counts of the given shoppers (row indices, ascending), in that order."""
        out = ItemCounts([], ())
        position = np.full(self.n, -1)
        position[shoppers] = np.arange(len(shoppers))
        kept = position[self.rows] >= 0
        out.columns, out.n = self.columns, len(shoppers)
        out.rows, out.cols = position[self.rows[kept]], self.cols[kept]
        return out

    def log_likelihood(self, item_log: np.ndarray) -> np.ndarray:
        """Sum over each shopper's items of log P(item | persona): (n, K) for item_log (K, columns)."""
        out = np.zeros((self.n, item_log.shape[0]))
        np.add.at(out, self.rows, item_log[:, self.cols].T)
        return out

    def persona_log(self, r: np.ndarray) -> np.ndarray:
        """Each persona's log item distribution given responsibilities r (n, K), smoothed by ITEM_PRIOR."""
        counts = np.zeros((r.shape[1], self.columns))
        for k in range(r.shape[1]):
            counts[k] = np.bincount(self.cols, weights=r[self.rows, k], minlength=self.columns)
        counts += ITEM_PRIOR
        return np.log(counts / counts.sum(axis=1, keepdims=True))


class Fit:
    """One fitted mixture: shares, means, variances (standardized space), the personas' log item distributions
    (None without items), log-likelihood and BIC."""

    def __init__(self, weights: np.ndarray, means: np.ndarray, variances: np.ndarray, loglik: float, n: int,
                 item_log: np.ndarray | None = None):
        self.weights, self.means, self.variances, self.loglik = weights, means, variances, loglik
        self.item_log = item_log
        k, d = means.shape
        parameters = k * (d + 1) + k - 1 + (0 if item_log is None else k * (item_log.shape[1] - 1))
        self.bic = -2.0 * loglik + parameters * math.log(max(n, 2))

    def responsibilities(self, z: np.ndarray, items: ItemCounts | None = None) -> np.ndarray:
        log = _joint_log(z, self.weights, self.means, self.variances, items, self.item_log)
        log -= log.max(axis=1, keepdims=True)
        p = np.exp(log)
        return p / p.sum(axis=1, keepdims=True)


def feature_space(shoppers: Sequence[ShopperState], item_rows: Iterable[Mapping[str, Any]],
                  query_rows: Iterable[Mapping[str, Any]]) -> FeatureSpace:
    """The category vocabulary (most engaged categories), query-word vectors (co-search data) and per-category
    price quantiles (the items table)."""
    totals: Counter = Counter()
    for s in shoppers:
        totals.update(s.category_affinity)
    return feature_space_of(totals, item_rows, query_rows)


def feature_space_of(category_totals: Counter, item_rows: Iterable[Mapping[str, Any]],
                     query_rows: Iterable[Mapping[str, Any]]) -> FeatureSpace:
    """feature_space from the shoppers' category engagements summed (category -> weighed engagements)."""
    # The most engaged, ties by name: the same vocabulary whatever order the shoppers were summed in.
    most = sorted(category_totals.items(), key=lambda total: (-total[1], total[0]))[:MAX_CATEGORIES]
    categories = tuple(sorted(c for c, _ in most))
    prices: dict[str, list[float]] = defaultdict(list)
    item_category: dict[str, str] = {}
    for row in item_rows:
        price, category = row.get("price"), row.get("category")
        if isinstance(price, (int, float)) and price >= 0:
            prices["*"].append(float(price))
            if category:
                prices[str(category)].append(float(price))
        if category:
            item_category[str(row.get("item_id"))] = str(category)
    grid = np.linspace(0, 1, PRICE_QUANTILES)
    quantiles = {c: np.quantile(np.asarray(p), grid) for c, p in prices.items() if len(p) >= 5}
    return FeatureSpace(categories, query_vectors(query_rows), quantiles)


def query_vectors(query_rows: Iterable[Mapping[str, Any]], dims: int = QUERY_DIMS) -> dict[str, np.ndarray]:
    """Word vectors from co-search data: words are alike when the items shoppers clicked, carted or bought after
    searching them are alike. The word x word co-occurrence through items, normalized like a cosine, is
    factored into its top `dims` eigenvectors."""
    by_item: dict[str, Counter] = defaultdict(Counter)
    frequency: Counter = Counter()
    for row in query_rows:
        words = tokens(str(row.get("query", "")))
        if not words:
            continue
        for name, value in row.items():
            if len(name) > 2 and name[1] == ":" and name[0] in "cap" and isinstance(value, (int, float)):
                for w in words:
                    by_item[name[2:]][w] += float(value)
                    frequency[w] += float(value)
    vocabulary = [w for w, _ in frequency.most_common(MAX_TOKENS)]
    if len(vocabulary) <= dims:
        return {}
    index = {w: i for i, w in enumerate(vocabulary)}
    co = np.zeros((len(vocabulary), len(vocabulary)))
    for counts in by_item.values():
        ids = [index[w] for w in counts if w in index]
        if not ids:
            continue
        v = np.log1p(np.array([counts[vocabulary[i]] for i in ids]))
        co[np.ix_(ids, ids)] += np.outer(v, v)
    degree = np.sqrt(np.clip(np.diag(co), 1e-9, None))
    normalized = co / degree[:, None] / degree[None, :]
    values, vectors = np.linalg.eigh(normalized)
    top = np.argsort(values)[::-1][:dims]
    embedding = vectors[:, top] * np.sqrt(np.clip(values[top], 0, None))[None, :]
    norms = np.linalg.norm(embedding, axis=1)
    return {w: embedding[i] / norms[i] for i, w in enumerate(vocabulary) if norms[i] > 1e-9}


def standardization(x: np.ndarray, space: FeatureSpace) -> tuple[np.ndarray, np.ndarray]:
    """Center and scale (with the block weights folded in) that standardize raw features. Shares (events,
    categories) and query vectors keep their common scale; behaviour features, each on its own, are scaled
    to unit variance, the price percentile weighed by PRICE_WEIGHT."""
    center = x.mean(axis=0)
    spread = np.ones(x.shape[1])
    behaviour = space.blocks["behaviour"]
    # Floored: a feature that barely varied when the model was built (prices before any were known) must not
    # make every later shopper who differs on it look infinitely far from every persona.
    spread[behaviour] = np.maximum(x[:, behaviour].std(axis=0), MIN_SPREAD)
    weight = np.ones(x.shape[1])
    for block, part in space.blocks.items():
        weight[part] = BLOCK_WEIGHTS[block]
    weight[behaviour.start + BEHAVIOUR.index("price_percentile")] = PRICE_WEIGHT
    return center, spread / np.maximum(weight, 1e-6)


def fit_mixture(z: np.ndarray, k: int, *, seed: int = 0, iterations: int = 100, tolerance: float = 1e-3,
                items: ItemCounts | None = None, start: np.ndarray | None = None) -> Fit:
    """A k-component mixture of the rows of z (spherical Gaussians) and, given `items`, of the shoppers' items
    (multinomials; the features' log-likelihood then weighed by FEATURE_WEIGHT), by EM from a k-means++ start, or
    from `start`: responsibilities (n, k), such as the previous model's."""
    n = len(z)
    # A persona is never tighter than a share of the data's spread: else one shopper alone makes a "persona" whose
    # likelihood runs to infinity, and it wins the BIC.
    floor = max(MIN_VARIANCE, VARIANCE_FLOOR * float(z.var(axis=0).mean()))
    item_log = None
    if start is not None:
        weights, means, variances = _gaussians(z, start, floor)
        if items is not None:
            item_log = items.persona_log(start)
    else:
        means = _kmeans_plus_plus(z, k, np.random.default_rng(seed))
        variances = np.tile(np.maximum(z.var(axis=0), floor), (k, 1))
        weights = np.full(k, 1.0 / k)
        if items is not None:  # the start's items: each shopper's to the nearest k-means++ centre
            nearest = np.argmin(((z[:, None, :] - means[None, :, :]) ** 2).sum(axis=2), axis=1)
            item_log = items.persona_log(np.eye(k)[nearest])
    previous = -np.inf
    loglik = previous
    for _ in range(iterations):
        log = _joint_log(z, weights, means, variances, items, item_log)
        total = _log_sum(log)
        loglik = float(total.sum())
        r = np.exp(log - total[:, None])
        weights, means, variances = _gaussians(z, r, floor)
        if items is not None:
            item_log = items.persona_log(r)
        # Per shopper, not relative to the total: the items' log-likelihood is large beside what EM still gains.
        if loglik - previous < tolerance * n:
            break
        previous = loglik
    return Fit(weights, means, variances, loglik, n, item_log)


def best_fit(z: np.ndarray, k: int, *, seed: int = 0, items: ItemCounts | None = None,
             starts: Sequence[np.ndarray] = ()) -> Fit:
    """The k-persona fit with the highest log-likelihood of STARTS EM runs, seeded seed, seed + 1, ...: EM finds a
    local optimum, so the better of a few k-means++ starts. `starts`, responsibilities (n, k) such as the previous
    personas' (starts_near), are more starts: a rebuild then keeps the previous personas, moved to today's shoppers,
    unless a fresh start explains the shoppers better."""
    fits = [fit_mixture(z, k, seed=seed + s, items=items) for s in range(STARTS)]
    fits += [fit_mixture(z, k, items=items, start=start) for start in starts]
    return max(fits, key=lambda f: f.loglik)


def choose_k(z: np.ndarray, ks: Iterable[int], *, seed: int = 0, passed_over: dict[int, str] | None = None,
             items: ItemCounts | None = None, start: np.ndarray | None = None) -> tuple[Fit, dict[int, float]]:
    """The fit with the lowest criterion among `ks` (each k needs at least 5 shoppers per persona, and a fit whose
    smallest persona holds fewer than 3 shoppers or 1% of them is passed over), and every kept k's criterion:
    the BIC, or with `items` the held-out deviance (-2 x the log-likelihood of each fold's shoppers under the fit
    to the others'; the BIC counts every persona's every item as a parameter and so always chooses the fewest
    personas). `passed_over`, when given, receives each k of `ks` that was not kept and why. `start` (n, k0): the
    shoppers' responsibilities under the previous model, more starts for k0 - 1, k0 and k0 + 1 (starts_near)."""
    fits: dict[int, Fit] = {}
    starts: dict[int, list[np.ndarray]] = {}  # each k's starts from the previous personas, for its fit and its folds
    smallest_allowed = max(MIN_PERSONA_SHOPPERS, MIN_PERSONA_SHARE * len(z))
    skipped: dict[int, str] = {} if passed_over is None else passed_over
    for k in ks:
        if k < 2:
            continue
        if 5 * k > len(z):
            skipped[k] = "fewer than 5 shoppers per persona"
            continue
        starts[k] = starts_near(start, z, k)
        fit = best_fit(z, k, seed=seed, items=items, starts=starts[k])
        # A persona must stand for a group of shoppers, not a handful.
        if fit.weights.min() * len(z) >= smallest_allowed:
            fits[k] = fit
        else:
            skipped[k] = f"a persona of fewer than {smallest_allowed:g} shoppers"
    if not fits:
        fits[1] = fit_mixture(z, 1, seed=seed, items=items)
    criterion = {k: f.bic if items is None else held_out_deviance(z, k, items, seed=seed, starts=starts.get(k, []))
                 for k, f in fits.items()}
    best = min(fits, key=criterion.__getitem__)
    return fits[best], {k: round(c, 1) for k, c in criterion.items()}


def held_out_deviance(z: np.ndarray, k: int, items: ItemCounts, *, seed: int = 0,
                      starts: Sequence[np.ndarray] = ()) -> float:
    """-2 x the log-likelihood of each of FOLDS folds of the shoppers under the k-persona fit to the others (each fit
    also from `starts`' rows of the others, as best_fit)."""
    fold = np.random.default_rng(seed).integers(0, FOLDS, len(z))
    total = 0.0
    for f in range(FOLDS):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if len(train) < k or not len(test):
            continue
        fit = best_fit(z[train], k, seed=seed, items=items.take(train), starts=[start[train] for start in starts])
        log = _joint_log(z[test], fit.weights, fit.means, fit.variances, items.take(test), fit.item_log)
        total += float(_log_sum(log).sum())
    return -2.0 * total


def match_ids(previous: PersonaModel | None, means_raw: np.ndarray, names: list[str]) -> list[int]:
    """Persona ids for new personas (raw-space means): each takes the id of the nearest previous persona not
    already taken (over the features both models share), the rest new ids."""
    k = len(means_raw)
    if previous is None:
        return list(range(k))
    old_names = previous.space.names
    shared = [n for n in names if n in set(old_names)]
    new_cols = [names.index(n) for n in shared]
    old_cols = [old_names.index(n) for n in shared]
    old_raw = previous.means * previous.scale + previous.center
    spread = np.maximum(np.abs(previous.scale[old_cols]), 1e-6)
    pairs = sorted((float(np.sum(((means_raw[i, new_cols] - old_raw[j, old_cols]) / spread) ** 2)), i, j)
                    for i in range(k) for j in range(previous.k))
    ids: dict[int, int] = {}
    taken: set[int] = set()
    for _, i, j in pairs:
        if i not in ids and j not in taken:
            ids[i] = previous.ids[j]
            taken.add(j)
    next_id = max(previous.ids, default=-1) + 1
    for i in range(k):
        if i not in ids:
            ids[i] = next_id
            next_id += 1
    return [ids[i] for i in range(k)]


def refine(model: PersonaModel, x: np.ndarray,
           items: Sequence[Sequence[str]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mini-batch k-means step on recent shoppers' raw features (and, given, their recent items): each persona's
    mean moves toward the shoppers it is responsible for, at a rate of their mass over all the mass it has
    absorbed. Returns the new means, counts and shares."""
    if len(x) == 0:
        return model.means, model.counts, model.weights
    return refined(model, *refine_sums(model, x, items))


def refine_sums(model: PersonaModel, x: np.ndarray,
                items: Sequence[Sequence[str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What some recent shoppers bring a refine, summed (so shoppers can come a chunk at a time): each persona's
    mass (their responsibilities) and the mass-weighted sum of their standardized features."""
    r = model.responsibilities(x, items)
    return r.sum(axis=0), r.T @ model.standardize(x)


def refined(model: PersonaModel, mass: np.ndarray, moved: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The means, counts and shares after a refine that brought `mass` and `moved` (refine_sums, summed)."""
    counts = model.counts + mass
    rate = np.where(counts > 0, mass / np.maximum(counts, 1e-9), 0.0)
    batch_means = moved / np.maximum(mass, 1e-9)[:, None]
    means = model.means + rate[:, None] * (batch_means - model.means)
    weights = counts / counts.sum()
    return means, counts, weights


def cold_start_tables(assigned: Iterable[tuple[ShopperState, np.ndarray]],
                      weights: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """P(persona | weak signal) for age bands, locations, stated interests and referral sources, shrunk toward
    the general mixture, from each shopper with their responsibilities; values seen for fewer than
    MIN_SIGNAL_SHOPPERS shoppers are left out."""
    sums: dict[tuple[str, str], np.ndarray] = {}
    counts: Counter = Counter()
    for shopper, r in assigned:
        profile = shopper.profile or {}
        signals = []
        if isinstance(profile.get("age"), (int, float)):
            signals.append(("age", age_band(profile["age"])))
        if profile.get("location"):
            signals.append(("location", str(profile["location"])))
        signals += [("interest", str(i)) for i in profile.get("interests", ()) or ()]
        signals += [("referral", s) for s in shopper.referral_sources]
        for signal in dict.fromkeys(signals):
            sums[signal] = sums.get(signal, 0.0) + r
            counts[signal] += 1
    tables: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for (signal, value), total in sums.items():
        if counts[(signal, value)] >= MIN_SIGNAL_SHOPPERS:
            p = (total + COLD_START_PRIOR * weights) / (counts[(signal, value)] + COLD_START_PRIOR)
            tables[signal][value] = [round(float(v), 5) for v in p]
    return dict(tables)


def persona_labels(means_raw: np.ndarray, space: FeatureSpace) -> list[str]:
    """A readable description of each persona: its leading categories and the price level it looks at."""
    names = space.names
    blocks = space.blocks
    labels = []
    for mean in means_raw:
        cats = mean[blocks["categories"]]
        top = [names[blocks["categories"].start + i].split(":", 1)[1] for i in np.argsort(cats)[::-1][:2]
               if cats[i] > 0.1]
        price = mean[blocks["behaviour"].start + BEHAVIOUR.index("price_percentile")]
        level = "low prices" if price < 0.4 else "high prices" if price > 0.6 else "mid prices"
        labels.append(", ".join(top + [level]))
    return labels


def starts_near(start: np.ndarray | None, z: np.ndarray, k: int) -> list[np.ndarray]:
    """EM starts for k personas (responsibilities, n x k) from the previous model's responsibilities `start` (n, k0):
    itself for k0; for k0 + 1, each of its personas in turn split in two across its shoppers' main direction; for
    k0 - 1 (of 2 at least), its two closest personas merged; none for any other k. EM started afresh seldom finds
    what days of rebuilds have: the previous personas, with one persona more or fewer, let k move without losing
    them."""
    if start is None or abs(start.shape[1] - k) > 1:
        return []
    k0 = start.shape[1]
    if k == k0:
        return [start]
    mass = start.sum(axis=0) + 1e-10
    if k == k0 + 1:
        return [_split(start, persona, z, mass[persona]) for persona in range(k0)]
    if k0 < 3:
        return []
    means = start.T @ z / mass[:, None]
    distance = ((means[:, None, :] - means[None, :, :]) ** 2).sum(axis=2) + np.diag(np.full(k0, np.inf))
    a, b = np.unravel_index(int(np.argmin(distance)), distance.shape)
    return [np.column_stack([np.delete(start, [a, b], axis=1), start[:, a] + start[:, b]])]


def _split(start: np.ndarray, persona: int, z: np.ndarray, mass: float) -> np.ndarray:
    """`start` with `persona`'s column split in two by the side of its shoppers' main direction they lie on."""
    share = start[:, persona]
    centred = z - share @ z / mass
    spread = (centred * share[:, None]).T @ centred
    side = centred @ np.linalg.eigh(spread)[1][:, -1] > 0
    return np.column_stack([np.delete(start, persona, axis=1), share * side, share * ~side])


def _gaussians(z: np.ndarray, r: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM's M-step for the features: shares, means and spherical variances given responsibilities r (n, K)."""
    mass = r.sum(axis=0) + 1e-10
    means = (r.T @ z) / mass[:, None]
    variances = np.maximum((r.T @ (z * z)) / mass[:, None] - means * means, floor)
    # Spherical: one variance per persona. Diagonal ones chase every feature's noise and split personas along
    # whichever features happen to be least noisy, not along what makes shoppers different.
    return mass / len(z), means, np.repeat(variances.mean(axis=1, keepdims=True), z.shape[1], axis=1)


def _kmeans_plus_plus(z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [z[int(rng.integers(len(z)))]]
    distance = np.sum((z - centers[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = distance.sum()
        pick = int(rng.choice(len(z), p=distance / total)) if total > 0 else int(rng.integers(len(z)))
        centers.append(z[pick])
        distance = np.minimum(distance, np.sum((z - z[pick]) ** 2, axis=1))
    return np.array(centers)


def _joint_log(z: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray,
               items: ItemCounts | None = None, item_log: np.ndarray | None = None) -> np.ndarray:
    """log P(persona, shopper) for each row and persona (n, K): the persona's share, and the features' Gaussian,
    weighed by FEATURE_WEIGHT beside the shopper's items under the persona's item distribution when both are given."""
    log = _component_log(z, means, variances)
    if items is not None and item_log is not None:
        log = FEATURE_WEIGHT * log + items.log_likelihood(item_log)
    return log + np.log(weights)[None, :]


def _log_sum(log: np.ndarray) -> np.ndarray:
    """log sum exp of each row, without overflow."""
    top = log.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.exp(log - top).sum(axis=1))


def _component_log(z: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    # Expanded square: (z - m)^2 / v = z^2/v - 2 z m / v + m^2 / v, as three matrix products.
    precision = 1.0 / variances
    quadratic = (z * z) @ precision.T - 2.0 * z @ (means * precision).T + np.sum(means * means * precision, axis=1)
    return -0.5 * (quadratic + np.sum(np.log(2 * math.pi * variances), axis=1)[None, :])
