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
