"""The import job: a .zip uploaded from the researcher page or the API is
imported by a worker, with progress on the job page."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from annotation.importer import import_groups
from annotation.manifest import ImportRefused


def uploads_dir() -> Path:
    """Beside the media, which web and workers share (one volume in compose).
    Never served: images are served by name from the database only."""
    return Path(settings.MEDIA_ROOT) / "_uploads"


@dataclass
class ImportConfig:
    path: str
    dataset: str
    overlap: int | None = None

    def __post_init__(self):
        # Only files the upload view stored: the jobs API must not become a way
        # to read arbitrary server paths.
        resolved = Path(self.path).resolve()
        if not resolved.is_relative_to(uploads_dir().resolve()):
            raise ValueError("path must be an uploaded file (under MEDIA_ROOT/_uploads)")
        if resolved.suffix != ".zip":
            raise ValueError("path must be an uploaded .zip file")
        if not isinstance(self.dataset, str) or not self.dataset.strip() or len(self.dataset) > 100:
            raise ValueError("dataset must be a name of 1 to 100 characters")
        if self.overlap is not None and (not isinstance(self.overlap, int) or self.overlap < 1):
            raise ValueError("overlap must be a positive integer")


class ImportFailed(RuntimeError):
    pass


def run_import(ctx) -> dict:
    cfg = ImportConfig(**ctx.config)

    def progress(fraction: float, message: str) -> None:
        ctx.progress(fraction, message)
        ctx.heartbeat()

    # The upload is removed once the import has an answer (done or refused); a
    # worker that dies midway leaves it for the retry.
    try:
        summary = import_groups(
            cfg.path, dataset_name=cfg.dataset, overlap=cfg.overlap, progress=progress
        )
    except ImportRefused as refused:
        _remove(cfg.path)
        raise ImportFailed(
            f"import refused, nothing written ({len(refused.errors)} error(s)):\n{refused.summary()}"
        ) from None
    _remove(cfg.path)
    return summary.as_dict()


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)
