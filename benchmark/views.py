"""Benchmark pages: the leaderboard (measured runs beside the paper's reported
figures), a run's detail, and two runs side by side."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts.permissions import is_researcher, public_read
from benchmark import selectors
from benchmark.ml.metric import DIMENSIONS, TASK_GROUPS
from benchmark.ml.scorers import parse_spec
from benchmark.models import BenchmarkDataset
from benchmark.runs import run_enqueue
from config.errors import FORM_ERRORS, Invalid, refusal_status
from jobs.charts import interval_chart


def _headline_chart(rows: list[dict], dim: str):
    measured = [r for r in rows if r["source"] == "measured" and r["overall"].get(dim) is not None]
    if not measured:
        return None
    return interval_chart(
        [
            (r["label"], r["overall"][dim], *(r["ci95"].get(dim) or (None, None)))
            for r in measured[:25]
        ],
        lo=0.0,
        hi=1.0,
        left=190,
        digits=3,
    )


@require_http_methods(["GET", "POST"])
@public_read
def leaderboard(request):
    error, status = None, 200
    if request.method == "POST":
        if not is_researcher(request.user):
            raise PermissionDenied("Only researchers start benchmark runs.")
        try:
            run = _start_run(request)
        except FORM_ERRORS as exc:
            error, status = str(exc), refusal_status(exc)
        else:
            return redirect("job-detail", job_id=run.job_id)
    dataset = request.GET.get("dataset") or None
    rows = selectors.leaderboard(dataset=dataset)
    context = {
        "rows": rows,
        "dimensions": DIMENSIONS,
        "groups": list(TASK_GROUPS),
        "charts": [(d, _headline_chart(rows, d)) for d in DIMENSIONS],
        "datasets": BenchmarkDataset.objects.all(),
        "dataset": dataset,
        "pending": selectors.pending_runs(),
        "error": error,
        "can_run": is_researcher(request.user),
    }
    return render(request, "benchmark/leaderboard.html", context, status=status)


def _start_run(request):
    try:
        dataset = BenchmarkDataset.objects.get(pk=int(request.POST.get("dataset", "")))
    except (ValueError, BenchmarkDataset.DoesNotExist):
        raise Invalid("choose a dataset") from None
    spec = parse_spec(request.POST.get("scorer", "").strip())
    k = request.POST.get("k", "").strip()
    if k:
        spec["k"] = int(k)
    return run_enqueue(
        dataset=dataset, scorer=spec, label=request.POST.get("label", "").strip(), user=request.user
    )


@require_GET
@public_read
def run_detail(request, run_id: int):
    row = selectors.row_by_id(str(run_id))
    if row is None:
        raise Http404("no such run")
    tasks = [
        {
            "name": name,
            "cells": [
                {
                    "acc": values.get(dim),
                    "ci": (row["task_ci95"].get(name) or {}).get(dim),
                    "n": (row.get("n_per_task", {}).get(name) or {}).get(dim),
                }
                for dim in DIMENSIONS
            ],
        }
        for name, values in row["tasks"].items()  # the paper's order, then other task types
    ]
    heat = [
        {"name": name, "cells": [row["groups"].get(name, {}).get(d) for d in DIMENSIONS]}
        for name in [*TASK_GROUPS, "Other"]
        if name in row["groups"]
    ] + [{"name": "headline", "cells": [row["overall"].get(d) for d in DIMENSIONS]}]
    settings = selectors.scoring_settings(
        row.get("scorer_config") or {}, full=is_researcher(request.user)
    )
    return render(
        request,
        "benchmark/run_detail.html",
        {
            "row": row,
            "tasks": tasks,
            "heat": heat,
            "dimensions": DIMENSIONS,
            "settings": settings,
            # a run of this installation (not a published row), to a researcher
            "lineage_pk": run_id if row.get("job") and is_researcher(request.user) else None,
        },
    )


@require_GET
@public_read
def compare(request):
    a = selectors.row_by_id(request.GET.get("a", ""))
    b = selectors.row_by_id(request.GET.get("b", ""))
    if a is None or b is None:
        raise Http404("choose two rows of the leaderboard (?a=ID&b=ID)")
    return render(
        request,
        "benchmark/compare.html",
        {"a": a, "b": b, "table": selectors.comparison(a, b), "dimensions": DIMENSIONS},
    )
