"""Emit events and deliver them.

``emit(event, data)`` files one Delivery per active webhook that subscribed to the event, in the
caller's transaction, and rings the worker after the commit (task ``hooks.deliver``); beat's
``hooks.sweep`` retries what is due, so a broker that was down loses nothing.

A delivery is a POST of ``{"event", "delivery", "created_at", "data"}`` as JSON with the headers
``X-EditLoop-Event``, ``X-EditLoop-Delivery`` (its id: a receiver drops duplicates by it) and
``X-EditLoop-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>``. A 2xx
answer delivers it; anything else (another status, a timeout, a refused connection, a redirect)
is retried after 10 s, 1 min, 5 min and 30 min, then the delivery fails. Each attempt is claimed
first (a conditional update), so two workers never send one attempt twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.errors import Invalid
from hooks.models import EVENTS, Delivery, Webhook

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (10, 60, 300, 1800)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
TIMEOUT_SECONDS = 10
CLAIM_SECONDS = 60  # an attempt in flight is not due again before this


def emit(event: str, data: dict) -> list[int]:
    """File the event for every subscribed webhook; the ids of the new deliveries."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    now = timezone.now()
    ids = []
    for webhook in Webhook.objects.filter(active=True):
        if event in webhook.events:
            ids.append(Delivery.objects.create(webhook=webhook, event=event, payload=data,
                                               next_attempt_at=now).pk)  # fmt: skip
    if ids:
        transaction.on_commit(lambda: _ring(ids))
    return ids


def _ring(ids: list[int]) -> None:
    from config.celery import app

    for pk in ids:
        try:
            app.send_task("hooks.deliver", args=[pk], retry=False)
        except Exception as exc:  # the broker is down: the sweep will send it
            log.warning("could not queue webhook delivery %s (%s)", pk, exc)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is an answer, not a delivery


def deliver(delivery_id: int) -> str:
    """One attempt, if the delivery is due; returns its status afterwards."""
    now = timezone.now()
    claimed = Delivery.objects.filter(
        pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or not claimed:
        return delivery.status if delivery else "gone"
    body = json.dumps({"event": delivery.event, "delivery": delivery.pk,
                       "created_at": delivery.created_at.isoformat(), "data": delivery.payload},
                      separators=(",", ":")).encode()  # fmt: skip
    request = urllib.request.Request(delivery.webhook.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "EditLoop-Webhook",
        "X-EditLoop-Event": delivery.event, "X-EditLoop-Delivery": str(delivery.pk),
        "X-EditLoop-Signature": signature(delivery.webhook.secret, body),
    })  # fmt: skip
    code, error = None, ""
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=TIMEOUT_SECONDS) as r:
            code = r.status
    except urllib.error.HTTPError as exc:
        code, error = exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = str(getattr(exc, "reason", exc))[:500] or type(exc).__name__
    fields = {"last_status_code": code, "last_error": error}
    if code is not None and 200 <= code < 300:
        fields |= {"status": Delivery.Status.DELIVERED, "delivered_at": timezone.now(),
                   "next_attempt_at": None, "last_error": ""}  # fmt: skip
    elif delivery.attempts >= MAX_ATTEMPTS:
        fields |= {"status": Delivery.Status.FAILED, "next_attempt_at": None}
    else:
        wait = BACKOFF_SECONDS[delivery.attempts - 1]
        fields["next_attempt_at"] = timezone.now() + timedelta(seconds=wait)
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    return str(fields.get("status") or Delivery.Status.PENDING)


def sweep(limit: int = 100) -> list[int]:
    """Queue the pending deliveries that are due (retries, and what a down broker missed)."""
    due = list(Delivery.objects.filter(status=Delivery.Status.PENDING,
                                       next_attempt_at__lte=timezone.now())
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])  # fmt: skip
    if due:
        _ring(due)
    return due


def ping(webhook: Webhook) -> int:
    """A test delivery of event "ping" to one webhook, whatever it subscribed to."""
    delivery = Delivery.objects.create(webhook=webhook, event="ping", next_attempt_at=timezone.now(),
                                       payload={"webhook": webhook.pk})  # fmt: skip
    transaction.on_commit(lambda: _ring([delivery.pk]))
    return delivery.pk


def webhook_create(*, url: str, events: list[str], user=None) -> Webhook:
    """Validated: an http(s) URL of at most 500 characters and known events."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise Invalid("the URL must be an http:// or https:// address") from None
    if len(url) > 500:
        raise Invalid("the URL is longer than 500 characters")
    unknown = sorted(set(events) - EVENTS.keys())
    if unknown or not events:
        raise Invalid(f"choose events among {', '.join(EVENTS)}")
    return Webhook.objects.create(url=url, events=sorted(set(events)), created_by=user)
