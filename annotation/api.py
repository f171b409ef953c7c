"""Annotation API (session or token): datasets, next, skip, rankings, export, images."""

from __future__ import annotations

from dataclasses import asdict

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import content_disposition_header
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsResearcher
from annotation import selectors, services
from annotation.models import Candidate, Dataset, Group
from annotation.uploads import UploadRefused, import_upload_enqueue, upload_too_large


def group_payload(group: Group, annotator, *, repeat: bool = False) -> dict:
    """What an annotator sees of a group: never the editors, nor whether it is a
    gold group or a repeat (the order of a repeat differs, nothing else)."""
    candidates = services.candidates_in_annotator_order(
        group=group, annotator=annotator, repeat=repeat
    )
    return {
        "id": group.pk,
        "external_id": group.external_id,
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


class DatasetListApi(APIView):
    def get(self, request):
        return Response([
            {
                "id": dataset.pk, "name": dataset.name, "overlap": dataset.overlap,
                "dimensions": dataset.dimensions, "lease_ttl_seconds": dataset.lease_ttl_seconds,
                "progress": asdict(progress),
            }
            for dataset, progress in selectors.datasets_with_progress(request.user)
        ])  # fmt: skip


class DatasetNextApi(APIView):
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
    def post(self, request, group_id: int):
        group = selectors.group_for_annotator(request.user, group_id)
        services.group_skip(group=group, annotator=request.user)
        return Response({"group": group.pk, "skipped": True})


class GroupRankingsApi(APIView):
    class InputSerializer(serializers.Serializer):
        submission_id = serializers.UUIDField()
        tiers = serializers.JSONField()
        unusable = serializers.JSONField(required=False, default=dict)
        seconds_spent = serializers.FloatField(
            required=False, allow_null=True, min_value=0, max_value=86400
        )

    def post(self, request, group_id: int):
        group = selectors.group_for_annotator(request.user, group_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            ranking, created = services.ranking_submit(
                group=group, annotator=request.user, **data.validated_data
            )
        except services.RankingInvalid as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        except services.RankingConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        # Stored with the import's candidate ids: answer with the tokens the annotator
        # placed, or the reply would map each token to an id that may name its editor.
        to_token = dict(group.candidates.values_list("external_id", "token"))
        return Response(
            {
                "id": ranking.pk, "group": group.pk, "submission_id": str(ranking.submission_id),
                "tiers": _placements(ranking.tiers, to_token),
                "unusable": _placements(ranking.unusable, to_token),
                "seconds_spent": ranking.seconds_spent, "surplus": ranking.surplus,
                "lease_expired": ranking.lease_expired,
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )  # fmt: skip


def _placements(placements: dict, names: dict[str, str]) -> dict:
    """{dimension: tiers or a list} with every candidate id renamed through `names`."""

    def rename(value):
        return [rename(v) for v in value] if isinstance(value, list) else names.get(value, value)

    return {dim: rename(value) for dim, value in placements.items()}


class DatasetExportApi(APIView):
    permission_classes = [IsResearcher]

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
            return Response({"detail": "format must be 'rankings' or 'pairs'"}, status=400)
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
        response["Content-Disposition"] = content_disposition_header(
            True, f"{dataset.name}-{kind}.jsonl"
        )
        return response


class ImageApi(APIView):
    """Images of a group, for whoever may annotate its dataset. Names are content
    hashes, so a browser may cache them for good."""

    def get(self, request, kind: str, key: str):
        if kind in ("source", "source-thumb") and key.isdigit():
            group = selectors.group_for_annotator(request.user, int(key))
            name = group.source if kind == "source" else group.source_thumb
        elif kind in ("candidate", "candidate-thumb"):
            candidate = get_object_or_404(Candidate, token=key)
            selectors.group_for_annotator(request.user, candidate.group_id)
            name = candidate.image if kind == "candidate" else candidate.thumb
        else:
            raise Http404
        try:
            response = FileResponse(default_storage.open(name, "rb"))
        except FileNotFoundError:
            raise Http404("image file missing from storage") from None
        response["Cache-Control"] = "private, max-age=31536000, immutable"
        return response


class DatasetImportApi(APIView):
    """POST multipart: file (.zip with manifest.jsonl), dataset, overlap. 202 with
    the import job; its page shows progress and, if refused, every bad line."""

    permission_classes = [IsResearcher]
    parser_classes = [MultiPartParser]

    def post(self, request):
        if upload_too_large(request):
            return Response({"detail": "the upload is too large"}, status=413)
        overlap = request.data.get("overlap") or None
        try:
            job = import_upload_enqueue(
                upload=request.FILES.get("file"),
                dataset=(request.data.get("dataset") or "").strip(),
                overlap=int(overlap) if overlap is not None else None,
                user=request.user,
            )
        except UploadRefused as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        except ValueError:
            return Response({"detail": "overlap must be an integer"}, status=400)
        return Response(
            {
                "job": job.pk,
                "job_url": reverse("api-job-detail", args=[job.pk]),
                "status": job.status,
            },
            status=202,
        )
