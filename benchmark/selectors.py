"""Reads of the benchmark app: leaderboard rows (measured runs and the paper's
reported figures, never mixed up), run details and comparisons."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from benchmark.ml.metric import DIMENSIONS, TASK_GROUPS
from benchmark.models import BenchmarkDataset, BenchmarkRun
from config.ids import parse_id

PUBLISHED = Path(__file__).resolve().parent / "data" / "published_editreward_bench.json"
PUBLISHED_DATASET = "EditReward-Bench (published)"


@cache
def published() -> dict:
    """The paper's reported accuracies (a data fixture shipped with the code)."""
    return json.loads(PUBLISHED.read_text())


def reported_rows() -> list[dict]:
    rows = []
    for model, figures in published()["results"].items():
        rows.append({
            "id": f"reported:{model}", "label": model, "source": "reported",
            "dataset": PUBLISHED_DATASET, "k": _k_of(model), "date": None, "status": "reported",
            "overall": figures.get("Overall", {}), "ci95": {},
            "groups": {g: figures.get(g, {}) for g in TASK_GROUPS},
            "tasks": {},
        })  # fmt: skip
    return rows


def _k_of(model: str) -> int:
    return 4 if "Avg@4" in model else 1


# How a run's answers became scores, in words, for the setting that changes results the most.
_POLICY_WORDS = {
    "unscored": "re-asked, then the candidate is unscored (its pairs count wrong)",
    "reference": "as the authors' package (the same seed once more, then its seeded random "
    "guess), to reproduce a published number",
}


# Settings anyone who may read a run may see; the rest (model folders, endpoints) is for
# researchers only, like the scorer spec.
PUBLIC_SETTINGS = frozenset({
    "prompt_set", "decoding", "parse_policy", "k", "seed", "temperature", "top_p", "top_k",
    "max_new_tokens", "max_tokens", "score_range", "retries", "max_pixels", "images",
})  # fmt: skip


def scoring_settings(config: dict, *, full: bool) -> dict:
    """A run's scorer config for its page: ``summary``, the (name, value) of its prompt set,
    decoding and parse policy, and ``rows``, every (name, value) with the parse policy in words;
    with ``full`` False only PUBLIC_SETTINGS (no model folders or endpoints)."""
    words = {"prompt_set": "prompts", "decoding": "decoding", "parse_policy": "parse policy"}
    first = [name for name in words if name in config]
    rest = [name for name in config if name not in words and (full or name in PUBLIC_SETTINGS)]
    rows = []
    for name in first + rest:
        value = "–" if config[name] is None else str(config[name])
        if name == "parse_policy" and value in _POLICY_WORDS:
            value = f"{value}: {_POLICY_WORDS[value]}"
        rows.append((words.get(name, name), value))
    summary = [(words[name], str(config[name])) for name in first]
    return {"summary": summary, "rows": rows}


def run_row(run: BenchmarkRun) -> dict:
    metric = run.metric or {}
    return {
        "id": run.pk, "label": run.label, "source": "measured", "dataset": run.dataset.name,
        # which groups it holds: a held-out side of a split, all of a dataset, or imported
        "split": run.dataset.snapshot.split_text if run.dataset.snapshot else "",
        "k": int(run.scorer.get("k", 1)), "date": run.created_at, "status": run.job.status,
        "job": run.job_id, "scorer": run.scorer, "scorer_config": run.scorer_config,
        "overall": metric.get("overall", {}), "ci95": metric.get("ci95", {}).get("overall", {}),
        "groups": metric.get("groups", {}), "tasks": metric.get("tasks", {}),
        "tie_half": metric.get("tie_half", {}), "n_pairs": metric.get("n_pairs", {}),
        "n_ties": metric.get("n_ties", {}), "n_unscored": metric.get("n_unscored", {}),
        "task_ci95": metric.get("ci95", {}).get("tasks", {}),
        "n_per_task": metric.get("n_per_task", {}),
        "group_ci95": metric.get("ci95", {}).get("groups", {}),
    }  # fmt: skip


