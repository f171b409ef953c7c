"""Reading an import bundle: a folder or .zip holding manifest.jsonl and images.

Pure Python: parsing and path checks only; images are checked in images.py.
Every problem is reported with the manifest line it comes from.
"""

from __future__ import annotations

import posixpath
import stat
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from annotation.constants import MAX_CANDIDATES, MIN_CANDIDATES
from config import strict_json
from media.images import MAX_IMAGE_BYTES

MANIFEST = "manifest.jsonl"
MAX_MANIFEST_BYTES = 200 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024  # one group: ids, paths, a 5000-character instruction, meta
MAX_JSON_DEPTH = strict_json.MAX_DEPTH  # objects and lists within one line
GROUP_KEYS = {"id", "instruction", "task_type", "source", "candidates", "meta", "gold"}
GOLD_OPERATORS = (">", "=", ">=")
CANDIDATE_KEYS = {"id", "image", "editor", "meta"}


@dataclass(frozen=True)
class LineError:
    line: int  # 1-based; 0 for the bundle as a whole
    message: str

    def __str__(self) -> str:
        # A message may quote a field (an unknown key, a path): never at any length.
        message = self.message if len(self.message) <= 500 else self.message[:500] + "..."
        return f"{MANIFEST} line {self.line}: {message}" if self.line else message


class ImportRefused(Exception):
    """Nothing was written. `errors` says why, line by line."""

    def __init__(self, errors: list[LineError]):
        self.errors = sorted(errors, key=lambda e: e.line)
        super().__init__(self.summary())

    def summary(self, limit: int = 20) -> str:
        shown = [str(e) for e in self.errors[:limit]]
        more = len(self.errors) - limit
        return "\n".join(shown + ([f"... and {more} more error(s)"] if more > 0 else []))


@dataclass
class CandidateSpec:
    id: str
    image: str
    editor: str
    meta: dict


@dataclass
class GroupSpec:
    line: int
    id: str
    instruction: str
    task_type: str
    source: str
    candidates: list[CandidateSpec]
    meta: dict = field(default_factory=dict)
    # Gold groups: known relations per dimension, [[a, ">" | "=" | ">=", b], ...].
    gold: dict | None = None

    def image_paths(self) -> list[str]:
        return [self.source, *(c.image for c in self.candidates)]


