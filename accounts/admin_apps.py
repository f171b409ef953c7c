from django.contrib.admin.apps import AdminConfig


class EditLoopAdminConfig(AdminConfig):
    """Django's admin with a site that lets researchers in and answers 403 to annotators."""

    default_site = "accounts.admin_site.EditLoopAdminSite"
