"""Benchmark data the app knows about: snapshots exported from agreed rankings."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Snapshot(models.Model):
    """A frozen export of a dataset's consensus: EditReward-Bench pairs to score
    reward models on, or chosen/rejected preferences to train one. The content
    hash makes any later benchmark or training run reproducible."""

    class Kind(models.TextChoices):
        BENCHMARK = "benchmark", "EditReward-Bench pairs"
        PREFERENCES = "preferences", "chosen/rejected training pairs"

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
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name"], name="snapshot_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.kind} snapshot {self.name}"
