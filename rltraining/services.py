"""Closing the loop: an RL run's outputs go back to annotators (a new annotation dataset whose
groups hold, per held-out prompt, the base policy's and the trained policy's edits as blind
candidates, and the Best-of-N pick when there is one)."""

from __future__ import annotations

import random
import secrets

from django.db import transaction
from django.db.models import Max

from annotation.services import dataset_create_from_images
from config.errors import Invalid
from rltraining.models import RLRun, RLSample


class SendRefused(Invalid):
    """Why the run cannot be sent (yet); nothing was created."""


def send_to_annotation(*, run: RLRun, overlap: int = 3, annotators=()):
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
    base = {s.prompt_index: s for s in evals.filter(round=0)}
    groups = []
    for sample in evals.filter(round=last).order_by("prompt_index"):
        external_id = f"{run.name}-{sample.prompt_key or sample.prompt_index}"
        entries = [("base", base.get(sample.prompt_index)), (f"trained@{last}", sample)]
        if sample.prompt_index in picks:
            pick = picks[sample.prompt_index]
            entries.append((f"best-of-n@{pick.round}", pick))
        groups.append({
            "external_id": external_id, "instruction": sample.instruction, "task_type": "rl",
            "source": sample.source, "source_thumb": sample.source_thumb,
            "meta": {"rl_run": run.name, "prompt_index": sample.prompt_index},
            # Opaque ids in a random order: "-c0" must not mean the base policy.
            "candidates": [
                {"external_id": f"{external_id}-{secrets.token_hex(4)}", "editor": editor,
                 "image": s.image, "thumb": s.thumb, "meta": {"reward": s.reward, "round": s.round}}
                for editor, s in random.SystemRandom().sample(
                    [e for e in entries if e[1] is not None], k=sum(e[1] is not None for e in entries))
            ],
        })  # fmt: skip
    with transaction.atomic():
        dataset = dataset_create_from_images(
            name=f"rl-{run.name}", groups=groups, overlap=overlap, annotators=annotators
        )
        RLRun.objects.filter(pk=run.pk).update(review_dataset=dataset)
    return dataset
