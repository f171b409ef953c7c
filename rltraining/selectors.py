"""Reading RL runs (for this app's pages and for the other apps)."""

from __future__ import annotations

from rltraining.models import RLRun


def run_by_name(name: str) -> RLRun | None:
    return RLRun.objects.filter(name=name).first()