class Bundle:
    """A folder or a zip file. Paths inside are POSIX, relative to the manifest."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._local = threading.local()
        self._handles: list[zipfile.ZipFile] = []
        if self.path.is_dir():
            self.root = self.path.resolve()
        elif zipfile.is_zipfile(self.path):
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise ImportRefused([LineError(0, f"{self.path}: a damaged .zip file ({exc})")]) from None  # fmt: skip
            self._members = {i.filename: i for i in self._zip.infolist()}
            self._prefix = self._find_zip_prefix()
        elif self.path.exists():
            raise ImportRefused([LineError(0, f"{self.path}: not a folder or a .zip file")])
        else:
            raise ImportRefused([LineError(0, f"{self.path}: no such file or folder")])

    def _find_zip_prefix(self) -> str:
        """Accept manifest.jsonl at the top of the zip or inside one top folder."""
        candidates = [n for n in self._members if posixpath.basename(n) == MANIFEST]
        # "../manifest.jsonl" or "/manifest.jsonl" are no top folder of the bundle
        top = [
            n for n in candidates
            if n == MANIFEST or (n.count("/") == 1 and posixpath.dirname(n) not in ("", "/", ".", ".."))
        ]  # fmt: skip
        if not top:
            raise ImportRefused([LineError(0, f"{self.path}: no {MANIFEST} at the top of the zip")])
        return posixpath.dirname(min(top, key=len))

    def read_manifest(self) -> bytes:
        too_big = LineError(0, f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES / 2**20:g} MB")
        if self._zip is not None:
            info = self._members[posixpath.join(self._prefix, MANIFEST)]
            if info.file_size > MAX_MANIFEST_BYTES:
                raise ImportRefused([too_big])
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ImportRefused([LineError(0, f"{MANIFEST} is a symbolic link")])
            try:  # zipfile stops at the declared size: a lying header cannot inflate more
                return self._zip.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
                raise ImportRefused([LineError(0, f"{MANIFEST} in {self.path.name} is damaged ({exc})")]) from None  # fmt: skip
        manifest = self.root / MANIFEST
        if manifest.is_symlink():
            raise ImportRefused([LineError(0, f"{self.path}: {MANIFEST} is a symbolic link")])
        if not manifest.is_file():
            raise ImportRefused([LineError(0, f"{self.path}: no {MANIFEST} in the folder")])
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            raise ImportRefused([too_big])
        return manifest.read_bytes()

    def check_path(self, rel: str) -> str | None:
        """Why `rel` may not be used (escapes the bundle, absolute, a link), or None."""
        if not rel or "\\" in rel or "\x00" in rel or rel.startswith("/"):
            return f"image path {rel!r} must be relative, with / separators"
        normalized = posixpath.normpath(rel)
        if normalized == ".." or normalized.startswith("../"):
            return f"image path {rel!r} escapes the bundle"
        if self._zip is not None:
            info = self._members.get(posixpath.join(self._prefix, normalized))
            if info is None:
                return f"image {rel!r} not found in the zip"
            if stat.S_ISLNK(info.external_attr >> 16):
                return f"image {rel!r} is a symbolic link"
            return _too_big(rel, info.file_size)
        full = self.root / normalized
        if full.is_symlink() or not full.resolve().is_relative_to(self.root):
            return f"image {rel!r} is a link or escapes the folder"
        if not full.is_file():
            return f"image {rel!r} not found"
        return _too_big(rel, full.stat().st_size)

    def read(self, rel: str) -> bytes:
        if self._zip is not None:
            # A ZipFile must not be read from two threads at once: one handle per thread.
            handle = getattr(self._local, "zip", None)
            if handle is None:
                handle = self._local.zip = zipfile.ZipFile(self.path)
                self._handles.append(handle)
            return handle.read(self._members[posixpath.join(self._prefix, posixpath.normpath(rel))])
        return (self.root / posixpath.normpath(rel)).read_bytes()

    def close(self) -> None:
        for handle in [self._zip, *self._handles]:
            if handle is not None:
                handle.close()


def _too_big(rel: str, size: int) -> str | None:
    """Checked before a byte is read: a huge member must not be decompressed."""
    if size > MAX_IMAGE_BYTES:
        return f"image {rel!r} is {size / 2**20:.1f} MB; the limit is 25 MB"
    return None


def _text(obj: dict, key: str, where: str, limit: int) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}{key!r} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{where}{key!r} is longer than {limit} characters")
    return value


def _meta(obj: dict, where: str) -> dict:
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{where}'meta' must be an object")
    return meta


def load_json_line(raw: bytes | str, limit: int = MAX_LINE_BYTES) -> object:
    """One line of a JSONL upload, strictly (config.strict_json.loads: UTF-8, no NaN or
    Infinity, at most MAX_JSON_DEPTH levels, no NUL or lone surrogate), at most `limit` bytes.
    ValueError with the reason otherwise (never the line itself)."""
    if len(raw) > limit:
        raise ValueError(f"the line is {len(raw) / 2**20:.1f} MB; the limit is {limit / 2**20:g} MB")  # fmt: skip
    return strict_json.loads(raw)


def parse_line(number: int, raw: bytes) -> GroupSpec:
    """One manifest line -> GroupSpec; ValueError with the reason otherwise."""
    obj = load_json_line(raw)
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    unknown = sorted(set(obj) - GROUP_KEYS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    candidates = obj.get("candidates")
    if not isinstance(candidates, list):
        raise ValueError("'candidates' must be a list")
    if not MIN_CANDIDATES <= len(candidates) <= MAX_CANDIDATES:
        raise ValueError(
            f"{len(candidates)} candidate(s); a group needs {MIN_CANDIDATES} to {MAX_CANDIDATES}"
        )
    specs = []
    for i, cand in enumerate(candidates):
        where = f"candidate {i + 1}: "
        if not isinstance(cand, dict):
            raise ValueError(f"{where}must be an object")
        extra = sorted(set(cand) - CANDIDATE_KEYS)
        if extra:
            raise ValueError(f"{where}unknown field(s) {', '.join(map(repr, extra))}")
        specs.append(
            CandidateSpec(
                id=_text(cand, "id", where, 200),
                image=_text(cand, "image", where, 1000),
                editor=_text(cand, "editor", where, 200),
                meta=_meta(cand, where),
            )
        )
    ids = [c.id for c in specs]
    if len(set(ids)) != len(ids):
        raise ValueError("candidate ids repeat within the group")
    gold = _gold(obj["gold"], set(ids)) if "gold" in obj else None
    return GroupSpec(
        line=number,
        id=_text(obj, "id", "", 200),
        instruction=_text(obj, "instruction", "", 5000),
        task_type=_text(obj, "task_type", "", 64),
        source=_text(obj, "source", "", 1000),
        candidates=specs,
        meta=_meta(obj, ""),
        gold=gold,
    )


def _gold(gold: object, candidate_ids: set[str]) -> dict:
    """{"prompt_following": [["edit", ">", "noop"], ...], ...}: each relation names
    two of this group's candidates; ">=" means "not worse" (e.g. ties first)."""
    if not isinstance(gold, dict) or not gold:
        raise ValueError("'gold' must be a non-empty object {dimension: [[a, op, b], ...]}")
    for dim, relations in gold.items():
        if not isinstance(relations, list) or not relations:
            raise ValueError(f"gold {dim!r}: must be a non-empty list of [a, op, b]")
        for relation in relations:
            if not (isinstance(relation, list) and len(relation) == 3):
                raise ValueError(f"gold {dim!r}: {relation!r} is not [a, op, b]")
            a, op, b = relation
            if not all(isinstance(x, str) for x in relation):
                raise ValueError(f"gold {dim!r}: {relation!r} must be three strings")
            if op not in GOLD_OPERATORS:
                raise ValueError(f"gold {dim!r}: operator {op!r} is not one of {', '.join(GOLD_OPERATORS)}")  # fmt: skip
            strangers = [c for c in (a, b) if c not in candidate_ids]
            if strangers or a == b:
                raise ValueError(f"gold {dim!r}: {relation!r} must name two different candidates of this group")  # fmt: skip
    return gold


