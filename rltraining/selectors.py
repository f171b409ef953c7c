"""Reading RL runs (for this app's pages and for the other apps)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from django.shortcuts import get_object_or_404

from accounts.models import User
from rltraining.models import RLRun, RLSample


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


def recent_runs(limit: int = 200) -> list[RLRun]:
    return list(RLRun.objects.select_related("job", "reward_model")[:limit])


def run_for_page(run_id: int) -> RLRun:
    """The run with what its page shows in one query; 404 when there is none."""
    return get_object_or_404(
        RLRun.objects.select_related("job", "reward_model", "dataset", "review_dataset",
                                     "snapshot"), pk=run_id,
    )  # fmt: skip


def active_users():
    """Who a run's samples can be sent to for annotation."""
    return User.objects.filter(is_active=True).order_by("username")


def eval_rounds(run: RLRun) -> list[int]:
    rounds = RLSample.objects.filter(run=run, kind=RLSample.Kind.EVAL).values_list(
        "round", flat=True
    )
    return sorted(set(rounds))


def gallery(run: RLRun, rounds: list[int], index: int | None) -> dict:
    """The evaluation samples at rounds[index] (default: the last round), with the base
    policy's (round 0) rewards beside them."""
    if not rounds:
        return {"rounds": rounds, "index": 0, "round": None, "samples": []}
    last = len(rounds) - 1
    index = last if index is None else min(max(index, 0), last)
    shown = rounds[index]
    evals = RLSample.objects.filter(run=run, kind=RLSample.Kind.EVAL)
    base = dict(evals.filter(round=0).values_list("prompt_index", "reward"))
    samples: list[Any] = list(evals.filter(round=shown).order_by("prompt_index"))
    for sample in samples:
        sample.base_reward = base.get(sample.prompt_index) if shown != 0 else None
    return {"rounds": rounds, "index": index, "round": shown, "samples": samples}


def best_of_n_samples(run: RLRun) -> list[dict]:
    """Best-of-N samples: per round (0: the base policy), per prompt, the N candidates."""
    rows = RLSample.objects.filter(run=run, kind=RLSample.Kind.BEST_OF_N).order_by(
        "round", "prompt_index", "sample_index"
    )
    out = []
    for round_index, in_round in groupby(rows, key=lambda s: s.round):
        prompts: list[dict[str, Any]] = []
        for _, group in groupby(in_round, key=lambda s: s.prompt_index):
            samples = list(group)
            best = next((s for s in samples if s.best), None)
            prompts.append({"first": samples[0], "samples": samples, "best": best})
        out.append({"round": round_index, "prompts": prompts, "n": len(prompts[0]["samples"])})
    return out
