"""The annotator's pages: dataset list and the tier-ranking page (htmx workspace)."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.permissions import researcher_required
from annotation import selectors, services
from annotation.api import group_payload
from annotation.models import Dataset
from annotation.uploads import UploadRefused, import_upload_enqueue, upload_too_large
from config.errors import FORM_ERRORS, refusal_status
from config.ids import parse_id


@require_GET
def annotate_home(request):
    datasets = selectors.datasets_with_progress(request.user)
    return render(request, "annotation/home.html", {"datasets": datasets})


def _workspace_context(request, dataset: Dataset) -> dict:
    assignment = services.group_next_for_annotator(dataset=dataset, annotator=request.user)
    group = None
    if assignment is not None:
        group = {
            **group_payload(assignment.group, request.user, repeat=assignment.repeat),
            "lease_expires_at": assignment.expires_at.isoformat(),
        }
    return {
        "dataset": dataset,
        "group": group,
        "progress": selectors.dataset_progress(dataset=dataset, user=request.user),
        "board_data": {
            "group": group,
            "dimensions": dataset.dimensions,
            "user": request.user.pk,
        },
    }


@require_GET
def annotate_dataset(request, dataset_id: int):
    dataset = selectors.dataset_for_annotator(request.user, dataset_id)
    return render(request, "annotation/rank.html", _workspace_context(request, dataset))


@require_GET
def annotate_workspace(request, dataset_id: int):
    """The next group as an htmx fragment: the page swaps it in after a submit."""
    dataset = selectors.dataset_for_annotator(request.user, dataset_id)
    return render(request, "annotation/rank.html#workspace", _workspace_context(request, dataset))


@require_http_methods(["GET", "POST"])
@researcher_required
def import_page(request):
    """Upload a .zip (manifest.jsonl + images); the import runs as a job."""
    context = {"datasets": Dataset.objects.values_list("name", flat=True)}
    if request.method == "POST":
        if upload_too_large(request):
            return HttpResponse("The upload is too large.", status=413)
        overlap = request.POST.get("overlap") or None
        try:
            job = import_upload_enqueue(
                upload=request.FILES.get("file"),
                dataset=request.POST.get("dataset", "").strip(),
                overlap=_overlap(overlap),
                user=request.user,
            )
        except FORM_ERRORS as exc:
            context["error"] = str(exc)
            return render(request, "annotation/import.html", context, status=refusal_status(exc))
        return redirect("job-detail", job_id=job.pk)
    return render(request, "annotation/import.html", context)


def _overlap(text: str | None) -> int | None:
    if not text:
        return None
    if parse_id(text) is None:
        raise UploadRefused("overlap must be an integer")
    return parse_id(text)


@require_GET
def my_work(request):
    """The signed-in user's rankings and skipped groups (reopen one to rank it after all)."""
    return render(request, "annotation/mine.html", selectors.my_work(request.user))


@require_POST
def reopen_group(request, group_id: int):
    group = selectors.group_for_annotator(request.user, group_id)
    try:
        services.group_reopen(group=group, annotator=request.user)
    except FORM_ERRORS as exc:
        messages.error(request, f"Not reopened: {exc}")
        return redirect("annotate-mine")
    return redirect("annotate-dataset", dataset_id=group.dataset_id)


@require_GET
def revise_ranking(request, ranking_id: int):
    """The ranking page, starting from one of the user's rankings: what they submit becomes
    its next version."""
    ranking = selectors.ranking_of_annotator(request.user, ranking_id)
    refusal = selectors.revision_refusal(ranking)
    if refusal is not None:
        messages.error(request, f"Not revisable: {refusal}.")
        return redirect("annotate-mine")
    group, dataset = ranking.group, ranking.group.dataset
    to_token = dict(group.candidates.values_list("external_id", "token"))
    tiers = services.placements_renamed(ranking.tiers, to_token)
    floor = services.placements_renamed(ranking.unusable, to_token)
    payload = {
        **group_payload(group, request.user, repeat=ranking.repeat),
        "submit_url": reverse("api-ranking-revisions", args=[ranking.pk]),
        "skip_url": None,
        "done_url": reverse("annotate-mine") + "#rankings",
        "initial": {d: {"tiers": tiers.get(d, []), "floor": floor.get(d, [])}
                    for d in dataset.dimension_keys},
    }  # fmt: skip
    return render(request, "annotation/rank.html", {
        "dataset": dataset,
        "group": payload,
        "revising": ranking,
        "board_data": {"group": payload, "dimensions": dataset.dimensions,
                       "user": request.user.pk, "mode": "revision",
                       "revision": f"{ranking.pk}-{ranking.version}"},
    })  # fmt: skip