def parse_manifest(bundle: Bundle) -> tuple[list[GroupSpec], list[LineError]]:
    """All lines, with every line-level error (bad JSON, fields, duplicate ids, paths)."""
    groups: list[GroupSpec] = []
    errors: list[LineError] = []
    group_lines: dict[str, int] = {}
    candidate_lines: dict[str, int] = {}
    data = bundle.read_manifest()
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            spec = parse_line(number, raw)
        except ValueError as exc:
            errors.append(LineError(number, str(exc)))
            continue
        except RecursionError:
            errors.append(LineError(number, "JSON nested too deeply"))
            continue
        if spec.id in group_lines:
            errors.append(LineError(number, f"duplicate group id {spec.id!r} (first on line {group_lines[spec.id]})"))  # fmt: skip
            continue
        group_lines[spec.id] = number
        for cand in spec.candidates:
            if cand.id in candidate_lines:
                errors.append(LineError(number, f"duplicate candidate id {cand.id!r} (first on line {candidate_lines[cand.id]})"))  # fmt: skip
            candidate_lines.setdefault(cand.id, number)
        for rel in spec.image_paths():
            problem = bundle.check_path(rel)
            if problem:
                errors.append(LineError(number, problem))
        groups.append(spec)
    if not groups and not errors:
        errors.append(LineError(0, f"{MANIFEST} has no groups"))
    return groups, errors
