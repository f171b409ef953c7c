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
from collections import Counter
from datetime import timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from annotation.exports import snapshot_rankings
from annotation.models import (
    Adjudication,
    Assignment,
    Candidate,
    Dataset,
    DatasetReport,
    Group,
    Ranking,
    RankingVersion,
    Review,
    Snapshot,
    full_tiers,
)
from annotation.selectors import revision_refusal
from annotation.stats.agreement import pairwise_agreement
from annotation.stats.codes import ranking_code
from annotation.stats.consensus import tier_positions
from config.errors import Conflict, Invalid


class RankingInvalid(Invalid):
    """The submitted tiers do not describe a complete ranking of the group."""


class RankingConflict(Conflict):
    """The ranking clashes with one already stored."""


def candidates_in_annotator_order(
    *, group: Group, annotator: User, repeat: bool = False
) -> list[Candidate]:
    """The group's candidates shuffled per (annotator, group), the same on every call,
    so position bias averages out across annotators. A repeat rotates that order
    by one: every candidate moves, and the first is shown last."""

    def key(candidate: Candidate) -> str:
        seed = f"{annotator.pk}:{group.pk}:{candidate.external_id}".encode()
        return hashlib.sha256(seed).hexdigest()

    order = sorted(group.candidates.all(), key=key)
    return order[1:] + order[:1] if repeat else order


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
        _relax_commit()
        User.objects.select_for_update().filter(pk=annotator.pk).values_list("pk").first()
        live = (
            Assignment.objects.select_related("group")
            .filter(group__dataset=dataset, annotator=annotator, status=Assignment.Status.LEASED, expires_at__gt=now)
            .first()
        )  # fmt: skip
        if live is not None:
            return live, False
        lease: dict[str, Any] = {
            "annotator": annotator,
            "status": Assignment.Status.LEASED,
            "leased_at": now,
            "expires_at": now + timedelta(seconds=dataset.lease_ttl_seconds),
        }
        # Quality control rides in the same stream, looking like any other group.
        if dataset.gold_rate > 0 and random.random() < dataset.gold_rate:
            gold = _unseen_gold_group(dataset, annotator)
            if gold is not None:
                assignment = _assignment_upsert(group=gold, **lease)
                if assignment is not None:
                    return assignment, False
        if dataset.repeat_rate > 0 and random.random() < dataset.repeat_rate:
            again = _group_to_repeat(dataset, annotator)
            if again is not None:
                assignment = _assignment_upsert(group=again, repeat=True, **lease)
                if assignment is not None:
                    return assignment, False
        group = _first_eligible_group(dataset, annotator, now, lock=True)
        if group is None:
            contended = _first_eligible_group(dataset, annotator, now, lock=False) is not None
            # Nothing else for them: the gold groups they have not seen come before "done"
            # (the count of groups left for them includes those).
            serves_gold = dataset.gold_rate > 0 and not contended
            gold = _unseen_gold_group(dataset, annotator) if serves_gold else None
            if gold is not None:
                assignment = _assignment_upsert(group=gold, **lease)
                if assignment is not None:
                    return assignment, False
            return None, contended
        # The eligibility query counted live leases in the snapshot its statement
        # began with: a lease another annotator committed while the scan ran is
        # invisible to it. Now that the row is locked by us, count again in a new
        # statement (a fresh snapshot); if the group filled up meanwhile, retry.
        if _slots_taken(group, now) >= dataset.overlap + group.extra_overlap:
            return None, True
        assignment = _assignment_upsert(group=group, **lease)
        return assignment, assignment is None  # None: ranked meanwhile, look again


def _unseen_gold_group(dataset: Dataset, annotator: User) -> Group | None:
    """A gold group this annotator has not ranked or skipped (gold groups go to
    everyone: they are outside the overlap count)."""
    seen = Assignment.objects.filter(
        annotator=annotator,
        group__dataset=dataset,
        status__in=[Assignment.Status.DONE, Assignment.Status.SKIPPED],
    ).values("group_id")
    return (
        Group.objects.filter(dataset=dataset, is_gold=True)
        .exclude(pk__in=seen)
        .order_by("pk")
        .first()
    )


