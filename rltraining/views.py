"""Researcher pages of RL training: the runs and the launch form (the paper's hyperparameters
pre-filled), a run's page (live curves, the evaluation gallery with a round slider, sending the
run to annotation, Best-of-N) and the samples' images."""

from __future__ import annotations

import hashlib
import mimetypes

from django.conf import settings
from django.contrib import messages
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from accounts.permissions import researcher_required
from annotation.ml.split import Split
from annotation.selectors import dataset_get, dataset_list, prompt_group_ids
from config.errors import FORM_ERRORS, Invalid, refusal_status
from config.ids import parse_id
from jobs.charts import line_chart
from jobs.selectors import job_list, job_metric_series
from rltraining import forms
from rltraining.jobs import RUN_NAME, best_of_n_enqueue, rl_enqueue
from rltraining.ml.trainer import RLConfig
from rltraining.models import RLRun, RLSample
from rltraining.prompts import parse_prompt_file, split_held_out
from rltraining.selectors import (
    active_users,
    best_of_n_samples,
    eval_rounds,
    gallery,
    recent_runs,
    run_for_page,
)
from rltraining.services import send_to_annotation

# The curves of a run, in this order; then reward_mean/<task type>, then any other metric.
# The held-out reward and the judge's grade of the same samples first, side by side: a reward
# that rises while the judge's grade does not is being gamed.
CURVES = ("eval_reward_mean", "eval_judge_mean", "reward_mean", "reward_std", "kl",
          "clip_fraction", "ratio_min", "ratio_max", "grad_norm", "lr", "seconds")  # fmt: skip
IMAGE_FIELDS = {"image": "image", "thumb": "thumb", "source": "source",
                "source_thumb": "source_thumb"}  # fmt: skip
BEST_OF_N_KIND = "rltraining.best_of_n"


def reward_label(run: RLRun) -> str:
    if run.reward_model_id:
        return f"{run.reward_model.name} (EditScore)"
    spec = run.reward if isinstance(run.reward, dict) else {}
    kind = spec.get("kind", "?")
    if kind in ("colour", "color"):
        return f"colour {tuple(spec.get('target', ()))}"
    if kind == "editscore":
        return f"editscore {spec.get('base', '')}"
    return str(kind)


# ------------------------------------------------------------------ the runs and the launch form


def _list_context(post=None, **extra) -> dict:
    runs = recent_runs()
    for run in runs:
        run.reward_text = reward_label(run)
    models, default_reward = forms.reward_choices()
    form = post if post is not None else {}
    return {
        "runs": runs,
        "datasets": dataset_list(),
        "reward_models": [
            (f"model:{m.pk}", f"{m.name}{' (default)' if m.promoted else ''}") for m in models
        ],
        "hyperparameters": forms.form_hyperparameters(post),
        "form": form,
        "reward_choice": form.get("reward") or default_reward,
        "max_prompt_mb": settings.RL_PROMPTS_MAX_BYTES / 2**20,
        **extra,
    }


class _PromptsLimit(FileUploadHandler):
    """Stops storing an uploaded file once it passes RL_PROMPTS_MAX_BYTES (a body without an
    honest Content-Length); the view then refuses it."""

    def __init__(self, request=None):
        super().__init__(request)
        self.too_large = False
        self.seen = 0

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.seen = 0

    def receive_data_chunk(self, raw_data, start):
        self.seen += len(raw_data)
        if self.seen > settings.RL_PROMPTS_MAX_BYTES:
            self.too_large = True
            raise SkipFile
        return raw_data

    def file_complete(self, file_size):
        return None


def _too_large_message() -> str:
    return (
        f"the prompts file is larger than the limit of "
        f"{settings.RL_PROMPTS_MAX_BYTES / 2**20:g} MB (RL_PROMPTS_MAX_BYTES)"
    )


