"""Team-draft interleaving (Radlinski et al. 2008): two rankers' lists merged into one, clicks credited per query.

Each round a coin decides which ranker picks first; each then adds its best item not yet shown, so neither ranker's
items sit systematically higher. A query's clicks go to the team that contributed the clicked items.

Two tests. Per shopper (`shopper_test`, the one to use when shoppers come back): each shopper's clicks on A's items
minus those on B's, summed over all their queries (`click_difference`), are independent across shoppers, as
shoppers are what is sampled, and under the null hypothesis that neither ranker is preferred they have mean 0 (the
coin makes the teams exchangeable); the one-sample Student t-test of that mean (two-sided, as scipy's ttest_1samp)
keeps every click's weight, and treats a shopper's queries as the correlated unit they are (Chapelle et al. 2012
aggregate by user likewise). Per query (`interleaving_test`): the ranker with more clicks wins the query, equal
counts (no click included) are a tie, and A's wins among the decided queries are Binomial(decided, 1/2) under the
null (the sign test, two-sided exact, as scipy's binomtest); it holds when each shopper asks one query.

Rank credit (`rank_credit`, the more sensitive): a click earns the clicked item's rank in B minus its rank in A (the
linear rank difference of optimized interleaving, Radlinski and Craswell 2013), so an item both rankers put at the
same rank earns nothing however the coin fell, and one A puts far above B earns much. Optimized interleaving asks
that clicks that depend on the slot alone earn nothing in expectation; on team draft's lists this credit does not
by itself, so each slot's credit is centred by its exact expectation over team draft's coins (`slot_baselines`),
which makes it so for any click model that ignores the items. A shopper's centred credits, summed over their
queries, go to the same `shopper_test`.

The expectations come from `slot_shares`, each slot's probability of each item under team draft's coins, exactly and
in time linear in the slots times the items: team draft's state after any slot is where each ranking's next unshown
item sits and how many picks one team leads by (what was shown is both rankings' heads up to those places), so the
paths through the coins merge into few states. The same shares give each served slot's probability of its item, the
propensity an off-policy estimate needs. A list served live carries its credits rounded at random, without bias, to
whole multiples of 1/CREDIT_SCALE (`live_credits`), so a feed id holds them exactly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["A", "B", "CREDIT_SCALE", "Interleaved", "InterleavingResult", "ShopperTestResult", "click_difference",
           "credit", "interleave", "interleaving_test", "live_credits", "rank_credit", "rank_difference",
           "shopper_test", "shopper_test_of", "sign_test", "slot_baselines", "slot_shares", "student_t_sf",
           "team_draft"]

A, B = "A", "B"
ALPHA = 0.05
CREDIT_SCALE = 256  # a live list's credits are whole multiples of 1 / CREDIT_SCALE (live_credits)


class _Coin(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class Interleaved:
    """A list served interleaved: its items with the team that put each there, what a click on each of its first
    slots earns (live_credits, times CREDIT_SCALE) and each slot's probability of its item over team draft's coins."""

    merged: list[tuple[Hashable, str]]
    credits: list[int]
    probabilities: list[float]


@dataclass(frozen=True)
class InterleavingResult:
    """Queries won by each ranker, the ties, the sign test's p-value and the preferred ranker (None when even)."""

    wins_a: int
    wins_b: int
    ties: int
    p_value: float
    preferred: str | None

    @property
    def delta(self) -> float:
        """(wins A - wins B) / queries: > 0 prefers A."""
        queries = self.wins_a + self.wins_b + self.ties
        return (self.wins_a - self.wins_b) / queries if queries else 0.0


@dataclass(frozen=True)
class ShopperTestResult:
    """The t-test of the per-shopper click differences (A's minus B's): their mean, its standard error, the
    two-sided p-value and the ranker preferred at the test's alpha (None when the test does not reject)."""

    shoppers: int
    mean: float
    standard_error: float
    p_value: float
    preferred: str | None


