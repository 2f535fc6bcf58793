"""The per-session bandit over item clusters: prior appeal, Beta posteriors from clicks and ignores, Thompson
sampling with an exploration floor and expansion toward clusters near the ones the shopper reaches into.

Prior. A cluster's appeal to a shopper is its global click rate tilted by how well its trait descriptors match the
shopper's trait posteriors (exp(persona_weight x descriptor . (trait means - 0.5))), shrunk toward the global rate
by how little trait evidence there is (weight evidence / (evidence + shrink)), then multiplied by the shopper's
category lift to the power `history_weight`: how much likelier than the shop's average shopper their own engagements
(their row's category affinity) make the cluster's categories (ItemClusters.category_lift). The session's prior for
the cluster is Beta(appeal x strength, (1 - appeal) x strength).

Evidence. A session keeps, per cluster it was shown, the clicks (successes) and ignores (failures) its feeds drew:
an unclicked impression above the feed's last click is a full failure, one below it (or in a feed with no click)
was rendered and not engaged and counts `ignore_weight`. Before each new feed's evidence the old decays by `decay`,
so an interest the shopper left fades. Only the evidence is stored (the prior is recomputed when serving), rounded,
for clusters shown: a session row grows by a few bytes per cluster.

Selection. Each slot draws a cluster by Thompson sampling: with probability `floor` one uniformly at random (no
cluster is shut out for good), else the argmax of a draw of every cluster's log rate (plus, in a list, the ranking's
score of the best item the cluster has left: tailor.clusters.slate), whose successes include `expansion` x
similarity x the clicks of its neighbours. The draws come from the posterior sharpened by `sharpness` (same mean,
variance / sharpness: Chapelle and Li's variance scaling), and with `active` only the clusters of highest prior, those
shown and the neighbours of those clicked compete. Each cluster's chance per slot is floor / K + (1 - floor) x
P(argmax), estimated from `samples` draws: the slot probability logged with the served list for off-policy
estimates. The defaults are the ones `tailor evaluate adaptation --tune` chose on its validation simulation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailor.clusters.model import TRAIT_NAMES, ItemClusters

__all__ = ["BanditParams", "ClusterPosteriors", "Selection", "encoded_size", "log_rate_draws", "prior_appeal",
           "sampled_chances", "select_clusters", "shopper_appeal",
           "slot_chances"]

MAX_RATE = 0.95
MIN_RATE = 1e-4
DIGITS = 2
_SCALE = 10**DIGITS


@dataclass(frozen=True)
class BanditParams:
    """The bandit's knobs (chosen on a validation simulation: tailor evaluate adaptation)."""

    prior_strength: float = 10.0
    shrink: float = 5.0
    persona_weight: float = 3.0
    ignore_weight: float = 0.15
    click_weight: float = 1.0
    decay: float = 0.8
    floor: float = 0.01
    expansion: float = 0.5
    sharpness: float = 64.0
    active: int = 0
    surface_rate: float = 0.15
    samples: int = 64
    history_weight: float = 0.2
    history_smoothing: float = 20.0

    def __post_init__(self) -> None:
        for name in ("prior_strength", "shrink", "persona_weight", "ignore_weight", "click_weight", "expansion",
                     "history_weight", "history_smoothing"):
            if getattr(self, name) < 0:
                raise ValueError(f"bandit: {name} must not be negative")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError("bandit: decay must be in (0, 1]")
        if self.sharpness < 1.0:
            raise ValueError("bandit: sharpness must be at least 1")
        for name in ("floor", "surface_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"bandit: {name} must be in [0, 1]")
        if self.active < 0:
            raise ValueError("bandit: active must not be negative")
        if self.samples < 1:
            raise ValueError("bandit: samples must be at least 1")


def prior_appeal(clusters: ItemClusters, traits: Mapping[str, Sequence[float]] | None,
                 params: BanditParams = BanditParams(), categories: Mapping[str, float] | None = None) -> np.ndarray:
    """Each cluster's prior click rate for a shopper with trait posteriors `traits` ({name: [alpha, beta]}) and
    category affinity `categories` (their row's: category -> weighed engagements)."""
    appeal = _trait_appeal(clusters, traits, params)
    if not categories or params.history_weight == 0:
        return appeal
    lift = clusters.category_lift(categories, params.history_smoothing)
    return np.clip(appeal * lift ** params.history_weight, MIN_RATE, MAX_RATE)


def shopper_appeal(clusters: ItemClusters, traits: Mapping[str, Sequence[float]] | None,
                   params: BanditParams = BanditParams(), categories: Mapping[str, float] | None = None) -> np.ndarray:
    """prior_appeal for a shopper row's traits and category affinity, the traits left out where they do not parse."""
    affinity = categories if isinstance(categories, Mapping) else None
    try:
        return prior_appeal(clusters, traits or None, params, affinity)
    except (TypeError, ValueError, IndexError):
        return prior_appeal(clusters, None, params, affinity)


@dataclass
class ClusterPosteriors:
    """A session's evidence per cluster shown ({cluster: [successes, failures]}), and the last feed's clusters by
    position with what its clicks settled (so Ingest can take the feed's clicks one event at a time)."""

    evidence: dict[str, list[float]] = field(default_factory=dict)
    feed: str | None = None
    shown: list[str | None] = field(default_factory=list)
    clicked: set[int] = field(default_factory=set)

    # -- the session row's encoding --------------------------------------------------------------------------------

    def encode(self) -> str:
        """One string, so a session row copies and serializes one value rather than a map of lists:
        "cluster,successes,failures,..." (counts in hundredths), then, once a feed was seen, "|" the clicked
        positions ("2,5"), "|" the feed's clusters by position, each followed by "," (none: empty), "|" the feed id
        ("c0003,100,45,c0007,0,15|1|c0003,c0007,,|feed-1")."""
        parts: list[str] = []
        for cluster, (s, f) in self.evidence.items():
            parts += (cluster, str(_kept(s)), str(_kept(f)))
        text = ",".join(parts)
        if self.feed is None:
            return text
        # Each position ends in a comma, so a feed of one slot out of every cluster is not read back as none.
        shown = ",".join([c or "" for c in self.shown]) + "," if self.shown else ""
        return f"{text}|{','.join(map(str, sorted(self.clicked)))}|{shown}|{self.feed}"

    @classmethod
    def decode(cls, data: str | Mapping[str, Any] | None) -> ClusterPosteriors:
        """encode()'s string, or the map rows held before it ({"e": {cluster: [s, f]}, "f": feed id, "p": clusters
        by position ("" for none), "k": clicked}): sessions outlive a deploy."""
        if not data:
            return cls()
        if not isinstance(data, str):
            evidence = {str(c): [float(v[0]), float(v[1])] for c, v in dict(data.get("e") or {}).items()}
            return cls(evidence=evidence, feed=data.get("f"), shown=[c or None for c in data.get("p") or []],
                       clicked={int(k) for k in data.get("k") or []})
        counts, *rest = data.split("|", 3)
        values = counts.split(",") if counts else []
        if len(values) % 3:
            raise ValueError("clusters: the evidence needs a cluster, successes and failures each")
        evidence = {c: [int(s) / _SCALE, int(f) / _SCALE] for c, s, f in zip(values[::3], values[1::3], values[2::3])}
        if not rest:
            return cls(evidence=evidence)
        clicked, shown, feed = rest  # fewer parts: a ValueError, which read() takes as no evidence
        return cls(evidence=evidence, feed=feed, shown=[c or None for c in shown.split(",")[:-1]],
                   clicked={int(k) for k in clicked.split(",")} if clicked else set())

    @classmethod
    def read(cls, data: Any) -> ClusterPosteriors:
        """decode a session row's field, or no evidence where it does not parse."""
        try:
            return cls.decode(data)
        except (TypeError, ValueError, IndexError, AttributeError):
            return cls()

    def round_as_kept(self) -> None:
        """The evidence rounded as encode() keeps it: what a round trip through the session row leaves."""
        for counts in self.evidence.values():  # _kept, inline: Ingest rounds at every feed event
            counts[0] = int(counts[0] * _SCALE + 0.5) / _SCALE
            counts[1] = int(counts[1] * _SCALE + 0.5) / _SCALE

    # -- evidence --------------------------------------------------------------------------------------------------

    def impression(self, feed: str, shown: Sequence[str | None], params: BanditParams = BanditParams()) -> None:
        """A feed rendered with these clusters by position: old evidence decays, every slot counts as ignored
        until its clicks come."""
        if feed == self.feed:
            return  # the same feed's impression again (a re-render): its evidence is in already
        for counts in self.evidence.values():
            counts[0] *= params.decay
            counts[1] *= params.decay
        self.feed, self.shown, self.clicked = feed, list(shown), set()
        for cluster in shown:
            if cluster is not None:
                self._add(cluster, 0.0, params.ignore_weight)

    def click(self, feed: str | None, position: int, params: BanditParams = BanditParams()) -> None:
        """A click on the last feed's slot `position`: a success, and the unclicked slots above it full failures."""
        if feed != self.feed or not 0 <= position < len(self.shown) or position in self.clicked:
            return
        before = max(self.clicked, default=-1)
        cluster = self.shown[position]
        if cluster is not None:
            was = 1.0 if position < before else params.ignore_weight
            self._add(cluster, params.click_weight, -was)
        for q in range(before + 1, position):
            other = self.shown[q]
            if q not in self.clicked and other is not None:
                self._add(other, 0.0, 1.0 - params.ignore_weight)
        self.clicked.add(position)

    def observe(self, feed: str, shown: Sequence[str | None], clicks: Iterable[int],
                params: BanditParams = BanditParams()) -> None:
        """A whole feed and its clicks at once (the same result as impression() then click() per click)."""
        self.impression(feed, shown, params)
        for position in sorted(set(clicks)):
            self.click(feed, position, params)

    def _add(self, cluster: str, success: float, failure: float) -> None:
        counts = self.evidence.get(cluster)
        if counts is None:
            counts = self.evidence[cluster] = [0.0, 0.0]
        s, f = counts[0] + success, counts[1] + failure
        counts[0] = s if s > 0.0 else 0.0  # max(0.0, s), without its call: Ingest adds at every feed event
        counts[1] = f if f > 0.0 else 0.0

    # -- the posterior ---------------------------------------------------------------------------------------------

    def beta(self, clusters: ItemClusters, prior: np.ndarray,
             params: BanditParams = BanditParams()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every cluster's Beta(alpha, beta) and the expansion part of alpha (successes lent by neighbours)."""
        index = clusters.index
        successes = np.zeros(len(clusters.ids))
        failures = np.zeros(len(clusters.ids))
        for cluster, (s, f) in self.evidence.items():
            i = index.get(cluster)
            if i is not None:  # a cluster a rebuild retired says nothing about the new ones
                successes[i] += s
                failures[i] += f
        lent = np.zeros(len(clusters.ids))
        if params.expansion:
            for cluster, (s, _) in self.evidence.items():
                if s > 0 and cluster in index:
                    for other, similarity in clusters.neighbours.get(cluster, ()):
                        j = index.get(other)
                        if j is not None and similarity > 0:
                            lent[j] += params.expansion * similarity * s
        # The prior's level is the shop's click rate over every surface; the evidence is the feed's: its relative
        # appeal carries over, its level is the surface's.
        rate = np.clip(prior / max(float(np.mean(prior)), MIN_RATE) * params.surface_rate, MIN_RATE, MAX_RATE)
        alpha = rate * params.prior_strength + successes + lent
        beta = (1.0 - rate) * params.prior_strength + failures
        return np.maximum(alpha, 1e-3), np.maximum(beta, 1e-3), lent

    def in_play(self, clusters: ItemClusters, prior: np.ndarray, params: BanditParams = BanditParams()) -> np.ndarray:
        """The clusters the draws compete among (all when `params.active` is 0): the `active` of highest prior
        appeal, every cluster the session was shown, and the neighbours of those it clicked; the rest get the
        floor's share alone until they come into play."""
        if not params.active:
            return np.ones(len(clusters.ids), dtype=bool)
        index = clusters.index
        mask = np.zeros(len(clusters.ids), dtype=bool)
        mask[np.argsort(-prior, kind="stable")[: params.active]] = True
        for cluster, (s, _) in self.evidence.items():
            i = index.get(cluster)
            if i is None:
                continue
            mask[i] = True
            if s > 0:
                for other, _ in clusters.neighbours.get(cluster, ()):
                    if other in index:
                        mask[index[other]] = True
        return mask

    def reason(self, clusters: ItemClusters, cluster: str, prior: np.ndarray,
               params: BanditParams = BanditParams()) -> dict[str, Any]:
        """Why a cluster is where it is: its prior appeal, this session's clicks and ignores, what neighbours lent."""
        i = clusters.index[cluster]
        s, f = self.evidence.get(cluster, (0.0, 0.0))
        _, _, lent = self.beta(clusters, prior, params)
        if s > 0:
            why = "clicks"
        elif lent[i] > 0:
            why = "near clusters clicked"
        elif f > 0:
            why = "ignores"
        else:
            why = "prior"
        return {"cluster": cluster, "why": why, "prior": round(float(prior[i]), 4), "clicks": round(s, 2),
                "ignores": round(f, 2), "expansion": round(float(lent[i]), 2)}


@dataclass(frozen=True)
class Selection:
    """The clusters chosen for a feed's slots and each slot's probability of its cluster being chosen."""

    clusters: tuple[str, ...]
    probabilities: tuple[float, ...]
    distribution: Mapping[str, float]


def select_clusters(clusters: ItemClusters, prior: np.ndarray, posteriors: ClusterPosteriors, slots: int,
                    rng: np.random.Generator, params: BanditParams = BanditParams(),
                    eligible: np.ndarray | None = None, offsets: np.ndarray | None = None) -> Selection:
    """Thompson sampling of a cluster per slot among the `eligible` ones (a boolean mask; default all), each draw's
    winner the cluster of the highest log(sampled rate) + `offsets` (what the ranking adds for the best item the
    cluster has left; default none)."""
    alpha, beta, _ = posteriors.beta(clusters, prior, params)
    chance = slot_chances(alpha, beta, rng, params, eligible=eligible, offsets=offsets,
                          playing=posteriors.in_play(clusters, prior, params))
    if not chance.any():
        return Selection((), (), {})
    picks = rng.choice(len(chance), size=slots, p=chance)
    return Selection(tuple(clusters.ids[p] for p in picks), tuple(round(float(chance[p]), 6) for p in picks),
                     {clusters.ids[i]: float(c) for i, c in enumerate(chance) if c > 0})


def slot_chances(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator,
                 params: BanditParams = BanditParams(), *, eligible: np.ndarray | None = None,
                 offsets: np.ndarray | None = None, playing: np.ndarray | None = None,
                 draws: np.ndarray | None = None) -> np.ndarray:
    """Each cluster's chance of one slot: floor / K + (1 - floor) x P(it wins a posterior draw among those
    `playing`), from `params.samples` draws (zero for clusters not eligible; all zero when none is). `draws`
    (log_rate_draws) lets the slots of one list share the draws their chances are estimated from."""
    mask = np.ones(len(alpha), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if not mask.any():
        return np.zeros(len(alpha))
    sampled = log_rate_draws(alpha, beta, rng, params) if draws is None else draws
    if offsets is not None:
        sampled = sampled + np.asarray(offsets, dtype=float)
    return sampled_chances(sampled, mask, playing, params.floor)


def sampled_chances(sampled: np.ndarray, eligible: np.ndarray, playing: np.ndarray | None,
                    floor: float) -> np.ndarray:
    """slot_chances from draws with their offsets added already (`sampled`: samples x clusters), for at least one
    `eligible` cluster: what a list's slots share, each pick moving one cluster's column."""
    competing = eligible & playing if playing is not None and (eligible & playing).any() else eligible
    wins = np.bincount(np.where(competing, sampled, -np.inf).argmax(axis=1), minlength=len(eligible))
    chance = np.where(eligible, floor / int(eligible.sum()), 0.0) + (1.0 - floor) * wins / len(sampled)
    return chance / chance.sum()


def log_rate_draws(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator,
                   params: BanditParams = BanditParams()) -> np.ndarray:
    """`params.samples` draws (rows) of every cluster's log click rate from Beta(sharpness x alpha, sharpness x
    beta): the posterior's mean with its variance / sharpness (a sharper posterior explores less)."""
    return np.log(np.maximum(rng.beta(params.sharpness * alpha, params.sharpness * beta,
                                      size=(params.samples, len(alpha))), 1e-300))


def encoded_size(posteriors: ClusterPosteriors) -> int:
    """Bytes the session row's field takes (what the cost goal counts)."""
    return len(posteriors.encode().encode())


def _kept(count: float) -> int:
    """A count in the hundredths the session row keeps. Half up by hand, not round(): Ingest rounds a session's
    evidence at every feed event it folds, and the counts are never negative."""
    return int(count * _SCALE + 0.5)


def _trait_appeal(clusters: ItemClusters, traits: Mapping[str, Sequence[float]] | None,
                  params: BanditParams) -> np.ndarray:
    """The clusters' global rates tilted by the trait posteriors, shrunk toward them by how little evidence there is."""
    base = np.clip(clusters.global_ctr, MIN_RATE, MAX_RATE)
    if not traits:
        return base
    alphas = np.array([float(traits.get(name, (1.0, 1.0))[0]) for name in TRAIT_NAMES])
    betas = np.array([float(traits.get(name, (1.0, 1.0))[1]) for name in TRAIT_NAMES])
    if (alphas <= 0).any() or (betas <= 0).any():
        raise ValueError("traits: every trait's alpha and beta must be positive")
    means = alphas / (alphas + betas)
    evidence = float(np.mean(alphas + betas - 2.0))
    centred = clusters.descriptors - clusters.descriptors.mean(axis=0)
    tilted = np.clip(base * np.exp(params.persona_weight * centred @ (means - 0.5)), MIN_RATE, MAX_RATE)
    weight = max(evidence, 0.0) / (max(evidence, 0.0) + params.shrink) if params.shrink else 1.0
    return weight * tilted + (1.0 - weight) * base