@csrf_exempt  # the upload's size is checked before the body is read: CSRF is checked after
@require_http_methods(["GET", "POST"])
@researcher_required
def run_list(request):
    if request.method == "GET":
        return render(request, "rltraining/runs.html", _list_context())
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.RL_PROMPTS_MAX_BYTES + 1024 * 1024:  # room for the other fields
        return render(
            request, "rltraining/runs.html", _list_context(error=_too_large_message()), status=400
        )
    limit = _PromptsLimit(request)
    request.upload_handlers.insert(0, limit)
    return _launch(request, limit)


@csrf_protect
def _launch(request, limit: _PromptsLimit):
    stored = None
    try:
        request.FILES  # noqa: B018 (parse the body now, through the size limit)
        if limit.too_large:
            raise Invalid(_too_large_message())
        config, model, upload = _launch_config(request)
        if upload is not None:
            stored = _store_prompts(upload)
            config["prompts_file"] = stored[0]
        run = rl_enqueue(config=config, user=request.user, reward_model=model)
    except FORM_ERRORS as exc:
        if stored and stored[1]:
            default_storage.delete(stored[0])  # created for this launch only
        context = _list_context(request.POST, error=str(exc))
        return render(request, "rltraining/runs.html", context, status=refusal_status(exc))
    messages.success(request, f"RL run {run.name} queued.")
    return redirect("rltraining:detail", run_id=run.pk)


def _launch_config(request) -> tuple[dict, object, bytes | None]:
    """(the RL job config, the reward model, the checked upload's bytes or None)."""
    post = request.POST
    name = post.get("name", "").strip()
    if not RUN_NAME.fullmatch(name):
        raise Invalid("run name: 1-100 letters, digits, '.', '_' or '-' (no spaces)")
    policy = post.get("policy", "").strip()
    if not policy:
        raise Invalid("policy: give the diffusers pipeline folder")
    reward, model = forms.parse_reward(post)
    training = forms.parse_training(post)
    eval_prompts = forms.parse_int(post, "eval_prompts", 4, minimum=0)
    held_out = forms.parse_fraction(post, "held_out")
    split_seed = forms.parse_int(post, "split_seed", 0, minimum=0) or 0
    split = Split.optional(held_out, split_seed)
    gpus = forms.parse_int(post, "gpus", 1, minimum=1)
    policy_options = forms.parse_policy_options(post)
    dataset_id = post.get("dataset", "").strip()
    upload = request.FILES.get("prompts")
    if bool(dataset_id) == (upload is not None):
        raise Invalid("prompts: choose a dataset or upload a JSONL file, not both")
    seed = training.get("seed", RLConfig.seed)
    data = None
    if upload is not None:
        if upload.size > settings.RL_PROMPTS_MAX_BYTES:
            raise Invalid(_too_large_message())
        data = upload.read()
        rows = parse_prompt_file(data, upload.name or "prompts")  # BadPrompts names the line
        split_held_out(rows, eval_prompts, seed, split)  # enough prompts to hold some out
        dataset = None
    else:
        dataset = dataset_get(pk=dataset_id)
        if dataset is None:
            raise Invalid("prompts: unknown dataset")
        split_held_out(prompt_group_ids(dataset), eval_prompts, seed, split, key=str)
    config = {
        "run_name": name,
        "policy": policy,
        "reward": reward,
        "dataset_id": dataset.pk if dataset else None,
        "prompts_file": "",
        "eval_prompts": eval_prompts,
        "held_out": held_out,
        "split_seed": split_seed,
        "policy_options": policy_options,
        "training": training,
        "gpus": gpus,
    }
    return config, model, data


def _store_prompts(data: bytes) -> tuple[str, bool]:
    """(storage name, whether this call created it): stored once by content hash."""
    name = f"rl_prompts/{hashlib.sha256(data).hexdigest()}.jsonl"
    if default_storage.exists(name):
        return name, False
    return default_storage.save(name, ContentFile(data)), True


# ------------------------------------------------------------------ a run


