"""Annotation API (session or token): datasets, next, skip, rankings, export, images."""

from __future__ import annotations

from dataclasses import asdict

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsResearcher
from annotation import selectors, services
from annotation.models import Candidate, Dataset, Group
from annotation.uploads import (
    UploadRefused,
    UploadTooLarge,
    import_upload_enqueue,
    upload_too_large,
)
from config.errors import Invalid
from config.ids import parse_id


def group_payload(group: Group, annotator, *, repeat: bool = False) -> dict:
    """What an annotator sees of a group: never the editors, nor whether it is a
    gold group or a repeat (the order of a repeat differs, nothing else)."""
    candidates = services.candidates_in_annotator_order(
        group=group, annotator=annotator, repeat=repeat
    )
    return {
        # the database id only: an import id may name its source, its editors or its order
        "id": group.pk,
        "instruction": group.instruction,
        "task_type": group.task_type,
        "source_url": reverse("api-image", args=["source", str(group.pk)]),
        "source_thumb_url": reverse("api-image", args=["source-thumb", str(group.pk)]),
        # Candidates are named by opaque tokens: external ids and database ids can
        # reveal the editor (a name like "g12-flux", or the manifest order).
        "candidates": [
            {
                "id": c.token,
                "image_url": reverse("api-image", args=["candidate", c.token]),
                "thumb_url": reverse("api-image", args=["candidate-thumb", c.token]),
            }
            for c in candidates
        ],
    }


_ERROR = OpenApiTypes.OBJECT  # {"detail": "..."}


class ProgressSerializer(serializers.Serializer):
    """For the schema: annotation.selectors.DatasetProgress."""

    groups = serializers.IntegerField()
    groups_complete = serializers.IntegerField(required=False, help_text="researchers only")
    rankings = serializers.IntegerField(
        required=False, help_text="researchers only (gold groups and repeats are outside it)"
    )
    rankings_target = serializers.IntegerField(required=False, help_text="researchers only")
    my_rankings = serializers.IntegerField(help_text="all of this user's rankings")
    left_for_me = serializers.IntegerField(help_text="groups this user may still rank")


class DatasetSummarySerializer(serializers.Serializer):
    """For the schema: a dataset as DatasetListApi lists it."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    overlap = serializers.IntegerField()
    dimensions = serializers.JSONField()
    lease_ttl_seconds = serializers.IntegerField()
    progress = ProgressSerializer()


class CandidatePayloadSerializer(serializers.Serializer):
    """For the schema: a candidate as group_payload shows it (named by its token)."""

    id = serializers.CharField(help_text="the candidate's opaque token")
    image_url = serializers.CharField()
    thumb_url = serializers.CharField()


class GroupPayloadSerializer(serializers.Serializer):
    """For the schema: group_payload."""

    id = serializers.IntegerField()
    instruction = serializers.CharField()
    task_type = serializers.CharField()
    source_url = serializers.CharField()
    source_thumb_url = serializers.CharField()
    candidates = CandidatePayloadSerializer(many=True)


class RankingOutputSerializer(serializers.Serializer):
    """For the schema: the ranking GroupRankingsApi stored, in the annotator's tokens."""

    id = serializers.IntegerField()
    group = serializers.IntegerField()
    submission_id = serializers.UUIDField()
    tiers = serializers.DictField()
    unusable = serializers.DictField()
    seconds_spent = serializers.FloatField(allow_null=True)
    surplus = serializers.BooleanField()
    lease_expired = serializers.BooleanField()
    version = serializers.IntegerField(help_text="1, then one more per revision")


class DatasetListApi(APIView):
    @extend_schema(responses=DatasetSummarySerializer(many=True))
    def get(self, request):
        return Response([
            {
                "id": dataset.pk, "name": dataset.name, "overlap": dataset.overlap,
                "dimensions": dataset.dimensions, "lease_ttl_seconds": dataset.lease_ttl_seconds,
                "progress": {k: v for k, v in asdict(progress).items() if v is not None},
            }
            for dataset, progress in selectors.datasets_with_progress(request.user)
        ])  # fmt: skip