def leaderboard(*, include_reported: bool = True, dataset: str | None = None) -> list[dict]:
    """Finished runs (best overall accuracy first), then the reported figures."""
    runs = BenchmarkRun.objects.select_related("dataset__snapshot", "job").filter(
        metric__isnull=False
    )
    if dataset:
        runs = runs.filter(dataset__name=dataset)
    rows = sorted(
        (run_row(r) for r in runs),
        key=lambda r: -(r["overall"].get("overall") or 0.0),
    )
    if include_reported and (dataset in (None, PUBLISHED_DATASET)):
        rows += reported_rows()
    return rows


def pending_runs(limit: int = 20) -> list[BenchmarkRun]:
    """Runs without a metric yet (queued, running, failed), newest first."""
    return list(
        BenchmarkRun.objects.select_related("dataset", "job").filter(metric__isnull=True)[:limit]
    )


def row_by_id(row_id: str) -> dict | None:
    if row_id.startswith("reported:"):
        return next((r for r in reported_rows() if r["id"] == row_id), None)
    if parse_id(row_id) is None:
        return None
    run = (
        BenchmarkRun.objects.select_related("dataset__snapshot", "job")
        .filter(pk=parse_id(row_id))
        .first()
    )
    return run_row(run) if run else None


def comparison(a: dict, b: dict) -> dict:
    """Side by side per task type (measured runs) and per group (always), with b - a."""

    def side(level: str, names: list[str]) -> list[dict]:
        out = []
        for name in names:
            va, vb = a[level].get(name, {}), b[level].get(name, {})
            if not va and not vb:
                continue
            cells = []
            for dim in DIMENSIONS:
                x, y = va.get(dim), vb.get(dim)
                cells.append(
                    {"a": x, "b": y, "diff": (y - x) if x is not None and y is not None else None}
                )
            out.append({"name": name, "cells": cells})
        return out

    tasks = sorted(set(a["tasks"]) | set(b["tasks"]))
    return {
        "overall": _overall(a, b),
        "groups": side("groups", list(TASK_GROUPS) + ["Other"]),
        "tasks": side("tasks", tasks),
    }


def _overall(a: dict, b: dict) -> list[dict]:
    cells = []
    for dim in DIMENSIONS:
        x, y = a["overall"].get(dim), b["overall"].get(dim)
        cells.append({"a": x, "b": y, "diff": (y - x) if x is not None and y is not None else None})
    return [{"name": "headline", "cells": cells}]


# --- for the other apps (they never import the benchmark's models)


def benchmark_dataset_list():
    return BenchmarkDataset.objects.all()


def benchmark_dataset_get(*, pk=None, name: str | None = None) -> BenchmarkDataset | None:
    if name is not None:
        return BenchmarkDataset.objects.filter(name=name).first()
    pk = parse_id(pk)
    return BenchmarkDataset.objects.filter(pk=pk).first() if pk is not None else None


def run_with_label(*, dataset: BenchmarkDataset, label: str) -> BenchmarkRun | None:
    return BenchmarkRun.objects.filter(dataset=dataset, label=label).first()


def benchmark_datasets_of_snapshot(snapshot_id: int) -> list[BenchmarkDataset]:
    return list(BenchmarkDataset.objects.filter(snapshot_id=snapshot_id).order_by("pk"))


def runs_of_benchmark_dataset(dataset_id: int) -> list[BenchmarkRun]:
    return list(BenchmarkRun.objects.filter(dataset_id=dataset_id).order_by("pk"))


def runs_of_weights(*, base: str, adapter: str) -> list[BenchmarkRun]:
    """The EditScore runs that scored with these weights (a base folder and its adapter)."""
    runs = BenchmarkRun.objects.select_related("dataset__snapshot", "job").filter(
        scorer__kind="editscore", scorer__base=base
    )
    runs = (
        runs.filter(scorer__adapter=adapter) if adapter else runs.exclude(scorer__has_key="adapter")
    )
    return list(runs.order_by("pk"))


def run_get(pk: int) -> BenchmarkRun | None:
    return BenchmarkRun.objects.select_related("dataset", "job").filter(pk=pk).first()


def headline(run: BenchmarkRun) -> tuple[float | None, list | None]:
    """(the headline accuracy — dimension ``overall`` — and its 95% interval) of a run; None
    while it has no result."""
    metric = run.metric or {}
    return (metric.get("overall") or {}).get("overall"), (
        (metric.get("ci95") or {}).get("overall") or {}).get("overall")  # fmt: skip
