"""Reading and validating EditReward-Bench-style datasets from a local path.

No Django here; Pillow and pyarrow are imported inside the functions that need
them, so importing this module stays cheap.

One row is one strict preference pair on one dimension (docs: method.md, section 2):

    key            list of 2 strings   candidate ids [preferred, other]
    instruction    string
    input_image    image               the source image
    output_images  list of 2 images    index 0 is the preferred one
    task_type      string
    dimension      string              prompt_following, consistency or overall

Any other column (`votes`, `group_id`, ...) is kept in `BenchRow.extra`.

Layouts, detected from the path (`detect`):

  "parquet"   the published layout as the `datasets` library stores it: one
              .parquet file, or a directory whose `data/` folder (else the directory
              itself, hidden folders skipped) holds .parquet files, searched
              recursively. A file's split comes from its name: "test..." or
              "train..."; `split="test"|"train"` picks one, `None` takes test if any
              else train. Two splits are never mixed; the split's files must be in
              one folder, `name-0000i-of-0000n` shards all there. Images are
              structs {bytes, path}; a null `bytes` falls back to `path`, relative
              to the parquet file's folder (also accepted: plain binary or path
              columns).
  "jsonl"     a .jsonl file (or a directory holding `pairs.jsonl` and no parquet)
              with the same fields, images as paths relative to the JSONL's folder
              ("images/<name>"). JSONL has no splits: `split` is ignored.
  "snapshot"  a directory whose `manifest.json` says "format": "editreward-bench"
              (written by benchmark.ml.snapshot.write_snapshot): its parquet file is
              read as above; `Source.manifest` is the manifest. A manifest.json of
              another format is refused.

Image files named by a path (JSONL, or parquet `path` fallback) must stay inside
the dataset folder (`Source.root`): no absolute paths, no `..` leaving it, no
symlink pointing out of it.

API:

    DIMENSIONS = ("prompt_following", "consistency", "overall")
    detect(path, split=None) -> Source
    read_rows(source, *, check_images=True) -> Iterator[BenchRow]
    validate(path, split=None) -> tuple[Source, int]
    DatasetInvalid(errors).errors / .total / .summary(limit=20)

    Source(layout, files, split, manifest, root, name)   .folder, .metadata
    BenchRow(number, key, instruction, task_type, dimension, input_image,
             output_images, extra)                        images as bytes

DatasetInvalid.errors is a list of messages ("row 17: output_images must hold 2
images, got 1", "file data/x.parquet: missing column(s) dimension"): the first
MAX_ERRORS, then, when more were found, one line "... and N more errors";
`.total` counts them all, `.summary(limit)` is the text to show (also str()).

`detect` raises DatasetInvalid for a missing path, an empty directory, an unknown
layout, an unknown split or a split that is not there.

`read_rows` streams and yields only good rows: it raises DatasetInvalid at
the first broken file (unreadable, missing columns) or the first row with a
problem (all of that row's problems). `check_images=False` skips the Pillow
decoding (still reads the bytes, checks the byte cap and the consistency checks).

`validate` reads everything, decodes every distinct image once and collects every
problem: it raises DatasetInvalid with all of them (up to MAX_ERRORS kept, the
rest counted), or returns (source, row count). A dataset with no rows is invalid.
For a snapshot it also checks the manifest's parquet size/sha256 and row count.

Row checks, each reported as "row N: ..." (N = `BenchRow.number`: the 1-based row
number across the split's files in name order, i.e. the row number in the file
when there is one file; for JSONL the line number; with several files the file
name follows: "row N (data/test-00001-of-00002.parquet): ..."):

  - key is a list of exactly 2 distinct non-empty strings
  - instruction is a string; task_type a non-empty string
  - dimension is one of DIMENSIONS
  - output_images holds exactly 2 images; input_image is an image
  - every image: at most MAX_IMAGE_BYTES bytes, decodable by Pillow (fully
    loaded, so truncated files are caught), at most MAX_IMAGE_PIXELS pixels
  - image paths: relative, inside the dataset folder, an existing regular file
  - a candidate id always comes with the same image bytes, the same instruction
    and the same input image ("row 40: candidate 'x' has other image bytes than
    on row 3"): each candidate is scored once and its score reused in all its
    pairs, so a reused id with other content would be scored wrongly
  - one key pair at most once per dimension, in either order

Memory: parquet is read one row group at a time, image bytes as dictionary
arrays (each distinct image of the row group once, even where the file is not
dictionary-encoded), turned into Python objects BATCH_ROWS rows at a time; JSONL
line by line, one image file at a time. So the peak is about one row group
(`datasets` writes 100 rows per group for image data, our snapshots at most 256
rows / 256 MiB), not the dataset. The checks keep, per candidate id, truncated
sha256 digests and its first row, per pair of ids and dimension its first row,
and per distinct image (sha256) its decode verdict.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

DIMENSIONS = ("prompt_following", "consistency", "overall")
SPLITS = ("test", "train")
FORMAT = "editreward-bench"  # benchmark.ml.snapshot.FORMAT, not imported: keeps this module alone
MANIFEST_NAME = "manifest.json"
JSONL_NAME = "pairs.jsonl"
FIELDS = ("key", "instruction", "input_image", "output_images", "task_type", "dimension")
MAX_IMAGE_BYTES = 25 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MAX_ERRORS = 200  # messages kept by DatasetInvalid; the rest are counted
BATCH_ROWS = 32  # parquet rows turned into Python objects at a time

_SHARD = re.compile(r"^(?P<prefix>.+)-(?P<index>\d+)-of-(?P<total>\d+)\.parquet$")
_DIGEST = 16  # bytes of sha256 kept per candidate check


@dataclass(frozen=True)
class BenchRow:
    number: int  # 1-based row number (see the module docstring), for messages
    key: tuple[str, str]  # (preferred id, other id)
    instruction: str
    task_type: str
    dimension: str
    input_image: bytes = field(repr=False)
    output_images: tuple[bytes, bytes] = field(repr=False)  # (preferred, other)
    extra: dict = field(default_factory=dict)  # other columns, JSON-ready


@dataclass(frozen=True)
class Source:
    layout: str  # "parquet" | "jsonl" | "snapshot"
    files: list[Path]  # the files read, in order (one split only)
    split: str | None  # "test" | "train" | None (JSONL, or a file named neither)
    manifest: dict | None = None  # the snapshot's manifest.json
    root: Path | None = None  # image paths must stay inside; default: files[0]'s folder
    name: str = ""  # the manifest's "name", else the directory's (or file's stem)

    @property
    def folder(self) -> Path:
        return self.root if self.root is not None else self.files[0].parent

    @property
    def metadata(self) -> dict:
        """The snapshot's metadata (written by the exporter); {} for other layouts."""
        meta = (self.manifest or {}).get("metadata")
        return meta if isinstance(meta, dict) else {}


