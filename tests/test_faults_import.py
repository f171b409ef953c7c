"""Faults: a media folder that fills up or refuses writes while groups are imported.

Tests run as root, where a chmod 0o555 folder still takes writes, so the faults are made in
the storage itself: FileSystemStorage accepts `room` files, then fails the way the kernel
does (a full disk leaves the file it was writing half written; a folder without permission
refuses before a byte). Every path must answer with the reason, write no row and leave no
file of its own behind, while files of earlier imports that it reused stay.
"""

import errno
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError, call_command

from annotation.models import Candidate, Dataset, Group
from annotation.synthetic import write_bundle
from jobs.models import Job, JobStatus
from jobs.runner import run_job
from tests.annotation_fixtures import zipped

REASON = {errno.ENOSPC: "no space left on device", errno.EACCES: "permission denied"}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings.MEDIA_ROOT


class FailingDisk:
    """Patches FileSystemStorage._save: `room` more files fit, then every write fails."""

    def __init__(self, monkeypatch, *, room: int, error: int):
        self.room, self.error, self.failed, self.healed = room, error, 0, False
        self._lock = threading.Lock()
        original = FileSystemStorage._save

        def _save(storage, name, content):
            with self._lock:
                if self.healed or self.room > 0:
                    self.room -= 1
                    return original(storage, name, content)
                self.failed += 1
                first = self.failed == 1
            path = storage.path(name)
            if self.error == errno.ENOSPC and first:
                content.seek(0)  # the disk fills up halfway through this file
                original(storage, name, ContentFile(content.read()[: max(1, content.size // 2)]))
            raise OSError(self.error, os.strerror(self.error), path)

        monkeypatch.setattr(FileSystemStorage, "_save", _save)

    def heal(self) -> None:
        self.healed = True


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under MEDIA_ROOT (but the import lock and uploads) with its hash."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and p.name != ".import.lock" and "_uploads" not in p.parts
    }


def _import(path, dataset, *extra) -> str:
    out = io.StringIO()
    call_command("import_groups", str(path), "--dataset", dataset, *extra, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES], ids=["disk-full", "no-permission"])
def test_command_import_into_a_failing_media_folder_is_refused_and_undone(
    db, tmp_path, media, monkeypatch, error
):
    # An earlier import whose files the failing one reuses: they must survive its undo.
    _import(write_bundle(tmp_path / "old", groups=2, candidates=3, size=64), "old")
    before = _snapshot(media)
    assert len(before) == 2 * 4 * 2  # 8 images and their thumbnails
    rows_before = (Group.objects.count(), Candidate.objects.count())

    # Same seed: its first two groups are the old images, two groups are new (16 files).
    bundle = write_bundle(tmp_path / "new", groups=4, candidates=3, size=64)
    disk = FailingDisk(monkeypatch, room=5, error=error)
    with pytest.raises(CommandError) as refused:
        _import(bundle, "new", "--workers", "4")

    message = str(refused.value)
    assert "nothing written" in message
    assert REASON[error] in message.lower(), message
    assert "media folder" in message and "'img/g" in message  # what failed, and on which image
    assert "Traceback" not in message
    assert message.count(REASON[error]) == 1, message  # said once, not once per image
    assert disk.failed >= 1
    assert not Dataset.objects.filter(name="new").exists()
    assert (Group.objects.count(), Candidate.objects.count()) == rows_before
    assert _snapshot(media) == before  # the 5 written files and the half one are gone

    disk.heal()  # space freed: the same import now goes through
    summary = _import(bundle, "new")
    assert '"groups": 4' in summary
    assert Group.objects.filter(dataset__name="new").count() == 4
    assert len(_snapshot(media)) == 4 * 4 * 2
    assert all(_snapshot(media)[name] == digest for name, digest in before.items())


def test_command_import_when_the_media_folder_is_not_a_folder(db, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.write_text("a file where the media folder should be")
    bundle = write_bundle(tmp_path / "b", groups=1, candidates=2, size=32)
    with pytest.raises(CommandError) as refused:
        _import(bundle, "ds")
    assert "media folder" in str(refused.value) and "nothing written" in str(refused.value)
    assert Dataset.objects.count() == 0


# --- the web upload: the .zip is stored, then a job imports it


def _zip(tmp_path, groups=2) -> io.BytesIO:
    bundle = write_bundle(tmp_path / "bundle", groups=groups, candidates=2, size=32)
    return zipped(bundle)


class _FillingFile(io.FileIO):
    """A file on a disk with room for 100 bytes."""

    def write(self, data):
        if self.tell() + len(data) > 100:
            super().write(bytes(data[: max(0, 100 - self.tell())]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        return super().write(data)


def _uploads(media: Path) -> list[Path]:
    folder = media / "_uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("where", ["api", "page"])
def test_upload_onto_a_full_disk_answers_507_with_the_reason(
    researcher_client, tmp_path, media, monkeypatch, where
):
    monkeypatch.setattr(
        "annotation.uploads.open", lambda path, mode: _FillingFile(path, "w"), raising=False
    )
    data = {"file": _zip(tmp_path), "dataset": "up"}
    if where == "api":
        response = researcher_client.post("/api/datasets/import/", data)
        assert response.status_code == 507
        detail = response.json()["detail"]
    else:
        response = researcher_client.post("/annotate/import/", data)
        assert response.status_code == 507
        detail = response.content.decode()
        assert "<form" in detail and "Traceback" not in detail  # the page, with its message
    assert "no space left on device" in detail and "could not store the upload" in detail
    assert Job.objects.count() == 0 and Dataset.objects.count() == 0
    assert _uploads(media) == []  # the partial upload is removed


def test_uploaded_import_job_on_a_filling_disk_fails_with_the_reason(
    researcher_client, tmp_path, media, monkeypatch
):
    response = researcher_client.post(
        "/api/datasets/import/", {"file": _zip(tmp_path, groups=3), "dataset": "up"}
    )
    assert response.status_code == 202
    disk = FailingDisk(monkeypatch, room=4, error=errno.ENOSPC)
    job_id = response.json()["job"]
    assert run_job(job_id, worker="inline") == "failed"
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.FAILED and disk.failed >= 1
    assert "no space left on device" in job.error.lower() and "nothing written" in job.error
    assert Dataset.objects.count() == 0 and Group.objects.count() == 0
    assert _snapshot(media) == {}  # no image or thumbnail of the failed import is left
    assert _uploads(media) == []

    page = researcher_client.get(f"/jobs/{job_id}/")
    assert page.status_code == 200 and "no space left on device" in page.content.decode()
