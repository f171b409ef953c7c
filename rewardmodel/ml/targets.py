"""Training targets for EditScore from our rankings: a pure function over a rankings snapshot's
files (annotation/ml/rankings.py), never annotation's tables.

The paper trains on JSON answers with integer scores (0..R). We have tiers, not
grades, so each candidate's score on a dimension is anchored to its tier
(documented mapping, `tier_score`) and averaged over the annotators of the
group (an adjudication, when there is one, is the only voice):

- usable tiers spread linearly from 0.9·R (the best tier) down to 0.3·R (the
  last usable tier); a group ranked all in one tier gets 0.6·R;
- the unusable floor gets 0.05·R.

The SC answer is [prompt following, consistency]; the PQ answer (naturalness,
artifacts) takes the overall dimension's score twice: our annotators judge the
edit's overall quality, not naturalness and artifacts apart. Gold groups and
repeats are left out (they are quality checks; the snapshot does not hold them).

Reasoning (the paper's "curation by agreement"): a teacher judge (an
OpenAI-compatible VLM, the benchmark's `openai` scorer) scores every candidate
of a group; its SC reasoning is kept for the group only when its prompt-following
and consistency scores order the candidates as the human targets do, its PQ
reasoning only when its perceptual-quality scores order them as the humans'
overall scores do (`curated_reasoning`). Pairs the humans tie constrain nothing;
a pair the humans separate must be separated the same way (a teacher tie or an
unscored candidate is a disagreement). Elsewhere the target's reasoning is a
neutral sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from annotation.ml.rankings import RankedGroup, read_manifest, read_rankings

BEST, LAST_USABLE, ALL_TIED, UNUSABLE = 0.9, 0.3, 0.6, 0.05
NEEDED = ("prompt_following", "consistency", "overall")


def tier_score(tier: int, tiers: int, *, unusable: bool, score_range: int = 25) -> float:
    """A tier (1 = best) of a ranking with `tiers` usable tiers, on the 0..R scale."""
    if unusable:
        return UNUSABLE * score_range
    if tiers <= 1:
        return ALL_TIED * score_range
    return score_range * (BEST - (BEST - LAST_USABLE) * (tier - 1) / (tiers - 1))


@dataclass(frozen=True)
class Target:
    group: str
    candidate: str
    instruction: str
    source: str  # image files of the snapshot
    image: str
    sc: tuple[int, int]  # prompt following, consistency (0..R)
    pq: tuple[int, int]  # naturalness, artifacts (0..R)


def _vote_scores(tiers: list, unusable: list, score_range: int) -> dict[str, float]:
    """{candidate: score} of one ranking on one dimension."""
    out = {c: tier_score(i, len(tiers), unusable=False, score_range=score_range)
           for i, tier in enumerate(tiers, 1) for c in tier}  # fmt: skip
    out.update({c: tier_score(0, 0, unusable=True, score_range=score_range) for c in unusable})
    return out


def training_targets(
    snapshot: Path | str, *, score_range: int = 25, min_votes: int = 1, side: str = "train"
) -> Iterator[Target]:
    """One target per candidate of every group of the rankings snapshot with at least
    `min_votes` votes (an adjudication is one vote that stands alone), on the given side of
    its held-out split (all groups when it has none). Needs the dimensions
    prompt_following, consistency and overall."""
    manifest = read_manifest(Path(snapshot))
    dims = manifest.get("dimensions") or []
    missing = [d for d in NEEDED if d not in dims]
    if missing:
        raise ValueError(
            f"snapshot of dataset {manifest.get('dataset')!r} lacks dimension(s) "
            f"{', '.join(missing)}"
        )
    yield from group_targets(
        read_rankings(Path(snapshot), side), score_range=score_range, min_votes=min_votes
    )


def group_targets(
    groups: Iterable[RankedGroup], *, score_range: int = 25, min_votes: int = 1
) -> Iterator[Target]:
    for group in groups:
        votes = group.votes
        if len(votes) < min_votes or not votes:
            continue
        per_dim = {
            dim: [_vote_scores(v.tiers[dim], v.unusable.get(dim) or [], score_range) for v in votes]
            for dim in NEEDED
        }
        for key, image in group.candidates:
            score = {
                dim: round(sum(v[key] for v in per_dim[dim]) / len(per_dim[dim])) for dim in NEEDED
            }
            yield Target(
                group=group.group_id,
                candidate=key,
                instruction=group.instruction,
                source=group.source,
                image=image,
                sc=(score["prompt_following"], score["consistency"]),
                pq=(score["overall"], score["overall"]),
            )


def orders_agree(human: Sequence[float], teacher: Sequence[float | None]) -> bool:
    """True when every pair the humans separate is separated the same way by the teacher."""
    for i, j in combinations(range(len(human)), 2):
        if human[i] == human[j]:
            continue
        if teacher[i] is None or teacher[j] is None:
            return False
        if (human[i] - human[j]) * (teacher[i] - teacher[j]) <= 0:
            return False
    return True


def curated_reasoning(group: Sequence[Target], teacher: Sequence) -> list[tuple]:
    """(SC reasoning, PQ reasoning) per candidate of one group, None where the
    teacher's reasoning is not kept. `teacher` holds the teacher's score for each
    target, in order (objects with prompt_following, consistency,
    perceptual_quality, error and reasoning = {"SC": ..., "PQ": ...})."""
    if len(group) != len(teacher):
        raise ValueError("one teacher score per target")
    scored = all(s.error is None for s in teacher)

    def agree(index: int, field: str, pair: str) -> bool:
        return orders_agree(
            [getattr(t, pair)[index] for t in group], [getattr(s, field) for s in teacher]
        )

    keep_sc = scored and agree(0, "prompt_following", "sc") and agree(1, "consistency", "sc")
    keep_pq = scored and agree(0, "perceptual_quality", "pq")
    return [
        (
            (s.reasoning or {}).get("SC") if keep_sc else None,
            (s.reasoning or {}).get("PQ") if keep_pq else None,
        )
        for s in teacher
    ]
