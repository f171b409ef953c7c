"""Accepting an uploaded .zip for import: cheap checks now, the import in a job."""

from __future__ import annotations

import uuid
import zipfile

from django.conf import settings

from annotation.jobs import uploads_dir
from annotation.manifest import MANIFEST
from config.errors import Invalid
from jobs.services import job_enqueue


class UploadRefused(Invalid):
    code = "upload_refused"


class UploadTooLarge(UploadRefused):
    status, code = 413, "too_large"


class UploadNotStored(UploadRefused):
    """The server could not keep the file (a full disk, an unwritable media folder)."""

    status, code = 507, "not_stored"  # Insufficient Storage


def import_upload_enqueue(*, upload, dataset: str, overlap: int | None, user):
    """Store the upload under MEDIA_ROOT/_uploads and queue its import (returns the job). Raises UploadRefused
    (nothing stored) when it is not a zip with a manifest.jsonl at its top."""
    if upload is None:
        raise UploadRefused("no file: send the .zip in the 'file' field")
    if upload.size > settings.UPLOAD_MAX_BYTES:
        raise UploadTooLarge(f"the file is larger than {settings.UPLOAD_MAX_BYTES // 2**20} MB")
    if not dataset or len(dataset) > 100:
        raise UploadRefused("dataset must be a name of 1 to 100 characters")
    if overlap is not None and overlap < 1:
        raise UploadRefused("overlap must be at least 1")
    if not zipfile.is_zipfile(upload):
        raise UploadRefused("the file is not a .zip archive")
    upload.seek(0)
    try:
        with zipfile.ZipFile(upload) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):  # an end record that parses, a body that not
        raise UploadRefused("the file is a damaged .zip archive") from None
    if not any(n == MANIFEST or (n.count("/") == 1 and n.endswith("/" + MANIFEST)) for n in names):
        raise UploadRefused(f"the zip has no {MANIFEST} at its top (or in one top folder)")
    folder = uploads_dir()
    path = folder / f"{uuid.uuid4()}.zip"
    upload.seek(0)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    except OSError as exc:
        path.unlink(missing_ok=True)  # no half-written upload left behind
        reason = (exc.strerror or str(exc)).lower()
        raise UploadNotStored(
            f"the server could not store the upload: {reason}; nothing was imported"
        ) from None
    return job_enqueue(
        kind="annotation.import",
        config={"path": str(path), "dataset": dataset, "overlap": overlap},
        created_by=user,
    )


def upload_too_large(request) -> bool:
    """Answer 413 from the Content-Length, before a byte of the body is read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True
    return length > settings.UPLOAD_MAX_BYTES + 1024 * 1024  # room for the form fields