class DatasetInvalid(Exception):
    """Every problem found. `errors` holds the first MAX_ERRORS messages and, when
    more were found, one last line "... and N more errors"; `total` counts them all."""

    def __init__(self, errors: Iterable[str], *, total: int | None = None):
        messages = list(errors)
        self.messages = messages[:MAX_ERRORS]
        self.total = max(total if total is not None else len(messages), len(self.messages))
        more = self.total - len(self.messages)
        self.errors = self.messages + ([f"... and {more} more errors"] if more else [])
        super().__init__(self.summary())

    def summary(self, limit: int = 20) -> str:
        shown = self.messages[: max(limit, 0)]
        more = self.total - len(shown)
        return "\n".join(shown + ([f"... and {more} more"] if more > 0 else []))

    def __str__(self) -> str:
        return self.summary()

    def __reduce__(self):
        return (_rebuild_invalid, (self.messages, self.total))


def _rebuild_invalid(messages: list[str], total: int) -> DatasetInvalid:
    return DatasetInvalid(messages, total=total)


# ---------------------------------------------------------------- detection


def detect(path: str | os.PathLike, split: str | None = None) -> Source:
    """The layout, files and split of the dataset at `path`; see the module docstring."""
    if split is not None and split not in SPLITS:
        raise DatasetInvalid([f"split must be 'test', 'train' or None, got {split!r}"])
    path = Path(path)
    if not path.exists():
        raise DatasetInvalid([f"{path}: no such file or directory"])
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            own = _split_of(path.name)
            if split and own and own != split:
                raise DatasetInvalid(
                    [f"{path.name} is a {own} file, not {split}: two splits are never mixed"]
                )
            return Source("parquet", [path], split or own, None, path.parent, path.stem)
        if suffix == ".jsonl":
            return Source("jsonl", [path], None, None, path.parent, path.stem)
        raise DatasetInvalid(
            [f"{path}: unknown dataset file; expected a .parquet file, a .jsonl file or a folder"]
        )
    if not path.is_dir():
        raise DatasetInvalid([f"{path}: not a file or a folder"])

    manifest = _read_manifest(path)
    if manifest is not None:
        return _snapshot_source(path, manifest, split)
    found = _find_parquet(path)
    if found:
        files, chosen = _choose_split(path, found, split)
        return Source("parquet", files, chosen, None, path, path.name)
    jsonl = path / JSONL_NAME
    if jsonl.is_file():
        return Source("jsonl", [jsonl], None, None, path, path.name)
    if not any(path.iterdir()):
        raise DatasetInvalid([f"{path}: the folder is empty"])
    raise DatasetInvalid(
        [
            f"{path}: no dataset found: expected .parquet files (in data/ or below), "
            f"a {JSONL_NAME}, or a {MANIFEST_NAME} of format {FORMAT!r}"
        ]
    )


