"""Team-draft interleaving (Radlinski et al. 2008): two rankers' lists merged into one, clicks credited per query.

Each round a coin decides which ranker picks first; each then adds its best item not yet shown, so neither ranker's
items sit systematically higher. A query's clicks go to the team that contributed the clicked items: the ranker
with more wins the query, equal counts (no click included) are a tie. Over queries, the test is the sign test:
under the null hypothesis that neither ranker is preferred, a query with a winner is won by A with probability
1/2, so A's wins among the decided queries are Binomial(decided, 1/2) (two-sided exact p-value, as scipy's
binomtest).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["A", "B", "InterleavingResult", "credit", "interleaving_test", "sign_test", "team_draft"]

A, B = "A", "B"


class _Coin(Protocol):
    def random(self) -> float: ...


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
