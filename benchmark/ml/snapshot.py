"""Writing a benchmark snapshot to disk in the EditReward-Bench layout.

Pure Python: no Django here (the worker hands in plain rows); pyarrow is imported
inside the functions that need it, so importing this module stays cheap.

One row is one strict preference pair on one dimension:

    key            list of 2 strings   candidate ids [preferred, other]
    instruction    string
    input_image    image               the source image
    output_images  list of 2 images    index 0 is the human-preferred one
    task_type      string
    dimension      string              prompt_following, consistency, overall, ...
    votes          struct              {"for": int, "against": int, "tie": int}
    group_id       string

Images are stored the way the HuggingFace `datasets` Image feature stores them
in parquet, a struct {bytes: binary, path: string} (`path` is the image's file
name), and the `datasets` features go into the parquet schema metadata under
b"huggingface", so `datasets.load_dataset("parquet", ...)` decodes them as
PIL images. Lists are declared as `Sequence`, which datasets 2.x, 3.x and 4.x
all read (4.x turns it into `List`).

API:

    write_snapshot(rows, out_dir, *, metadata, rows_per_group=256,
                   max_group_bytes=256 MiB) -> SnapshotFiles

`rows` is any iterable of `PairRow` (a generator is fine: it is consumed once,
and at most one row group is held in memory). Each `ImageRef` names its file
(`name`, a plain file name chosen by the caller, content-addressed ideally) and
loads its bytes lazily (`read`). Images are deduplicated by name: `read` is
called once per distinct name; later uses read the copy already written.

Layout of `out_dir`:

    data/test-00000-of-00001.parquet   row groups of `rows_per_group` rows (fewer
                                       when their images pass `max_group_bytes`)
    pairs.jsonl                        the same rows, images as "images/<name>"
    images/<name>                      each distinct image once
    manifest.json                      {"format": "editreward-bench", "rows", "sha256",
                                        "metadata", "files": {...}}

`out_dir` must not exist or be an empty directory, otherwise FileExistsError:
two snapshots are never mixed. Everything is written into a hidden temporary
sibling directory that is renamed into place at the end; on any error (from the
row iterator, an image reader, the disk) it is removed and `out_dir` is left as
it was (absent, or empty if it existed empty).

The content hash (`SnapshotFiles.sha256`, also in the manifest) depends on the
content only, not on parquet encoder bytes, nor on `metadata`: it is the
sha256 of a version tag, the sha256 of pairs.jsonl (canonical: compact JSON,
fixed key order, UTF-8, one row a line) and the sha256 of every distinct
image's name and bytes in order of first use. Writing the same rows twice gives
the same hash; changing one row or one image byte changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "editreward-bench"
HASH_VERSION = b"editloop/editreward-bench-content/v1\n"
PARQUET_NAME = "data/test-00000-of-00001.parquet"
JSONL_NAME = "pairs.jsonl"
IMAGES_DIR = "images"
MANIFEST_NAME = "manifest.json"
VOTE_KEYS = ("for", "against", "tie")
COLUMNS = (
    "key",
    "instruction",
    "input_image",
    "output_images",
    "task_type",
    "dimension",
    "votes",
    "group_id",
)

# `datasets` Features.to_dict() of the layout above, as `datasets` writes it into
# the parquet schema metadata: {"info": {"features": ...}}.
_STRING = {"dtype": "string", "_type": "Value"}
_INT = {"dtype": "int64", "_type": "Value"}
HF_FEATURES: dict[str, Any] = {
    "key": {"feature": _STRING, "_type": "Sequence"},
    "instruction": _STRING,
    "input_image": {"_type": "Image"},
    "output_images": {"feature": {"_type": "Image"}, "_type": "Sequence"},
    "task_type": _STRING,
    "dimension": _STRING,
    "votes": {k: _INT for k in VOTE_KEYS},
    "group_id": _STRING,
}


@dataclass(frozen=True)
class ImageRef:
    name: str  # file name under images/, e.g. "ab12...cd.png"; no directories
    read: Callable[[], bytes]  # loads the bytes; called at most once per distinct name


@dataclass(frozen=True)
class PairRow:
    key: tuple[str, str]  # (preferred id, other id)
    instruction: str
    input_image: ImageRef
    output_images: tuple[ImageRef, ImageRef]  # (preferred, other)
    task_type: str
    dimension: str
    group_id: str
    votes: dict  # {"for": n, "against": n, "tie": n}


@dataclass(frozen=True)
class SnapshotFiles:
    rows: int
    images: int  # distinct images written
    sha256: str  # content hash, see the module docstring
    parquet: Path
    jsonl: Path
    images_dir: Path
    manifest: Path


def arrow_schema():
    """The parquet schema, with the `datasets` features in its metadata."""
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = [
        ("key", pa.list_(pa.string())),
        ("instruction", pa.string()),
        ("input_image", image),
        ("output_images", pa.list_(image)),
        ("task_type", pa.string()),
        ("dimension", pa.string()),
        ("votes", pa.struct([(k, pa.int64()) for k in VOTE_KEYS])),
        ("group_id", pa.string()),
    ]
    hf = json.dumps({"info": {"features": HF_FEATURES}})
    return pa.schema(fields, metadata={b"huggingface": hf.encode()})


def write_snapshot(
    rows: Iterable[PairRow],
    out_dir: Path,
    *,
    metadata: dict,
    rows_per_group: int = 256,
    max_group_bytes: int = 256 * 1024 * 1024,
) -> SnapshotFiles:
    """Write `rows` into `out_dir` (all or nothing); see the module docstring."""
    if rows_per_group < 1:
        raise ValueError(f"rows_per_group must be >= 1, got {rows_per_group}")
    out_dir = Path(out_dir)
    _check_target(out_dir)
    json.dumps(metadata)  # not JSON-serialisable: fail before writing anything
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temp_sibling(out_dir)
    try:
        count, images, digest = _write_all(rows, tmp, metadata, rows_per_group, max_group_bytes)
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SnapshotFiles(
        rows=count,
        images=images,
        sha256=digest,
        parquet=out_dir / PARQUET_NAME,
        jsonl=out_dir / JSONL_NAME,
        images_dir=out_dir / IMAGES_DIR,
        manifest=out_dir / MANIFEST_NAME,
    )


def _check_target(out_dir: Path) -> None:
    if out_dir.is_dir():
        if any(out_dir.iterdir()):
            raise FileExistsError(
                f"snapshot directory {out_dir} is not empty: refusing to mix two snapshots"
            )
    elif os.path.lexists(out_dir):
        raise FileExistsError(f"snapshot path {out_dir} exists and is not a directory")


def _make_temp_sibling(out_dir: Path) -> Path:
    # os.mkdir honours the umask, so the renamed directory gets ordinary permissions
    # (tempfile.mkdtemp would leave it 0700).
    while True:
        tmp = out_dir.with_name(f".{out_dir.name}.partial-{secrets.token_hex(6)}")
        try:
            os.mkdir(tmp)
        except FileExistsError:
            continue
        return tmp


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    # rename(2) replaces an empty directory atomically and refuses a non-empty one,
    # so a snapshot that appeared meanwhile is never overwritten.
    try:
        os.rename(tmp, out_dir)
    except OSError as exc:
        if out_dir.exists():
            raise FileExistsError(
                f"snapshot directory {out_dir} appeared while writing: "
                "refusing to mix two snapshots"
            ) from exc
        raise


def _write_all(rows, tmp: Path, metadata, rows_per_group: int, max_group_bytes: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    (tmp / "data").mkdir()
    images_dir = tmp / IMAGES_DIR
    images_dir.mkdir()
    images = _ImageStore(images_dir)
    jsonl_hash = hashlib.sha256()
    dimensions: dict[str, int] = {}
    count = 0
    columns: dict[str, list] = {c: [] for c in COLUMNS}
    buffered_bytes = 0

    def flush() -> None:
        nonlocal buffered_bytes
        if not columns["key"]:
            return
        table = pa.Table.from_pydict(columns, schema=schema)
        writer.write_table(table, row_group_size=len(columns["key"]))
        for values in columns.values():
            values.clear()
        buffered_bytes = 0

    with (
        pq.ParquetWriter(tmp / PARQUET_NAME, schema) as writer,
        open(tmp / JSONL_NAME, "wb") as jsonl,
    ):
        for row in rows:
            if not isinstance(row, PairRow):
                raise TypeError(f"row {count}: expected PairRow, got {type(row).__name__}")
            try:
                record = _check_row(row)
                refs = (row.input_image, *row.output_images)
                blobs = [images.get(ref) for ref in refs]
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"row {count} (key {row.key!r}): {exc}") from exc
            line = _jsonl_line(record, [f"{IMAGES_DIR}/{ref.name}" for ref in refs])
            jsonl.write(line)
            jsonl_hash.update(line)

            source, preferred, other = (
                {"bytes": blob, "path": ref.name} for ref, blob in zip(refs, blobs, strict=True)
            )
            for column, value in zip(
                COLUMNS,
                (
                    record["key"],
                    record["instruction"],
                    source,
                    [preferred, other],
                    record["task_type"],
                    record["dimension"],
                    record["votes"],
                    record["group_id"],
                ),
                strict=True,
            ):
                columns[column].append(value)
            buffered_bytes += sum(len(b) for b in blobs)
            dimensions[record["dimension"]] = dimensions.get(record["dimension"], 0) + 1
            count += 1
            if len(columns["key"]) >= rows_per_group or buffered_bytes >= max_group_bytes:
                flush()
        flush()

    digest = hashlib.sha256(HASH_VERSION + jsonl_hash.digest() + images.hash.digest()).hexdigest()
    manifest = {
        "format": FORMAT,
        "rows": count,
        "sha256": digest,
        "metadata": metadata,
        "dimensions": dict(sorted(dimensions.items())),
        "files": {
            "parquet": {"path": PARQUET_NAME, **_file_digest(tmp / PARQUET_NAME)},
            "jsonl": {"path": JSONL_NAME, **_file_digest(tmp / JSONL_NAME)},
            "images": {"path": f"{IMAGES_DIR}/", "count": images.count},
        },
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (tmp / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return count, images.count, digest


def _check_row(row: PairRow) -> dict:
    """The row's plain fields, checked and normalised (images apart)."""
    key = tuple(row.key)
    if len(key) != 2 or not all(isinstance(k, str) and k for k in key):
        raise ValueError(f"key must be two non-empty strings, got {row.key!r}")
    if key[0] == key[1]:
        raise ValueError(f"key names the same candidate twice: {key[0]!r}")
    for field in ("instruction", "task_type", "dimension", "group_id"):
        if not isinstance(getattr(row, field), str):
            raise TypeError(f"{field} must be a string, got {getattr(row, field)!r}")
    if not isinstance(row.input_image, ImageRef):
        raise TypeError(f"input_image must be an ImageRef, got {row.input_image!r}")
    outputs = tuple(row.output_images)
    if len(outputs) != 2 or not all(isinstance(o, ImageRef) for o in outputs):
        raise TypeError(f"output_images must be two ImageRefs, got {row.output_images!r}")
    votes = row.votes
    if not isinstance(votes, dict) or set(votes) != set(VOTE_KEYS):
        raise ValueError(f"votes must have exactly the keys {VOTE_KEYS}, got {votes!r}")
    for k in VOTE_KEYS:
        if type(votes[k]) is not int or votes[k] < 0:
            raise ValueError(f"votes[{k!r}] must be a non-negative int, got {votes[k]!r}")
    return {
        "key": list(key),
        "instruction": row.instruction,
        "task_type": row.task_type,
        "dimension": row.dimension,
        "votes": {k: votes[k] for k in VOTE_KEYS},
        "group_id": row.group_id,
    }


