"""Consensus over several annotators' tiered rankings of one group (numpy, no Django).

For every (group, dimension, candidate pair) the annotators' votes are counted:
for the first candidate, for the second, or tie. A policy then settles the pair:

- ``unanimous`` (the paper's benchmark rule): every annotator gives the same
  strict order; every annotator tying them makes a tie.
- ``majority``: one strict order from more than half of the annotators, with
  ties no more than ``max_tie_fraction`` of the votes; ties from more than half
  make a tie.

Anything else is unsettled. Ties are kept as ties and are never strict pairs.
Fewer than ``min_votes`` annotators settle nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Positions = dict[str, int]

POLICIES = ("unanimous", "majority")
UNSETTLED = 2  # decide_many's code for "no decision"
# Out of 3 annotators, 2 for and 1 tie still settles a pair under `majority`.
DEFAULT_MAJORITY_TIE_FRACTION = 1 / 3


def tier_positions(tiers: Sequence[Sequence[str]]) -> Positions:
    """{candidate: tier index}, 1 = the best tier."""
    return {candidate: index for index, tier in enumerate(tiers, 1) for candidate in tier}


def relation(positions: Positions, a: str, b: str) -> int:
    """+1 if a is ranked better than b, -1 if worse, 0 if tied."""
    pa, pb = positions[a], positions[b]
    return (pa < pb) - (pa > pb)


@dataclass(frozen=True)
class Votes:
    a: str
    b: str
    for_a: int = 0
    for_b: int = 0
    tie: int = 0

    @property
    def total(self) -> int:
        return self.for_a + self.for_b + self.tie


@dataclass(frozen=True)
class Policy:
    name: str = "unanimous"
    max_tie_fraction: float = 0.0
    min_votes: int = 2

    def __post_init__(self):
        if self.name not in POLICIES:
            raise ValueError(f"unknown policy {self.name!r}; expected one of {', '.join(POLICIES)}")
        if not 0 <= self.max_tie_fraction <= 1:
            raise ValueError("max_tie_fraction must be between 0 and 1")
        if self.min_votes < 1:
            raise ValueError("min_votes must be at least 1")

    @classmethod
    def named(
        cls, name: str, *, max_tie_fraction: float | None = None, min_votes: int = 2
    ) -> Policy:
        """The policy with its default tie fraction when none is given."""
        if max_tie_fraction is None:
            max_tie_fraction = DEFAULT_MAJORITY_TIE_FRACTION if name == "majority" else 0.0
        return cls(name, max_tie_fraction=max_tie_fraction, min_votes=min_votes)

    def decide(self, votes: Votes) -> int | None:
        """+1: a preferred, -1: b preferred, 0: tie, None: unsettled."""
        outcome = int(self.decide_many(votes.for_a, votes.for_b, votes.tie))
        return None if outcome == UNSETTLED else outcome

    def decide_many(self, for_a, for_b, tie) -> np.ndarray:
        """Vectorised decide over arrays of vote counts: 1, -1, 0 or UNSETTLED."""
        for_a, for_b, tie = (np.asarray(x, dtype=np.int64) for x in (for_a, for_b, tie))
        n = for_a + for_b + tie
        out = np.full(np.broadcast(for_a, for_b, tie).shape, UNSETTLED, dtype=np.int8)
        if self.name == "unanimous":
            out[for_a == n] = 1
            out[for_b == n] = -1
            out[tie == n] = 0
        else:
            out[tie * 2 > n] = 0
            # A hair of slack: 29 ties of 100 votes is within 0.29 despite 0.29 * 100 < 29.
            few_ties = tie <= self.max_tie_fraction * n + 1e-9
            out[few_ties & (for_a * 2 > n)] = 1
            out[few_ties & (for_b * 2 > n)] = -1
        out[n < self.min_votes] = UNSETTLED
        return out


@dataclass(frozen=True)
class Decision:
    votes: Votes
    outcome: int | None  # as Policy.decide
    adjudicated: bool = False

    @property
    def preferred(self) -> tuple[str, str] | None:
        """(preferred, other) for a strict decision."""
        if self.outcome == 1:
            return self.votes.a, self.votes.b
        if self.outcome == -1:
            return self.votes.b, self.votes.a
        return None
