"""Quality-control API for researchers: the stored report, the adjudication
queue, adjudicating a group, and exporting consensus snapshots."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsResearcher
from annotation import selectors, services
from annotation.jobs import SNAPSHOT_NAME
from annotation.models import Dataset, Group, Snapshot
from config.errors import NotFound, Unavailable
from jobs.registry import InvalidJobConfig
from jobs.services import job_enqueue, send_task

log = logging.getLogger(__name__)

_ERROR = OpenApiTypes.OBJECT  # {"detail": "..."}


class DatasetReportApi(APIView):
    """GET: the stored quality report (agreement with intervals, annotators,
    consensus counts, editor leaderboard). POST: recompute it now (202)."""

    permission_classes = [IsResearcher]

    @extend_schema(
        description="The stored report: computed_at, stale, seconds and the report itself.",
        responses={200: OpenApiTypes.OBJECT, 404: _ERROR},
    )
    def get(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        report = selectors.dataset_report(dataset)
        if report is None:
            raise NotFound("no report yet: POST here to compute it, or wait for the periodic task")
        return Response(report)

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "ReportRecomputing",
                {"detail": serializers.CharField(), "dataset": serializers.IntegerField()},
            ),
            503: _ERROR,
        },
    )
    def post(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        if not report_refresh_request(dataset):
            raise Unavailable("the broker is unreachable; try again later")
        return Response({"detail": "recomputing", "dataset": dataset.pk}, status=202)


class AdjudicationQueueApi(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(
        responses=inline_serializer(
            "AdjudicationQueueEntry",
            {
                "group": serializers.IntegerField(),
                "external_id": serializers.CharField(),
                "instruction": serializers.CharField(),
                "task_type": serializers.CharField(),
                "agreement": serializers.FloatField(allow_null=True),
                "rankings": serializers.ListField(
                    child=serializers.DictField(), help_text="[{annotator, tiers}, ...]"
                ),
            },
            many=True,
        )
    )
    def get(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        return Response(selectors.adjudication_queue(dataset))


class GroupAdjudicationApi(APIView):
    """POST {tiers, unusable?, note?}: the researcher's ranking becomes the
    group's consensus (candidate tokens or ids, as for rankings)."""

    permission_classes = [IsResearcher]

    @extend_schema_serializer(component_name="AdjudicationSubmission")
    class InputSerializer(serializers.Serializer):
        tiers = serializers.JSONField()
        unusable = serializers.JSONField(required=False, default=dict)
        note = serializers.CharField(required=False, default="", allow_blank=True, max_length=5000)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: inline_serializer(
                "Adjudication",
                {
                    "group": serializers.IntegerField(),
                    "tiers": serializers.DictField(),
                    "unusable": serializers.DictField(),
                    "note": serializers.CharField(),
                    "researcher": serializers.CharField(),
                },
            ),
            400: _ERROR,
            409: _ERROR,
        },
    )
    def post(self, request, group_id: int):
        group = get_object_or_404(Group.objects.select_related("dataset"), pk=group_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        adjudication = services.adjudication_submit(
            group=group, researcher=request.user, **data.validated_data
        )  # RankingInvalid (400), AdjudicationRefused (409)
        return Response(
            {
                "group": group.pk, "tiers": adjudication.tiers, "unusable": adjudication.unusable,
                "note": adjudication.note, "researcher": request.user.username,
            },
            status=status.HTTP_201_CREATED,
        )  # fmt: skip


class DatasetSnapshotApi(APIView):
    """GET: the dataset's snapshots. POST {name, policy, max_tie_fraction?,
    min_votes?}: export benchmark pairs and training preferences as a job (202)."""

    permission_classes = [IsResearcher]

    @extend_schema(
        responses=inline_serializer(
            "Snapshot",
            {
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                "kind": serializers.CharField(),
                "policy": serializers.CharField(),
                "path": serializers.CharField(),
                "rows": serializers.IntegerField(),
                "sha256": serializers.CharField(),
                "counts": serializers.DictField(),
                "split": serializers.DictField(),
                "created_at": serializers.DateTimeField(),
            },
            many=True,
        )
    )
    def get(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        return Response([
            {
                "id": s.pk, "name": s.name, "kind": s.kind, "policy": s.policy, "path": s.path,
                "rows": s.rows, "sha256": s.sha256, "counts": s.counts, "split": s.split,
                "created_at": s.created_at,
            }
            for s in Snapshot.objects.filter(dataset=dataset)
        ])  # fmt: skip

    @extend_schema(
        request=inline_serializer(
            "SnapshotExport",
            {
                "name": serializers.CharField(help_text="letters, digits, '.', '_' or '-'"),
                "policy": serializers.CharField(required=False),
                "max_tie_fraction": serializers.FloatField(required=False),
                "min_votes": serializers.IntegerField(required=False),
            },
        ),
        responses={
            202: inline_serializer(
                "SnapshotExportQueued",
                {"job": serializers.IntegerField(), "job_url": serializers.CharField()},
            ),
            400: _ERROR,
        },
    )
    def post(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        job = snapshot_export_enqueue(dataset, request.data, request.user)  # InvalidJobConfig
        return Response(
            {"job": job.pk, "job_url": reverse("api-job-detail", args=[job.pk])}, status=202
        )


def snapshot_export_enqueue(dataset: Dataset, data, user):
    """Enqueue the export job from form or JSON data; InvalidJobConfig names the problem."""
    if not isinstance(data, Mapping):
        raise InvalidJobConfig("send an object: {name, policy, max_tie_fraction?, min_votes?}")
    if not data.get("name"):
        raise InvalidJobConfig("name is required (letters, digits, '.', '_' or '-')")
    config = {"dataset_id": dataset.pk}
    for key in ("name", "policy", "max_tie_fraction", "min_votes", "held_out", "split_seed"):
        value = data.get(key)
        if value not in (None, ""):
            config[key] = value
    casts = (("max_tie_fraction", float), ("min_votes", int), ("held_out", float),
             ("split_seed", int))  # fmt: skip
    for key, cast in casts:
        if isinstance(config.get(key), str):
            try:
                config[key] = cast(config[key])
            except ValueError:
                raise InvalidJobConfig(f"{key} must be a number") from None
    name = config.get("name")
    # only a valid name reaches the database (a NUL byte is an error in PostgreSQL, not a 400);
    # job_enqueue names what is wrong with any other
    if (
        isinstance(name, str)
        and SNAPSHOT_NAME.fullmatch(name)
        and (Snapshot.objects.filter(name=name).exists())
    ):
        raise InvalidJobConfig(f"a snapshot named {name!r} exists already")
    return job_enqueue(kind="annotation.export_snapshot", config=config, created_by=user)


def report_refresh_request(dataset: Dataset) -> bool:
    """Ask a worker to recompute the report now; False when the broker is down."""
    try:
        send_task("annotation.refresh_reports", [dataset.pk, True])
    except Exception:  # kombu raises OperationalError and friends
        log.warning("could not send the report refresh of %s", dataset, exc_info=True)
        return False
    return True
