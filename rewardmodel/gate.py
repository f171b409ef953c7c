"""The promotion gate: a reward model becomes the default (the RL reward, the suggestions) only
when it beats the current default, or a baseline the researcher names, on a benchmark it never
trained on.

Rule: on its newest finished benchmark run whose pairs it never saw (the held-out side of its
own split; for a model trained elsewhere, any of ours), its headline accuracy (dimension
``overall``) minus the comparator's on the same pairs must have a 95% interval above 0. The
interval is a paired bootstrap over the benchmark's groups (benchmark.runs.paired_comparison):
both scorers are rescored on every draw, so the comparator's own uncertainty counts and what the
two share cancels. The comparator is the current default model's run there, else the run
labelled ``against`` (``pixel`` unless the researcher names another). The verdict, with its
figures, is kept on the model (``RewardModel.gate``) and shown on its page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.utils import timezone

from benchmark.runs import paired_comparison
from benchmark.selectors import headline, run_with_label, runs_of_weights
from config.errors import Conflict
from rewardmodel.jobs import is_held_out_benchmark
from rewardmodel.models import RewardModel

DEFAULT_BASELINE = "pixel"
RULE = ("its headline accuracy minus the comparator's, on the same held-out pairs, has a 95% "
        "interval above 0 (a paired bootstrap over the benchmark's groups)")  # fmt: skip


class PromotionRefused(Conflict):
    code = "promotion_refused"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    benchmark: str = ""
    run: int | None = None
    accuracy: float | None = None
    interval: list | None = None
    against: str = ""
    against_run: int | None = None
    against_accuracy: float | None = None
    difference: float | None = None  # accuracy - against_accuracy, on the same pairs
    difference_interval: list | None = None  # its paired 95% interval

    def as_dict(self) -> dict:
        return {**asdict(self), "rule": RULE, "checked_at": timezone.now().isoformat()}


def _finished(runs):
    return [r for r in runs if r.metric and headline(r)[0] is not None]


def check(model: RewardModel, against: str | None = None) -> Verdict:
    """The verdict on promoting `model` (nothing is changed)."""
    runs = _finished(runs_of_weights(base=model.base, adapter=model.adapter))
    held = [r for r in runs
            if model.snapshot is None or is_held_out_benchmark(r.dataset, model.snapshot)]  # fmt: skip
    if not held:
        why = ("it has no finished benchmark run on pairs it never trained on: benchmark it on "
               "the held-out side of its split")  # fmt: skip
        return Verdict(False, why)
    run = held[-1]
    accuracy, interval = headline(run)
    default = RewardModel.objects.filter(promoted=True).exclude(pk=model.pk).first()
    if against is None and default is not None:
        theirs = [r for r in _finished(runs_of_weights(base=default.base, adapter=default.adapter))
                  if r.dataset_id == run.dataset_id]  # fmt: skip
        name = f"{default.name} (the default)"
        comparator = theirs[-1] if theirs else None
    else:
        name = against or DEFAULT_BASELINE
        comparator = run_with_label(dataset=run.dataset, label=name)
        comparator = comparator if comparator and _finished([comparator]) else None
    found = dict(benchmark=run.dataset.name, run=run.pk, accuracy=accuracy, interval=interval,
                 against=name)  # fmt: skip
    if comparator is None:
        why = f"there is no finished run of {name} on {run.dataset.name} to compare with"
        return Verdict(False, why, **found)
    paired = paired_comparison(run, comparator)
    if paired["difference"] is None:
        why = f"{run.dataset.name} has no {paired['dimension']} pairs to compare on"
        return Verdict(False, why, **found, against_run=comparator.pk)
    difference, (low, high) = paired["difference"], paired["ci95"]
    passed = low is not None and low > 0
    verb = "beats" if passed else "does not beat"
    shown = (f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]" if low is not None
             else "no pairs to compare on")  # fmt: skip
    why = (f"{model.name} {verb} {name} on {run.dataset.name}: {paired['a']:.3f} against "
           f"{paired['b']:.3f}, difference {shown} over {paired['n_clusters']} groups")  # fmt: skip
    return Verdict(passed, why, **found, against_run=comparator.pk,
                   against_accuracy=paired["b"], difference=difference,
                   difference_interval=[low, high])  # fmt: skip


def promote(model: RewardModel, *, against: str | None = None) -> Verdict:
    """Promote `model` if it passes the gate; the verdict is recorded either way.
    PromotionRefused (409) says why not."""
    if model.status != RewardModel.Status.READY:
        raise PromotionRefused(
            f"{model.name} is {model.status}: only a ready model can be promoted"
        )
    verdict = check(model, against)
    RewardModel.objects.filter(pk=model.pk).update(gate=verdict.as_dict())
    model.gate = verdict.as_dict()
    if not verdict.passed:
        raise PromotionRefused(f"not promoted: {verdict.reason}")
    model.promote()
    return verdict
