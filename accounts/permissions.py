"""Who may see what: one place for the role checks of pages and API views."""

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
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


def public_read_allowed(request) -> bool:
    """Benchmark results may be shown to anonymous visitors (BENCHMARK_PUBLIC_READ)."""
    return request.user.is_authenticated or settings.BENCHMARK_PUBLIC_READ


def public_read(view):
    """Page decorator: signed-in users always, anonymous visitors only when
    BENCHMARK_PUBLIC_READ is on (checked per request, so the setting can change)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not public_read_allowed(request):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    wrapped.login_required = False  # the middleware leaves the decision to us
    return wrapped


class PublicRead(BasePermission):
    """API: reads for signed-in users, or anyone when BENCHMARK_PUBLIC_READ is on."""

    def has_permission(self, request, view) -> bool:
        return request.method in ("GET", "HEAD", "OPTIONS") and public_read_allowed(request)