def _group_to_repeat(dataset: Dataset, annotator: User) -> Group | None:
    """The annotator's oldest ranked (non-gold) group not repeated yet, ranked
    before their last `repeat_gap` rankings, so the first answer is not fresh in
    mind. Ordered by when the rankings were stored, not by lease times: a late
    submit from an old tab is recent."""
    mine = Ranking.objects.filter(annotator=annotator, group__dataset=dataset, repeat=False)
    recent = list(mine.order_by("-pk").values_list("group_id", flat=True)[: dataset.repeat_gap])
    if len(recent) < dataset.repeat_gap:
        return None
    repeated = Assignment.objects.filter(annotator=annotator, repeat=True).values("group_id")
    first = (
        mine.filter(group__is_gold=False)
        .exclude(group_id__in=recent)
        .exclude(group_id__in=repeated)
        .select_related("group")
        .order_by("pk")
        .first()
    )
    return first.group if first is not None else None


_SLOTS_SQL = f"""
SELECT g.ranking_count + (
    SELECT COUNT(*) FROM {Assignment._meta.db_table} live
    WHERE live.group_id = g.id AND live.status = '{Assignment.Status.LEASED}' AND NOT live.repeat
      AND live.expires_at > %s)
FROM {Group._meta.db_table} g WHERE g.id = %s
"""


def _slots_taken(group: Group, now) -> int:
    """Rankings plus live leases of the group, as committed right now."""
    with connection.cursor() as cursor:
        cursor.execute(_SLOTS_SQL, [now, group.pk])
        return cursor.fetchone()[0]


