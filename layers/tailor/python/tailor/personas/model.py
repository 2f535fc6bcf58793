"""The persona model: personas as Gaussians over the shopper feature space and distributions over items and signals
(what each persona's shoppers engage with and where they come from, read off the shopper's recent items, referral
sources and stated profile: `persona_evidence`), the cold-start tables and the persona
adjustment vectors, as one versioned artifact the rebuild writes and Ingest and the API read.

A shopper's persona mixture is the posterior of their state as it stands (feature vector, recent items and
signals), tempered: each persona weighed by its share times its likelihood of the state raised to
EVIDENCE_POWER. Being a function of the state, it counts each piece of evidence once, follows the shopper
as their recent items change, and is the same however Kinesis batched the events that made the state.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailor.personas.features import FeatureSpace
from tailor.shopper import ShopperState

__all__ = ["EXPLORATION", "FEATURE_WEIGHT", "SIGNAL_MARK", "PersonaModel", "dominant", "mixture_vector", "persona_evidence",
           "token_columns"]

# The power a mixture raises the state's likelihood to (chosen on validation simulations): the recent items and
# signals are counted as independent tokens, which they are not, so the full posterior is overconfident.
EVIDENCE_POWER = 0.25
EXPLORATION = 0.05  # bound of the random adjustment a new item gets for each persona (log-lift units)
PROFILE_STRENGTH = 0.5  # exponent on weak profile signals' likelihood ratios at cold start
MIN_SHARE = 0.001  # mixture shares below this are dropped from stored mixtures
# What the features' log-likelihood counts beside the recent items' (chosen on a validation simulation): in full,
# the features' many correlated dimensions outvote the items, which tell personas apart far better.
FEATURE_WEIGHT = 0.03
# Beside the items, each persona is a distribution over the shopper's signals (where their visits came from, a stated
# age band, location and interests), read as tokens: no id holds a control character, so a signal's token is never
# an item's.
SIGNAL_MARK = "\x1f"
MAX_REFERRALS = 30  # a source's visits counted at most this often (as many as the recent items kept)


@dataclass
class PersonaModel:
    version: str
    space: FeatureSpace
    ids: list[int]  # persona ids: stable across rebuilds (matched to the previous model's personas)
    labels: list[str]  # a readable description of each persona
    weights: np.ndarray  # (K,) share of shoppers: the general-interest mixture
    means: np.ndarray  # (K, D) in the standardized space
    variances: np.ndarray  # (K, D)
    center: np.ndarray  # (D,) raw feature -> standardized: (x - center) / scale
    scale: np.ndarray  # (D,) includes the block weights
    counts: np.ndarray  # (K,) shoppers each persona has absorbed (the mini-batch refinement's learning rates)
    cold_start: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # signal -> value -> P(persona | it)
    adjustment_items: list[str] = field(default_factory=list)
    adjustments: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))  # (items, K)
    info: dict[str, Any] = field(default_factory=dict)  # when built/refined, k selection, fit statistics
    taste_items: list[str] = field(default_factory=list)  # items and signals with a taste of their own in `item_log`
    # (K, len(taste_items) + 1): log P(item | persona), the last column any other item; empty: no item term.
    item_log: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def __post_init__(self) -> None:
        self._row = {item: i for i, item in enumerate(self.adjustment_items)}
        self._position = {pid: k for k, pid in enumerate(self.ids)}
        self._taste_column = {item: j for j, item in enumerate(self.taste_items)}

    @property
    def k(self) -> int:
        return len(self.ids)

    # -- mixtures ------------------------------------------------------------------------------------

    def standardize(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.center) / self.scale

    def log_likelihood(self, z: np.ndarray) -> np.ndarray:
        """log N(z | persona) for standardized rows z (n, D), weighed by FEATURE_WEIGHT when the model has an item
        term: (n, K)."""
        z = np.atleast_2d(z)
        diff = z[:, None, :] - self.means[None, :, :]
        log = -0.5 * (np.sum(diff * diff / self.variances[None], axis=2)
                      + np.sum(np.log(2 * math.pi * self.variances), axis=1)[None, :])
        return FEATURE_WEIGHT * log if self.item_log.size else log

    def item_log_likelihood(self, items: Sequence[str]) -> np.ndarray:
        """The sum over a shopper's recent items and signals (`persona_evidence`) of log P(token | persona): (K,), zeros
        without an item term."""
        if not self.item_log.size or not items:
            return np.zeros(self.k)
        columns = token_columns(items, self._taste_column, len(self.taste_items))
        return self.item_log[:, columns].sum(axis=1)

    def responsibilities(self, x: np.ndarray, items: Sequence[Sequence[str]] | None = None, *,
                         power: float = 1.0) -> np.ndarray:
        """P(persona | features, recent items) for raw feature rows (n, D) and, given, each row's recent items:
        (n, K); with `power`, the posterior of the likelihood raised to it (tempered)."""
        log = self.log_likelihood(self.standardize(x))
        if items is not None:
            log += np.vstack([self.item_log_likelihood(own) for own in items])
        log = power * log + np.log(self.weights)[None, :]
        log -= log.max(axis=1, keepdims=True)
        p = np.exp(log)
        return p / p.sum(axis=1, keepdims=True)

    def mixture(self, x: np.ndarray, items: Sequence[str] = ()) -> dict[str, float]:
        """The tempered posterior of a shopper at features `x` with recent items and signals `items`
        (`persona_evidence`)."""
        return self.as_mixture(self.responsibilities(np.atleast_2d(x), [items], power=EVIDENCE_POWER)[0])

    def as_mixture(self, vector: np.ndarray) -> dict[str, float]:
        kept = {str(pid): round(float(p), 4) for pid, p in zip(self.ids, vector) if p >= MIN_SHARE}
        return kept or {str(self.ids[int(np.argmax(vector))]): 1.0}

    def general_mixture(self) -> dict[str, float]:
        """The general-interest persona: the mixture of a shopper Tailor knows nothing about."""
        return self.as_mixture(self.weights)

    def cold_start_mixture(self, profile: Mapping[str, Any] | None, referral_sources: Iterable[str] = ()) -> dict[str, float]:
        """A new shopper's default mixture from weak signals (age, location, stated interests, referral
        source): each known signal value multiplies the general mixture by its likelihood ratio, dampened."""
        log = np.log(self.weights)
        for signal, value in _signals(profile or {}, referral_sources):
            table = self.cold_start.get(signal, {})
            if value in table:
                ratio = np.asarray(table[value]) / self.weights
                log = log + PROFILE_STRENGTH * np.log(np.clip(ratio, 1e-3, None))
        p = np.exp(log - log.max())
        return self.as_mixture(p / p.sum())

    # -- adjustments ---------------------------------------------------------------------------------

    def adjustment_rows(self, items: Sequence[str]) -> np.ndarray:
        """Each item's adjustment per persona (n, K); an item without one gets a small exploratory vector,
        the same for the same item, persona and model version."""
        out = np.empty((len(items), self.k), dtype=np.float64)
        for i, item in enumerate(items):
            row = self._row.get(item)
            out[i] = self.adjustments[row] if row is not None else self.exploration(item)
        return out

    def exploration(self, item: str) -> np.ndarray:
        digest = hashlib.blake2b(f"{self.version}|{item}".encode(), digest_size=2 * self.k).digest()
        u = np.frombuffer(digest, dtype=np.uint16).astype(np.float64) / 65535.0
        return EXPLORATION * (2.0 * u - 1.0)

    def has_adjustment(self, item: str) -> bool:
        return item in self._row

    # -- storage -------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        meta = {"version": self.version, "space": self.space.to_json(), "ids": self.ids, "labels": self.labels,
                "cold_start": self.cold_start, "info": self.info}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, meta=np.array(json.dumps(meta)), weights=self.weights, means=self.means,
                            variances=self.variances, center=self.center, scale=self.scale, counts=self.counts,
                            adjustment_items=np.array(self.adjustment_items, dtype=str),
                            adjustments=self.adjustments.astype(np.float32),
                            taste_items=np.array(self.taste_items, dtype=str), item_log=self.item_log)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PersonaModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            arrays = {name: stored[name] for name in stored.files if name != "meta"}
        return cls(version=meta["version"], space=FeatureSpace.from_json(meta["space"]), ids=list(meta["ids"]),
                   labels=list(meta["labels"]), weights=arrays["weights"], means=arrays["means"],
                   variances=arrays["variances"], center=arrays["center"], scale=arrays["scale"],
                   counts=arrays["counts"], cold_start=meta["cold_start"],
                   adjustment_items=arrays["adjustment_items"].tolist(),
                   adjustments=arrays["adjustments"].astype(np.float64), info=meta.get("info", {}),
                   # Models published before the item term have none.
                   taste_items=arrays["taste_items"].tolist() if "taste_items" in arrays else [],
                   item_log=arrays.get("item_log", np.zeros((0, 0))))


def mixture_vector(mixture: Mapping[str, float] | None, model: PersonaModel) -> np.ndarray:
    """A stored mixture ({persona id: share}) as a vector over the model's personas, renormalized; shares
    of personas the model no longer has go to the general-interest mixture."""
    vector = np.zeros(model.k)
    lost = 0.0
    for pid, share in (mixture or {}).items():
        k = model._position.get(int(pid))
        if k is None:
            lost += share
        else:
            vector[k] += share
    vector += lost * model.weights
    total = vector.sum()
    return vector / total if total > 0 else model.weights.copy()


def dominant(mixture: Mapping[str, float]) -> str | None:
    return max(mixture.items(), key=lambda kv: (kv[1], kv[0]))[0] if mixture else None


def _signals(profile: Mapping[str, Any], referral_sources: Iterable[str]) -> list[tuple[str, str]]:
    out = []
    age = profile.get("age")
    if isinstance(age, (int, float)):
        out.append(("age", age_band(age)))
    if profile.get("location"):
        out.append(("location", str(profile["location"])))
    out += [("interest", str(i)) for i in profile.get("interests", ()) or ()]
    out += [("referral", str(s)) for s in dict.fromkeys(referral_sources)]
    return out


def persona_evidence(shopper: ShopperState) -> list[str]:
    """What a shopper's persona is read from beside their features: their recent items, then a token per signal (each
    referral source as often as it brought them, up to MAX_REFERRALS, and a stated age band, location and interest)."""
    tokens = list(shopper.recent_items)
    for source, visits in (shopper.referral_sources or {}).items():
        tokens += [f"{SIGNAL_MARK}referral:{source}"] * min(int(visits), MAX_REFERRALS)
    tokens += [f"{SIGNAL_MARK}{signal}:{value}" for signal, value in _signals(shopper.profile or {}, ())]
    return tokens


def token_columns(tokens: Iterable[str], column: Mapping[str, int], other: int) -> list[int]:
    """Each token's column in the personas' item distributions: an item without one is any other item (`other`), a
    signal without one says nothing (a model built before signals knows none of them)."""
    return [column.get(token, other) for token in tokens if token in column or not token.startswith(SIGNAL_MARK)]


def age_band(age: float) -> str:
    """Ages in bands of ten years: "30s"."""
    return f"{int(age) // 10 * 10}s"
