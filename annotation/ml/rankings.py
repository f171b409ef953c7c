"""The rankings snapshot: a dataset's groups, their candidates and every annotator's tiers, as
an immutable, content-hashed folder. It is how rankings reach fine-tuning and RL prompts: they
read these files, never annotation's tables.

Layout::

    manifest.json   {"format": "editloop-rankings", "version": 1, "sha256", "rows", "dataset",
                     "dimensions", "counts", "images"}
    groups.jsonl    one group per line, in the dataset's order:
                    {"group_id", "instruction", "task_type", "source": "images/<name>",
                     "candidates": [{"id", "image": "images/<name>"}],
                     "votes": [{"tiers": {dim: [[id, ...], ...]}, "unusable": {dim: [id, ...]}}],
                     "adjudicated": bool}
    images/         every image once, by its stored (content-hash) name

Gold groups and repeats are left out (they are quality checks); an adjudication, when a group
has one, is its only vote. A snapshot may carry a held-out split (annotation/ml/split.py): the
manifest's ``split`` holds its fraction, seed and the group ids of each side, and readers ask
for one side. ``sha256`` covers groups.jsonl, every image's bytes and the split, so an equal
hash means equal content.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from annotation.ml.split import SIDES, Split

FORMAT, VERSION = "editloop-rankings", 1


@dataclass(frozen=True)
class Vote:
    tiers: dict[str, list[list[str]]]
    unusable: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RankedGroup:
    """One group as a snapshot holds it. Images are stored names when writing, absolute
    paths of the snapshot's files when read."""

    group_id: str
    instruction: str
    task_type: str
    source: str
    candidates: tuple[tuple[str, str], ...]  # (candidate id, image)
    votes: tuple[Vote, ...] = ()
    adjudicated: bool = False


@dataclass(frozen=True)
class Written:
    sha256: str
    rows: int
    counts: dict[str, int]


class BadSnapshot(ValueError):
    """The folder is not a complete rankings snapshot (the message names the file)."""


def write_rankings(
    groups: Iterable[RankedGroup],
    out_dir: Path,
    *,
    read_image: Callable[[str], bytes],
    metadata: dict | None = None,
    split: Split | None = None,
) -> Written:
    """Write the snapshot all-or-nothing: into a temporary folder beside ``out_dir``, renamed
    into place when complete. ``read_image(name)`` gives a stored image's bytes; ``split``
    assigns every group to a side, recorded in the manifest."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists already: a snapshot is never overwritten")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        images: dict[str, str] = {}  # stored name -> sha256 of its bytes
        counts: Counter = Counter()
        (tmp / "images").mkdir()

        def copy(name: str) -> str:
            local = f"images/{Path(name).name}"
            if name not in images:
                data = read_image(name)
                (tmp / local).write_bytes(data)
                images[name] = hashlib.sha256(data).hexdigest()
            return local

        group_ids: list[str] = []
        with open(tmp / "groups.jsonl", "w", encoding="utf-8") as out:
            for group in groups:
                counts[group.task_type] += 1
                group_ids.append(group.group_id)
                record = {
                    "group_id": group.group_id, "instruction": group.instruction,
                    "task_type": group.task_type, "source": copy(group.source),
                    "candidates": [{"id": c, "image": copy(image)} for c, image in group.candidates],
                    "votes": [{"tiers": v.tiers, "unusable": v.unusable} for v in group.votes],
                    "adjudicated": group.adjudicated,
                }  # fmt: skip
                out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        digest = hashlib.sha256(f"{FORMAT}-v{VERSION}\n".encode())
        digest.update(hashlib.sha256((tmp / "groups.jsonl").read_bytes()).digest())
        for name in sorted(images, key=lambda n: Path(n).name):
            digest.update(f"{Path(name).name} {images[name]}\n".encode())
        recorded = None
        if split is not None:
            recorded = {**split.as_dict(), "groups": split.sides(group_ids)}
            digest.update(json.dumps(recorded, sort_keys=True).encode())
        written = Written(digest.hexdigest(), sum(counts.values()), dict(sorted(counts.items())))
        manifest = {
            **(metadata or {}), "format": FORMAT, "version": VERSION, "sha256": written.sha256,
            "rows": written.rows, "counts": written.counts, "images": len(images),
            "split": recorded,
        }  # fmt: skip
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadSnapshot(f"{path}: missing (not a rankings snapshot)") from None
    except (OSError, ValueError) as exc:
        raise BadSnapshot(f"{path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadSnapshot(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise BadSnapshot(
            f"{path}: version {manifest.get('version')!r}, this reader knows {VERSION}"
        )
    return manifest


def split_of(manifest: dict) -> Split | None:
    return Split.from_dict(manifest.get("split"))


def read_rankings(folder: Path, side: str | None = None) -> Iterator[RankedGroup]:
    """The snapshot's groups in order, images as absolute paths inside the folder; with
    ``side`` ("train" or "held_out"), only that side of its split (a snapshot without a split
    is all training data: asking it for its held-out side is an error)."""
    folder = Path(folder).resolve()
    manifest = read_manifest(folder)
    keep = None
    if side is not None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, not {side!r}")
        if manifest.get("split"):
            keep = set(manifest["split"]["groups"][side])
        elif side == "held_out":
            raise BadSnapshot(f"{folder}: this snapshot has no held-out split")
    path = folder / "groups.jsonl"

    def inside(name: str, where: str) -> str:
        image = (folder / name).resolve()
        if not image.is_relative_to(folder / "images") or not image.is_file():
            raise BadSnapshot(f"{where}: image {name!r} is not a file of the snapshot")
        return str(image)

    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
                if keep is not None and row["group_id"] not in keep:
                    continue
                yield RankedGroup(
                    group_id=row["group_id"], instruction=row["instruction"],
                    task_type=row["task_type"], source=inside(row["source"], where),
                    candidates=tuple((c["id"], inside(c["image"], where)) for c in row["candidates"]),
                    votes=tuple(Vote(v["tiers"], v.get("unusable") or {}) for v in row["votes"]),
                    adjudicated=bool(row.get("adjudicated")),
                )  # fmt: skip
            except (ValueError, KeyError, TypeError) as exc:
                raise BadSnapshot(f"{where}: {exc!r}") from None