def team_draft(ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable], length: int, coin: _Coin
               ) -> list[tuple[Hashable, str]]:
    """The interleaved list of `length` items (fewer if both rankings run out), each with the team that put it there.

    `coin.random()` < 0.5 lets A pick first in a round (random.Random and numpy Generators both have it)."""
    if length < 0:
        raise ValueError("length must not be negative")
    shown: set = set()
    merged: list[tuple[Hashable, str]] = []
    sources = {A: iter(ranking_a), B: iter(ranking_b)}
    picked = {A: 0, B: 0}
    exhausted: set[str] = set()
    while len(merged) < length and len(exhausted) < 2:
        if picked[A] != picked[B]:
            team = A if picked[A] < picked[B] else B
        else:
            team = A if coin.random() < 0.5 else B
        if team in exhausted:
            team = B if team == A else A
        item = next((candidate for candidate in sources[team] if candidate not in shown), None)
        if item is None:
            exhausted.add(team)
            continue
        shown.add(item)
        merged.append((item, team))
        picked[team] += 1
    return merged


def interleave(ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable], length: int, coin: _Coin,
               credit_slots: int) -> Interleaved:
    """The team draft of `length` items to serve, the credits of its first `credit_slots` slots and its slots'
    probabilities."""
    merged = team_draft(ranking_a, ranking_b, length, coin)
    shares = slot_shares(ranking_a, ranking_b, len(merged))
    baselines = slot_baselines(ranking_a, ranking_b, len(merged), shares)
    credits = live_credits(ranking_a, ranking_b, merged[:credit_slots], coin, baselines=baselines)
    return Interleaved(merged, credits, [shares[slot][item] for slot, (item, _) in enumerate(merged)])


def credit(interleaved: Sequence[tuple[Hashable, str]], clicked_positions: Iterable[int]) -> int:
    """+1 when A's items got more of the query's clicks, -1 when B's did, 0 for a tie."""
    a = b = 0
    for position in set(clicked_positions):
        if not 0 <= position < len(interleaved):
            raise ValueError(f"clicked position {position} is outside the interleaved list of {len(interleaved)}")
        if interleaved[position][1] == A:
            a += 1
        else:
            b += 1
    return (a > b) - (a < b)


def click_difference(interleaved: Sequence[tuple[Hashable, str]], clicked_positions: Iterable[int]) -> int:
    """The query's clicks on A's items minus its clicks on B's (a shopper's sum of these is what shopper_test tests)."""
    difference = 0
    for position in set(clicked_positions):
        if not 0 <= position < len(interleaved):
            raise ValueError(f"clicked position {position} is outside the interleaved list of {len(interleaved)}")
        difference += 1 if interleaved[position][1] == A else -1
    return difference


def rank_difference(ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable], item: Hashable) -> int:
    """The item's rank in B minus its rank in A (> 0: A ranks it higher); an item a ranking lacks ranks just past
    its end."""
    return _rank_differences(ranking_a, ranking_b)(item)


