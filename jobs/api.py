"""JSON API for jobs (researchers only): list, create, detail, metrics, cancel."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsResearcher
from config.pagination import BoundedLimitOffsetPagination
from jobs import registry, selectors, services
from jobs.models import Job


class JobOutputSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "queue", "status", "config", "result", "error", "error_kind", "attempts",
            "max_attempts", "cancel_requested", "progress", "progress_message", "worker",
            "created_by", "created_at", "claimed_at", "heartbeat_at", "finished_at",
        ]  # fmt: skip


# {"detail": "..."} and the like: what a refused request is answered with.
_ERROR = OpenApiTypes.OBJECT


class JobListApi(APIView):
    permission_classes = [IsResearcher]

    @extend_schema_serializer(component_name="JobCreate")
    class InputSerializer(serializers.Serializer):
        kind = serializers.CharField()
        config = serializers.DictField(required=False, default=dict)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[
            OpenApiParameter("status", str, description="only jobs with this status"),
            OpenApiParameter("kind", str, description="only jobs of this kind"),
            OpenApiParameter("limit", int, description="page size"),
            OpenApiParameter("offset", int, description="index of the first job"),
        ],
        responses=inline_serializer(
            "PaginatedJobList",
            {
                "count": serializers.IntegerField(),
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": JobOutputSerializer(many=True),
            },
        ),
    )
    def get(self, request):
        jobs = selectors.job_list(
            status=request.query_params.get("status"), kind=request.query_params.get("kind")
        )
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: JobOutputSerializer, 400: _ERROR})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # UnknownJobKind and InvalidJobConfig answer 400 (config.errors); a kind made elsewhere
        # (with the objects it works on) is refused with where to make it
        registry.creatable(data.validated_data["kind"])
        job = services.job_enqueue(created_by=request.user, **data.validated_data)
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(responses=JobOutputSerializer)
    def get(self, request, job_id: int):
        job = get_object_or_404(Job, pk=job_id)
        return Response(JobOutputSerializer(job).data)


class JobMetricsApi(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(
        description="Every metric the job logged: {name: [{step, value}, ...]}.",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, job_id: int):
        job = get_object_or_404(Job, pk=job_id)
        series = selectors.job_metric_series(job=job)
        return Response(
            {name: [{"step": s, "value": v} for s, v in points] for name, points in series.items()}
        )


class JobCancelApi(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "JobCancelled", {"id": serializers.IntegerField(), "status": serializers.CharField()}
        ),
    )
    def post(self, request, job_id: int):
        job = get_object_or_404(Job, pk=job_id)
        return Response({"id": job.pk, "status": services.job_cancel(job_id=job.pk)})


class JobKindListApi(APIView):
    """GET: every job kind with its queue and its config's options (name, type, default, help,
    bounds): what `POST /api/jobs/` accepts, from the same declarations that check it."""

    permission_classes = [IsResearcher]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response([
            {"kind": kind.name, "title": kind.title, "queue": kind.queue,
             "created_through": kind.created_through or "POST /api/jobs/",
             "options": [_option_dict(o) for o in registry.config_options(kind)]}
            for kind in registry.all_kinds()
        ])  # fmt: skip


def _option_dict(option) -> dict:
    return {
        "name": option.name, "type": option.type, "required": option.required,
        "default": None if option.required else option.default, "help": option.help,
        "min": option.min, "max": option.max, "min_exclusive": option.min_exclusive,
        "choices": list(option.choices) if option.choices else None,
    }  # fmt: skip
