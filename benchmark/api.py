"""Benchmark API: datasets, runs (list, detail, start) and the leaderboard."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsResearcher, PublicRead, is_researcher
from benchmark import selectors
from benchmark.models import BenchmarkDataset, BenchmarkRun
from benchmark.runs import run_enqueue
from benchmark.scorers import parse_spec
from jobs.registry import InvalidJobConfig


def _row_json(row: dict, request) -> dict:
    """A leaderboard row for the API. Only researchers get the scorer spec (it may name
    server paths or internal endpoints) and the job: not annotators, nor anonymous
    readers (BENCHMARK_PUBLIC_READ)."""
    hidden = {"task_ci95", "group_ci95"}
    if not is_researcher(request.user):
        hidden |= {"scorer", "job"}
    return {k: v for k, v in row.items() if k not in hidden} | {
        "ci95_tasks": row.get("task_ci95", {}),
        "ci95_groups": row.get("group_ci95", {}),
    }


class LeaderboardApi(APIView):
    permission_classes = [PublicRead]

    def get(self, request):
        rows = selectors.leaderboard(dataset=request.query_params.get("dataset") or None)
        return Response([_row_json(r, request) for r in rows])


class BenchmarkDatasetListApi(APIView):
    permission_classes = [PublicRead]

    def get(self, request):
        return Response([
            {"id": d.pk, "name": d.name, "layout": d.layout, "split": d.split, "rows": d.rows,
             "counts": d.counts, "snapshot": d.snapshot_id, "created_at": d.created_at}
            for d in BenchmarkDataset.objects.all()
        ])  # fmt: skip


class RunListApi(APIView):
    """GET: every run with its status and headline. POST (researchers):
    {"dataset": id or name, "scorer": {"kind": ...} or "kind:opt=v,...", "label"?, "k"?}
    -> 202 with the run and its job."""

    def get_permissions(self):
        return [IsResearcher()] if self.request.method == "POST" else [PublicRead()]

    def get(self, request):
        runs = BenchmarkRun.objects.select_related("dataset", "job")[:500]
        return Response([_row_json(selectors.run_row(r), request) for r in runs])

    def post(self, request):
        data = request.data
        if not isinstance(data, Mapping):
            return Response({"detail": "send an object {dataset, scorer, label?, k?}"}, status=400)
        dataset = _dataset(data.get("dataset"))
        if dataset is None:
            return Response({"detail": "unknown dataset (give its id or name)"}, status=400)
        scorer = data.get("scorer")
        try:
            spec = parse_spec(scorer) if isinstance(scorer, str) else scorer
            if not isinstance(spec, dict):
                raise ValueError('scorer must be a spec string or an object with a "kind"')
            if data.get("k") is not None:
                spec = {**spec, "k": data["k"]}
            run = run_enqueue(
                dataset=dataset, scorer=spec, label=_label(data.get("label")), user=request.user
            )
        except (ValueError, InvalidJobConfig) as exc:
            return Response({"detail": str(exc)}, status=400)
        return Response({"run": run.pk, "job": run.job_id, "label": run.label}, status=202)


def _label(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("label must be a string")
    return value


def _dataset(value) -> BenchmarkDataset | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return BenchmarkDataset.objects.filter(pk=value).first()
    if isinstance(value, str) and value:
        return BenchmarkDataset.objects.filter(name=value).first()
    return None


class RunDetailApi(APIView):
    permission_classes = [PublicRead]

    def get(self, request, run_id: int):
        row = selectors.row_by_id(str(run_id))
        if row is None:
            return Response({"detail": "no such run"}, status=404)
        run = BenchmarkRun.objects.get(pk=run_id)
        return Response({**_row_json(row, request), "metric": run.metric})
