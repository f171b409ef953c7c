from django.contrib import admin
from django.core.exceptions import PermissionDenied


class EditLoopAdminSite(admin.AdminSite):
    site_header = "EditLoop admin"
    site_title = "EditLoop admin"

    def has_permission(self, request) -> bool:
        return request.user.is_active and getattr(request.user, "is_researcher", False)

    def login(self, request, extra_context=None):
        # A signed-in annotator gets a plain 403, not the admin's own login form.
        if request.user.is_authenticated and not self.has_permission(request):
            raise PermissionDenied("The admin is for researchers.")
        return super().login(request, extra_context)
