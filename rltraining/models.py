"""RL runs (a Flow-GRPO job and what it produced) and their image samples.

The run's curves are the job's metrics (jobs.JobMetric); its evaluation samples and Best-of-N
picks are `RLSample` rows whose images live in the media storage."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


class RLRun(models.Model):
    name = models.CharField(max_length=100, unique=True)
    job = models.OneToOneField("jobs.Job", on_delete=models.PROTECT, related_name="rl_run")
    policy = models.CharField(max_length=1000, help_text="diffusers pipeline folder")
    reward = models.JSONField(help_text="reward spec (rltraining.ml.rewards.build_reward)")
    reward_model = models.ForeignKey(
        "rewardmodel.RewardModel", null=True, blank=True, on_delete=models.SET_NULL
    )
    dataset = models.ForeignKey(
        "annotation.Dataset", null=True, blank=True, on_delete=models.SET_NULL,
        help_text="prompts: the dataset's groups (instruction + source image)",
    )  # fmt: skip
    snapshot = models.ForeignKey(
        "annotation.Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="the rankings snapshot of `dataset` the prompts were read from (set at start)",
    )  # fmt: skip
    prompts_file = models.CharField(
        max_length=500, blank=True, help_text="prompts: an uploaded JSONL in the media storage"
    )
    prompts_sha256 = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the prompts file, read when the run starts"
    )
    review_dataset = models.ForeignKey(
        "annotation.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="the dataset 'send to annotation' created",
    )  # fmt: skip
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def output_dir(self) -> Path:
        return Path(settings.RL_RUNS_DIR) / self.name


class RLSample(models.Model):
    """One generated image: an evaluation sample (deterministic ODE sampler, on a held-out
    prompt, at a round; round 0 is the policy before training) or a Best-of-N candidate."""

    class Kind(models.TextChoices):
        EVAL = "eval", "evaluation"
        BEST_OF_N = "best_of_n", "Best-of-N"

    run = models.ForeignKey(RLRun, on_delete=models.CASCADE, related_name="samples")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.EVAL)
    round = models.PositiveIntegerField()
    prompt_index = models.PositiveIntegerField()
    sample_index = models.PositiveIntegerField(default=0)
    prompt_key = models.CharField(max_length=200, blank=True)
    instruction = models.TextField()
    source = models.CharField(max_length=500)  # storage names
    source_thumb = models.CharField(max_length=500)
    image = models.CharField(max_length=500)
    thumb = models.CharField(max_length=500)
    reward = models.FloatField(null=True)
    best = models.BooleanField(default=False, help_text="Best-of-N: the reward's pick")

    class Meta:
        ordering = ["kind", "round", "prompt_index", "sample_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "kind", "round", "prompt_index", "sample_index"],
                name="one_sample_per_slot",
            )
        ]

    def __str__(self) -> str:
        return f"{self.run} {self.kind} round {self.round} prompt {self.prompt_index}"
