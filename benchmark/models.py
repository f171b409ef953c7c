"""Benchmark data the app knows about: pairs imported from the published benchmark or from a
snapshot of agreed rankings (annotation.Snapshot), the runs that score them and their cache."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class BenchmarkDataset(models.Model):
    """Preference pairs to score reward models on: the published EditReward-Bench,
    or a snapshot of our own consensus, imported with import_benchmark."""

    name = models.CharField(max_length=200, unique=True)
    layout = models.CharField(max_length=20, help_text="parquet, jsonl or snapshot")
    source_path = models.CharField(max_length=1000)
    split = models.CharField(max_length=20, blank=True)
    snapshot = models.ForeignKey(
        "annotation.Snapshot", null=True, blank=True, on_delete=models.SET_NULL
    )
    rows = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, help_text="pairs per dimension and task type")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BenchmarkCandidate(models.Model):
    """One edited image of the dataset, scored once and reused in all its pairs."""

    dataset = models.ForeignKey(
        BenchmarkDataset, on_delete=models.CASCADE, related_name="candidates"
    )
    key = models.CharField(max_length=300)
    instruction = models.TextField()
    source = models.CharField(max_length=300, help_text="storage name of the input image")
    image = models.CharField(max_length=300, help_text="storage name of the edited image")
    # sha256 over instruction, source and edited bytes: what the score cache is keyed on.
    content_hash = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "key"], name="benchmark_candidate_key")
        ]

    def __str__(self) -> str:
        return self.key


class BenchmarkPair(models.Model):
    """One strict preference on one dimension: `preferred` beat `other`."""

    dataset = models.ForeignKey(BenchmarkDataset, on_delete=models.CASCADE, related_name="pairs")
    row = models.PositiveIntegerField(help_text="row number in the imported file")
    preferred = models.ForeignKey(BenchmarkCandidate, on_delete=models.CASCADE, related_name="+")
    other = models.ForeignKey(BenchmarkCandidate, on_delete=models.CASCADE, related_name="+")
    task_type = models.CharField(max_length=64)
    dimension = models.CharField(max_length=64)
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["row"]
        indexes = [models.Index(fields=["dataset", "row"])]

    def __str__(self) -> str:
        return f"row {self.row}: {self.dimension}"


class ScoreCache(models.Model):
    """A scorer's scores of one candidate, keyed by the scorer's full config and the
    candidate's content: a crashed run resumes, a rerun scores nothing twice."""

    scorer_key = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    scores = models.JSONField(
        help_text="prompt_following, consistency, perceptual_quality, overall, raw, error"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scorer_key", "content_hash"], name="score_cache_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scorer_key[:8]}:{self.content_hash[:8]}"


class BenchmarkRun(models.Model):
    """One reward model (a scorer) evaluated on one dataset: a job of the job framework."""

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="benchmark_run")
    dataset = models.ForeignKey(BenchmarkDataset, on_delete=models.CASCADE, related_name="runs")
    label = models.CharField(max_length=200)
    scorer = models.JSONField(help_text="the scorer spec (never secrets)")
    scorer_key = models.CharField(
        max_length=64, blank=True, help_text="set by the worker when the run starts"
    )
    # Every setting that determines the scores (Scorer.config(): prompt set, decoding, seeds,
    # parse policy, image handling...), defaults included: what the run page shows.
    scorer_config = models.JSONField(default=dict, blank=True)
    metric = models.JSONField(
        null=True, blank=True, help_text="benchmark.ml.metric.evaluate output"
    )
    # Candidates the scorer could not score, {key: {"error", "raw"}}: kept here, not
    # in the cache, so that a rerun tries them again (a timeout is not a verdict).
    unscored = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.label} on {self.dataset}"
