"""Importing from the researcher page and the API: a .zip becomes an import job."""

import io
import json
import zipfile

import pytest
from django.conf import settings

from annotation.models import Dataset, Group
from annotation.synthetic import write_bundle
from jobs.models import Job, JobStatus
from jobs.runner import run_job
from tests.annotation_fixtures import zipped


@pytest.fixture(autouse=True)
def var(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()


def _zip(tmp_path, groups=2, corrupt_line=None) -> io.BytesIO:
    bundle = write_bundle(tmp_path / "bundle", groups=groups, candidates=2, size=32)
    if corrupt_line:
        lines = (bundle / "manifest.jsonl").read_text().splitlines()
        lines[corrupt_line - 1] = '{"id": "broken"'
        (bundle / "manifest.jsonl").write_text("\n".join(lines))
    return zipped(bundle)


def test_api_upload_queues_an_import_job_that_imports(researcher_client, tmp_path):
    response = researcher_client.post(
        "/api/datasets/import/", {"file": _zip(tmp_path), "dataset": "up", "overlap": "2"}
    )
    assert response.status_code == 202
    body = response.json()
    job = Job.objects.get(pk=body["job"])
    assert job.kind == "annotation.import" and body["job_url"] == f"/api/jobs/{job.pk}/"
    assert run_job(job.pk, worker="inline") == "succeeded"
    job.refresh_from_db()
    assert job.result["groups"] == 2 and job.progress == 1.0
    assert Dataset.objects.get(name="up").overlap == 2 and Group.objects.count() == 2
    assert not list((tmp_path / "media" / "_uploads").iterdir())  # the upload is removed


def test_refused_import_fails_the_job_with_the_bad_line(researcher_client, tmp_path):
    response = researcher_client.post(
        "/api/datasets/import/", {"file": _zip(tmp_path, corrupt_line=2), "dataset": "up"}
    )
    job_id = response.json()["job"]
    assert run_job(job_id, worker="inline") == "failed"
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.FAILED
    assert "manifest.jsonl line 2: invalid JSON" in job.error and "nothing written" in job.error
    assert Dataset.objects.count() == 0
    # refused input: the line messages alone, no traceback, no server path, and no retry
    assert job.error_kind == "invalid" and job.error_detail == "" and job.attempts == 1
    assert "Traceback" not in job.error and str(settings.MEDIA_ROOT) not in job.error
    page = researcher_client.get(f"/jobs/{job_id}/").content.decode()
    assert "Failed because its input or config was refused: fix it and start a new job" in page
    assert "not retried" in page and "of 3" not in page and 'id="error-detail"' not in page
    assert researcher_client.get(f"/api/jobs/{job_id}/").json()["error_kind"] == "invalid"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dataset": "x"}, "no file"),
        ({"dataset": "x", "file": io.BytesIO(b"not a zip")}, "not a .zip archive"),
        ({"dataset": "", "file": "ZIP"}, "dataset must be a name"),
        ({"dataset": "x", "file": "ZIP", "overlap": "zero"}, "overlap must be an integer"),
    ],
)
def test_bad_uploads_get_400_and_store_nothing(researcher_client, tmp_path, data, message):
    if data.get("file") == "ZIP":
        data["file"] = _zip(tmp_path)
    response = researcher_client.post("/api/datasets/import/", data)
    assert response.status_code == 400 and message in response.json()["detail"]
    assert Job.objects.count() == 0


def test_zip_without_manifest_is_refused(researcher_client):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("readme.txt", "hi")
    buffer.seek(0)
    response = researcher_client.post("/api/datasets/import/", {"file": buffer, "dataset": "x"})
    assert response.status_code == 400 and "no manifest.jsonl" in response.json()["detail"]


def test_too_large_upload_is_413_before_reading(researcher_client, settings, tmp_path):
    settings.UPLOAD_MAX_BYTES = 10
    response = researcher_client.post(
        "/api/datasets/import/", {"file": _zip(tmp_path), "dataset": "x"}
    )
    assert response.status_code == 413 and Job.objects.count() == 0


def test_annotators_cannot_import(annotator_client, tmp_path):
    assert (
        annotator_client.post(
            "/api/datasets/import/", {"file": _zip(tmp_path), "dataset": "x"}
        ).status_code
        == 403
    )
    assert annotator_client.get("/annotate/import/").status_code == 403


def test_import_page_form(researcher_client, tmp_path):
    assert b'enctype="multipart/form-data"' in researcher_client.get("/annotate/import/").content
    response = researcher_client.post(
        "/annotate/import/", {"file": _zip(tmp_path), "dataset": "page"}
    )
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    bad = researcher_client.post("/annotate/import/", {"file": io.BytesIO(b"x"), "dataset": "page"})
    assert bad.status_code == 400 and b"not a .zip archive" in bad.content


def test_jobs_api_cannot_point_an_import_at_arbitrary_paths(researcher_client):
    response = researcher_client.post(
        "/api/jobs/", json.dumps({"kind": "annotation.import", "config": {"path": "/etc", "dataset": "x"}}),
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 400 and "created through an upload" in response.json()["detail"]
    assert not Job.objects.exists()
