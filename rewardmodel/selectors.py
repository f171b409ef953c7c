"""Reading the reward-model registry (for this app's pages and for the other apps)."""

from __future__ import annotations

from config.ids import parse_id
from rewardmodel.models import RewardModel


def ready_models() -> list[RewardModel]:
    return list(RewardModel.objects.filter(status=RewardModel.Status.READY))


def ready_model_get(pk) -> RewardModel | None:
    pk = parse_id(pk)
    if pk is None:
        return None
    return RewardModel.objects.filter(pk=pk, status=RewardModel.Status.READY).first()


def model_by_name(name: str) -> RewardModel | None:
    return RewardModel.objects.filter(name=name).first()


def model_get(pk: int) -> RewardModel | None:
    return RewardModel.objects.select_related("job", "snapshot").filter(pk=pk).first()


def models_of_snapshot(snapshot_id: int) -> list[RewardModel]:
    return list(RewardModel.objects.filter(snapshot_id=snapshot_id).order_by("pk"))


def models_of_weights(*, base: str, adapter: str) -> list[RewardModel]:
    return list(RewardModel.objects.filter(base=base, adapter=adapter or "").order_by("pk"))
