"""A ranking as a short string, for statistics over 100,000s of rankings.

The JSON tiers stay the record of what the annotator did; next to them every
ranking stores this code, written once when the ranking is stored:

    code = <first> <tiers of dimension 1> <tiers of dimension 2> ...

- candidates in sorted id order, one character each per dimension: the tier
  index 1-9 (1 = best; a group has at most 8 candidates, and the unusable floor
  is one more tier, so one digit always suffices);
- <first>: the sorted-order index of the candidate the page showed first, or
  "-" when unknown.

Example: candidates a, b, c shown as c, a, b; prompt following a > b = c,
consistency a = b = c  ->  "2" + "122" + "111" = "2122111".

Decoding a block of same-length codes is one numpy call (no JSON, no dicts):
that is what makes the quality report fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNKNOWN_FIRST = "-"
MAX_TIER = 9


def ranking_code(
    full_tiers: dict[str, Sequence[Sequence[str]]],
    dimensions: Sequence[str],
    candidates: Sequence[str],
    first_shown: str | None = None,
) -> str:
    """`full_tiers`: {dimension: tiers best first, the unusable floor last};
    `candidates`: the group's candidate ids (sorted here)."""
    order = sorted(candidates)
    parts = [str(order.index(first_shown)) if first_shown in order else UNKNOWN_FIRST]
    for dim in dimensions:
        position = {c: i for i, tier in enumerate(full_tiers[dim], 1) for c in tier}
        if set(position) != set(order):
            raise ValueError(f"{dim}: the tiers do not place exactly the group's candidates")
        if max(position.values()) > MAX_TIER:
            raise ValueError(f"{dim}: more than {MAX_TIER} tiers")
        parts.append("".join(str(position[c]) for c in order))
    return "".join(parts)


def code_length(dimensions: int, candidates: int) -> int:
    return 1 + dimensions * candidates


def decode(codes: Sequence[str], dimensions: int, candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Same-shape codes -> (first shown index per code, -1 if unknown;
    tiers: N x dimensions x candidates). Raises ValueError on a malformed code."""
    length = code_length(dimensions, candidates)
    raw = "".join(codes).encode("ascii")
    if len(raw) != length * len(codes):
        raise ValueError("codes of different lengths")
    array = np.frombuffer(raw, dtype=np.uint8).reshape(len(codes), length).astype(np.int64) - 48
    tiers = array[:, 1:].reshape(len(codes), dimensions, candidates)
    if ((tiers < 1) | (tiers > MAX_TIER)).any():
        raise ValueError("a tier index is not a digit 1-9")
    first = array[:, 0]
    first = np.where(first == ord(UNKNOWN_FIRST) - 48, -1, first)
    if ((first < -1) | (first >= candidates)).any():
        raise ValueError("the first-shown index is out of range")
    return first, tiers


def positions(code: str, dimensions: Sequence[str], candidates: Sequence[str]) -> dict:
    """{dimension: {candidate: tier index}} of one code (for the few rankings that
    are looked at one by one: gold groups and repeats)."""
    order = sorted(candidates)
    n = len(order)
    return {
        dim: {c: int(code[1 + d * n + i]) for i, c in enumerate(order)}
        for d, dim in enumerate(dimensions)
    }
