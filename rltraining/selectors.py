"""Reading RL runs (for this app's pages and for the other apps)."""

from __future__ import annotations

from rltraining.models import RLRun


def run_by_name(name: str) -> RLRun | None:
    return RLRun.objects.filter(name=name).first()


def run_get(pk: int) -> RLRun | None:
    return RLRun.objects.select_related("job").filter(pk=pk).first()


def runs_of_snapshot(snapshot_id: int) -> list[RLRun]:
    return list(RLRun.objects.filter(snapshot_id=snapshot_id).order_by("pk"))


def runs_of_reward_model(model_id: int) -> list[RLRun]:
    return list(RLRun.objects.filter(reward_model_id=model_id).order_by("pk"))


def runs_prompted_by_dataset(dataset_id: int) -> list[RLRun]:
    """Runs that read the dataset's groups before they recorded a snapshot (not started yet)."""
    return list(RLRun.objects.filter(dataset_id=dataset_id, snapshot=None).order_by("pk"))


def runs_reviewed_in(dataset_id: int) -> list[RLRun]:
    return list(RLRun.objects.filter(review_dataset_id=dataset_id).order_by("pk"))
