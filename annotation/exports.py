"""Snapshots of a dataset's consensus: EditReward-Bench pairs (parquet + JSONL +
images, for benchmarking reward models) and chosen/rejected JSONL per dimension
(for training one). Both are written all-or-nothing and registered as
benchmark.Snapshot rows with a content hash."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from django.conf import settings

from annotation.models import Dataset
from annotation.quality import ConsensusPair, consensus_pairs
from annotation.stats.consensus import Policy
from benchmark.ml.snapshot import ImageRef, PairRow, write_snapshot
from benchmark.models import Snapshot
from config.storage import read_stored


def snapshots_dir() -> Path:
    """Beside the media, on the volume web and workers share."""
    return Path(settings.MEDIA_ROOT) / "_snapshots"


def _image(name: str) -> ImageRef:
    # Stored names are content hashes already; the file name alone is unique.
    return ImageRef(name=PurePosixPath(name).name, read=lambda: read_stored(name))


def strict_pairs(dataset: Dataset, policy: Policy) -> Iterator[ConsensusPair]:
    for pair in consensus_pairs(dataset, policy):
        if pair.decision.preferred is not None:
            yield pair


def _votes(pair: ConsensusPair) -> dict:
    """Votes seen from the preferred candidate's side."""
    v = pair.decision.votes
    preferred_is_a = pair.decision.preferred[0] == v.a
    return {
        "for": v.for_a if preferred_is_a else v.for_b,
        "against": v.for_b if preferred_is_a else v.for_a,
        "tie": v.tie,
    }


def _policy_dict(policy: Policy) -> dict:
    return {
        "name": policy.name,
        "max_tie_fraction": policy.max_tie_fraction,
        "min_votes": policy.min_votes,
    }


def _free_name(kind: str, name: str) -> str:
    if Snapshot.objects.filter(kind=kind, name=name).exists():
        raise FileExistsError(f"a {kind} snapshot named {name!r} exists already")
    return name


def export_benchmark(
    dataset: Dataset, policy: Policy, out_dir: Path, *, name: str | None = None, user=None
) -> Snapshot:
    """EditReward-Bench layout (see benchmark/ml/snapshot.py): one row per strict
    consensus pair per dimension, output_images[0] the preferred candidate."""
    name = _free_name(Snapshot.Kind.BENCHMARK, name or Path(out_dir).name)
    counts: Counter = Counter()

    def rows() -> Iterator[PairRow]:
        for pair in strict_pairs(dataset, policy):
            group = pair.group
            preferred, other = pair.decision.preferred
            counts[f"{pair.dimension}/{group.task_type}"] += 1
            yield PairRow(
                key=(preferred, other),
                instruction=group.instruction,
                input_image=_image(group.source),
                output_images=(_image(group.images[preferred]), _image(group.images[other])),
                task_type=group.task_type,
                dimension=pair.dimension,
                group_id=group.external_id,
                votes=_votes(pair),
            )

    metadata = {"dataset": dataset.name, "policy": _policy_dict(policy)}
    files = write_snapshot(rows(), Path(out_dir), metadata=metadata)
    return Snapshot.objects.create(
        name=name,
        kind=Snapshot.Kind.BENCHMARK,
        dataset=dataset,
        policy=_policy_dict(policy),
        path=str(Path(out_dir).resolve()),
        sha256=files.sha256,
        rows=files.rows,
        counts=dict(sorted(counts.items())),
        created_by=user,
    )


def export_preferences(
    dataset: Dataset, policy: Policy, out_dir: Path, *, name: str | None = None, user=None
) -> Snapshot:
    """<dimension>.jsonl with one {chosen, rejected, votes, ...} line per strict
    consensus pair, image paths relative to MEDIA_ROOT, and a manifest.json."""
    out_dir = Path(out_dir)
    name = _free_name(Snapshot.Kind.PREFERENCES, name or out_dir.name)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not empty: choose a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    counts: Counter = Counter()
    try:
        handles = {
            dim: open(tmp / f"{dim}.jsonl", "w", encoding="utf-8") for dim in dataset.dimension_keys
        }
        try:
            for pair in strict_pairs(dataset, policy):
                group = pair.group
                chosen, rejected = pair.decision.preferred
                counts[f"{pair.dimension}/{group.task_type}"] += 1
                record = {
                    "group_id": group.external_id, "instruction": group.instruction,
                    "task_type": group.task_type, "dimension": pair.dimension,
                    "source_image": group.source, "chosen": chosen, "rejected": rejected,
                    "chosen_image": group.images[chosen], "rejected_image": group.images[rejected],
                    "votes": _votes(pair), "adjudicated": pair.decision.adjudicated,
                }  # fmt: skip
                handles[pair.dimension].write(json.dumps(record, ensure_ascii=False) + "\n")
        finally:
            for handle in handles.values():
                handle.close()
        digest = hashlib.sha256(b"editloop-preferences-v1\n")
        for dim in dataset.dimension_keys:
            digest.update(dim.encode() + b"\n")
            digest.update(hashlib.sha256((tmp / f"{dim}.jsonl").read_bytes()).digest())
        sha256 = digest.hexdigest()
        rows = sum(counts.values())
        manifest = {
            "format": "editloop-preferences", "rows": rows, "sha256": sha256,
            "dataset": dataset.name, "policy": _policy_dict(policy),
            "images_relative_to": "MEDIA_ROOT", "counts": dict(sorted(counts.items())),
            "files": [f"{dim}.jsonl" for dim in dataset.dimension_keys],
        }  # fmt: skip
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot.objects.create(
        name=name,
        kind=Snapshot.Kind.PREFERENCES,
        dataset=dataset,
        policy=_policy_dict(policy),
        path=str(out_dir.resolve()),
        sha256=sha256,
        rows=rows,
        counts=dict(sorted(counts.items())),
        created_by=user,
    )
