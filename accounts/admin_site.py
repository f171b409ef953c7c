from functools import wraps

from django.contrib import admin
from django.core.exceptions import PermissionDenied


class EditLoopAdminSite(admin.AdminSite):
    """The admin is for researchers; a signed-in annotator gets a plain 403
    instead of being bounced to the admin's own login form."""

    site_header = "EditLoop admin"
    site_title = "EditLoop admin"

    def has_permission(self, request) -> bool:
        return request.user.is_active and getattr(request.user, "is_researcher", False)

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def guarded(request, *args, **kwargs):
            if request.user.is_authenticated and not self.has_permission(request):
                raise PermissionDenied("The admin is for researchers.")
            return inner(request, *args, **kwargs)

        return guarded

    def login(self, request, extra_context=None):
        if request.user.is_authenticated and not self.has_permission(request):
            raise PermissionDenied("The admin is for researchers.")
        return super().login(request, extra_context)
