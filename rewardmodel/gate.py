"""The promotion gate: a reward model becomes the default (the RL reward, the suggestions) only
when it beats the current default, or a baseline the researcher names, on a benchmark it never
trained on.

Rule: on its newest finished benchmark run whose pairs it never saw (the held-out side of its
own split; for a model trained elsewhere, any of ours), the lower bound of the 95% interval of
its headline accuracy (dimension ``overall``) must be above the comparator's headline accuracy on
the same benchmark. The comparator is the current default model's run there, else the run
labelled ``against`` (``pixel`` unless the researcher names another). The verdict, with its
figures, is kept on the model (``RewardModel.gate``) and shown on its page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.utils import timezone

from benchmark.selectors import headline, run_with_label, runs_of_weights
from config.errors import Conflict
from rewardmodel.jobs import is_held_out_benchmark
from rewardmodel.models import RewardModel

DEFAULT_BASELINE = "pixel"
RULE = ("the lower bound of its 95% interval on the headline accuracy is above the comparator's "
        "accuracy, on a benchmark it never trained on")  # fmt: skip


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
    theirs_accuracy = headline(comparator)[0]
    low = interval[0] if interval else accuracy
    passed = low is not None and theirs_accuracy is not None and low > theirs_accuracy
    verb = "beats" if passed else "does not beat"
    why = (f"{model.name} {verb} {name} on {run.dataset.name}: {accuracy:.3f} "
           f"[{low:.3f}, {(interval or [accuracy, accuracy])[1]:.3f}] against {theirs_accuracy:.3f}")  # fmt: skip
    return Verdict(passed, why, **found, against_run=comparator.pk,
                   against_accuracy=theirs_accuracy)  # fmt: skip


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
