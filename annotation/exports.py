"""Snapshots of a dataset: its consensus as EditReward-Bench pairs (parquet + JSONL + images,
for benchmarking reward models) or chosen/rejected JSONL per dimension, and its rankings as they
are (annotation/ml/rankings.py: what fine-tuning and RL prompts read). All are written
all-or-nothing and registered as Snapshot rows with a content hash."""

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

from annotation.ml.rankings import RankedGroup, Vote, write_rankings
from annotation.ml.split import Split
from annotation.models import Adjudication, Candidate, Dataset, Group, Ranking, Snapshot
from annotation.quality import ConsensusPair, consensus_pairs
from annotation.stats.consensus import Policy
from benchmark.ml.snapshot import ImageRef, PairRow, write_snapshot
from media.storage import read_stored


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
    dataset: Dataset,
    policy: Policy,
    out_dir: Path,
    *,
    name: str | None = None,
    user=None,
    split: Split | None = None,
) -> Snapshot:
    """EditReward-Bench layout (see benchmark/ml/snapshot.py): one row per strict
    consensus pair per dimension, output_images[0] the preferred candidate. With ``split``,
    only the pairs of its held-out groups: a benchmark no model trained on the same split saw."""
    name = _free_name(Snapshot.Kind.BENCHMARK, name or Path(out_dir).name)
    counts: Counter = Counter()

    def rows() -> Iterator[PairRow]:
        for pair in strict_pairs(dataset, policy):
            group = pair.group
            if split is not None and split.side(group.external_id) != "held_out":
                continue
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

    recorded = {**split.as_dict(), "side": "held_out"} if split is not None else {}
    metadata = {"dataset": dataset.name, "policy": _policy_dict(policy), "split": recorded}
    files = write_snapshot(rows(), Path(out_dir), metadata=metadata)
    return Snapshot.objects.create(
        name=name,
        kind=Snapshot.Kind.BENCHMARK,
        dataset=dataset,
        split=recorded,
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


def _ranked_groups(dataset: Dataset) -> Iterator[RankedGroup]:
    """Non-gold groups in order, each with its votes (repeats left out; an adjudication, when
    there is one, is the only vote). Four queries per 500 groups."""
    groups = Group.objects.filter(dataset=dataset, is_gold=False).order_by("pk")
    ids = list(groups.values_list("pk", flat=True))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        candidates, votes = {}, {}
        for c in Candidate.objects.filter(group_id__in=chunk).order_by("pk"):
            candidates.setdefault(c.group_id, []).append((c.external_id, c.image))
        rankings = Ranking.objects.filter(group_id__in=chunk, repeat=False).order_by("pk")
        for group_id, tiers, unusable in rankings.values_list("group_id", "tiers", "unusable"):
            votes.setdefault(group_id, []).append(Vote(tiers, unusable or {}))
        adjudicated = {
            a.group_id: Vote(a.tiers, a.unusable or {})
            for a in Adjudication.objects.filter(group_id__in=chunk)
        }
        for group in groups.filter(pk__in=chunk):
            verdict = adjudicated.get(group.pk)
            yield RankedGroup(
                group_id=group.external_id, instruction=group.instruction,
                task_type=group.task_type, source=group.source,
                candidates=tuple(candidates.get(group.pk, ())),
                votes=(verdict,) if verdict else tuple(votes.get(group.pk, ())),
                adjudicated=verdict is not None,
            )  # fmt: skip


def snapshot_rankings(dataset: Dataset, *, user=None, split: Split | None = None) -> Snapshot:
    """The dataset's rankings snapshot as they stand now, named ``<dataset>@<hash prefix>``,
    with ``split`` recorded in it. Content-addressed: when nothing changed since the last one
    (rankings, images and split), that one is returned and nothing new is kept."""
    root = snapshots_dir() / "rankings"
    staging = root / f".{dataset.pk}-{os.getpid()}-{os.urandom(4).hex()}"
    metadata = {"dataset": dataset.name, "dimensions": dataset.dimension_keys}
    written = write_rankings(
        _ranked_groups(dataset), staging, read_image=read_stored, metadata=metadata, split=split
    )
    existing = Snapshot.objects.filter(kind=Snapshot.Kind.RANKINGS, sha256=written.sha256).first()
    if existing is not None and Path(existing.path).is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        return existing
    final = root / f"{dataset.name}@{written.sha256[:16]}"
    shutil.rmtree(final, ignore_errors=True)  # a folder nobody registered: a crashed attempt
    os.replace(staging, final)
    snapshot, _ = Snapshot.objects.update_or_create(
        kind=Snapshot.Kind.RANKINGS, name=final.name,
        defaults=dict(
            dataset=dataset, policy={}, path=str(final.resolve()), sha256=written.sha256,
            split=split.as_dict() if split is not None else {},
            rows=written.rows, counts=written.counts, created_by=user,
        ),
    )  # fmt: skip
    return snapshot