class DatasetNextApi(APIView):
    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "NextGroup",
                {
                    "group": GroupPayloadSerializer(),
                    "lease_expires_at": serializers.DateTimeField(),
                },
            ),
            204: OpenApiResponse(description="nothing left to rank in this dataset"),
        },
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_for_annotator(request.user, dataset_id)
        assignment = services.group_next_for_annotator(dataset=dataset, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response({
            "group": group_payload(assignment.group, request.user, repeat=assignment.repeat),
            "lease_expires_at": assignment.expires_at,
        })  # fmt: skip


class GroupSkipApi(APIView):
    @extend_schema(
        request=None,
        responses=inline_serializer(
            "GroupSkipped",
            {"group": serializers.IntegerField(), "skipped": serializers.BooleanField()},
        ),
    )
    def post(self, request, group_id: int):
        group = selectors.group_for_annotator(request.user, group_id)
        services.group_skip(group=group, annotator=request.user)
        return Response({"group": group.pk, "skipped": True})


class GroupRankingsApi(APIView):
    @extend_schema_serializer(component_name="RankingSubmission")
    class InputSerializer(serializers.Serializer):
        submission_id = serializers.UUIDField()
        tiers = serializers.JSONField()
        unusable = serializers.JSONField(required=False, default=dict)
        seconds_spent = serializers.FloatField(
            required=False, allow_null=True, min_value=0, max_value=86400
        )

    @extend_schema(
        request=InputSerializer,
        responses={
            201: RankingOutputSerializer,
            200: OpenApiResponse(RankingOutputSerializer, description="a repeated submission"),
            400: _ERROR,
            409: _ERROR,
        },
    )
    def post(self, request, group_id: int):
        group = selectors.group_for_annotator(request.user, group_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ranking, created = services.ranking_submit(
            group=group, annotator=request.user, from_annotator=True, **data.validated_data
        )  # RankingInvalid (400), RankingConflict (409): config.errors answers them
        return _ranking_reply(ranking, group, created)


class RankingRevisionsApi(APIView):
    @extend_schema(
        request=GroupRankingsApi.InputSerializer,
        responses={
            201: RankingOutputSerializer,
            200: OpenApiResponse(RankingOutputSerializer, description="a repeated submission"),
            400: _ERROR,
            404: _ERROR,
            409: OpenApiResponse(_ERROR, description="the revision window closed, or the group "
                                 "was adjudicated"),
        },
    )  # fmt: skip
    def post(self, request, ranking_id: int):
        """Revise one of your rankings: the body replaces it as its next version (the one it
        replaces is kept). Possible within the dataset's revision window from the first
        submission, and never once the group is adjudicated."""
        ranking = selectors.ranking_of_annotator(request.user, ranking_id)
        data = GroupRankingsApi.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ranking, created = services.ranking_revise(
            ranking=ranking, annotator=request.user, from_annotator=True, **data.validated_data
        )
        return _ranking_reply(ranking, ranking.group, created)


def _ranking_reply(ranking, group: Group, created: bool) -> Response:
    # Stored with the import's candidate ids: answer with the tokens the annotator
    # placed, or the reply would map each token to an id that may name its editor.
    to_token = dict(group.candidates.values_list("external_id", "token"))
    return Response(
        {
            "id": ranking.pk, "group": group.pk, "submission_id": str(ranking.submission_id),
            "tiers": services.placements_renamed(ranking.tiers, to_token),
            "unusable": services.placements_renamed(ranking.unusable, to_token),
            "seconds_spent": ranking.seconds_spent, "surplus": ranking.surplus,
            "lease_expired": ranking.lease_expired, "version": ranking.version,
        },
        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
    )  # fmt: skip


class DatasetExportApi(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=["rankings", "pairs"], default="rankings"),
            OpenApiParameter("ties", str, description="pairs: '1' or 'true' keeps ties"),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="one JSON object a line"
            ),
            (400, "application/json"): _ERROR,
        },
    )
    def get(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        kind = request.query_params.get("format", "rankings")
        if kind == "rankings":
            lines = selectors.export_rankings(dataset)
        elif kind == "pairs":
            lines = selectors.export_pairs(
                dataset, ties=request.query_params.get("ties") in ("1", "true")
            )
        else:
            raise Invalid("format must be 'rankings' or 'pairs'")
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
        response["Content-Disposition"] = content_disposition_header(
            True, f"{dataset.name}-{kind}.jsonl"
        )
        return response


class ImageApi(APIView):
    """Images of a group, for whoever may annotate its dataset. Stored under content
    hashes, never changed: a browser may cache them for good."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "kind",
                str,
                OpenApiParameter.PATH,
                enum=["source", "source-thumb", "candidate", "candidate-thumb"],
            ),
            OpenApiParameter(
                "key", str, OpenApiParameter.PATH, description="group id or candidate token"
            ),
        ],
        responses={(200, "image/*"): OpenApiTypes.BINARY},
    )
    def get(self, request, kind: str, key: str):
        if kind in ("source", "source-thumb") and parse_id(key) is not None:
            group = selectors.group_for_annotator(request.user, parse_id(key))
            name = group.source if kind == "source" else group.source_thumb
        elif kind in ("candidate", "candidate-thumb"):
            candidate = get_object_or_404(Candidate, token=key)
            selectors.group_for_annotator(request.user, candidate.group_id)
            name = candidate.image if kind == "candidate" else candidate.thumb
        else:
            raise Http404
        try:
            # Stored names are content hashes: the download name says only what it is.
            extension = name.rsplit(".", 1)[-1]
            response = FileResponse(
                default_storage.open(name, "rb"), filename=f"{kind}.{extension}"
            )
        except FileNotFoundError:
            raise Http404("image file missing from storage") from None
        response["Cache-Control"] = "private, max-age=31536000, immutable"
        return response


class DatasetImportApi(APIView):
    """POST multipart: file (.zip with manifest.jsonl), dataset, overlap. 202 with
    the import job; its page shows progress and, if refused, every bad line."""

    permission_classes = [IsResearcher]
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "DatasetImportUpload",
                {
                    "file": serializers.FileField(help_text=".zip with manifest.jsonl"),
                    "dataset": serializers.CharField(help_text="the new dataset's name"),
                    "overlap": serializers.IntegerField(required=False),
                },
            )
        },
        responses={
            202: inline_serializer(
                "DatasetImportQueued",
                {
                    "job": serializers.IntegerField(),
                    "job_url": serializers.CharField(),
                    "status": serializers.CharField(),
                },
            ),
            400: _ERROR,
            413: _ERROR,
        },
    )
    def post(self, request):
        if upload_too_large(request):
            raise UploadTooLarge("the upload is too large")
        overlap = request.data.get("overlap") or None
        if overlap is not None and parse_id(str(overlap)) is None:
            raise UploadRefused("overlap must be an integer")
        job = import_upload_enqueue(
            upload=request.FILES.get("file"),
            dataset=(request.data.get("dataset") or "").strip(),
            overlap=parse_id(str(overlap)) if overlap is not None else None,
            user=request.user,
        )  # UploadRefused: 400, 413 or 507
        return Response(
            {
                "job": job.pk,
                "job_url": reverse("api-job-detail", args=[job.pk]),
                "status": job.status,
            },
            status=202,
        )
