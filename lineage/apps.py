from django.apps import AppConfig


class LineageConfig(AppConfig):
    """What made what: datasets, snapshots, reward models, benchmark runs and RL runs as one
    graph. It sits above the apps it walks (through their selectors); nothing imports it."""

    name = "lineage"
    verbose_name = "Lineage"
