"""Where an RL run's prompts come from: an annotation dataset's groups (through a rankings
snapshot of it), or an uploaded JSONL file. Web-safe (Pillow only): the upload is checked in the request, all or nothing.

Upload format, one JSON object per line::

    {"instruction": "make the sky pink", "source": "<base64 PNG/JPEG/WebP>",
     "key": "optional id", "task_type": "optional, e.g. color_alter"}
"""

from __future__ import annotations

import base64
import binascii
import operator
import random
from dataclasses import dataclass
from pathlib import Path

from annotation.manifest import load_json_line
from annotation.ml.rankings import read_rankings
from config.errors import Invalid
from media.images import MAX_IMAGE_BYTES, BadImage, check_image

MAX_INSTRUCTION_CHARS = 5000  # as an imported group's
# A line holds one base64 image of at most MAX_IMAGE_BYTES (4/3 of it in base64) and a little text.
MAX_PROMPT_LINE_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 2**20


class BadPrompts(Invalid):
    """The message names the line."""


@dataclass(frozen=True)
class PromptRow:
    instruction: str
    source: bytes  # checked image bytes
    key: str
    task_type: str


def parse_prompt_file(data: bytes, label: str = "prompts") -> list[PromptRow]:
    """Every line checked (JSON, fields, a decodable image within the import limits); raises
    BadPrompts naming the first bad line. Lines end at b"\\n" only (U+2028 and the other
    characters str.splitlines() also breaks at may stand inside a JSON string). JSON is read as
    the import reads its manifest (`load_json_line`): strict UTF-8, no NaN, at most
    MAX_JSON_DEPTH levels, no NUL or lone surrogate, a line of at most MAX_PROMPT_LINE_BYTES."""
    rows, keys = [], set()
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")  # without a UTF-8 byte order mark
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{label}:{number}"
        try:
            obj = load_json_line(line, MAX_PROMPT_LINE_BYTES)
        except ValueError as exc:  # not UTF-8, not JSON, too long, too deep, NUL...
            raise BadPrompts(f"{where}: {exc}") from None
        if not isinstance(obj, dict):
            raise BadPrompts(f"{where}: expected an object")
        unknown = sorted(set(obj) - {"instruction", "source", "key", "task_type"})
        if unknown:
            shown = ", ".join(unknown)
            raise BadPrompts(f"{where}: unknown field(s) {shown[:200]}")
        instruction = obj.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise BadPrompts(f"{where}: 'instruction' must be a non-empty string")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise BadPrompts(f"{where}: 'instruction' is longer than {MAX_INSTRUCTION_CHARS} characters")  # fmt: skip
        source = obj.get("source")
        if not isinstance(source, str) or not source:
            raise BadPrompts(f"{where}: 'source' must be a base64-encoded image")
        try:
            raw = base64.b64decode(source, validate=True)
        except (binascii.Error, ValueError):
            raise BadPrompts(f"{where}: 'source' is not valid base64") from None
        try:
            checked = check_image(raw, f"line {number}")
        except BadImage as exc:
            raise BadPrompts(f"{where}: {exc}") from None
        key = obj.get("key", str(number))
        if (
            isinstance(key, bool)
            or not isinstance(key, str | int)
            or not str(key)
            or len(str(key)) > 200
            or str(key) in keys
        ):
            raise BadPrompts(f"{where}: 'key' must be a unique string of 1 to 200 characters")
        keys.add(str(key))
        task_type = obj.get("task_type", "")
        if not isinstance(task_type, str) or len(task_type) > 64:
            raise BadPrompts(f"{where}: 'task_type' must be a string of at most 64 characters")
        rows.append(PromptRow(instruction.strip(), checked.data, str(key), task_type))
    if not rows:
        raise BadPrompts(f"{label}: no prompts")
    return rows


def snapshot_prompt_rows(folder) -> list[PromptRow]:
    """The groups of a rankings snapshot (annotation/ml/rankings.py) as prompts, in its order."""
    return [
        PromptRow(g.instruction, Path(g.source).read_bytes(), g.group_id, g.task_type)
        for g in read_rankings(Path(folder))
    ]


def split_held_out(
    rows: list, held_out: int, seed: int, split=None, key=operator.attrgetter("key")
) -> tuple[list, list]:
    """(training prompts, held-out evaluation prompts).

    Without ``split``: a seeded shuffle, the first ``held_out`` kept for evaluation. With a
    group split (``annotation.ml.split.Split``, by each row's key: a dataset's group id), the
    prompts on its held-out side are never trained on, the same groups the benchmark of a
    reward model made with that split holds out; ``held_out`` of them (all, if fewer) are
    evaluated, chosen by the same seeded shuffle. Training needs at least one prompt left.
    ``key``: a row's key (the rows may be the keys themselves, to check a split up front)."""
    if split is not None:
        sides = [split.side(key(row)) for row in rows]
        train = [row for row, side in zip(rows, sides, strict=True) if side == "train"]
        pool = [row for row, side in zip(rows, sides, strict=True) if side == "held_out"]
        if not train:
            raise BadPrompts(
                f"{len(rows)} prompt(s): none left to train on after {split.describe()}"
            )
        order = list(range(len(pool)))
        random.Random(seed).shuffle(order)
        return train, [pool[i] for i in sorted(order[:held_out])]
    if held_out >= len(rows):
        raise BadPrompts(
            f"{len(rows)} prompt(s): not enough to hold {held_out} out for evaluation and train "
            "on the rest"
        )
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = sorted(order[:held_out])
    rest = sorted(order[held_out:])
    return [rows[i] for i in rest], [rows[i] for i in held]
