"""Held-out splits by group: which side of a split a group is on is a function of its id and
the split's seed alone, so

* two snapshots made with the same split agree on every group they share (the benchmark made
  from the held-out side and the fine-tune reading the train side never meet, without sharing
  any state), and
* a dataset that grows keeps each group on its side: new groups are assigned, old ones stay.

A snapshot records its split in its manifest (``fraction``, ``seed`` and the group ids of each
side); the held-out fraction is met in expectation, not exactly (each group is an independent
draw)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

SIDES = ("train", "held_out")


@dataclass(frozen=True)
class Split:
    held_out: float  # the fraction of groups held out, in [0, 1)
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.held_out, bool) or not 0 <= self.held_out < 1:
            raise ValueError(f"the held-out fraction must be in [0, 1), not {self.held_out!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"the split seed must be a non-negative integer, not {self.seed!r}")

    def side(self, group_id: str) -> str:
        digest = hashlib.sha256(f"editloop-split:{self.seed}:{group_id}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
        return "held_out" if draw < self.held_out else "train"

    def sides(self, group_ids: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {side: [] for side in SIDES}
        for group_id in group_ids:
            out[self.side(group_id)].append(group_id)
        return out

    def as_dict(self) -> dict:
        return {"held_out": self.held_out, "seed": self.seed}

    @classmethod
    def optional(cls, held_out: float, seed: int = 0) -> Split | None:
        """The split of a job's ``held_out`` and seed options; None when nothing is held out."""
        return cls(held_out, seed) if held_out else None

    @classmethod
    def from_dict(cls, data: dict | None) -> Split | None:
        return cls(data["held_out"], data.get("seed", 0)) if data else None

    def describe(self) -> str:
        return f"{self.held_out:.0%} of groups held out (seed {self.seed})"
