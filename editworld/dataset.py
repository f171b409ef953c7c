"""EditWorld data for the rest of the system: annotation import bundles whose truth is kept
beside them, RL prompts, and the truth as a benchmark scores file.

A bundle is what ``manage.py import_groups`` reads (manifest.jsonl + img/), one group per
(scene, edit) with ``candidates`` editors of :mod:`editworld.editors`; each candidate's truth is
in its ``meta`` (never shown to annotators) and in ``truth.jsonl`` beside the manifest.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from editworld.editors import EDITORS, make_candidate
from editworld.oracle import Truth
from editworld.scene import random_scene, render
from editworld.tasks import TASK_TYPES, random_edit


class Prompt(tuple):
    """``(key, instruction, task_type, source, target)``, with the ``scene`` and ``edit`` it
    came from as attributes (the oracle re-renders them at any size)."""

    def __new__(cls, key, instruction, task_type, source, target, *, scene=None, edit=None):
        self = super().__new__(cls, (key, instruction, task_type, source, target))
        self.scene, self.edit = scene, edit
        return self


def _scene_and_edit(rng: random.Random, size: int, index: int):
    """A scene and an edit, the task types taken in turn so that every type is represented."""
    while True:
        scene = random_scene(rng, size)
        try:
            return scene, random_edit(rng, scene, TASK_TYPES[index % len(TASK_TYPES)])
        except ValueError:  # this scene allows no edit of that type: draw another scene
            continue


def prompts(n: int, size: int = 64, seed: int = 0) -> list[Prompt]:
    """``n`` prompts (source rendered at ``size``, the correct target beside it)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        scene, edit = _scene_and_edit(rng, size, i)
        out.append(Prompt(f"ew{seed}-{i}", edit.instruction, edit.task_type, render(scene, size),
                          render(edit.target(scene), size), scene=scene, edit=edit))  # fmt: skip
    return out


def write_bundle(
    root: str | Path,
    *,
    groups: int,
    candidates: int = 4,
    size: int = 128,
    seed: int = 0,
    editors: tuple[str, ...] | None = None,
) -> Path:
    """A bundle of ``groups`` groups; each group's ``candidates`` editors are drawn without
    replacement from ``editors`` (default all of :data:`editworld.editors.EDITORS`), so one
    group mixes qualities. Deterministic for a seed."""
    editors = tuple(editors or EDITORS)
    if not 2 <= candidates <= len(editors):
        raise ValueError(f"candidates must be between 2 and {len(editors)}")
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    manifest, truths = [], []
    for g in range(groups):
        scene, edit = _scene_and_edit(rng, size, g)
        group_id = f"ew{g}"
        source = f"img/{group_id}.png"
        render(scene, size).save(root / source)
        entries = []
        for c, kind in enumerate(rng.sample(editors, candidates)):
            made = make_candidate(kind, scene, edit, rng, size)
            cid, image = f"{group_id}-c{c}", f"img/{group_id}-c{c}.png"
            made.image.save(root / image)
            entries.append({"id": cid, "image": image, "editor": kind,
                            "meta": {"truth": made.truth.as_dict(), **made.meta}})  # fmt: skip
            truths.append({"group": group_id, "candidate": cid, **made.truth.as_dict()})
        manifest.append({"id": group_id, "instruction": edit.instruction,
                         "task_type": edit.task_type, "source": source, "candidates": entries,
                         "meta": {"edit": edit.to_dict(), "seed": seed}})  # fmt: skip
    (root / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    (root / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truths))
    return root


def read_truth(root: str | Path) -> dict[str, Truth]:
    """{candidate id: Truth} of a bundle."""
    out = {}
    for line in (Path(root) / "truth.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["candidate"]] = Truth.from_dict(row)
    return out


def truth_scores_file(root: str | Path, out_path: str | Path) -> Path:
    """The truth as the benchmark ``file`` scorer reads it (one line per candidate id, on the
    0-10 scale): the oracle's row on the leaderboard."""
    lines = []
    for cid, truth in sorted(read_truth(root).items()):
        lines.append(json.dumps({
            "key": cid, "prompt_following": 10 * truth.prompt_following,
            "consistency": 10 * truth.consistency, "perceptual_quality": 10 * truth.quality,
            "overall": 10 * truth.overall,
        }))  # fmt: skip
    out = Path(out_path)
    out.write_text("\n".join(lines) + "\n")
    return out
