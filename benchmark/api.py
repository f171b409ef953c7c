"""Benchmark API: datasets, runs (list, detail, start) and the leaderboard."""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsResearcher, PublicRead, is_researcher
from benchmark import selectors
from benchmark.ml.scorers import parse_spec
from benchmark.models import BenchmarkDataset, BenchmarkRun
from benchmark.runs import run_enqueue
from config.errors import EditLoopError, Invalid, NotFound


def _row_json(row: dict, request) -> dict:
    """A leaderboard row for the API. Only researchers get the scorer spec (it may name
    server paths or internal endpoints) and the job: not annotators, nor anonymous
    readers (BENCHMARK_PUBLIC_READ)."""
    hidden = {"task_ci95", "group_ci95"}
    if not is_researcher(request.user):
        hidden |= {"scorer", "scorer_config", "job"}
    return {k: v for k, v in row.items() if k not in hidden} | {
        "ci95_tasks": row.get("task_ci95", {}),
        "ci95_groups": row.get("group_ci95", {}),
    }


_ERROR = OpenApiTypes.OBJECT  # {"detail": "..."}


class BenchmarkRowSerializer(serializers.Serializer):
    """For the schema: a leaderboard row, a measured run (id: its number) or a reported
    figure (id: "reported:<model>"). scorer and job are shown to researchers only."""

    id = serializers.JSONField(help_text="the run's id, or 'reported:<model>'")
    label = serializers.CharField()
    source = serializers.ChoiceField(["measured", "reported"])
    dataset = serializers.CharField()
    k = serializers.IntegerField()
    date = serializers.DateTimeField(allow_null=True)
    status = serializers.CharField()
    scorer = serializers.DictField(required=False, help_text="researchers only")
    job = serializers.IntegerField(required=False, help_text="researchers only")
    overall = serializers.DictField()
    ci95 = serializers.DictField()
    groups = serializers.DictField()
    tasks = serializers.DictField()
    ci95_tasks = serializers.DictField()
    ci95_groups = serializers.DictField()


class BenchmarkRunSerializer(BenchmarkRowSerializer):
    """For the schema: a measured run's row with its full metric (null until it finished)."""

    metric = serializers.DictField(allow_null=True)


class LeaderboardApi(APIView):
    permission_classes = [PublicRead]

    @extend_schema(
        parameters=[OpenApiParameter("dataset", str, description="only runs on this dataset")],
        responses=BenchmarkRowSerializer(many=True),
    )
    def get(self, request):
        rows = selectors.leaderboard(dataset=request.query_params.get("dataset") or None)
        return Response([_row_json(r, request) for r in rows])


class BenchmarkDatasetListApi(APIView):
    permission_classes = [PublicRead]

    @extend_schema(
        responses=inline_serializer(
            "BenchmarkDataset",
            {
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                "layout": serializers.CharField(),
                "split": serializers.CharField(),
                "rows": serializers.IntegerField(),
                "counts": serializers.DictField(),
                "snapshot": serializers.IntegerField(allow_null=True),
                "created_at": serializers.DateTimeField(),
            },
            many=True,
        )
    )
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

    @extend_schema(operation_id="benchmark_runs_list", responses=BenchmarkRowSerializer(many=True))
    def get(self, request):
        runs = BenchmarkRun.objects.select_related("dataset", "job")[:500]
        return Response([_row_json(selectors.run_row(r), request) for r in runs])

    @extend_schema(
        request=inline_serializer(
            "BenchmarkRunStart",
            {
                "dataset": serializers.JSONField(help_text="the benchmark dataset's id or name"),
                "scorer": serializers.JSONField(
                    help_text='a spec string "kind:opt=v,..." or an object {"kind": ...}'
                ),
                "label": serializers.CharField(required=False),
                "k": serializers.IntegerField(required=False),
            },
        ),
        responses={
            202: inline_serializer(
                "BenchmarkRunStarted",
                {
                    "run": serializers.IntegerField(),
                    "job": serializers.IntegerField(),
                    "label": serializers.CharField(),
                },
            ),
            400: _ERROR,
        },
    )
    def post(self, request):
        data = request.data
        if not isinstance(data, Mapping):
            raise Invalid("send an object {dataset, scorer, label?, k?}")
        dataset = _dataset(data.get("dataset"))
        if dataset is None:
            raise Invalid("unknown dataset (give its id or name)")
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
        except ValueError as exc:  # the engine's (a bad spec): InvalidJobConfig passes through
            if isinstance(exc, EditLoopError):
                raise
            raise Invalid(str(exc)) from None
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

    @extend_schema(
        responses={200: BenchmarkRunSerializer, 404: _ERROR},
    )
    def get(self, request, run_id: int):
        row = selectors.row_by_id(str(run_id))
        if row is None:
            raise NotFound("no such run")
        run = BenchmarkRun.objects.get(pk=run_id)
        return Response({**_row_json(row, request), "metric": run.metric})
