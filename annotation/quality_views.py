"""Researcher pages: the dataset quality dashboard and the adjudication board.

The dashboard only reads the stored report (annotation.quality.report_refresh,
run by beat), so it loads in milliseconds whatever the number of rankings."""

from __future__ import annotations

from urllib.parse import quote

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.permissions import researcher_required
from annotation import browse, selectors
from annotation.api import group_payload
from annotation.models import Dataset, Group, Review, Snapshot
from annotation.quality_api import report_refresh_request, snapshot_export_enqueue
from annotation.stats.consensus import DEFAULT_MAJORITY_TIE_FRACTION, POLICIES
from config.errors import FORM_ERRORS, Invalid
from jobs.charts import interval_chart

STATISTICS = (
    ("pairwise_agreement", "Pairwise agreement", 0.0, 1.0),
    ("kendall_tau_b", "Kendall τ-b", -1.0, 1.0),
    ("krippendorff_alpha", "Krippendorff α (ordinal)", -1.0, 1.0),
)


def _estimate_rows(figures: dict) -> list[dict]:
    rows = [("all task types", figures["all"])] + sorted(figures["by_task_type"].items())
    return [
        {"label": label, **summary, "estimates": [summary[key] for key, *_ in STATISTICS]}
        for label, summary in rows
        if summary
    ]


def _agreement_sections(report: dict) -> list[dict]:
    sections = []
    for dim, figures in report["agreement"].items():
        if figures["all"] is None:
            continue
        rows = _estimate_rows(figures)
        charts = [
            {
                "title": title,
                "chart": interval_chart(
                    [(r["label"], r[key]["value"], r[key]["low"], r[key]["high"]) for r in rows],
                    lo=lo,
                    hi=hi,
                ),
            }
            for key, title, lo, hi in STATISTICS[:1]
        ]
        sections.append({"dimension": dim, "rows": rows, "charts": charts})
    return sections


def _editor_sections(report: dict) -> list[dict]:
    sections = []
    for dim, board in report["editors"]["by_dimension"].items():
        rated = [e for e in board["editors"] if e["rating"] is not None]
        if not rated:
            continue
        values = [v for e in rated for v in (e["low"], e["high"], e["rating"]) if v is not None]
        lo, hi = min(values), max(values)
        pad = max((hi - lo) * 0.1, 10)
        chart = interval_chart(
            [(e["name"], e["rating"], e["low"], e["high"]) for e in rated],
            lo=lo - pad,
            hi=hi + pad,
            digits=0,
        )
        matrix = [
            {
                "name": name,
                "cells": [
                    {"rate": rate, "battles": count}
                    for rate, count in zip(
                        board["win_rate"][i], board["battle_counts"][i], strict=True
                    )
                ],
            }
            for i, name in enumerate(board["names"])
        ]
        by_type = []
        typed_boards = report["editors"].get("by_dimension_and_task_type", {}).get(dim, {})
        for task_type, typed in typed_boards.items():
            entries = {e["name"]: e for e in typed["editors"]}
            by_type.append(
                {"task_type": task_type, "cells": [entries.get(e["name"]) for e in rated]}
            )
        sections.append(
            {"dimension": dim, "board": board, "chart": chart, "matrix": matrix,
             "names": board["names"], "rated": rated, "by_type": by_type}
        )  # fmt: skip
    return sections


