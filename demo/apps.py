from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The product demo: `manage.py demo` and `demo_loop`. It imports the other apps through
    their services; nothing imports it."""

    name = "demo"
    verbose_name = "Demo"