def live_credits(ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable],
                 interleaved: Sequence[tuple[Hashable, str]], coin: _Coin, scale: int = CREDIT_SCALE,
                 baselines: Sequence[float] | None = None) -> list[int]:
    """Each slot's centred rank credit times `scale`, as whole numbers (what a feed id carries): the slot's rank
    difference less its baseline (`baselines` as slot_baselines gives them), rounded down or up at random with the
    chances that keep its expectation, so that clicks that depend on the slot alone still earn nothing."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    if baselines is None:
        baselines = slot_baselines(ranking_a, ranking_b, len(interleaved))
    if len(baselines) < len(interleaved):
        raise ValueError(f"baselines has {len(baselines)} slots for an interleaved list of {len(interleaved)}")
    difference = _rank_differences(ranking_a, ranking_b)
    credits = []
    for (item, _), baseline in zip(interleaved, baselines):
        scaled = (difference(item) - baseline) * scale
        whole = math.floor(scaled)
        credits.append(whole + (coin.random() < scaled - whole))
    return credits


def slot_shares(ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable], length: int
                ) -> list[dict[Hashable, float]]:
    """Each slot's items with their probability of being put there by team_draft over its coins, exactly (as many
    slots as a list may reach, at most `length`; a slot some lists do not reach has probabilities summing below 1)."""
    if length < 0:
        raise ValueError("length must not be negative")
    rankings = {A: list(dict.fromkeys(ranking_a)), B: list(dict.fromkeys(ranking_b))}
    places = {team: {item: place for place, item in enumerate(ranking)} for team, ranking in rankings.items()}
    other = {A: B, B: A}

    def unshown(team: str, place: int, other_place: int) -> int:
        # the first place from `place` on whose item the other ranking's head (up to other_place) did not show
        ranking, elsewhere = rankings[team], places[other[team]]
        while place < len(ranking) and elsewhere.get(ranking[place], other_place) < other_place:
            place += 1
        return place

    # a state: the place of A's and of B's next unshown item, and A's picks less B's
    states: dict[tuple[int, int, int], float] = {(0, 0, 0): 1.0}
    shares: list[dict[Hashable, float]] = []
    for _ in range(length):
        following: dict[tuple[int, int, int], float] = defaultdict(float)
        slot: dict[Hashable, float] = defaultdict(float)
        for (place_a, place_b, lead), probability in states.items():
            turns = ((A, probability),) if lead < 0 else ((B, probability),) if lead > 0 else (
                (A, probability / 2), (B, probability / 2))
            for team, chance in turns:
                heads = {A: place_a, B: place_b}
                if heads[team] == len(rankings[team]):  # run out: the other team picks
                    team = other[team]
                    if heads[team] == len(rankings[team]):
                        continue  # both run out: the list ends before this slot
                item = rankings[team][heads[team]]
                heads[team] += 1
                heads[other[team]] = unshown(other[team], heads[other[team]], heads[team])
                heads[team] = unshown(team, heads[team], heads[other[team]])
                slot[item] += chance
                following[(heads[A], heads[B], lead + (1 if team == A else -1))] += chance
        if not slot:
            break
        shares.append(dict(slot))
        states = following
    return shares


def slot_baselines(ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable], length: int,
                   shares: Sequence[Mapping[Hashable, float]] | None = None) -> list[float]:
    """Each slot's rank difference averaged over team draft's coins, exactly (0 for a slot a list may not reach):
    what a click on that slot earns in expectation whatever the item. `shares` as slot_shares gives them."""
    if length < 0:
        raise ValueError("length must not be negative")
    if shares is None:
        shares = slot_shares(ranking_a, ranking_b, length)
    difference = _rank_differences(ranking_a, ranking_b)
    baselines = [math.fsum(probability * difference(item) for item, probability in slot.items())
                 for slot in list(shares)[:length]]
    return baselines + [0.0] * (length - len(baselines))


def rank_credit(ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable],
                interleaved: Sequence[tuple[Hashable, str]], clicked_positions: Iterable[int],
                baselines: Sequence[float] | None = None) -> float:
    """The query's centred rank credit (> 0 prefers A): over its clicked positions, the item's rank difference minus
    its slot's baseline (`baselines` as slot_baselines gives them for these rankings and the list's length)."""
    if baselines is None:
        baselines = slot_baselines(ranking_a, ranking_b, len(interleaved))
    if len(baselines) < len(interleaved):
        raise ValueError(f"baselines has {len(baselines)} slots for an interleaved list of {len(interleaved)}")
    difference = _rank_differences(ranking_a, ranking_b)
    total = 0.0
    for position in set(clicked_positions):
        if not 0 <= position < len(interleaved):
            raise ValueError(f"clicked position {position} is outside the interleaved list of {len(interleaved)}")
        total += difference(interleaved[position][0]) - baselines[position]
    return total


def shopper_test(differences: Iterable[float], alpha: float = ALPHA) -> ShopperTestResult:
    """The one-sample t-test that the shoppers' click differences (A's minus B's over each one's queries) average 0."""
    _alpha(alpha)
    values = [float(v) for v in differences]
    count = len(values)
    if any(not math.isfinite(v) for v in values):
        raise ValueError("differences must be finite numbers")
    mean = math.fsum(values) / count if count else 0.0
    variance = math.fsum((v - mean) ** 2 for v in values) / (count - 1) if count > 1 else 0.0
    return _t_test(count, mean, variance, alpha)


def shopper_test_of(count: int, total: float, squares: float, alpha: float = ALPHA) -> ShopperTestResult:
    """shopper_test from the differences' sufficient statistics: how many, their sum and their sum of squares (what
    an experiment's statistics rows keep of each unit's credit)."""
    _alpha(alpha)
    if count < 0 or not all(map(math.isfinite, (total, squares))):
        raise ValueError("count must not be negative, total and squares finite")
    mean = total / count if count else 0.0
    variance = max(0.0, (squares - total * mean) / (count - 1)) if count > 1 else 0.0
    return _t_test(count, mean, variance, alpha)


def _t_test(count: int, mean: float, variance: float, alpha: float) -> ShopperTestResult:
    if count < 2:
        return ShopperTestResult(count, mean, math.inf, 1.0, None)
    error = math.sqrt(variance / count)
    if error == 0.0:
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        p_value = min(1.0, 2.0 * student_t_sf(abs(mean) / error, count - 1))
    preferred = (A if mean > 0 else B) if p_value < alpha else None
    return ShopperTestResult(count, mean, error, p_value, preferred)


def _alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError("alpha must be between 0 and 1")


def interleaving_test(credits: Iterable[int]) -> InterleavingResult:
    """The sign test over the queries' credits."""
    wins_a = wins_b = ties = 0
    for value in credits:
        if value > 0:
            wins_a += 1
        elif value < 0:
            wins_b += 1
        else:
            ties += 1
    preferred = A if wins_a > wins_b else B if wins_b > wins_a else None
    return InterleavingResult(wins_a, wins_b, ties, sign_test(wins_a, wins_b), preferred)


