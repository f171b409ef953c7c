"""The import job: a .zip uploaded from the researcher page or the API is
imported by a worker, with progress on the job page."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from annotation.importer import import_groups
from annotation.manifest import ImportRefused
from annotation.stats.consensus import Policy
from config.errors import Invalid
from mlcore.options import check_options, option


def uploads_dir() -> Path:
    """Beside the media, which web and workers share (one volume in compose).
    Never served: images are served by name from the database only."""
    return Path(settings.MEDIA_ROOT) / "_uploads"


@dataclass
class ImportConfig:
    path: str = option(help="the uploaded .zip (under MEDIA_ROOT/_uploads)")
    dataset: str = option(help="the dataset to create or add to (1-100 characters)")
    overlap: int | None = option(None, help="rankings wanted per group (none: 3)", min=1)

    def __post_init__(self):
        check_options(self)
        # Only files the upload view stored: the jobs API must not become a way
        # to read arbitrary server paths.
        resolved = Path(self.path).resolve()
        if not resolved.is_relative_to(uploads_dir().resolve()):
            raise ValueError("path must be an uploaded file (under MEDIA_ROOT/_uploads)")
        if resolved.suffix != ".zip":
            raise ValueError("path must be an uploaded .zip file")
        if not self.dataset.strip() or len(self.dataset) > 100:
            raise ValueError("dataset must be a name of 1 to 100 characters")


class ImportFailed(Invalid):
    """A refused import: its line messages are the job's error (the runner adds nothing)."""


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
        # the upload's name on the server means nothing to the user, and is not theirs to see
        listed = refused.summary().replace(cfg.path, "the uploaded file")
        raise ImportFailed(
            f"import refused, nothing written ({len(refused.errors)} error(s)):\n{listed}"
        ) from None
    _remove(cfg.path)
    return summary.as_dict()


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


# --- snapshot export: the dashboard's "Export snapshot" button


SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass
class ExportConfig:
    dataset_id: int = option(help="the annotation dataset", min=1)
    name: str = option(help="the snapshots' name (1-100 letters, digits, '.', '_', '-')")
    policy: str = option("unanimous", help="the consensus policy",
                         choices=("unanimous", "majority"))  # fmt: skip
    max_tie_fraction: float | None = option(
        None, help="majority: most votes that may be ties (none: the policy's default)", min=0,
        max=1,
    )  # fmt: skip
    min_votes: int = option(2, help="pairs with fewer votes are left out", min=1)
    held_out: float = option(0.0, help="benchmark only this fraction of groups, held out by "
                             "group (0: all groups)", min=0, max=0.9)  # fmt: skip
    split_seed: int = option(0, help="seed of the held-out split", min=0)

    def __post_init__(self):
        check_options(self)
        if not SNAPSHOT_NAME.fullmatch(self.name):
            raise ValueError(
                "name must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        self.consensus_policy()  # raises ValueError with the reason

    def consensus_policy(self) -> Policy:
        return Policy.named(
            self.policy, max_tie_fraction=self.max_tie_fraction, min_votes=self.min_votes
        )


def run_export(ctx) -> dict:
    """Both snapshots of one consensus: benchmark pairs and training preferences,
    under MEDIA_ROOT/_snapshots/<name>/."""
    from annotation.exports import export_benchmark, export_preferences, snapshots_dir
    from annotation.ml.split import Split
    from annotation.models import Dataset, Snapshot

    cfg = ExportConfig(**ctx.config)
    dataset = Dataset.objects.get(pk=cfg.dataset_id)
    policy = cfg.consensus_policy()
    root = snapshots_dir() / cfg.name
    # A retry after a worker died finds what the first attempt finished: a
    # registered snapshot is kept, a folder nobody registered is a leftover.
    done = {s.kind: s for s in Snapshot.objects.filter(name=cfg.name, path__startswith=str(root))}
    steps = (
        (Snapshot.Kind.BENCHMARK, export_benchmark, "the benchmark snapshot", 0.05),
        (Snapshot.Kind.PREFERENCES, export_preferences, "the training preferences", 0.6),
    )
    made = {}
    for kind, export, what, progress in steps:
        if kind in done:
            made[kind] = done[kind]
            continue
        shutil.rmtree(root / kind, ignore_errors=True)
        ctx.progress(progress, f"writing {what}")
        ctx.heartbeat()
        extra = {"split": Split(cfg.held_out, cfg.split_seed)} if (
            cfg.held_out and kind == Snapshot.Kind.BENCHMARK) else {}  # fmt: skip
        made[kind] = export(dataset, policy, root / kind, name=cfg.name, **extra)
    bench, prefs = made[Snapshot.Kind.BENCHMARK], made[Snapshot.Kind.PREFERENCES]
    return {
        kind: {"snapshot": s.pk, "path": s.path, "rows": s.rows, "sha256": s.sha256}
        for kind, s in (("benchmark", bench), ("preferences", prefs))
    }
