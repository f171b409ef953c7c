"""Datasets of (source image, instruction) groups, their candidates, and the
annotators' leases and tiered rankings."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from annotation.constants import DEFAULT_DIMENSIONS
from annotation.ml.split import Split


def full_tiers(tiers: dict, unusable: dict, dimension: str) -> list[list[str]]:
    """Tiers best first, with the unusable floor (if any) as the last tier."""
    floor = unusable.get(dimension) or []
    return [*tiers[dimension], *([floor] if floor else [])]


def _default_dimensions() -> list[dict]:
    return [dict(d) for d in DEFAULT_DIMENSIONS]


class DatasetManager(models.Manager):
    """Datasets in use. A dataset being imported is a hidden staging dataset that receives the
    groups batch by batch (annotation/importer.py): nobody sees it, nothing is served from it,
    until the import moves its groups into the named dataset in one short transaction."""

    def get_queryset(self):
        return super().get_queryset().filter(importing=False)


class Dataset(models.Model):
    name = models.CharField(max_length=100, unique=True)
    dimensions = models.JSONField(
        default=_default_dimensions, help_text='[{"key", "label", "rubric"}], ranked separately'
    )
    overlap = models.PositiveIntegerField(default=3, help_text="rankings wanted per group (K)")
    lease_ttl_seconds = models.PositiveIntegerField(default=600)
    # Quality control (see annotation/quality.py).
    gold_rate = models.FloatField(
        default=0.1, help_text="chance that `next` serves a gold group the annotator has not seen"
    )
    repeat_rate = models.FloatField(
        default=0.05, help_text="chance that `next` serves a group again, candidates reordered"
    )
    repeat_gap = models.PositiveIntegerField(
        default=5, help_text="a repeat comes at least this many of the annotator's groups later"
    )
    adjudication_threshold = models.FloatField(
        default=0.6, help_text="groups whose mean pairwise agreement is below this are reviewed"
    )
    adjudication_extra_overlap = models.PositiveIntegerField(
        default=1,
        help_text="extra rankings a low-agreement group gets before it goes to adjudication",
    )
    revision_window_seconds = models.PositiveIntegerField(
        default=86400,
        help_text="how long after submitting it an annotator may revise a ranking (0: never); "
        "an adjudicated group's rankings are final",
    )
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="annotation_datasets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    importing = models.BooleanField(default=False, editable=False)

    all_objects = models.Manager()  # staging datasets of imports too
    objects = DatasetManager()

    class Meta:
        ordering = ["name"]
        default_manager_name = "objects"

    def __str__(self) -> str:
        return self.name

    @property
    def dimension_keys(self) -> list[str]:
        return [d["key"] for d in self.dimensions]

    def clean(self) -> None:
        """Labels and rubrics may change at any time; the dimension keys and their
        order may not once rankings exist: every ranking (and its code) is
        written against them."""
        keys = [d.get("key") for d in self.dimensions if isinstance(d, dict)]
        if len(keys) != len(self.dimensions) or not all(isinstance(k, str) and k for k in keys):
            raise ValidationError({"dimensions": 'each dimension needs a "key" string'})
        if len(set(keys)) != len(keys):
            raise ValidationError({"dimensions": "dimension keys repeat"})
        if self.pk is None:
            return
        before = Dataset.objects.filter(pk=self.pk).values_list("dimensions", flat=True).first()
        changed = before is not None and [d["key"] for d in before] != keys
        if changed and Ranking.objects.filter(group__dataset_id=self.pk).exists():
            raise ValidationError(
                {"dimensions": "this dataset has rankings: dimension keys and their order are "
                 "fixed (edit labels and rubrics only, or create a new dataset)"}
            )  # fmt: skip


class Review(models.TextChoices):
    NONE = "", "none"
    EXTRA = "extra", "more rankings asked"
    QUEUED = "queued", "awaiting adjudication"
    ADJUDICATED = "adjudicated", "adjudicated"


class Group(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="groups")
    external_id = models.CharField(max_length=200)
    instruction = models.TextField()
    task_type = models.CharField(max_length=64)
    source = models.CharField(max_length=300, help_text="storage name of the source image")
    source_thumb = models.CharField(max_length=300)
    meta = models.JSONField(default=dict, blank=True)
    # Non-surplus rankings so far; kept in step under the group's row lock.
    ranking_count = models.PositiveIntegerField(default=0)
    # Gold groups carry known relations per dimension and are served to every
    # annotator (outside the overlap count) to score them:
    # {dimension: [[a, ">" | "=" | ">=", b], ...]} with candidate external ids.
    is_gold = models.BooleanField(default=False)
    gold = models.JSONField(default=dict, blank=True)
    # Low agreement asks for more rankings (K + extra_overlap), then adjudication.
    extra_overlap = models.PositiveIntegerField(default=0)
    agreement = models.FloatField(
        null=True, blank=True, help_text="mean pairwise agreement once the target was reached"
    )
    review = models.CharField(
        max_length=12, choices=Review.choices, default=Review.NONE, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "external_id"], name="group_unique_id")
        ]
        # `next` walks this index in order: least-annotated first.
        indexes = [
            models.Index(fields=["dataset", "ranking_count", "id"]),
            models.Index(fields=["dataset", "review"]),
        ]

    def __str__(self) -> str:
        return self.external_id


def new_candidate_token() -> str:
    return secrets.token_urlsafe(12)


class Candidate(models.Model):
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="candidates")
    external_id = models.CharField(max_length=200)
    # What annotators see instead of external_id and pk: ids and manifest order
    # often name or reveal the editor.
    token = models.CharField(max_length=24, unique=True, default=new_candidate_token)
    editor = models.CharField(max_length=200, help_text="never shown to annotators")
    image = models.CharField(max_length=300, help_text="storage name")
    thumb = models.CharField(max_length=300)
    meta = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["group", "external_id"], name="candidate_unique_id")
        ]

    def __str__(self) -> str:
        return self.external_id


class Assignment(models.Model):
    """One annotator's relation to one group: leased (until expires_at), skipped
    (never served to them again) or done. Unique per (annotator, group, repeat):
    a repeat is the same group served a second time to measure self-consistency."""

    class Status(models.TextChoices):
        LEASED = "leased"
        SKIPPED = "skipped"
        DONE = "done"

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.LEASED)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    repeat = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "group", "repeat"], name="assignment_unique"
            )
        ]
        indexes = [models.Index(fields=["group", "status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.annotator_id} on {self.group_id}: {self.status}"


class Ranking(models.Model):
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="rankings")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    submission_id = models.UUIDField(unique=True, help_text="client-chosen: retries are idempotent")
    # {dimension: [[candidate ids of tier 1], [tier 2], ...]}, best first, ties share a tier.
    tiers = models.JSONField()
    # {dimension: [candidate ids]} judged unusable: below every tier, tied among themselves.
    unusable = models.JSONField(default=dict)
    seconds_spent = models.FloatField(null=True)
    surplus = models.BooleanField(default=False, help_text="arrived after K rankings were in")
    lease_expired = models.BooleanField(default=False)
    # A second ranking of the same group by the same annotator, shown reordered:
    # scored for self-consistency, never counted as a vote.
    repeat = models.BooleanField(default=False)
    # Candidate ids in the order the page showed them (position-bias statistics).
    shown_order = models.JSONField(default=list)
    # The tiers (and first-shown candidate) as a short string, written with the
    # ranking, read by the statistics: see annotation/stats/codes.py.
    code = models.CharField(max_length=200, default="")
    created_at = models.DateTimeField(auto_now_add=True, help_text="when version 1 arrived")
    # An annotator may revise their ranking (annotation.services.ranking_revise): this row
    # always holds the current version, the ones it replaced are RankingVersion rows.
    version = models.PositiveIntegerField(default=1)
    revised_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "group", "repeat"], name="ranking_unique_annotator"
            )
        ]

    def __str__(self) -> str:
        return f"ranking {self.pk} of {self.group_id} by {self.annotator_id}"

    def full_tiers(self, dimension: str) -> list[list[str]]:
        """Tiers best first, with the unusable floor (if any) as the last tier."""
        return full_tiers(self.tiers, self.unusable, dimension)


class RankingVersion(models.Model):
    """A version of a ranking that a revision replaced, kept as it was (audit, and the
    agreement of first answers)."""

    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    submission_id = models.UUIDField()
    tiers = models.JSONField()
    unusable = models.JSONField(default=dict)
    seconds_spent = models.FloatField(null=True)
    code = models.CharField(max_length=200, default="")
    submitted_at = models.DateTimeField()
    replaced_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ranking", "version"]
        constraints = [
            models.UniqueConstraint(fields=["ranking", "version"], name="ranking_version_unique")
        ]

    def __str__(self) -> str:
        return f"version {self.version} of ranking {self.ranking_id}"


class Adjudication(models.Model):
    """A researcher's ranking of a disputed group: it replaces the votes as the
    group's consensus."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="adjudication")
    researcher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    tiers = models.JSONField()
    unusable = models.JSONField(default=dict)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"adjudication of {self.group_id}"

    def full_tiers(self, dimension: str) -> list[list[str]]:
        return full_tiers(self.tiers, self.unusable, dimension)