def _split_of(name: str) -> str | None:
    lower = name.lower()
    return next((s for s in SPLITS if lower.startswith(s)), None)


def _read_manifest(folder: Path) -> dict | None:
    """The snapshot manifest, None when there is none; a foreign one is refused."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetInvalid([f"{path}: unreadable manifest ({exc})"]) from None
    if not isinstance(manifest, dict) or "format" not in manifest:
        return None  # not a snapshot manifest: some other file of that name
    if manifest["format"] != FORMAT:
        raise DatasetInvalid(
            [
                f"{path}: manifest of format {manifest['format']!r}, not {FORMAT!r}: "
                "not a benchmark snapshot"
            ]
        )
    return manifest


def _snapshot_source(folder: Path, manifest: dict, split: str | None) -> Source:
    name = manifest.get("name")
    name = name if isinstance(name, str) and name else folder.name
    entry = _manifest_parquet(manifest)
    rel = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(rel, str) or not rel:
        found = _find_parquet(folder)
        if not found:
            raise DatasetInvalid([f"{folder}: snapshot without a parquet file"])
        files, chosen = _choose_split(folder, found, split)
        return Source("snapshot", files, chosen, manifest, folder, name)
    file = folder / rel
    if not _inside(os.path.realpath(folder), os.path.realpath(file)) or ".." in Path(rel).parts:
        raise DatasetInvalid([f"{folder}: the manifest's parquet path {rel!r} leaves the folder"])
    if not file.is_file():
        raise DatasetInvalid([f"{folder}: the manifest names {rel}, which is missing"])
    own = _split_of(file.name)
    if split and own and own != split:
        raise DatasetInvalid([f"{folder}: the snapshot holds the {own} split only, not {split}"])
    return Source("snapshot", [file], split or own, manifest, folder, name)


def _manifest_parquet(manifest: dict) -> Any:
    files = manifest.get("files")
    return files.get("parquet") if isinstance(files, dict) else None


def _find_parquet(folder: Path) -> list[Path]:
    def search(base: Path) -> list[Path]:
        if not base.is_dir():
            return []
        return sorted(
            p
            for p in base.rglob("*.parquet")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(base).parts)
        )

    return search(folder / "data") or search(folder)


def _choose_split(folder: Path, found: list[Path], split: str | None) -> tuple[list[Path], str]:
    by_split: dict[str | None, list[Path]] = {}
    for p in found:
        by_split.setdefault(_split_of(p.name), []).append(p)
    names = ", ".join(str(p.relative_to(folder)) for p in found[:10])
    if split is None:
        split = next((s for s in SPLITS if by_split.get(s)), None)
        if split is None:
            raise DatasetInvalid(
                [
                    f"{folder}: no parquet file named test* or train* (found {names}); "
                    "name the split in the file names or pass one file's path"
                ]
            )
    files = by_split.get(split, [])
    if not files:
        raise DatasetInvalid([f"{folder}: no {split} split: no parquet file named {split}*"])
    folders = sorted({str(p.parent.relative_to(folder)) for p in files})
    if len(folders) > 1:
        raise DatasetInvalid(
            [
                f"{folder}: {split} files in several folders ({', '.join(folders[:5])}): "
                "two datasets or configurations are never mixed; point at one folder"
            ]
        )
    missing = _missing_shards(files)
    if missing:
        raise DatasetInvalid(
            [f"{folder}: the {split} split is incomplete: missing {', '.join(missing[:10])}"]
        )
    return files, split


def _missing_shards(files: list[Path]) -> list[str]:
    groups: dict[tuple[Path, str, str, int], set[int]] = {}
    for p in files:
        m = _SHARD.match(p.name)
        if m:
            width = len(m["index"])
            groups.setdefault((p.parent, m["prefix"], m["total"], width), set()).add(
                int(m["index"])
            )
    missing = []
    for (_parent, prefix, total, width), seen in sorted(groups.items()):
        for i in range(int(total)):
            if i not in seen:
                missing.append(f"{prefix}-{i:0{width}d}-of-{total}.parquet")
    return missing


# ---------------------------------------------------------------- reading


class _FileBroken(Exception):
    """A file that cannot be read on: reading stops there."""


class _Bad(Exception):
    """One problem with one value of a row (the message, without the row)."""


@dataclass
class _Scanned:
    number: int
    where: str  # "row 17" or "row 17 (data/test-00001-of-00002.parquet)"
    problems: list[str]
    row: BenchRow | None


def read_rows(source: Source, *, check_images: bool = True) -> Iterator[BenchRow]:
    """The good rows, streamed; DatasetInvalid at the first broken file or row."""
    try:
        for scanned in _scan(source, check_images):
            if scanned.problems:
                raise DatasetInvalid([f"{scanned.where}: {p}" for p in scanned.problems])
            yield scanned.row
    except _FileBroken as exc:
        raise DatasetInvalid([str(exc)]) from None


def validate(path: str | os.PathLike, split: str | None = None) -> tuple[Source, int]:
    """Read everything and report every problem; (source, row count) when there is none."""
    source = detect(path, split)
    errors: list[str] = []
    total = 0

    def add(message: str) -> None:
        nonlocal total
        total += 1
        if len(errors) < MAX_ERRORS:
            errors.append(message)

    if source.layout == "snapshot":
        for message in _check_manifest_file(source):
            add(message)
    count = 0
    try:
        for scanned in _scan(source, check_images=True):
            count += 1
            for problem in scanned.problems:
                add(f"{scanned.where}: {problem}")
    except _FileBroken as exc:
        add(str(exc))
        raise DatasetInvalid(errors, total=total) from None
    if source.layout == "snapshot":
        rows = source.manifest.get("rows")
        if isinstance(rows, int) and rows != count:
            add(f"{MANIFEST_NAME} says {rows} rows, the parquet holds {count}")
    if count == 0:
        add(f"{source.files[0]}: no rows")
    if total:
        raise DatasetInvalid(errors, total=total)
    return source, count


def _check_manifest_file(source: Source) -> list[str]:
    entry = _manifest_parquet(source.manifest or {})
    if not isinstance(entry, dict) or len(source.files) != 1:
        return []
    file = source.files[0]
    label = f"file {_display(source, file)}"
    size = file.stat().st_size
    if isinstance(entry.get("bytes"), int) and entry["bytes"] != size:
        return [f"{label}: {size} bytes, the manifest says {entry['bytes']} (changed after export)"]
    if isinstance(entry.get("sha256"), str):
        h = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != entry["sha256"]:
            return [f"{label}: sha256 differs from the manifest's (changed after export)"]
    return []


def _display(source: Source, file: Path) -> str:
    try:
        return str(file.relative_to(source.folder))
    except ValueError:
        return str(file)


def _scan(source: Source, check_images: bool) -> Iterator[_Scanned]:
    checker = _Checker(check_images)
    root = os.path.realpath(source.folder)
    number = 0
    several = len(source.files) > 1
    for file in source.files:
        shown = _display(source, file)
        base = file.parent
        if source.layout == "jsonl":
            images = _JsonlImages(base, root)
            for line_number, record, problem in _jsonl_records(file, shown):
                where = f"row {line_number}" + (f" ({shown})" if several else "")
                if problem:
                    yield _Scanned(line_number, where, [problem], None)
                    continue
                yield checker.row(line_number, where, record, images)
        else:
            images = _ParquetImages(base, root)
            for record in _parquet_records(file, shown):
                number += 1
                where = f"row {number}" + (f" ({shown})" if several else "")
                yield checker.row(number, where, record, images)


def _parquet_records(file: Path, shown: str) -> Iterator[dict]:
    """The rows as dicts, one row group in memory at a time. Image bytes are read
    as dictionary arrays, so a row group costs its distinct images once (datasets
    repeat each candidate on every dimension) and the list column `output_images`
    is not expanded into one dense buffer per row group."""
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(file) as probe:
            names = set(probe.schema_arrow.names)
            binary = [
                column.path
                for column in probe.schema
                if column.physical_type == "BYTE_ARRAY"
                and column.path.split(".")[0] in ("input_image", "output_images")
            ]
        pf = pq.ParquetFile(file, read_dictionary=binary)
    except Exception as exc:
        raise _FileBroken(f"file {shown}: not a readable parquet file ({exc})") from None
    with pf:
        missing = [c for c in FIELDS if c not in names]
        if missing:
            raise _FileBroken(f"file {shown}: missing column(s) {', '.join(missing)}")
        for group in range(pf.num_row_groups):
            try:
                table = pf.read_row_group(group)
            except Exception as exc:
                raise _FileBroken(f"file {shown}: row group {group} unreadable ({exc})") from None
            for start in range(0, table.num_rows, BATCH_ROWS):
                try:
                    records = table.slice(start, BATCH_ROWS).to_pylist()
                except Exception as exc:
                    raise _FileBroken(
                        f"file {shown}: row group {group} unreadable ({exc})"
                    ) from None
                yield from records
                del records
            del table


def _jsonl_records(file: Path, shown: str) -> Iterator[tuple[int, dict | None, str | None]]:
    try:
        f = open(file, "rb")
    except OSError as exc:
        raise _FileBroken(f"file {shown}: unreadable ({exc})") from None
    with f:
        for line_number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield line_number, None, "not UTF-8"
                continue
            except ValueError as exc:
                yield line_number, None, f"not valid JSON ({exc})"
                continue
            if not isinstance(record, dict):
                yield line_number, None, f"not a JSON object but {type(record).__name__}"
                continue
            missing = [c for c in FIELDS if c not in record]
            if missing:
                yield line_number, None, f"missing field(s) {', '.join(missing)}"
                continue
            yield line_number, record, None


class _Images:
    """Loads one image value to bytes, or raises _Bad."""

    def __init__(self, base: Path, root: str):
        self.base = base
        self.root = root

    def file(self, rel: Any, label: str) -> bytes:
        if not isinstance(rel, str) or not rel:
            raise _Bad(f"{label}: image path must be a non-empty string, got {rel!r}")
        if "\x00" in rel:
            raise _Bad(f"{label}: image path {rel!r} holds a NUL character")
        if os.path.isabs(rel) or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
            raise _Bad(f"{label}: image path {rel!r} is absolute; it must be relative")
        joined = os.path.join(self.base, rel)
        if not _inside(self.root, os.path.normpath(os.path.abspath(joined))):
            raise _Bad(f"{label}: image path {rel!r} leaves the dataset folder")
        real = os.path.realpath(joined)
        if not _inside(self.root, real):
            raise _Bad(f"{label}: image path {rel!r} is a link leaving the dataset folder")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise _Bad(f"{label}: image file {rel!r} not found") from None
        except OSError as exc:
            raise _Bad(f"{label}: image file {rel!r} unreadable ({exc.strerror})") from None
        if not os.path.isfile(real):
            raise _Bad(f"{label}: image path {rel!r} is not a regular file")
        if st.st_size > MAX_IMAGE_BYTES:
            raise _Bad(_too_big(label, st.st_size))
        try:
            with open(real, "rb") as f:
                data = f.read(MAX_IMAGE_BYTES + 1)
        except OSError as exc:
            raise _Bad(f"{label}: image file {rel!r} unreadable ({exc.strerror})") from None
        if not data:
            raise _Bad(f"{label}: image file {rel!r} is empty")
        return data


class _ParquetImages(_Images):
    def __call__(self, value: Any, label: str) -> bytes:
        if value is None:
            raise _Bad(f"{label} is missing")
        if isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path")
            if data:
                if not isinstance(data, bytes | bytearray):
                    raise _Bad(f"{label}: bytes must be binary, got {type(data).__name__}")
                return bytes(data)
            if path:
                return self.file(path, label)
            raise _Bad(f"{label} has neither bytes nor a path")
        if isinstance(value, bytes | bytearray) and value:
            return bytes(value)
        if isinstance(value, str) and value:
            return self.file(value, label)
        raise _Bad(f"{label} must be an image struct {{bytes, path}}, got {_short(value)}")


class _JsonlImages(_Images):
    def __call__(self, value: Any, label: str) -> bytes:
        if isinstance(value, dict) and value.get("bytes") is None and "path" in value:
            value = value["path"]
        if value is None:
            raise _Bad(f"{label} is missing")
        if not isinstance(value, str):
            raise _Bad(f"{label} must be an image path relative to the JSONL, got {_short(value)}")
        return self.file(value, label)


class _Checker:
    """The row checks; remembers what the cross-row checks need (digests, row numbers)."""

    def __init__(self, check_images: bool):
        self.check_images = check_images
        self.verdicts: dict[bytes, str | None] = {}  # image sha256 -> problem or None
        # candidate id -> (image, instruction, input image digests, first row)
        self.candidates: dict[str, tuple[bytes, bytes | None, bytes | None, int]] = {}
        self.pairs: dict[tuple[str, str, str], tuple[int, str]] = {}  # -> (first row, key[0])

    def row(
        self, number: int, where: str, record: dict, load: Callable[[Any, str], bytes]
    ) -> _Scanned:
        problems: list[str] = []
        key = self._key(record["key"], problems)
        instruction = record["instruction"]
        if not isinstance(instruction, str):
            problems.append(f"instruction must be a string, got {_short(instruction)}")
            instruction = None
        task_type = record["task_type"]
        if not isinstance(task_type, str) or not task_type.strip():
            problems.append(f"task_type must be a non-empty string, got {_short(task_type)}")
        dimension = record["dimension"]
        if dimension not in DIMENSIONS:
            problems.append(f"dimension must be one of {', '.join(DIMENSIONS)}, got {dimension!r}")
            dimension = None
        source = self._image(record["input_image"], "input_image", load, problems)
        outputs: list[tuple[bytes, bytes] | None] = [None, None]
        values = record["output_images"]
        if not isinstance(values, list | tuple):
            problems.append(f"output_images must be a list of 2 images, got {_short(values)}")
        elif len(values) != 2:
            problems.append(f"output_images must hold 2 images, got {len(values)}")
        else:
            outputs = [
                self._image(v, f"output_images[{i}]", load, problems) for i, v in enumerate(values)
            ]
        if key is not None:
            context = (
                _digest(instruction.encode("utf-8", "surrogatepass"))
                if instruction is not None
                else None,
                source[1] if source else None,
            )
            for candidate, output in zip(key, outputs, strict=True):
                self._same_candidate(candidate, output, context, number, problems)
            if dimension is not None:
                self._no_duplicate(key, dimension, number, problems)
        if problems:
            return _Scanned(number, where, problems, None)
        extra = {k: _jsonable(v) for k, v in record.items() if k not in FIELDS}
        row = BenchRow(
            number=number,
            key=key,
            instruction=instruction,
            task_type=task_type,
            dimension=dimension,
            input_image=source[0],
            output_images=(outputs[0][0], outputs[1][0]),
            extra=extra,
        )
        return _Scanned(number, where, [], row)

    @staticmethod
    def _key(value: Any, problems: list[str]) -> tuple[str, str] | None:
        if not isinstance(value, list | tuple):
            problems.append(f"key must be a list of 2 candidate ids, got {_short(value)}")
            return None
        if len(value) != 2:
            problems.append(f"key must hold 2 candidate ids, got {len(value)}")
            return None
        bad = False
        for i, k in enumerate(value):
            if not isinstance(k, str) or not k.strip():
                problems.append(f"key[{i}] must be a non-empty string, got {_short(k)}")
                bad = True
        if bad:
            return None
        if value[0] == value[1]:
            problems.append(f"key names the same candidate twice: {value[0]!r}")
            return None
        return (value[0], value[1])

    def _image(
        self, value: Any, label: str, load: Callable[[Any, str], bytes], problems: list[str]
    ) -> tuple[bytes, bytes] | None:
        """(bytes, digest), or None when there is no usable image."""
        try:
            data = load(value, label)
        except _Bad as exc:
            problems.append(str(exc))
            return None
        if len(data) > MAX_IMAGE_BYTES:
            problems.append(_too_big(label, len(data)))
            return None
        digest = hashlib.sha256(data).digest()
        if self.check_images:
            if digest in self.verdicts:
                verdict = self.verdicts[digest]
            else:
                verdict = self.verdicts[digest] = _image_problem(data)
            if verdict:
                problems.append(f"{label} {verdict}")
                return None  # not an image: nothing to compare with other rows
        return data, digest

    def _same_candidate(self, candidate, output, context, number, problems) -> None:
        image = output[1][:_DIGEST] if output else None
        instruction, source = context
        source = source[:_DIGEST] if source else None
        seen = self.candidates.get(candidate)
        if seen is None:
            self.candidates[candidate] = (image, instruction, source, number)
            return
        first_image, first_instruction, first_source, first = seen
        if image and first_image and image != first_image:
            problems.append(f"candidate {candidate!r} has other image bytes than on row {first}")
        if instruction and first_instruction and instruction != first_instruction:
            problems.append(f"candidate {candidate!r} has another instruction than on row {first}")
        if source and first_source and source != first_source:
            problems.append(f"candidate {candidate!r} has another input image than on row {first}")
        if not (first_image and first_instruction and first_source):  # fill what was unknown
            self.candidates[candidate] = (
                first_image or image,
                first_instruction or instruction,
                first_source or source,
                first,
            )

    def _no_duplicate(self, key, dimension, number, problems) -> None:
        ident = (min(key), max(key), dimension)
        seen = self.pairs.get(ident)
        if seen is None:
            self.pairs[ident] = (number, key[0])
            return
        first, preferred = seen
        if preferred == key[0]:
            problems.append(
                f"duplicate of row {first}: the pair {key!r} on dimension {dimension!r} again"
            )
        else:
            problems.append(
                f"the pair {key!r} on dimension {dimension!r} repeats row {first} "
                "in the other order"
            )


def _image_problem(data: bytes) -> str | None:
    """Why Pillow cannot use these bytes as an image, None when it can."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    return _too_many_pixels(width, height)
                image.load()
    except Image.DecompressionBombError:
        return "has too many pixels (over Pillow's decompression bomb limit)"
    except UnidentifiedImageError:
        return "is not an image Pillow can read"
    except Exception as exc:  # truncated data, broken chunks: every plugin raises its own
        return f"is a broken image ({type(exc).__name__}: {exc})"
    return None


def _too_many_pixels(width: int, height: int) -> str:
    return (
        f"is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), "
        f"over the {MAX_IMAGE_PIXELS / 1e6:g} megapixel limit"
    )


def _too_big(label: str, size: int) -> str:
    mib, rest = divmod(MAX_IMAGE_BYTES, 1024 * 1024)
    limit = f"{mib} MiB" if not rest else f"{MAX_IMAGE_BYTES} bytes"
    return f"{label} is {size} bytes, over the {limit} limit"


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:_DIGEST]


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _jsonable(value: Any) -> Any:
    """Plain JSON values: bytes become {"bytes": size, "sha256": hex}, odd floats None."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
