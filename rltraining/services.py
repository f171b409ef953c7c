"""Closing the loop: an RL run's outputs go back to annotators (a new annotation dataset whose
groups hold, per held-out prompt, the base policy's and the trained policy's edits as blind
candidates, and the Best-of-N pick when there is one)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from annotation.models import Candidate, Dataset, Group
from rltraining.models import RLRun, RLSample


class SendRefused(ValueError):
    """Why the run cannot be sent (yet); nothing was created."""


def _free_name(base: str) -> str:
    name, n = base[:100], 2
    while Dataset.objects.filter(name=name).exists():
        suffix = f"-{n}"
        name, n = base[: 100 - len(suffix)] + suffix, n + 1
    return name


def send_to_annotation(*, run: RLRun, overlap: int = 3, annotators=()) -> Dataset:
    """A dataset `rl-<run>` with one group per held-out prompt: the base policy's evaluation
    sample (round 0), the trained policy's (its last evaluated round) and, when a Best-of-N
    job ran, its pick, each named by its origin in `editor` only (annotators never see it:
    the editor leaderboard then ranks base against trained)."""
    evals = RLSample.objects.filter(run=run, kind=RLSample.Kind.EVAL)
    last = evals.exclude(round=0).aggregate(r=Max("round"))["r"]
    if last is None or not evals.filter(round=0).exists():
        raise SendRefused(
            f"run {run.name} has no evaluation samples of both the base and the trained policy "
            "yet (it needs held-out prompts and one finished evaluation round)"
        )
    picks = {
        s.prompt_index: s
        for s in RLSample.objects.filter(run=run, kind=RLSample.Kind.BEST_OF_N, best=True)
        .exclude(round=0)
        .order_by("round")  # the newest trained Best-of-N wins
    }
    with transaction.atomic():
        dataset = Dataset.objects.create(name=_free_name(f"rl-{run.name}"), overlap=overlap)
        dataset.annotators.add(*annotators)
        base = {s.prompt_index: s for s in evals.filter(round=0)}
        for sample in evals.filter(round=last).order_by("prompt_index"):
            group = Group.objects.create(
                dataset=dataset, external_id=f"{run.name}-{sample.prompt_key or sample.prompt_index}",
                instruction=sample.instruction, task_type="rl", source=sample.source,
                source_thumb=sample.source_thumb,
                meta={"rl_run": run.name, "prompt_index": sample.prompt_index},
            )  # fmt: skip
            entries = [("base", base.get(sample.prompt_index)), (f"trained@{last}", sample)]
            if sample.prompt_index in picks:
                pick = picks[sample.prompt_index]
                entries.append((f"best-of-n@{pick.round}", pick))
            for k, (editor, s) in enumerate(e for e in entries if e[1] is not None):
                Candidate.objects.create(
                    group=group, external_id=f"{group.external_id}-c{k}", editor=editor,
                    image=s.image, thumb=s.thumb, meta={"reward": s.reward, "round": s.round},
                )  # fmt: skip
        RLRun.objects.filter(pk=run.pk).update(review_dataset=dataset)
    return dataset
