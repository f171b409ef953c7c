"""Writes of the annotation app: leasing groups, skipping, submitting rankings.

Race safety: `next` locks the annotator's user row (their own double-clicks are
serialised) and takes the group with SELECT ... FOR UPDATE SKIP LOCKED (two
annotators never wait on, or both take, the last free slot of one group).
Submitting locks the group row while it counts rankings, so surplus is decided
exactly once. Unique constraints on (annotator, group) back both up.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from annotation.models import Assignment, Candidate, Dataset, Group, Ranking


class RankingInvalid(ValueError):
    """The submitted tiers do not describe a complete ranking of the group."""


class RankingConflict(Exception):
    """The ranking clashes with one already stored (HTTP 409)."""


def candidates_in_annotator_order(*, group: Group, annotator: User) -> list[Candidate]:
    """The group's candidates shuffled per (annotator, group), the same on every call,
    so position bias averages out across annotators."""

    def key(candidate: Candidate) -> str:
        seed = f"{annotator.pk}:{group.pk}:{candidate.external_id}".encode()
        return hashlib.sha256(seed).hexdigest()

    return sorted(group.candidates.all(), key=key)


def group_next_for_annotator(*, dataset: Dataset, annotator: User) -> Assignment | None:
    """The annotator's live lease, or a new lease on the least-annotated group they
    may still rank; None when nothing is left for them."""
    deadline = time.monotonic() + 5
    while True:
        assignment, contended = _lease_attempt(dataset, annotator)
        # SKIP LOCKED may find every eligible group locked by other annotators'
        # transactions for an instant: that is not "nothing left", so try again
        # with a fresh snapshot once they have committed.
        if assignment is not None or not contended or time.monotonic() > deadline:
            return assignment
        time.sleep(random.uniform(0.005, 0.02))


def _lease_attempt(dataset: Dataset, annotator: User) -> tuple[Assignment | None, bool]:
    now = timezone.now()
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=annotator.pk).first()
        live = (
            Assignment.objects.select_related("group")
            .filter(group__dataset=dataset, annotator=annotator, status=Assignment.Status.LEASED, expires_at__gt=now)
            .first()
        )  # fmt: skip
        if live is not None:
            return live, False
        eligible = _eligible_groups(dataset, annotator, now)
        group = eligible.select_for_update(skip_locked=True, of=("self",)).first()
        if group is None:
            return None, eligible.exists()
        assignment, _ = Assignment.objects.update_or_create(
            group=group,
            annotator=annotator,
            defaults={
                "status": Assignment.Status.LEASED,
                "leased_at": now,
                "expires_at": now + timedelta(seconds=dataset.lease_ttl_seconds),
            },
        )
        return assignment, False


def _eligible_groups(dataset: Dataset, annotator: User, now):
    """Groups this annotator has not ranked or skipped, whose rankings plus live
    leases are below K, least-annotated first."""
    finished_by_me = Assignment.objects.filter(
        group=OuterRef("pk"),
        annotator=annotator,
        status__in=[Assignment.Status.SKIPPED, Assignment.Status.DONE],
    )
    live_leases = (
        Assignment.objects.filter(group=OuterRef("pk"), status=Assignment.Status.LEASED, expires_at__gt=now)
        .order_by()
        .values("group")
        .annotate(n=Count("pk"))
        .values("n")
    )  # fmt: skip
    return (
        Group.objects.filter(dataset=dataset, ranking_count__lt=dataset.overlap)
        .filter(~Exists(finished_by_me))
        .annotate(live=Coalesce(Subquery(live_leases), 0))
        .filter(ranking_count__lt=dataset.overlap - F("live"))
        .order_by("ranking_count", "id")
    )


def group_skip(*, group: Group, annotator: User) -> None:
    """Release the lease; this group is not served to this annotator again."""
    now = timezone.now()
    with transaction.atomic():
        assignment, created = Assignment.objects.select_for_update().get_or_create(
            group=group,
            annotator=annotator,
            defaults={"status": Assignment.Status.SKIPPED, "leased_at": now, "expires_at": now},
        )
        if not created and assignment.status != Assignment.Status.DONE:
            assignment.status = Assignment.Status.SKIPPED
            assignment.expires_at = now
            assignment.save(update_fields=["status", "expires_at"])


def ranking_clean(
    *, dataset: Dataset, candidate_ids: set[str], tiers: object, unusable: object = None
) -> tuple[dict, dict]:
    """Check that every dimension places every candidate exactly once.

    `tiers`: {dimension: [[ids of tier 1], [tier 2], ...]} best first.
    `unusable`: optional {dimension: [ids]}, a floor below every tier.
    Returns (tiers, unusable) with only the dataset's dimensions.
    """
    if not isinstance(tiers, dict):
        raise RankingInvalid("'tiers' must be an object {dimension: [[ids], ...]}")
    unusable = unusable or {}
    if not isinstance(unusable, dict):
        raise RankingInvalid("'unusable' must be an object {dimension: [ids]}")
    keys = dataset.dimension_keys
    unknown = sorted((set(tiers) | set(unusable)) - set(keys))
    if unknown:
        raise RankingInvalid(
            f"unknown dimension(s): {', '.join(unknown)}; expected {', '.join(keys)}"
        )
    clean_tiers, clean_unusable = {}, {}
    for dim in keys:
        if dim not in tiers:
            raise RankingInvalid(f"dimension {dim!r} is missing")
        dim_tiers = tiers[dim]
        floor = unusable.get(dim, [])
        if not isinstance(dim_tiers, list) or not all(isinstance(t, list) for t in dim_tiers):
            raise RankingInvalid(f"{dim}: tiers must be a list of lists of candidate ids")
        if not isinstance(floor, list):
            raise RankingInvalid(f"{dim}: unusable must be a list of candidate ids")
        if any(len(t) == 0 for t in dim_tiers):
            raise RankingInvalid(f"{dim}: a tier is empty")
        placed = [c for t in dim_tiers for c in t] + list(floor)
        if not all(isinstance(c, str) for c in placed):
            raise RankingInvalid(f"{dim}: candidate ids must be strings")
        repeated = sorted({c for c in placed if placed.count(c) > 1})
        if repeated:
            raise RankingInvalid(f"{dim}: candidate(s) placed twice: {', '.join(repeated)}")
        strangers = sorted(set(placed) - candidate_ids)
        if strangers:
            raise RankingInvalid(f"{dim}: unknown candidate(s): {', '.join(strangers)}")
        missing = sorted(candidate_ids - set(placed))
        if missing:
            raise RankingInvalid(f"{dim}: candidate(s) not placed: {', '.join(missing)}")
        clean_tiers[dim] = dim_tiers
        if floor:
            clean_unusable[dim] = list(floor)
    return clean_tiers, clean_unusable


def ranking_submit(
    *,
    group: Group,
    annotator: User,
    submission_id: uuid.UUID,
    tiers: object,
    unusable: object = None,
    seconds_spent: float | None = None,
) -> tuple[Ranking, bool]:
    """Store a ranking; returns (ranking, created). The same submission_id again
    returns the stored ranking (a retried request). A ranking that arrives after
    its lease expired is still stored; past K rankings it is flagged surplus."""
    previous = Ranking.objects.filter(submission_id=submission_id).first()
    if previous is not None:
        return _same_submission(previous, group, annotator), False
    dataset = group.dataset
    candidate_ids = set(group.candidates.values_list("external_id", flat=True))
    clean_tiers, clean_unusable = ranking_clean(
        dataset=dataset, candidate_ids=candidate_ids, tiers=tiers, unusable=unusable
    )
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = Group.objects.select_for_update().get(pk=group.pk)
            previous = Ranking.objects.filter(submission_id=submission_id).first()
            if previous is not None:  # the same request, retried while we waited for the lock
                return _same_submission(previous, group, annotator), False
            if Ranking.objects.filter(group=group, annotator=annotator).exists():
                raise RankingConflict("you have already ranked this group")
            lease = Assignment.objects.filter(group=group, annotator=annotator).first()
            surplus = locked.ranking_count >= dataset.overlap
            ranking = Ranking.objects.create(
                group=group,
                annotator=annotator,
                submission_id=submission_id,
                tiers=clean_tiers,
                unusable=clean_unusable,
                seconds_spent=seconds_spent,
                surplus=surplus,
                lease_expired=lease is None or lease.expires_at <= now,
            )
            if not surplus:
                Group.objects.filter(pk=group.pk).update(ranking_count=F("ranking_count") + 1)
            Assignment.objects.update_or_create(
                group=group,
                annotator=annotator,
                defaults={"status": Assignment.Status.DONE, "expires_at": now},
                create_defaults={
                    "status": Assignment.Status.DONE,
                    "leased_at": now,
                    "expires_at": now,
                },
            )
    except IntegrityError:
        previous = Ranking.objects.filter(submission_id=submission_id).first()
        if previous is None:
            raise RankingConflict("you have already ranked this group") from None
        return _same_submission(previous, group, annotator), False
    return ranking, True


def _same_submission(previous: Ranking, group: Group, annotator: User) -> Ranking:
    if previous.group_id != group.pk or previous.annotator_id != annotator.pk:
        raise RankingConflict("this submission_id was already used for another ranking")
    return previous