def _relax_commit() -> None:
    """Leases are soft state: a crash may forget the last few, and then they are
    simply handed out again. Skipping the WAL flush for them halves `next`'s
    commit time on PostgreSQL. Rankings (human work) are never written this way."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def _assignment_upsert(
    *, group: Group, annotator: User, status: str, leased_at, expires_at, repeat: bool = False
) -> Assignment | None:
    """INSERT ... ON CONFLICT (annotator, group, repeat) DO UPDATE, in one statement.

    A "done" assignment is final: a lease or a skip racing a submit never turns
    it back (the update's WHERE leaves it alone and None is returned)."""
    table = Assignment._meta.db_table
    keep_done = (
        ""
        if status == Assignment.Status.DONE
        else f"WHERE {table}.status <> '{Assignment.Status.DONE}'"
    )
    new_lease = ", leased_at = excluded.leased_at" if status == Assignment.Status.LEASED else ""
    sql = f"""
        INSERT INTO {table} (group_id, annotator_id, status, leased_at, expires_at, repeat)
        VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (annotator_id, group_id, repeat) DO UPDATE
        SET status = excluded.status, expires_at = excluded.expires_at{new_lease}
        {keep_done}
        RETURNING id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [group.pk, annotator.pk, status, leased_at, expires_at, repeat])
        row = cursor.fetchone()
    if row is None:
        return None
    return Assignment(
        pk=row[0], group=group, annotator_id=annotator.pk, status=status,
        leased_at=leased_at, expires_at=expires_at, repeat=repeat,
    )  # fmt: skip


# One hand-written query: the ORM version repeats the live-lease subquery and
# plans 4x slower; this one walks the (dataset, ranking_count, id) index in
# order and stops at the first group that qualifies.
_ELIGIBLE_SQL = f"""
SELECT g.* FROM {Group._meta.db_table} g
WHERE g.dataset_id = %(dataset)s AND g.ranking_count < %(k)s + g.extra_overlap
  AND NOT g.is_gold AND g.review <> '{Review.ADJUDICATED}'
  AND NOT EXISTS (
    SELECT 1 FROM {Assignment._meta.db_table} mine
    WHERE mine.group_id = g.id AND mine.annotator_id = %(annotator)s
      AND mine.status IN ('{Assignment.Status.SKIPPED}', '{Assignment.Status.DONE}'))
  AND g.ranking_count + (
    SELECT COUNT(*) FROM {Assignment._meta.db_table} live
    WHERE live.group_id = g.id AND live.status = '{Assignment.Status.LEASED}' AND NOT live.repeat
      AND live.expires_at > %(now)s) < %(k)s + g.extra_overlap
ORDER BY g.ranking_count, g.id
LIMIT 1
"""


def _first_eligible_group(dataset: Dataset, annotator: User, now, *, lock: bool) -> Group | None:
    """The least-annotated group this annotator has not ranked or skipped, whose
    rankings plus live leases are below K. With lock=True it is row-locked,
    skipping groups other annotators hold locked right now."""
    sql = _ELIGIBLE_SQL
    if lock and connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE OF g SKIP LOCKED"
    params = {"dataset": dataset.pk, "k": dataset.overlap, "annotator": annotator.pk, "now": now}
    return next(iter(Group.objects.raw(sql, params)), None)


def group_skip(*, group: Group, annotator: User) -> None:
    """Release the lease; this group is not served to this annotator again."""
    now = timezone.now()
    with transaction.atomic():
        _assignment_upsert(
            group=group,
            annotator=annotator,
            status=Assignment.Status.SKIPPED,
            leased_at=now,
            expires_at=now,
            repeat=_is_repeat(group, annotator),
        )


def group_reopen(*, group: Group, annotator: User) -> Assignment:
    """Serve a group this annotator skipped again, next: its skip becomes a fresh lease (and a
    lease they hold on another group of the dataset is released). RankingConflict when they did
    not skip it, or it no longer needs their ranking (adjudicated, or its rankings and others'
    leases fill it)."""
    dataset = group.dataset
    now = timezone.now()
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=annotator.pk).values_list("pk").first()
        skipped = Assignment.objects.filter(group=group, annotator=annotator, repeat=False,
                                            status=Assignment.Status.SKIPPED).first()  # fmt: skip
        if skipped is None:
            raise RankingConflict("you have not skipped this group")
        group = Group.objects.select_for_update().get(pk=group.pk)
        if group.review == Review.ADJUDICATED or group.is_gold:
            raise RankingConflict("this group needs no more rankings")
        if _slots_taken(group, now) >= dataset.overlap + group.extra_overlap:
            raise RankingConflict("this group has all the rankings it needs now")
        Assignment.objects.filter(
            group__dataset=dataset, annotator=annotator, status=Assignment.Status.LEASED,
            expires_at__gt=now,
        ).update(expires_at=now)  # fmt: skip
        skipped.status, skipped.leased_at, skipped.expires_at = (
            Assignment.Status.LEASED,
            now,
            now + timedelta(seconds=dataset.lease_ttl_seconds),
        )
        skipped.save(update_fields=["status", "leased_at", "expires_at"])
        return skipped


def _is_repeat(group: Group, annotator: User) -> bool:
    """Whether the annotator's current business with the group is its repeat:
    they ranked it once and were served it again."""
    return (
        Ranking.objects.filter(group=group, annotator=annotator, repeat=False).exists()
        and Assignment.objects.filter(group=group, annotator=annotator, repeat=True).exists()
    )


def ranking_clean(
    *,
    dataset: Dataset,
    candidate_ids: set[str],
    tiers: object,
    unusable: object = None,
    shown_as: dict[str, str] | None = None,
) -> tuple[dict, dict]:
    """Check that every dimension places every candidate exactly once.

    `tiers`: {dimension: [[ids of tier 1], [tier 2], ...]} best first.
    `unusable`: optional {dimension: [ids]}, a floor below every tier.
    `shown_as`: {id: the name the caller knows it by} for error messages (an annotator knows
    candidates by opaque tokens; their import ids may name the editor).
    Returns (tiers, unusable) with only the dataset's dimensions.
    """
    shown_as = shown_as or {}

    def named(ids) -> str:
        return ", ".join(sorted(shown_as.get(c, c) for c in ids))

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
        counts = Counter(placed)
        repeated = sorted(c for c, n in counts.items() if n > 1)
        if repeated:
            raise RankingInvalid(f"{dim}: candidate(s) placed twice: {named(repeated[:10])}")
        strangers = sorted(set(counts) - candidate_ids)
        if strangers:
            raise RankingInvalid(f"{dim}: unknown candidate(s): {', '.join(strangers[:10])}")
        missing = sorted(candidate_ids - set(counts))
        if missing:
            raise RankingInvalid(f"{dim}: candidate(s) not placed: {named(missing)}")
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
    from_annotator: bool = False,
) -> tuple[Ranking, bool]:
    """Store a ranking; returns (ranking, created). The same submission_id again
    returns the stored ranking (a retried request). A ranking that arrives after
    its lease expired is still stored; past K rankings it is flagged surplus.

    `from_annotator` (the annotation API): the blind path. Candidates are named only by the
    tokens the annotator was served (an import id is an unknown candidate, so no message can
    map one to a token), and only a group that was served to them (leased, even if the lease
    has expired, or served as gold or a repeat) may be ranked: RankingConflict otherwise."""
    dataset = group.dataset
    if from_annotator and not Assignment.objects.filter(group=group, annotator=annotator).exists():
        raise RankingConflict(
            "this group was not served to you: ask for your next group and rank that one"
        )
    clean_tiers, clean_unusable = _placements_clean(group, tiers, unusable, from_annotator)
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = Group.objects.select_for_update().get(pk=group.pk)
            previous = Ranking.objects.filter(submission_id=submission_id).first()
            if previous is None:  # a version a revision has replaced since
                replaced = RankingVersion.objects.filter(submission_id=submission_id).first()
                previous = replaced.ranking if replaced is not None else None
            if previous is not None:  # the same request, retried while we waited for the lock
                return _same_submission(previous, group, annotator), False
            # A second ranking of the group by this annotator fails on the unique
            # constraint (annotator, group, repeat), unless it was served a repeat.
            repeat = _is_repeat(group, annotator)
            lease_expires = (
                Assignment.objects.filter(group=group, annotator=annotator, repeat=repeat)
                .values_list("expires_at", flat=True)
                .first()
            )
            shown = [
                c.external_id
                for c in candidates_in_annotator_order(
                    group=group, annotator=annotator, repeat=repeat
                )
            ]
            target = dataset.overlap + locked.extra_overlap
            counted = not repeat and (locked.is_gold or locked.ranking_count < target)
            ranking = Ranking.objects.create(
                group=group,
                annotator=annotator,
                submission_id=submission_id,
                tiers=clean_tiers,
                unusable=clean_unusable,
                seconds_spent=seconds_spent,
                surplus=not repeat and not counted,
                lease_expired=lease_expires is None or lease_expires <= now,
                repeat=repeat,
                shown_order=shown,
                code=_code(dataset, clean_tiers, clean_unusable, shown),
            )
            if counted:
                Group.objects.filter(pk=group.pk).update(ranking_count=F("ranking_count") + 1)
                if not locked.is_gold and locked.ranking_count + 1 == target:
                    group_review(locked, dataset)
                    _announce_if_complete(dataset)
            _assignment_upsert(
                group=group,
                annotator=annotator,
                status=Assignment.Status.DONE,
                leased_at=now,
                expires_at=now,
                repeat=repeat,
            )
    except IntegrityError:
        previous = Ranking.objects.filter(submission_id=submission_id).first()
        if previous is None:
            raise RankingConflict("you have already ranked this group") from None
        return _same_submission(previous, group, annotator), False
    return ranking, True


def _code(dataset: Dataset, tiers: dict, unusable: dict, shown: list[str]) -> str:
    """The statistics' short form of a ranking (annotation/stats/codes.py), the candidate shown
    first included."""
    keys = dataset.dimension_keys
    return ranking_code({d: full_tiers(tiers, unusable, d) for d in keys}, keys, shown, shown[0])


def _placements_clean(
    group: Group, tiers: object, unusable: object, from_annotator: bool
) -> tuple[dict, dict]:
    """ranking_clean for this group, returning the import's candidate ids. From an annotator
    (the blind path) candidates are named only by the tokens they were served, and checked in
    those names, so no message maps an import id to a token; others (imports, scripts,
    tests) may use either."""
    to_external, to_token = {}, {}
    for external_id, token in group.candidates.values_list("external_id", "token"):
        to_external[token] = to_external[external_id] = external_id
        to_token[external_id] = token
    if from_annotator:
        in_tokens = ranking_clean(
            dataset=group.dataset, candidate_ids=set(to_token.values()), tiers=tiers,
            unusable=unusable,
        )  # fmt: skip
        clean_tiers, clean_unusable = (placements_renamed(p, to_external) for p in in_tokens)
        return clean_tiers, clean_unusable
    return ranking_clean(
        dataset=group.dataset, candidate_ids=set(to_token),
        tiers=_external_ids(tiers, to_external), unusable=_external_ids(unusable, to_external),
        shown_as=to_token,
    )  # fmt: skip


def ranking_revise(
    *,
    ranking: Ranking,
    annotator: User,
    submission_id: uuid.UUID,
    tiers: object,
    unusable: object = None,
    seconds_spent: float | None = None,
    from_annotator: bool = False,
) -> tuple[Ranking, bool]:
    """Replace an annotator's ranking with a new version; the version it replaces is kept as a
    RankingVersion. Returns (ranking, created): the current version's submission_id with the
    same placements is a retried request; a submission_id used before for anything else is a
    RankingConflict, as is a ranking not theirs or one `revision_refusal` refuses. The ranking's
    `seconds_spent` adds up its versions' time. The group's agreement is recomputed if it had
    its rankings, and the dataset's report goes stale. (Quality control reads the first
    version: annotation/quality.py.)"""
    if ranking.annotator_id != annotator.pk:
        raise RankingConflict("you may revise only your own rankings")
    group = ranking.group
    dataset = group.dataset
    clean_tiers, clean_unusable = _placements_clean(group, tiers, unusable, from_annotator)
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = Group.objects.select_for_update().get(pk=group.pk)
            current = Ranking.objects.select_for_update().get(pk=ranking.pk)
            if current.submission_id == submission_id:
                if (current.tiers, current.unusable) == (clean_tiers, clean_unusable):
                    return current, False  # the same request, retried
                raise RankingConflict("this submission id was used for another version")
            used = Ranking.objects.filter(submission_id=submission_id).exists()
            if used or RankingVersion.objects.filter(submission_id=submission_id).exists():
                raise RankingConflict("this submission id was used before: reload the page")
            current.group = locked
            refusal = revision_refusal(current, now)
            if refusal is not None:
                raise RankingConflict(refusal)
            RankingVersion.objects.create(
                ranking=current, version=current.version, submission_id=current.submission_id,
                tiers=current.tiers, unusable=current.unusable, seconds_spent=current.seconds_spent,
                code=current.code, submitted_at=current.revised_at or current.created_at,
            )  # fmt: skip
            shown = current.shown_order or [c.external_id for c in group.candidates.all()]
            current.tiers, current.unusable = clean_tiers, clean_unusable
            if seconds_spent is not None:
                current.seconds_spent = (current.seconds_spent or 0) + seconds_spent
            current.submission_id = submission_id
            current.version, current.revised_at = current.version + 1, now
            current.code = _code(dataset, clean_tiers, clean_unusable, shown)
            current.save()
            target = dataset.overlap + locked.extra_overlap
            if not (current.repeat or locked.is_gold) and locked.ranking_count >= target:
                group_review(locked, dataset)  # surplus rankings are votes in its agreement too
            DatasetReport.objects.filter(dataset_id=dataset.pk).update(last_ranking_id=-1)
    except IntegrityError:  # a submission id another request has just used
        raise RankingConflict("this submission id was used before: reload the page") from None
    return current, True


def _announce_if_complete(dataset: Dataset) -> None:
    """The webhooks' dataset.complete: the ranking that gave the last group its target (a
    group asked for more rankings after low agreement is not complete yet)."""
    from hooks.services import emit

    groups = Group.objects.filter(dataset=dataset, is_gold=False)
    if not groups.filter(ranking_count__lt=dataset.overlap + F("extra_overlap")).exists():
        emit("dataset.complete", {"dataset": dataset.pk, "name": dataset.name,
                                  "groups": groups.count(),
                                  "url": f"/annotate/{dataset.pk}/quality/"})  # fmt: skip


def group_review(group: Group, dataset: Dataset) -> None:
    """Once a group has its target number of rankings: if they agree too little,
    ask for one more ranking (up to the dataset's extra overlap), then queue it
    for a researcher's adjudication. Called under the group's row lock."""
    rankings = list(Ranking.objects.filter(group=group, repeat=False).only("tiers", "unusable"))
    agreement = group_mean_agreement(rankings, dataset.dimension_keys)
    fields = {"agreement": agreement}
    if group.review == Review.ADJUDICATED:
        pass  # a researcher has decided: more votes do not reopen it
    elif agreement is not None and agreement < dataset.adjudication_threshold:
        if group.extra_overlap < dataset.adjudication_extra_overlap:
            fields.update(extra_overlap=group.extra_overlap + 1, review=Review.EXTRA)
        else:
            fields["review"] = Review.QUEUED
    elif group.review == Review.EXTRA:
        fields["review"] = Review.NONE
    Group.objects.filter(pk=group.pk).update(**fields)


def group_mean_agreement(rankings, dimensions: list[str]) -> float | None:
    """Mean over dimensions of the mean pairwise agreement of the annotator pairs."""
    per_dimension = []
    for dim in dimensions:
        positions = [tier_positions(r.full_tiers(dim)) for r in rankings]
        pairs = [
            value
            for a, b in combinations(positions, 2)
            if (value := pairwise_agreement(a, b)) is not None
        ]
        if pairs:
            per_dimension.append(sum(pairs) / len(pairs))
    return sum(per_dimension) / len(per_dimension) if per_dimension else None


def _external_ids(placements: object, to_external: dict[str, str]) -> object:
    """Rankings are stored with the import's candidate ids; clients may send the
    tokens the API hands out or those ids. Anything else passes through for
    ranking_clean to reject with a message."""
    if not isinstance(placements, dict):
        return placements

    def convert(value):
        if isinstance(value, list):
            return [convert(v) for v in value]
        return to_external.get(value, value) if isinstance(value, str) else value

    return {dim: convert(value) for dim, value in placements.items()}


def placements_renamed(placements: dict, names: dict[str, str]) -> dict:
    """{dimension: tiers or a list} with every candidate renamed through `names` (a name it
    does not know stays)."""

    def rename(value):
        return [rename(v) for v in value] if isinstance(value, list) else names.get(value, value)

    return {dim: rename(value) for dim, value in placements.items()}


def _same_submission(previous: Ranking, group: Group, annotator: User) -> Ranking:
    if previous.group_id != group.pk or previous.annotator_id != annotator.pk:
        raise RankingConflict("this submission_id was already used for another ranking")
    return previous


class AdjudicationRefused(Conflict):
    """The group is not one a researcher may adjudicate."""


ADJUDICABLE = (Review.EXTRA, Review.QUEUED, Review.ADJUDICATED)


def adjudication_submit(
    *, group: Group, researcher: User, tiers: object, unusable: object = None, note: str = ""
) -> Adjudication:
    """A researcher's ranking of a disputed group becomes its consensus (a second
    submission replaces the first). Only groups flagged for low agreement (asked
    for more rankings, queued, or adjudicated before) qualify: elsewhere there is
    no dispute, and gold groups have their truth. The dataset's stored report
    goes stale."""
    clean_tiers, clean_unusable = _placements_clean(group, tiers, unusable, from_annotator=False)
    with transaction.atomic():
        # The group's row lock orders this against ranking_submit's review.
        locked = Group.objects.select_for_update().get(pk=group.pk)
        if locked.is_gold or locked.review not in ADJUDICABLE:
            raise AdjudicationRefused(
                "only groups flagged for low agreement can be adjudicated; this one is "
                + ("a gold group" if locked.is_gold else "not flagged")
            )
        adjudication, _ = Adjudication.objects.update_or_create(
            group=group,
            defaults={
                "researcher": researcher,
                "tiers": clean_tiers,
                "unusable": clean_unusable,
                "note": note,
            },
        )
        Group.objects.filter(pk=group.pk).update(review=Review.ADJUDICATED)
        DatasetReport.objects.filter(dataset_id=group.dataset_id).update(last_ranking_id=-1)
    return adjudication


def rankings_snapshot(
    *, dataset_id: int | None = None, snapshot_id: int | None = None, user=None, split=None
):
    """A rankings snapshot for a job to learn from: the registered one named by `snapshot_id`
    (its folder must still be there; it carries its own split), or the dataset's rankings now
    with `split` (a new snapshot, or the last one when nothing changed). ValueError says what
    is missing."""

    if snapshot_id is not None:
        snapshot = Snapshot.objects.filter(pk=snapshot_id, kind=Snapshot.Kind.RANKINGS).first()
        if snapshot is None:
            raise ValueError(f"there is no rankings snapshot with id {snapshot_id}")
        if not (Path(snapshot.path) / "manifest.json").is_file():
            raise ValueError(
                f"rankings snapshot {snapshot.name}: its folder {snapshot.path} is gone"
            )
        return snapshot
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        raise ValueError(f"there is no dataset with id {dataset_id}")
    return snapshot_rankings(dataset, user=user, split=split)


def _free_dataset_name(base: str) -> str:
    name, n = base[:100], 2
    while Dataset.objects.filter(name=name).exists():
        suffix = f"-{n}"
        name, n = base[: 100 - len(suffix)] + suffix, n + 1
    return name


def dataset_create_from_images(
    *, name: str, groups: list[dict], overlap: int = 3, annotators=()
) -> Dataset:
    """A dataset of images already in the media storage (what other apps send to annotation,
    e.g. an RL run's samples), named `name` or `name-2`, `name-3`... when taken. Each group:
    {"external_id", "instruction", "task_type", "source", "source_thumb", "meta",
    "candidates": [{"external_id", "editor", "image", "thumb", "meta"}]}."""
    with transaction.atomic():
        dataset = Dataset.objects.create(name=_free_dataset_name(name), overlap=overlap)
        dataset.annotators.add(*annotators)
        for spec in groups:
            spec = dict(spec)
            candidates = spec.pop("candidates")
            group = Group.objects.create(dataset=dataset, **spec)
            Candidate.objects.bulk_create(Candidate(group=group, **c) for c in candidates)
    return dataset


def annotator_datasets_set(*, user: User, dataset_ids: list[int]) -> list[str]:
    """Make `user` an annotator of exactly these datasets (unknown ids are an error); the names
    of their datasets now."""
    datasets = list(Dataset.objects.filter(pk__in=dataset_ids))
    if len(datasets) != len(set(dataset_ids)):
        raise Invalid("no such dataset")
    user.annotation_datasets.set(datasets)
    return sorted(d.name for d in datasets)
