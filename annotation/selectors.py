"""Reads of the annotation app: who sees which dataset, progress, exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import combinations

from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, QuerySet, Sum
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import User
from accounts.permissions import is_researcher
from annotation.models import (
    Assignment,
    Dataset,
    DatasetReport,
    Group,
    Ranking,
    Review,
    Snapshot,
)
from config.ids import parse_id


def datasets_visible_to(user) -> QuerySet[Dataset]:
    if is_researcher(user):
        return Dataset.objects.all()
    return Dataset.objects.filter(annotators=user)


def dataset_may_annotate(user, dataset: Dataset) -> bool:
    return is_researcher(user) or dataset.annotators.filter(pk=user.pk).exists()


def dataset_for_annotator(user, dataset_id: int) -> Dataset:
    """The dataset, for someone who may annotate it: 404 if it does not exist,
    403 otherwise (Django's exceptions; DRF turns them into JSON answers)."""
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    if not dataset_may_annotate(user, dataset):
        raise PermissionDenied("You are not an annotator of this dataset.")
    return dataset


def group_for_annotator(user, group_id: int) -> Group:
    group = get_object_or_404(Group.objects.select_related("dataset"), pk=group_id)
    if not dataset_may_annotate(user, group.dataset):
        raise PermissionDenied("You are not an annotator of this group's dataset.")
    return group


def ranking_of_annotator(user, ranking_id: int) -> Ranking:
    """One of the user's own rankings, in a dataset they may still annotate; 404 otherwise
    (another's ranking is not acknowledged to exist)."""
    return get_object_or_404(
        Ranking.objects.select_related("group__dataset"),
        pk=ranking_id, annotator=user, group__dataset__in=datasets_visible_to(user),
    )  # fmt: skip


def datasets_with_progress(user) -> list[tuple[Dataset, DatasetProgress]]:
    return [(d, dataset_progress(dataset=d, user=user)) for d in datasets_visible_to(user)]


@dataclass(frozen=True)
class DatasetProgress:
    """What a user sees of a dataset's progress. An annotator sees their own numbers only,
    which move alike for a gold group and any other (`my_rankings` counts all their rankings,
    `left_for_me` the gold groups they have not seen too); the dataset's counts, which gold
    groups and repeats do not move (and which would single out the gold groups once every
    other group is complete), are for researchers."""

    groups: int
    groups_complete: int | None  # None for annotators
    rankings: int | None  # None for annotators
    rankings_target: int | None
    my_rankings: int
    left_for_me: int  # groups that still need a ranking and that this user may still rank


def dataset_progress(*, dataset: Dataset, user) -> DatasetProgress:
    # Gold groups and repeats are quality checks, not progress. ranking_count
    # holds each group's counted rankings (not surplus, not repeats): one query
    # over the groups instead of counting the rankings.
    counts = Group.objects.filter(dataset=dataset, is_gold=False).aggregate(
        groups=Count("pk"),
        complete=Count("pk", filter=Q(ranking_count__gte=dataset.overlap + F("extra_overlap"))),
        extra=Sum("extra_overlap", default=0),
        rankings=Sum("ranking_count", default=0),
    )
    researcher = is_researcher(user)
    return DatasetProgress(
        groups=counts["groups"],
        groups_complete=counts["complete"] if researcher else None,
        rankings=counts["rankings"] if researcher else None,
        rankings_target=counts["groups"] * dataset.overlap + counts["extra"]
        if researcher
        else None,
        my_rankings=Ranking.objects.filter(group__dataset=dataset, annotator=user).count(),
        left_for_me=groups_left_for(dataset=dataset, user=user),
    )


def groups_left_for(*, dataset: Dataset, user) -> int:
    """How many groups the lease could still serve this user (annotation.services'
    eligibility, without the leases others hold now: those come back if they lapse), gold
    groups they have not seen included (`next` serves those before saying it is done), so
    ranking a gold group lowers it like any other. Repeats are not counted: they are not
    planned."""
    finished = Assignment.objects.filter(
        group__dataset=dataset, annotator=user,
        status__in=[Assignment.Status.SKIPPED, Assignment.Status.DONE],
    ).values("group_id")  # fmt: skip
    needed = Q(is_gold=False, ranking_count__lt=dataset.overlap + F("extra_overlap"))
    if dataset.gold_rate > 0:  # a dataset with gold checks switched off never serves them
        needed |= Q(is_gold=True)
    return (
        Group.objects.filter(needed, dataset=dataset)
        .exclude(review=Review.ADJUDICATED)
        .exclude(pk__in=finished)
        .count()
    )  # fmt: skip


def revision_refusal(ranking: Ranking, now=None) -> str | None:
    """Why this ranking can no longer be revised (None: it can). The window runs from its
    first submission, so revising does not extend it; an adjudicated group's rankings are
    final."""
    dataset = ranking.group.dataset
    if ranking.group.review == Review.ADJUDICATED:
        return "this group was adjudicated: its rankings are final"
    window = dataset.revision_window_seconds
    if window == 0:
        return "this dataset does not allow revising rankings"
    closes = ranking.created_at + timedelta(seconds=window)
    if (now or timezone.now()) > closes:
        return f"the revision window ({_duration(window)}) closed at {closes:%Y-%m-%d %H:%M} UTC"
    return None


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def my_work(user, limit: int = 200) -> dict:
    """An annotator's own history: their newest rankings, each with why it can no longer be
    revised (None: it can), and the groups they skipped (that they may reopen), in datasets
    they may still annotate. Nothing says which were gold groups or repeats."""
    visible = datasets_visible_to(user)
    rankings = (
        Ranking.objects.filter(annotator=user, group__dataset__in=visible)
        .select_related("group__dataset").order_by("-created_at")[:limit]
    )  # fmt: skip
    skipped = (
        Assignment.objects.filter(annotator=user, repeat=False, status=Assignment.Status.SKIPPED,
                                  group__dataset__in=visible)
        .select_related("group__dataset").order_by("-leased_at")[:limit]
    )  # fmt: skip
    now = timezone.now()
    return {
        "rankings": [{"ranking": r, "refusal": revision_refusal(r, now)} for r in rankings],
        "skipped": list(skipped),
    }


# --- export: JSON lines, streamed in chunks so memory stays flat


def _group_index(dataset: Dataset) -> dict[int, tuple]:
    return {
        pk: rest
        for pk, *rest in Group.objects.filter(dataset=dataset).values_list(
            "pk", "external_id", "instruction", "task_type", "source", "is_gold"
        )
    }


def _rankings(dataset: Dataset, groups_per_query: int = 500):
    """Every ranking of the dataset, group by group, in bounded queries.

    Walking group-id chunks (the ranking.group_id index) instead of one join over
    the whole dataset keeps the plan simple whatever the table statistics say,
    and memory flat whatever the dataset size."""
    usernames = dict(User.objects.values_list("pk", "username"))
    group_ids = list(
        Group.objects.filter(dataset=dataset).order_by("pk").values_list("pk", flat=True)
    )
    for start in range(0, len(group_ids), groups_per_query):
        chunk = group_ids[start : start + groups_per_query]
        rows = (
            Ranking.objects.filter(group_id__in=chunk)
            .order_by("group_id", "pk")
            .values_list(
                "pk", "group_id", "annotator_id", "tiers", "unusable", "seconds_spent",
                "surplus", "lease_expired", "repeat", "submission_id", "created_at", "version",
                "revised_at",
            )
        )  # fmt: skip
        for pk, group_id, annotator_id, *rest in rows:
            yield (pk, group_id, usernames.get(annotator_id), *rest)


def export_rankings(dataset: Dataset) -> Iterator[str]:
    groups = _group_index(dataset)
    for row in _rankings(dataset):
        (
            pk,
            group_id,
            annotator,
            tiers,
            unusable,
            seconds,
            surplus,
            expired,
            repeat,
            sub,
            created,
            version,
            revised,
        ) = row
        external_id, instruction, task_type, source, gold = groups[group_id]
        yield json.dumps({
            "ranking_id": pk, "group_id": external_id, "instruction": instruction,
            "task_type": task_type, "source": source, "annotator": annotator, "tiers": tiers,
            "unusable": unusable, "seconds_spent": seconds, "surplus": surplus,
            "lease_expired": expired, "repeat": repeat, "gold": gold,
            "submission_id": str(sub), "created_at": created.isoformat(), "version": version,
            "revised_at": revised.isoformat() if revised else None,
        }) + "\n"  # fmt: skip


def ranking_pairs(tiers: list[list[str]]) -> Iterator[tuple[str, str, int]]:
    """(better, worse, tier gap) for candidates in different tiers; ties are skipped."""
    for (i, upper), (j, lower) in combinations(enumerate(tiers), 2):
        for better in upper:
            for worse in lower:
                yield better, worse, j - i


def ranking_ties(tiers: list[list[str]]) -> Iterator[tuple[str, str]]:
    for tier in tiers:
        yield from combinations(tier, 2)


def export_pairs(dataset: Dataset, *, ties: bool = False) -> Iterator[str]:
    groups = _group_index(dataset)
    dimensions = dataset.dimension_keys
    for row in _rankings(dataset):
        _pk, group_id, annotator, tiers, unusable, _seconds, surplus, expired, repeat, *_ = row
        external_id, instruction, task_type, source, gold = groups[group_id]
        common = {
            "group_id": external_id,
            "instruction": instruction,
            "task_type": task_type,
            "source": source,
        }
        # Rankings past K, late ones, repeats (a second vote of the same annotator)
        # and gold groups are kept: flagged so a consumer can drop them.
        flags = {"surplus": surplus, "lease_expired": expired, "repeat": repeat, "gold": gold}
        chunk = []
        for dim in dimensions:
            full = [*tiers.get(dim, []), *([unusable[dim]] if unusable.get(dim) else [])]
            for chosen, rejected, gap in ranking_pairs(full):
                chunk.append(json.dumps({**common, "chosen": chosen, "rejected": rejected, "dimension": dim, "tier_gap": gap, "annotator": annotator, **flags}))  # fmt: skip
            if ties:
                for a, b in ranking_ties(full):
                    chunk.append(json.dumps({**common, "chosen": a, "rejected": b, "dimension": dim, "tier_gap": 0, "annotator": annotator, **flags, "tie": True}))  # fmt: skip
        if chunk:
            yield "\n".join(chunk) + "\n"


# --- quality control


def dataset_report(dataset: Dataset) -> dict | None:
    """The stored quality report with its freshness; None before the first one."""
    report = DatasetReport.objects.filter(dataset=dataset).first()
    if report is None:
        return None
    # Walks the primary key from the report's last ranking on: cheap while few are new.
    newer = Ranking.objects.filter(pk__gt=max(report.last_ranking_id, 0), group__dataset=dataset)
    return {
        "computed_at": report.computed_at.isoformat(),
        "stale": report.last_ranking_id < 0 or newer.exists(),
        "seconds": report.seconds,
        **report.data,
    }


def adjudication_queue(dataset: Dataset, limit: int = 200) -> list[dict]:
    """Groups waiting for a researcher, least agreement first, with every vote."""
    groups = list(
        Group.objects.filter(dataset=dataset, review=Review.QUEUED).order_by("agreement", "pk")[
            :limit
        ]
    )
    return adjudication_queue_entries(groups, dataset)


def adjudication_queue_entries(groups: list[Group], dataset: Dataset) -> list[dict]:
    rankings: dict[int, list] = {}
    votes = Ranking.objects.filter(group__in=groups, repeat=False).select_related("annotator")
    for ranking in votes.order_by("pk"):
        rankings.setdefault(ranking.group_id, []).append({
            "annotator": ranking.annotator.username,
            "tiers": {dim: ranking.full_tiers(dim) for dim in dataset.dimension_keys},
        })  # fmt: skip
    return [
        {
            "group": g.pk, "external_id": g.external_id, "instruction": g.instruction,
            "task_type": g.task_type, "agreement": g.agreement,
            "rankings": rankings.get(g.pk, []),
        }
        for g in groups
    ]  # fmt: skip


def snapshot_with_hash(*, kind: str, sha256: str) -> Snapshot | None:
    """The registered snapshot of this kind whose content hash is ``sha256``, if any."""
    return Snapshot.objects.filter(kind=kind, sha256=sha256).first() if sha256 else None


def snapshot_get(*, pk: int, kind: str) -> Snapshot | None:
    return Snapshot.objects.filter(pk=pk, kind=kind).first()


# --- for the other apps (they never import annotation's models)


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.all()


def dataset_get(*, pk=None, name: str | None = None) -> Dataset | None:
    """The dataset with this id (an int or its text) or name; None when there is none."""
    if name is not None:
        return Dataset.objects.filter(name=name).first()
    pk = parse_id(pk)
    return Dataset.objects.filter(pk=pk).first() if pk is not None else None


def prompt_group_ids(dataset: Dataset) -> list[str]:
    """The ids of the groups a rankings snapshot of the dataset holds (gold groups are quality
    checks)."""
    return list(
        Group.objects.filter(dataset=dataset, is_gold=False)
        .order_by("pk")
        .values_list("external_id", flat=True)
    )


def snapshot_get_any(pk: int) -> Snapshot | None:
    return Snapshot.objects.select_related("dataset").filter(pk=pk).first()


def snapshots_of_dataset(dataset_id: int) -> list[Snapshot]:
    return list(Snapshot.objects.filter(dataset_id=dataset_id).order_by("created_at", "pk"))
