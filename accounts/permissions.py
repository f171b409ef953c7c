"""Who may see what: one place for the role checks of pages and API views."""

from functools import wraps

from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission


def is_researcher(user) -> bool:
    return bool(user.is_authenticated and user.is_active and getattr(user, "is_researcher", False))


def researcher_required(view):
    """Page decorator: anonymous users were already sent to login by the middleware."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_researcher(request.user):
            raise PermissionDenied("This page is for researchers.")
        return view(request, *args, **kwargs)

    return wrapped


class IsResearcher(BasePermission):
    message = "This endpoint is for researchers."

    def has_permission(self, request, view) -> bool:
        return is_researcher(request.user)
