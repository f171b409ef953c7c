"""Long-running jobs: the database row is the job, Celery is only the doorbell.

One table holds every job of every kind (benchmark runs, reward-model training,
RL runs), so that one sweeper, one list page and one metrics table serve them
all. A later app stores its domain data in its own model with a one-to-one link
to its Job.
"""

from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class FailureKind(models.TextChoices):
    """Why a job failed, which says what the user can do (jobs/runner.py classifies)."""

    INVALID = "invalid", "its input or config was refused: fix it and start a new job"
    INTERNAL = "internal", "an error in EditLoop or its environment: see the details"
    LOST = "lost", "its worker stopped, on every attempt"


class Job(models.Model):
    kind = models.CharField(max_length=64, help_text="registered job kind, see jobs/registry.py")
    queue = models.CharField(max_length=32, default="default")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    config = models.JSONField(default=dict, help_text="the job's config dataclass as JSON")
    result = models.JSONField(null=True, blank=True)
    # What the user reads: for refused input only the messages (no traceback, no server path).
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=16, choices=FailureKind.choices, blank=True)
    error_detail = models.TextField(blank=True, help_text="the traceback of an internal error")

    attempts = models.PositiveIntegerField(default=0, help_text="claims so far")
    max_attempts = models.PositiveIntegerField(default=3)
    # A fresh token per claim: a worker whose claim was taken away (stale heartbeat,
    # requeued) can no longer write to the row, because every write matches on it.
    claim_token = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    cancel_requested = models.BooleanField(default=False)

    progress = models.FloatField(default=0.0, help_text="fraction done, 0..1")
    progress_message = models.CharField(max_length=500, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress_percent(self) -> int:
        return round(100 * min(max(self.progress, 0.0), 1.0))


class JobMetric(models.Model):
    """One point of a curve. (job, step, name) is unique, so a resumed job that
    logs a step again overwrites it instead of duplicating it."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metrics")
    step = models.IntegerField()
    name = models.CharField(max_length=100)
    value = models.FloatField()

    class Meta:
        ordering = ["job", "name", "step"]
        constraints = [
            models.UniqueConstraint(fields=["job", "step", "name"], name="jobmetric_unique_point")
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.step}={self.value:g}"


class WorkerHeartbeat(models.Model):
    """Written every few seconds by each running Celery worker; read by /healthz."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    pid = models.IntegerField(null=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.hostname