class Snapshot(models.Model):
    """A frozen, content-hashed export of a dataset: its consensus as EditReward-Bench pairs
    (to score reward models on) or chosen/rejected preferences, or its rankings as they are
    (what fine-tuning and RL prompts are made from). The only way annotation data reaches the
    other apps: they read the folder's files, never annotation's tables."""

    class Kind(models.TextChoices):
        BENCHMARK = "benchmark", "EditReward-Bench pairs"
        PREFERENCES = "preferences", "chosen/rejected training pairs"
        RANKINGS = "rankings", "groups with their rankings"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    dataset = models.ForeignKey(
        "annotation.Dataset", null=True, on_delete=models.SET_NULL, related_name="snapshots"
    )
    policy = models.JSONField(help_text='{"name": "unanimous"|"majority", "max_tie_fraction", ...}')
    path = models.CharField(max_length=500, help_text="folder on the shared volume")
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField()
    counts = models.JSONField(default=dict, help_text="rows per dimension and task type")
    split = models.JSONField(
        default=dict, blank=True,
        help_text='{"held_out", "seed", "side"?}: the held-out split (annotation/ml/split.py); '
        "a benchmark snapshot holds its held-out side only",
    )  # fmt: skip
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "benchmark_snapshot"  # made by the benchmark app first; the table stays
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name"], name="snapshot_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.kind} snapshot {self.name}"

    @property
    def split_text(self) -> str:
        """What the pages say about its split."""
        split = Split.from_dict(self.split)
        if split is None:
            return "no held-out split"
        side = ": the held-out side only" if self.split.get("side") == "held_out" else ""
        return split.describe() + side


class DatasetReport(models.Model):
    """The quality report of a dataset (agreement, annotators, consensus, editor
    leaderboard), recomputed by a periodic task so the dashboard only reads it."""

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, related_name="report")
    computed_at = models.DateTimeField()
    last_ranking_id = models.BigIntegerField(default=0)
    rankings = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0)
    data = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"report of {self.dataset}"