def sign_test(wins_a: int, wins_b: int) -> float:
    """Two-sided exact binomial p-value of `wins_a` successes in wins_a + wins_b trials at probability 1/2."""
    if wins_a < 0 or wins_b < 0:
        raise ValueError("wins must not be negative")
    trials = wins_a + wins_b
    if trials == 0:
        return 1.0
    low = min(wins_a, wins_b)
    if low * 2 == trials:
        return 1.0
    log_half = trials * math.log(0.5)
    log_lgamma_n = math.lgamma(trials + 1)
    tail = sum(math.exp(log_lgamma_n - math.lgamma(k + 1) - math.lgamma(trials - k + 1) + log_half)
               for k in range(low + 1))
    return min(1.0, 2.0 * tail)


def _rank_differences(ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable]):
    """rank_difference for the pair, with each ranking's ranks looked up rather than searched."""
    ranks = []
    for ranking in (ranking_a, ranking_b):
        found: dict[Hashable, int] = {}
        for position, item in enumerate(ranking, 1):
            found.setdefault(item, position)
        ranks.append((found, len(ranking) + 1))
    (in_a, past_a), (in_b, past_b) = ranks
    return lambda item: in_b.get(item, past_b) - in_a.get(item, past_a)


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom (t >= 0), by the regularised incomplete beta function."""
    if df <= 0:
        raise ValueError("df must be positive")
    if t < 0:
        raise ValueError("t must not be negative")
    square = t * t
    if square < df:  # 1 - df / (df + t^2) computed as such keeps its digits for small t
        return 0.5 - 0.5 * _incomplete_beta(0.5, df / 2.0, square / (df + square))
    return 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + square))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), by its continued fraction (modified Lentz), on the side where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    value = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            value *= c * d
        if abs(c * d - 1.0) < 1e-15:
            return value
    raise ArithmeticError("the incomplete beta's continued fraction did not converge")
