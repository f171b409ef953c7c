"""Import a bundle of groups into a dataset: all or nothing.

Phase 1 parses the manifest and checks every path. Phase 2 reads, hashes and
fully decodes every image on a thread pool (Pillow and hashlib release the GIL),
storing each original and its thumbnail under a content-addressed name. Phase 3
writes all rows in one transaction. If anything fails, the files this import
created are deleted again and no row is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from annotation.constants import DEFAULT_DIMENSIONS
from annotation.manifest import Bundle, GroupSpec, ImportRefused, LineError, parse_manifest
from annotation.models import Candidate, Dataset, Group
from media.images import BadImage, check_image
from media.storage import ContentStore, StorageFailed, StoredImage, store_checked


@dataclass
class ImportSummary:
    dataset: str
    dataset_created: bool
    groups: int
    candidates: int
    images: int
    images_stored: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def _store_image(bundle: Bundle, rel: str, store: ContentStore) -> StoredImage:
    return store_checked(check_image(bundle.read(rel), rel), store)


def import_groups(
    path: str | os.PathLike,
    *,
    dataset_name: str,
    overlap: int | None = None,
    workers: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> ImportSummary:
    """Raises ImportRefused (nothing written) with every problem found.
    `progress(fraction, message)` is called as images are checked."""
    started = time.perf_counter()
    if overlap is not None and overlap < 1:
        raise ImportRefused([LineError(0, f"--overlap must be at least 1, not {overlap}")])
    bundle = Bundle(path)
    store = ContentStore()
    try:
        with _import_lock():
            return _import_locked(bundle, store, dataset_name, overlap, workers, started, progress)
    finally:
        bundle.close()  # also when the lock could not be taken (closing twice is harmless)


@contextlib.contextmanager
def _import_lock():
    """One import at a time on this machine: an import that fails deletes the files
    it created, which must not be files another import has just decided to reuse."""
    path = Path(settings.MEDIA_ROOT) / ".import.lock"  # where the files are: shared by all workers
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 (closed below; "a" never truncates)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ImportRefused(
            [LineError(0, f"the media folder ({settings.MEDIA_ROOT}) is not usable: {reason}")]
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _import_locked(
    bundle, store, dataset_name, overlap, workers, started, progress
) -> ImportSummary:
    try:
        groups, errors = parse_manifest(bundle)
        existing = Dataset.objects.filter(name=dataset_name).first()
        if existing is not None:
            taken = set(
                Group.objects.filter(
                    dataset=existing, external_id__in=[g.id for g in groups]
                ).values_list("external_id", flat=True)
            )
            errors += [LineError(g.line, f"group id {g.id!r} is already in dataset {dataset_name!r}") for g in groups if g.id in taken]  # fmt: skip
        dimensions = set(existing.dimension_keys if existing else _default_dimension_keys())
        errors += [
            LineError(g.line, f"gold: unknown dimension {dim!r}; expected {', '.join(sorted(dimensions))}")
            for g in groups if g.gold for dim in g.gold if dim not in dimensions
        ]  # fmt: skip
        errors.sort(key=lambda e: e.line)
        if errors:
            raise ImportRefused(errors)
        stored, image_errors = _store_all(bundle, groups, store, workers, progress)
        if image_errors:
            raise ImportRefused(image_errors)
        dataset, created, candidates = _write_in_batches(dataset_name, overlap, groups, stored,
                                                         progress)  # fmt: skip
        if connection.vendor == "postgresql":
            # Fresh statistics, or the planner guesses the new rows do not exist
            # and `next` scans and sorts the whole dataset until autovacuum runs.
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {Group._meta.db_table}, {Candidate._meta.db_table}")
    except BaseException:
        store.undo()
        raise
    finally:
        bundle.close()
    return ImportSummary(
        dataset=dataset.name,
        dataset_created=created,
        groups=len(groups),
        candidates=candidates,
        images=len(stored),
        images_stored=sum(name.startswith("images/") for name in store.created),
        seconds=round(time.perf_counter() - started, 2),
    )


def _store_all(bundle, groups, store, workers, progress):
    lines_of: dict[str, list[int]] = {}
    for group in groups:
        for rel in group.image_paths():
            lines_of.setdefault(rel, []).append(group.line)
    stored: dict[str, StoredImage] = {}
    errors: list[LineError] = []
    storage_failed: list[tuple[str, StorageFailed]] = []

    def work(rel: str):
        if storage_failed:  # a full or unwritable media folder: no use trying the rest
            return rel, None, None
        try:
            return rel, _store_image(bundle, rel, store), None
        except StorageFailed as exc:
            storage_failed.append((rel, exc))
            return rel, None, None
        except BadImage as exc:
            return rel, None, str(exc)
        except Exception as exc:  # a damaged zip member (BadZipFile, zlib.error), a full disk...
            return (
                rel,
                None,
                f"image {rel!r} could not be read or stored ({type(exc).__name__}: {exc})",
            )

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
        for done, (rel, result, error) in enumerate(pool.map(work, lines_of), start=1):
            if progress is not None and (done % 500 == 0 or done == len(lines_of)):
                progress(0.95 * done / len(lines_of), f"checked {done} of {len(lines_of)} images")
            if error:
                errors += [LineError(line, error) for line in lines_of[rel]]
            elif result is not None:
                stored[rel] = result
    if storage_failed:
        rel, exc = storage_failed[0]
        reason = (exc.cause.strerror or str(exc.cause)).lower()
        errors.insert(0, LineError(0, (
            f"the media folder ({settings.MEDIA_ROOT}) refused a write: {reason} "
            f"(storing image {rel!r} of line {lines_of[rel][0]} as {exc.name!r}); "
            "free space or fix its permissions, then import again"
        )))  # fmt: skip
    return stored, errors


BATCH_GROUPS = 1000


def _write_in_batches(dataset_name, overlap, groups, stored, progress):
    """The rows, committed BATCH_GROUPS groups at a time into a hidden staging dataset (each
    transaction short: on SQLite the write lock is released between batches, so annotators'
    `next` keeps answering), then moved into the named dataset in one transaction. Nothing is
    visible before the move; a failure deletes the staging dataset with what it holds. A staging
    dataset a day old is a crashed import's (workers that share no lock file may import at
    the same time: a younger one may be another's)."""
    stale = timezone.now() - timedelta(days=1)
    Dataset.all_objects.filter(importing=True, created_at__lt=stale).delete()
    staging = Dataset.all_objects.create(name=f"importing-{uuid.uuid4().hex}", importing=True)
    try:
        candidates = 0
        for start in range(0, len(groups), BATCH_GROUPS):
            with transaction.atomic():
                candidates += _write_rows(staging, groups[start : start + BATCH_GROUPS], stored)
            if progress is not None:
                written = min(start + BATCH_GROUPS, len(groups))
                progress(0.95 + 0.05 * written / len(groups),
                         f"wrote {written} of {len(groups)} groups")  # fmt: skip
        with transaction.atomic():
            dataset, created = _dataset(dataset_name, overlap)
            moved = Group.objects.filter(dataset=staging).update(dataset=dataset)
            if moved != len(groups):  # something removed rows meanwhile: not the import we made
                raise RuntimeError(f"the import's staging dataset holds {moved} of "
                                   f"{len(groups)} groups; import again")  # fmt: skip
            Dataset.all_objects.filter(pk=staging.pk).delete()
    except BaseException:
        Dataset.all_objects.filter(pk=staging.pk).delete()
        raise
    return dataset, created, candidates


