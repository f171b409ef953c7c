"""Researchers manage people without the Django admin: create an annotator or researcher and
hand them a one-time invitation link (accounts.people), choose the datasets they annotate,
change their role, deactivate them."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from accounts.models import Role, User
from accounts.people import invitation_link
from accounts.permissions import researcher_required
from accounts.services import user_create_or_update
from annotation.selectors import dataset_list
from annotation.services import annotator_datasets_set
from config.errors import FORM_ERRORS, Invalid, refusal_status

USERNAME_MAX = 150


@require_http_methods(["GET", "POST"])
@researcher_required
def people(request):
    """Everyone, with their role, state and datasets; a form to add someone."""
    error, status = None, 200
    if request.method == "POST":
        username = request.POST.get("username", "").strip()
        role = request.POST.get("role", Role.ANNOTATOR)
        try:
            if not username or len(username) > USERNAME_MAX or not username.isprintable():
                raise Invalid(f"a user name is 1 to {USERNAME_MAX} printable characters")
            if User.objects.filter(username=username).exists():
                raise Invalid(f"{username} exists already")
            user, _ = user_create_or_update(username=username, role=role)
        except FORM_ERRORS as exc:
            error, status = str(exc), refusal_status(exc)
        else:
            messages.success(request, f"{user.username} created. Send them this one-time link to "
                             f"choose a password: {invitation_link(request, user)}")  # fmt: skip
            return redirect("person", user_id=user.pk)
    users = User.objects.order_by("username").prefetch_related("annotation_datasets")
    return render(request, "accounts/people.html",
                  {"users": users, "roles": Role.choices, "error": error}, status=status)  # fmt: skip


@require_http_methods(["GET", "POST"])
@researcher_required
def person(request, user_id: int):
    """One person: the datasets they annotate, their role, a fresh invitation, (de)activation."""
    user = get_object_or_404(User, pk=user_id)
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "datasets":
                ids = [int(x) for x in request.POST.getlist("datasets") if x.isdigit()]
                names = annotator_datasets_set(user=user, dataset_ids=ids)
                messages.success(
                    request, f"{user.username} annotates: {', '.join(names) or 'none'}"
                )
            elif action == "role":
                user_create_or_update(username=user.username, role=request.POST.get("role", ""))
                messages.success(request, f"{user.username} is now {request.POST.get('role')}")
            elif action in ("deactivate", "activate"):
                if user == request.user:
                    raise Invalid("you cannot deactivate yourself")
                user.is_active = action == "activate"
                user.save(update_fields=["is_active"])
                messages.success(request, f"{user.username} {action}d")
            elif action == "invite":
                messages.success(request, f"One-time link for {user.username}: "
                                 f"{invitation_link(request, user)}")  # fmt: skip
            else:
                raise Invalid("unknown action")
        except FORM_ERRORS as exc:
            messages.error(request, str(exc))
        return redirect("person", user_id=user.pk)
    assigned = set(user.annotation_datasets.values_list("pk", flat=True))
    return render(request, "accounts/person.html", {
        "person": user, "roles": Role.choices, "assigned": assigned, "datasets": dataset_list(),
    })  # fmt: skip
