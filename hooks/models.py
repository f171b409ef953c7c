"""Webhooks: signed JSON POSTs to a lab's automation when something happens in EditLoop."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

EVENTS = {
    "job.succeeded": "a job succeeded (import, export, benchmark run, fine-tune, RL...)",
    "job.failed": "a job failed, with its error and why (error_kind)",
    "dataset.complete": "every group of a dataset has the rankings it needs",
    "model.promoted": "a reward model became the default",
}


def new_secret() -> str:
    return secrets.token_hex(32)


class Webhook(models.Model):
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=64, default=new_secret,
                              help_text="the HMAC-SHA256 key of the X-EditLoop-Signature header")  # fmt: skip
    events = models.JSONField(default=list, help_text="event names (hooks.models.EVENTS)")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.url


class Delivery(models.Model):
    """One event for one webhook: tried until a 2xx answer or MAX_ATTEMPTS (hooks.services)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook_id}: {self.status}"
