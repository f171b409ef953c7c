"""The researcher's dataset browser: a dataset's groups filtered by task type, state and
annotator, and one group with its candidates, every ranking and the consensus."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from django.db.models import F, Q, QuerySet

from annotation.models import Adjudication, Candidate, Dataset, Group, Ranking, Review
from annotation.stats.consensus import Policy, Votes, relation, tier_positions

# A group's state, as the browser filters it (first match wins, in this order).
STATES = {
    "gold": "gold (quality check)",
    "adjudicated": "adjudicated",
    "disputed": "disputed (more rankings asked, or awaiting adjudication)",
    "complete": "complete",
    "partial": "partially ranked",
    "unranked": "unranked",
}
# The consensus the browser shows: the quality dashboard's default.
POLICY = Policy.named("majority")


def _state_filter(state: str, dataset: Dataset) -> Q:
    target = dataset.overlap + F("extra_overlap")
    real = Q(is_gold=False)
    return {
        "gold": Q(is_gold=True),
        "adjudicated": real & Q(review=Review.ADJUDICATED),
        "disputed": real & Q(review__in=[Review.EXTRA, Review.QUEUED]),
        "complete": real & Q(review=Review.NONE, ranking_count__gte=target),
        "partial": real & Q(review=Review.NONE, ranking_count__gt=0, ranking_count__lt=target),
        "unranked": real & Q(review=Review.NONE, ranking_count=0),
    }[state]


def _row_state(row: dict, overlap: int) -> str:
    """A group's state (STATES) from its fields: what _state_filter selects, without a query."""
    if row["is_gold"]:
        return "gold"
    if row["review"] == Review.ADJUDICATED:
        return "adjudicated"
    if row["review"] in (Review.EXTRA, Review.QUEUED):
        return "disputed"
    if row["ranking_count"] >= overlap + row["extra_overlap"]:
        return "complete"
    return "partial" if row["ranking_count"] else "unranked"


def browse_groups(
    dataset: Dataset, *, task_type: str = "", state: str = "", annotator: str = ""
) -> QuerySet:
    """The dataset's groups matching the filters (empty: any), in import order; rows are
    dicts with a ``state``. Raises ValueError for an unknown state."""
    groups = Group.objects.filter(dataset=dataset)
    if task_type:
        groups = groups.filter(task_type=task_type)
    if state:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
        groups = groups.filter(_state_filter(state, dataset))
    if annotator:
        groups = groups.filter(
            pk__in=Ranking.objects.filter(group__dataset=dataset, annotator__username=annotator)
            .values("group_id")
        )  # fmt: skip
    return groups.order_by("pk").values(
        "pk", "external_id", "task_type", "instruction", "ranking_count", "extra_overlap",
        "review", "is_gold", "agreement",
    )  # fmt: skip


def with_states(rows, dataset: Dataset) -> list[dict]:
    return [{**row, "state": _row_state(row, dataset.overlap),
             "target": dataset.overlap + row["extra_overlap"]} for row in rows]  # fmt: skip


def filter_choices(dataset: Dataset) -> dict:
    from accounts.models import User

    return {
        "task_types": list(
            Group.objects.filter(dataset=dataset)
            .order_by("task_type")
            .values_list("task_type", flat=True)
            .distinct()
        ),  # fmt: skip
        "annotators": list(
            User.objects.filter(ranking__group__dataset=dataset)
            .distinct()
            .order_by("username")
            .values_list("username", flat=True)
        ),  # fmt: skip
        "states": STATES,
    }


@dataclass(frozen=True)
class Pair:
    first: str  # letters
    second: str
    sign: str  # ">", "<", "=" or "?" (unsettled)
    votes: str  # "2-1-0": for first, for second, tie


def group_detail(group: Group, dataset: Dataset) -> dict:
    """Candidates (lettered, with their editor), every ranking as letters per dimension, and
    the consensus per dimension: the adjudication if there is one, else each pair decided by
    the majority policy."""
    candidates = list(Candidate.objects.filter(group=group).order_by("pk"))
    letter = {c.external_id: chr(65 + i) for i, c in enumerate(candidates)}
    dims = dataset.dimension_keys
    rankings = list(
        Ranking.objects.filter(group=group).select_related("annotator")
        .prefetch_related("versions").order_by("pk")
    )  # fmt: skip

    def shown(tiers: list[list[str]], floor: list[str]) -> str:
        text = " > ".join(" = ".join(letter.get(c, "?") for c in tier) for tier in tiers if tier)
        return text + (
            f" · unusable: {' '.join(letter.get(c, '?') for c in floor)}" if floor else ""
        )

    rows = [{
        "annotator": r.annotator.username, "repeat": r.repeat, "surplus": r.surplus,
        "seconds": r.seconds_spent, "created_at": r.created_at,
        "dimensions": [shown(r.tiers.get(d, []), r.unusable.get(d, [])) for d in dims],
        "version": r.version, "revised_at": r.revised_at,
        "earlier": [{
            "version": v.version, "submitted_at": v.submitted_at,
            "dimensions": [shown(v.tiers.get(d, []), v.unusable.get(d, [])) for d in dims],
        } for v in r.versions.all()],
    } for r in rankings]  # fmt: skip
    adjudication = Adjudication.objects.filter(group=group).first()
    consensus: list[dict] = []
    for d in dims:
        if adjudication is not None:
            consensus.append(
                {
                    "dimension": d,
                    "adjudicated": shown(
                        adjudication.tiers.get(d, []), adjudication.unusable.get(d, [])
                    ),
                    "pairs": [],
                }
            )
            continue
        positions = [tier_positions(r.full_tiers(d)) for r in rankings if not r.repeat]  # votes
        pairs = []
        for a, b in combinations([c.external_id for c in candidates], 2):
            said = [relation(p, a, b) for p in positions]
            votes = Votes(a, b, said.count(1), said.count(-1), said.count(0))
            outcome = POLICY.decide(votes)
            sign = "?" if outcome is None else {1: ">", -1: "<", 0: "="}[outcome]
            pairs.append(Pair(letter[a], letter[b], sign,
                              f"{votes.for_a}-{votes.for_b}-{votes.tie}"))  # fmt: skip
        consensus.append({"dimension": d, "adjudicated": None, "pairs": pairs})
    return {
        "candidates": [
            {
                "letter": letter[c.external_id],
                "external_id": c.external_id,
                "editor": c.editor,
                "token": c.token,
            }
            for c in candidates
        ],  # fmt: skip
        "rankings": rows,
        "consensus": consensus,
        "state": _row_state(vars(group), dataset.overlap),
    }
