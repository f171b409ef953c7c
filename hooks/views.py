"""The researchers' webhook page: subscribe a URL to events, test it, read the delivery log."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from accounts.permissions import researcher_required
from config.errors import FORM_ERRORS
from hooks import services
from hooks.models import EVENTS, Delivery, Webhook

LOG_ROWS = 50


@require_http_methods(["GET", "POST"])
@researcher_required
def webhooks(request):
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "create":
                hook = services.webhook_create(url=request.POST.get("url", "").strip(),
                                               events=request.POST.getlist("events"),
                                               user=request.user)  # fmt: skip
                messages.success(request, f"Webhook {hook.pk} created. Its signing secret: "
                                          f"{hook.secret}")  # fmt: skip
            else:
                hook = get_object_or_404(Webhook, pk=request.POST.get("webhook") or 0)
                if action == "ping":
                    services.ping(hook)
                    messages.success(request, f"Ping queued for {hook.url}: see the log below.")
                elif action == "delete":
                    hook.delete()
                    messages.success(request, f"Webhook {hook.url} deleted.")
                elif action == "toggle":
                    hook.active = not hook.active
                    hook.save(update_fields=["active"])
                else:
                    messages.error(request, "unknown action")
        except FORM_ERRORS as exc:
            messages.error(request, f"Not created: {exc}")
        return redirect("webhooks")
    return render(request, "hooks/webhooks.html", {
        "webhooks": Webhook.objects.order_by("pk"), "events": EVENTS,
        "deliveries": Delivery.objects.select_related("webhook")[:LOG_ROWS],
    })  # fmt: skip
