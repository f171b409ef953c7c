"""The reward-model registry: EditScore models a researcher imported from a local
path or a fine-tune job produced, one of them promoted as the default."""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction


class RewardModel(models.Model):
    class Origin(models.TextChoices):
        IMPORTED = "imported", "imported from a path"
        TRAINED = "trained", "trained by a job"

    class Status(models.TextChoices):
        READY = "ready", "ready"
        TRAINING = "training", "training"
        FAILED = "failed", "failed"

    name = models.CharField(max_length=200, unique=True)
    base = models.CharField(
        max_length=1000, help_text="Qwen2.5-VL checkpoint folder (or merged EditScore)"
    )
    adapter = models.CharField(max_length=1000, blank=True, help_text="peft LoRA folder, if any")
    prompt_set = models.CharField(
        max_length=20,
        choices=[("reference", "reference (the authors' exact prompts)"),
                 ("editloop", "editloop (EditLoop's wording)")],
        default="reference",
        help_text="the prompt set the model was trained with; scoring uses the same",
    )  # fmt: skip
    origin = models.CharField(max_length=10, choices=Origin.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READY)
    job = models.OneToOneField(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="reward_model"
    )
    snapshot = models.ForeignKey(
        "annotation.Snapshot", null=True, blank=True, on_delete=models.SET_NULL,
        help_text="the rankings snapshot it was fine-tuned on",
    )  # fmt: skip
    weights_sha256 = models.CharField(
        max_length=64, blank=True,
        help_text="sha256 of the adapter folder (media.digest.folder_sha256); blank: not hashed",
    )  # fmt: skip
    gate = models.JSONField(
        default=dict, blank=True,
        help_text="the last promotion verdict (rewardmodel/gate.py): passed, reason, figures",
    )  # fmt: skip
    promoted = models.BooleanField(
        default=False, help_text="the default for RL rewards and suggestions"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["promoted"], condition=models.Q(promoted=True), name="one_promoted_model"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def scorer_spec(self, k: int = 1) -> dict:
        """The benchmark scorer spec that evaluates this model."""
        spec = {"kind": "editscore", "base": self.base, "k": k}
        if self.adapter:
            spec["adapter"] = self.adapter
        if self.prompt_set != "reference":  # the scorer's default
            spec["prompt_set"] = self.prompt_set
        return spec

    def promote(self) -> None:
        from hooks.services import emit

        with transaction.atomic():
            RewardModel.objects.filter(promoted=True).exclude(pk=self.pk).update(promoted=False)
            RewardModel.objects.filter(pk=self.pk).update(promoted=True)
            emit("model.promoted", {"model": self.pk, "name": self.name, "base": self.base,
                                    "adapter": self.adapter, "url": f"/reward-models/{self.pk}/"})  # fmt: skip
        self.promoted = True