def _charts(job) -> list:
    series = job_metric_series(job=job)
    tasks = sorted(n for n in series if n.startswith("reward_mean/"))
    rest = sorted(n for n in series if n not in CURVES and n not in tasks)
    names = [n for n in CURVES if n in series] + tasks + rest
    return [line_chart(n, series[n]) for n in names if series[n]]


def _live_context(run: RLRun, shown_rounds: int | None) -> dict:
    rounds = eval_rounds(run)
    return {
        "run": run,
        "job": run.job,
        "charts": _charts(run.job),
        "eval_rounds": rounds,
        "shown_rounds": len(rounds) if shown_rounds is None else shown_rounds,
        "new_rounds": shown_rounds is not None and len(rounds) > shown_rounds,
    }


def _detail_context(run: RLRun, **extra) -> dict:
    context = _live_context(run, None)
    context.update({
        "reward_text": reward_label(run),
        "gallery": gallery(run, context["eval_rounds"], None),
        "best_of_n": best_of_n_samples(run),
        "best_of_n_jobs": job_list(kind=BEST_OF_N_KIND).filter(config__run_id=run.pk),
        "annotators": active_users(),
        **extra,
    })  # fmt: skip
    return context


@require_GET
@researcher_required
def run_detail(request, run_id: int):
    run = run_for_page(run_id)
    if request.htmx:
        try:
            shown = int(request.GET.get("shown", ""))
        except ValueError:
            shown = None
        response = render(request, "rltraining/run_detail.html#live", _live_context(run, shown))
        # 286 tells htmx to stop polling once the job can no longer change.
        return HttpResponseStopPolling(response.content) if run.job.is_terminal else response
    return render(request, "rltraining/run_detail.html", _detail_context(run))


@require_GET
@researcher_required
def run_gallery(request, run_id: int):
    """The gallery's samples at the slider's position (?i=index into the evaluated rounds)."""
    run = run_for_page(run_id)
    try:
        index = int(request.GET.get("i", ""))
    except ValueError:
        index = None
    context = {"run": run, "gallery": gallery(run, eval_rounds(run), index)}
    return render(request, "rltraining/run_detail.html#gallery-samples", context)


@require_POST
@researcher_required
def run_send(request, run_id: int):
    run = run_for_page(run_id)
    try:
        overlap = forms.parse_int(request.POST, "overlap", 3, minimum=1)
        ids = [parse_id(i) for i in request.POST.getlist("annotators") if parse_id(i) is not None]
        annotators = list(active_users().filter(pk__in=ids))
        dataset = send_to_annotation(run=run, overlap=overlap, annotators=annotators)
    except FORM_ERRORS as exc:
        context = _detail_context(run, send_error=str(exc))
        return render(request, "rltraining/run_detail.html", context, status=refusal_status(exc))
    messages.success(
        request, f"Sent to annotation as dataset {dataset.name} ({dataset.groups.count()} groups)."
    )
    return redirect("rltraining:detail", run_id=run.pk)


@require_POST
@researcher_required
def run_best_of_n(request, run_id: int):
    run = run_for_page(run_id)
    try:
        n = forms.parse_int(request.POST, "n", 16, minimum=None)  # BestOfNConfig: [2, 64]
        trained = request.POST.get("policy", "trained") != "base"
        job = best_of_n_enqueue(run=run, n=n, trained=trained, user=request.user)
    except FORM_ERRORS as exc:
        context = _detail_context(run, best_of_n_error=str(exc))
        return render(request, "rltraining/run_detail.html", context, status=refusal_status(exc))
    messages.success(request, f"Best-of-{n} queued as job #{job.pk}.")
    return redirect("rltraining:detail", run_id=run.pk)


@require_GET
@researcher_required
def sample_image(request, sample_id: int, which: str):
    field = IMAGE_FIELDS.get(which)
    if field is None:
        raise Http404("no such image")
    sample = get_object_or_404(RLSample, pk=sample_id)
    name = getattr(sample, field)
    if not name:
        raise Http404("no such image")
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("image file missing from storage") from None
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    # names are content hashes: the bytes behind a name never change
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