def _dataset(name: str, overlap: int | None) -> tuple[Dataset, bool]:
    dataset, created = Dataset.objects.select_for_update().get_or_create(
        name=name, defaults={"overlap": overlap or 3}
    )
    if overlap is not None and dataset.overlap != overlap:
        dataset.overlap = overlap
        dataset.save(update_fields=["overlap"])
    return dataset, created


def _default_dimension_keys() -> list[str]:
    return [d["key"] for d in DEFAULT_DIMENSIONS]


def _write_rows(dataset: Dataset, groups: list[GroupSpec], stored: dict[str, StoredImage]) -> int:
    rows = [
        Group(
            dataset=dataset, external_id=g.id, instruction=g.instruction, task_type=g.task_type,
            source=stored[g.source].name, source_thumb=stored[g.source].thumb, meta=g.meta,
            is_gold=g.gold is not None, gold=g.gold or {},
        )
        for g in groups
    ]  # fmt: skip
    created = Group.objects.bulk_create(rows, batch_size=2000)
    candidates = [
        Candidate(
            group=row, external_id=c.id, editor=c.editor, image=stored[c.image].name,
            thumb=stored[c.image].thumb, meta=c.meta,
        )
        for row, spec in zip(created, groups, strict=True)
        for c in spec.candidates
    ]  # fmt: skip
    Candidate.objects.bulk_create(candidates, batch_size=5000)
    return len(candidates)