def _jsonl_line(record: dict, image_paths: list[str]) -> bytes:
    obj = {
        "key": record["key"],
        "instruction": record["instruction"],
        "input_image": image_paths[0],
        "output_images": image_paths[1:],
        "task_type": record["task_type"],
        "dimension": record["dimension"],
        "votes": record["votes"],
        "group_id": record["group_id"],
    }
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class _ImageStore:
    """images/ of the snapshot being written: each name once, hashed in first-use order."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.seen: set[str] = set()
        self.hash = hashlib.sha256()

    @property
    def count(self) -> int:
        return len(self.seen)

    def get(self, ref: ImageRef) -> bytes:
        name = _check_name(ref.name)
        path = self.directory / name
        if name in self.seen:
            return path.read_bytes()  # the copy written at first use: bounded memory
        data = ref.read()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"image {name!r}: read() returned {type(data).__name__}, not bytes")
        data = bytes(data)
        if not data:
            raise ValueError(f"image {name!r}: read() returned no bytes")
        part = path.with_name(f".{name}.part")
        part.write_bytes(data)
        os.replace(part, path)
        self.seen.add(name)
        encoded = name.encode()
        self.hash.update(struct.pack(">Q", len(encoded)) + encoded)
        self.hash.update(struct.pack(">Q", len(data)))
        self.hash.update(data)
        return data


def _check_name(name: Any) -> str:
    if (
        not isinstance(name, str)
        or not name
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\x00" in name
    ):
        raise ValueError(f"image name must be a plain file name, got {name!r}")
    return name


def _file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}