@require_GET
@researcher_required
def quality_dashboard(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    report = selectors.dataset_report(dataset)
    context = {
        "dataset": dataset,
        "progress": selectors.dataset_progress(dataset=dataset, user=request.user),
        "report": report,
        "policies": POLICIES,
        "default_tie_fraction": round(DEFAULT_MAJORITY_TIE_FRACTION, 3),
        "snapshots": Snapshot.objects.filter(dataset=dataset)[:20],
        "queued": Group.objects.filter(dataset=dataset, review=Review.QUEUED).count(),
    }
    if report is not None:
        context["agreement"] = _agreement_sections(report)
        context["editors"] = _editor_sections(report)
        context["consensus"] = [
            {"policy": policy, "dimensions": per_dim}
            for policy, per_dim in report["consensus"]["pairs"].items()
        ]
    return render(request, "annotation/quality.html", context)


@require_POST
@researcher_required
def quality_refresh(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    if report_refresh_request(dataset):
        messages.info(request, "The report is being recomputed; reload in a few seconds.")
    else:
        messages.error(request, "The broker is unreachable: the report cannot be recomputed now.")
    return redirect("annotate-quality", dataset_id=dataset.pk)


@require_POST
@researcher_required
def snapshot_export(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    try:
        job = snapshot_export_enqueue(dataset, request.POST, request.user)
    except FORM_ERRORS as exc:
        messages.error(request, f"Export refused: {exc}")
        return redirect("annotate-quality", dataset_id=dataset.pk)
    return redirect("job-detail", job_id=job.pk)


# --- adjudication: the ranking board, fed with queued groups


def _review_context(request, dataset: Dataset) -> dict:
    group = (
        Group.objects.filter(dataset=dataset, review=Review.QUEUED)
        .order_by("agreement", "pk")
        .first()
    )
    payload = None
    votes = []
    if group is not None:
        payload = {
            **group_payload(group, request.user),
            "submit_url": reverse("api-group-adjudication", args=[group.pk]),
            "skip_url": None,
        }
        tokens = dict(group.candidates.values_list("external_id", "token"))
        # The board labels cards A, B, C... in the order it shows them: so do the votes.
        letters = {c["id"]: chr(65 + i) for i, c in enumerate(payload["candidates"])}
        (entry,) = selectors.adjudication_queue_entries([group], dataset)
        for ranking in entry["rankings"]:
            votes.append({
                "annotator": ranking["annotator"],
                "dimensions": [
                    {"key": dim, "tiers": [[
                        {
                            "src": reverse("api-image", args=["candidate-thumb", tokens[c]]),
                            "letter": letters[tokens[c]],
                        }
                        for c in tier
                    ] for tier in tiers]}
                    for dim, tiers in ranking["tiers"].items()
                ],
            })  # fmt: skip
    return {
        "dataset": dataset,
        "group": payload,
        "review": True,
        "votes": votes,
        "agreement": group.agreement if group else None,
        "queued": Group.objects.filter(dataset=dataset, review=Review.QUEUED).count(),
        "board_data": {
            "group": payload,
            "dimensions": dataset.dimensions,
            "user": request.user.pk,
            "mode": "adjudication",
        },  # fmt: skip
    }


@require_http_methods(["GET"])
@researcher_required
def review_dataset(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    return render(request, "annotation/rank.html", _review_context(request, dataset))


@require_GET
@researcher_required
def review_workspace(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    return render(request, "annotation/rank.html#workspace", _review_context(request, dataset))


# --- the dataset browser


BROWSE_PAGE = 50


@require_GET
@researcher_required
def browse_dataset(request, dataset_id: int):
    """The dataset's groups, filtered by task type, state and annotator, 50 a page."""
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    filters = {key: request.GET.get(key, "").strip() for key in ("task_type", "state", "annotator")}
    try:
        rows = browse.browse_groups(dataset, **filters)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    page = Paginator(rows, BROWSE_PAGE).get_page(request.GET.get("page"))
    query = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
    return render(request, "annotation/browse.html", {
        "dataset": dataset, "filters": filters, "choices": browse.filter_choices(dataset),
        "page": page, "rows": browse.with_states(page.object_list, dataset), "query": query,
    })  # fmt: skip


@require_GET
@researcher_required
def browse_group(request, dataset_id: int, group_id: int):
    """One group: its source and candidates (editors named), every ranking, the consensus."""
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    group = get_object_or_404(Group, pk=group_id, dataset=dataset)
    return render(request, "annotation/browse_group.html", {
        "dataset": dataset, "group": group, **browse.group_detail(group, dataset),
        "states": browse.STATES, "dimensions": dataset.dimension_keys,
    })  # fmt: skip
