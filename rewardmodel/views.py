"""Researcher pages: the reward-model registry, registering a model from a local
path, launching a fine-tune (the paper's defaults pre-filled), promoting one."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.permissions import researcher_required
from annotation.selectors import dataset_list
from benchmark.ml.metric import DIMENSIONS
from benchmark.ml.scorers import parse_spec
from benchmark.selectors import benchmark_dataset_list, headline, run_row, runs_of_weights
from config.errors import FORM_ERRORS, Invalid, refusal_status
from rewardmodel import gate
from rewardmodel.jobs import PAPER_DEFAULTS, TUNABLE, finetune_enqueue, is_held_out_benchmark
from rewardmodel.models import RewardModel
from rewardmodel.services import model_register


def _context(**extra) -> dict:
    models = list(RewardModel.objects.select_related("job", "snapshot")[:200])
    return {
        "models": [(m, _latest_result(m)) for m in models],
        "datasets": dataset_list(),
        "benchmarks": benchmark_dataset_list(),
        "defaults": PAPER_DEFAULTS,
        **extra,
    }


def _latest_result(model: RewardModel) -> dict | None:
    """The model's newest finished benchmark result, preferring pairs it never trained on:
    {run, dataset, accuracy, interval, held_out}; None before any."""
    found: list[dict] = []
    for run in runs_of_weights(base=model.base, adapter=model.adapter):
        accuracy, interval = headline(run)
        if accuracy is not None:
            unseen = model.snapshot is None or is_held_out_benchmark(run.dataset, model.snapshot)
            found.append({"run": run.pk, "dataset": run.dataset.name, "accuracy": accuracy,
                          "interval": interval, "held_out": unseen})  # fmt: skip
    preferred = [r for r in found if r["held_out"]] or found
    return preferred[-1] if preferred else None


@require_GET
@researcher_required
def model_detail(request, model_id: int):
    """One model: where its weights are, what it learned from, how it scored, its lineage."""
    model = get_object_or_404(RewardModel.objects.select_related("job", "snapshot"), pk=model_id)
    runs = []
    for run in runs_of_weights(base=model.base, adapter=model.adapter):
        row = run_row(run)
        # whether the model never trained on these pairs: they are its split's held-out side
        row["held_out"] = bool(model.snapshot) and is_held_out_benchmark(
            run.dataset, model.snapshot
        )
        runs.append(row)
    return render(
        request, "rewardmodel/model_detail.html",
        {"model": model, "runs": runs, "dimensions": DIMENSIONS, "rule": gate.RULE,
         "baseline": gate.DEFAULT_BASELINE},
    )  # fmt: skip


@require_http_methods(["GET", "POST"])
@researcher_required
def model_list(request):
    if request.method == "GET":
        return render(request, "rewardmodel/models.html", _context())
    action = request.POST.get("action")
    try:
        if action == "register":
            model = model_register(
                name=request.POST.get("name", "").strip(),
                base=request.POST.get("base", "").strip(),
                adapter=request.POST.get("adapter", "").strip(),
                prompt_set=request.POST.get("prompt_set", "reference"),
                user=request.user,
            )
            messages.success(request, f"Registered {model.name}.")
            return redirect("rewardmodel:list")
        if action == "finetune":
            model = finetune_enqueue(config=_finetune_config(request.POST), user=request.user)
            return redirect("job-detail", job_id=model.job_id)
    except FORM_ERRORS as exc:
        context = _context(error=str(exc))
        return render(request, "rewardmodel/models.html", context, status=refusal_status(exc))
    return render(request, "rewardmodel/models.html", _context(error="unknown action"), status=400)


def _finetune_config(post) -> dict:
    training = {}
    for key, kind in TUNABLE.items():
        value = post.get(key, "").strip()
        if value:
            try:
                training[key] = kind(value)
            except ValueError:
                raise Invalid(f"{key}: {value!r} is not a valid {kind.__name__}") from None

    def number(name):
        value = post.get(name, "").strip()
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            raise Invalid(f"{name} must be chosen from the list") from None

    teacher = post.get("teacher", "").strip()
    return {
        "teacher": parse_spec(teacher) if teacher else None,
        "model_name": post.get("name", "").strip(),
        "dataset_id": number("dataset"),
        "base_model": post.get("base", "").strip(),
        "training": training,
        "benchmark_dataset_id": number("benchmark"),
        "prompt_set": post.get("prompt_set", "reference"),
    }


@require_POST
@researcher_required
def model_promote(request, model_id: int):
    """Promote through the gate (rewardmodel/gate.py); the verdict shows on the model's page."""
    model = get_object_or_404(RewardModel.objects.select_related("snapshot"), pk=model_id)
    against = request.POST.get("against", "").strip() or None
    try:
        verdict = gate.promote(model, against=against)
    except gate.PromotionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"{model.name} is now the default reward model: {verdict.reason}."
        )
    return redirect("rewardmodel:detail", model_id=model.pk)
