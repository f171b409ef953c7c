"""Importing a benchmark dataset: validate every row first, then store images
(content-addressed) and rows in one go. All or nothing: a refused or failed
import leaves no row and no file behind."""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from django.db import transaction
from PIL import Image

from annotation.selectors import snapshot_with_hash
from benchmark.ml.bench_data import DatasetInvalid, detect, read_rows, validate
from benchmark.ml.scorers import Candidate
from benchmark.models import BenchmarkCandidate, BenchmarkDataset, BenchmarkPair
from media.storage import ContentStore


class ImportRefused(Exception):
    def __init__(self, errors: list[str]):
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors

    def summary(self, limit: int = 20) -> str:
        shown = self.errors[:limit]
        more = len(self.errors) - len(shown)
        return "\n".join(shown + ([f"... and {more} more"] if more > 0 else []))


@dataclass(frozen=True)
class ImportSummary:
    dataset: str
    layout: str
    split: str | None
    rows: int
    candidates: int
    images_stored: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


class _Images:
    """The benchmark's images, stored as they are (the published bytes are what a scorer must
    see) under content-addressed names, through the shared media store (undone on failure)."""

    def __init__(self):
        self.names: dict[str, str] = {}  # sha256 -> storage name
        self.store = ContentStore()
        self.created = self.store.created

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self.names:
            with Image.open(io.BytesIO(data)) as image:
                extension = (image.format or "bin").lower().replace("jpeg", "jpg")
            self.names[digest] = self.store.put(
                f"benchmark/{digest[:2]}/{digest}.{extension}", data
            )
        return self.names[digest]

    def undo(self) -> None:
        self.store.undo()


def import_benchmark(
    path: str | Path, *, name: str, split: str | None = None, user=None
) -> ImportSummary:
    """Raises ImportRefused with every problem found (nothing written)."""
    started = time.perf_counter()
    path = Path(path)
    if not name or len(name) > 200:
        raise ImportRefused(["the dataset name must be 1 to 200 characters"])
    if BenchmarkDataset.objects.filter(name=name).exists():
        raise ImportRefused([f"a benchmark dataset named {name!r} exists already"])
    try:
        source, _ = validate(path, split)
    except DatasetInvalid as invalid:
        raise ImportRefused(invalid.errors) from None
    store = _Images()
    try:
        with transaction.atomic():
            dataset = BenchmarkDataset.objects.create(
                name=name,
                layout=source.layout,
                source_path=str(path.resolve()),
                split=source.split or "",
                snapshot=_snapshot_of(source),
                created_by=user,
            )
            candidates: dict[str, BenchmarkCandidate] = {}
            pairs = []
            counts: Counter = Counter()
            for row in read_rows(detect(path, split), check_images=False):
                source_name = store.put(row.input_image)
                ids = []
                for key, image in zip(row.key, row.output_images, strict=True):
                    if key not in candidates:
                        candidates[key] = BenchmarkCandidate(
                            dataset=dataset, key=key, instruction=row.instruction,
                            source=source_name, image=store.put(image),
                            content_hash=Candidate(key, row.instruction, row.input_image, image).content_hash(),
                        )  # fmt: skip
                    ids.append(key)
                # Not the row itself: it holds the image bytes.
                pairs.append((row.number, row.task_type, row.dimension, row.extra, ids))
                counts[f"{row.dimension}/{row.task_type}"] += 1
            BenchmarkCandidate.objects.bulk_create(candidates.values(), batch_size=2000)
            stored = {
                c.key: c
                for c in BenchmarkCandidate.objects.filter(dataset=dataset).only("id", "key")
            }
            BenchmarkPair.objects.bulk_create(
                [
                    BenchmarkPair(
                        dataset=dataset, row=number, preferred=stored[ids[0]],
                        other=stored[ids[1]], task_type=task_type, dimension=dimension,
                        extra=extra,
                    )
                    for number, task_type, dimension, extra, ids in pairs
                ],
                batch_size=2000,
            )  # fmt: skip
            dataset.rows = len(pairs)
            dataset.counts = dict(sorted(counts.items()))
            dataset.save(update_fields=["rows", "counts"])
    except BaseException:
        store.undo()
        raise
    return ImportSummary(
        dataset=name,
        layout=source.layout,
        split=source.split,
        rows=len(pairs),
        candidates=len(candidates),
        images_stored=len(store.created),
        seconds=round(time.perf_counter() - started, 2),
    )


def _snapshot_of(source):
    """The registered snapshot this folder is, when it is one of ours."""
    if source.layout != "snapshot" or not source.manifest:
        return None
    return snapshot_with_hash(kind="benchmark", sha256=source.manifest.get("sha256", ""))
