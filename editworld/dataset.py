"""EditWorld data on disk and in memory: annotation bundles with their truth, RL prompts, and the
truth as a benchmark scores file.

* :func:`write_bundle`: an annotation import bundle in the format of ``annotation/synthetic.py``
  and ``annotation/manifest.py`` (``manifest.jsonl`` + ``img/``), one group per (scene, edit),
  each candidate made by an editor of :mod:`editworld.editors`. Each candidate's truth is in its
  ``meta`` (stored with the candidate, never shown to annotators) and in ``truth.jsonl`` beside
  the manifest. Candidate ids say nothing about their editor, and the candidates are shuffled.
* :func:`prompts`: (key, instruction, task_type, source, target) for RL training and evaluation;
  :func:`write_prompt_file` writes them as an RL prompt upload (``rltraining/prompts.py``).
* :func:`truth_scores_file`: ``truth.jsonl`` as the benchmark ``file`` scorer's JSONL (scores on
  0-10, keyed by candidate id, which is what a benchmark snapshot of the annotated dataset uses
  as its pair keys), so the oracle can sit on the reward-model leaderboard.
* :func:`truth_by_image_hash`: pixel hash -> truth for every candidate image of a bundle: what a
  simulated annotator, who sees only images, looks the truth up with.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from editworld.editors import EDITORS, make_candidate
from editworld.oracle import DIMENSIONS, OracleReward, Truth, pixel_hash
from editworld.scene import Scene, random_scene, render
from editworld.tasks import TASK_TYPES, Edit, random_edit

TRUTH_FILE = "truth.jsonl"
MANIFEST = "manifest.jsonl"
GOLD_MARGIN = 0.25  # a gold relation needs the truths this far apart
RANKED = ("prompt_following", "consistency", "overall")  # the annotation app's default dimensions


def _check_task_types(task_types: Sequence[str] | None) -> list[str]:
    chosen = list(task_types) if task_types is not None else list(TASK_TYPES)
    unknown = [t for t in chosen if t not in TASK_TYPES]
    if unknown or not chosen:
        raise ValueError(f"task types must be some of {TASK_TYPES}, got {chosen}")
    return chosen


def scene_and_edit(rng: random.Random, size: int, task_type: str) -> tuple[Scene, Edit]:
    """A random scene with a random edit of ``task_type`` (a new scene until one fits)."""
    for _ in range(100):
        scene = random_scene(rng, size)
        try:
            return scene, random_edit(rng, scene, task_type)
        except ValueError:
            continue
    raise RuntimeError(f"no scene fits a {task_type} edit")  # pragma: no cover


# ---------------------------------------------------------------------------- bundles


def write_bundle(
    root: Path | str,
    *,
    groups: int,
    candidates: int = 4,
    size: int = 128,
    seed: int = 0,
    editors: Sequence[str] | None = None,
    task_types: Sequence[str] | None = None,
    gold_every: int = 0,
    prefix: str | None = None,
) -> Path:
    """Write ``groups`` groups of ``candidates`` candidates to ``root`` (created); returns it.

    Task types cycle through ``task_types`` (default: all 11). Editors: ``candidates`` distinct
    kinds drawn from ``editors`` (default :data:`~editworld.editors.EDITORS`), always with
    ``correct`` when it is among them; with more candidates than kinds, kinds repeat (at other
    strengths). Every ``gold_every``-th group (0: none) is a gold group whose relations are the
    truth's clear-cut ones (``>`` where two truths differ by at least 0.25). Group ids are
    ``{prefix}-g{n}`` (default prefix ``ew{seed}``), candidate ids ``{group id}-c{k}``. The same
    arguments write the same files.
    """
    root = Path(root)
    kinds = list(editors) if editors is not None else list(EDITORS)
    if not kinds or any(k not in EDITORS for k in kinds):
        raise ValueError(f"editors must be some of {EDITORS}, got {kinds}")
    if not 2 <= candidates <= 8:
        raise ValueError(f"a group has 2 to 8 candidates, not {candidates}")
    types = _check_task_types(task_types)
    prefix = prefix if prefix is not None else f"ew{seed}"
    (root / "img").mkdir(parents=True, exist_ok=True)
    manifest, truths = [], []
    seen: dict[str, tuple[str, Truth]] = {}
    for g in range(groups):
        rng = random.Random(f"editworld-bundle:{seed}:{g}")
        scene, edit = scene_and_edit(rng, size, types[g % len(types)])
        gid = f"{prefix}-g{g}"
        render(scene, size).save(root / "img" / f"{gid}.png")
        made = [make_candidate(kind, scene, edit, rng, size) for kind in _pick_editors(rng, kinds, candidates)]  # fmt: skip
        rng.shuffle(made)
        specs = []
        for k, cand in enumerate(made):
            cid = f"{gid}-c{k}"
            name = f"img/{cid}.png"
            cand.image.save(root / name)
            digest = pixel_hash(cand.image)
            if digest in seen and seen[digest][1] != cand.truth:  # pragma: no cover - improbable
                raise RuntimeError(f"{cid} has the pixels of {seen[digest][0]} but another truth")
            seen[digest] = (cid, cand.truth)
            specs.append({
                "id": cid, "image": name, "editor": cand.editor,
                "meta": {"truth": cand.truth.as_dict(), **{k: v for k, v in cand.meta.items() if k != "editor"}},
            })  # fmt: skip
            truths.append({"group": gid, "candidate": cid, "editor": cand.editor,
                           "task_type": edit.task_type, **cand.truth.as_dict()})  # fmt: skip
        line = {
            "id": gid,
            "instruction": edit.instruction,
            "task_type": edit.task_type,
            "source": f"img/{gid}.png",
            "candidates": specs,
            "meta": {
                "editworld": {
                    "seed": seed,
                    "size": size,
                    "scene": scene.to_dict(),
                    "edit": edit.to_dict(),
                }
            },
        }
        gold = _gold([s["id"] for s in specs], [c.truth for c in made])
        if gold_every and g % gold_every == gold_every - 1 and gold:
            line["gold"] = gold
        manifest.append(json.dumps(line))
    (root / MANIFEST).write_text("\n".join(manifest) + "\n")
    (root / TRUTH_FILE).write_text("".join(json.dumps(t) + "\n" for t in truths))
    return root


def _pick_editors(rng: random.Random, kinds: list[str], count: int) -> list[str]:
    first = ["correct"] if "correct" in kinds else []
    rest = [k for k in kinds if k not in first]
    picked = first + rng.sample(rest, min(len(rest), count - len(first)))
    while len(picked) < count:
        picked.append(rng.choice(kinds))
    return picked


def _gold(ids: list[str], truths: list[Truth]) -> dict:
    """The truth's clear-cut relations per ranked dimension: [[better, ">", worse], ...]."""
    gold = {}
    for dim in RANKED:
        relations = [
            [a, ">", b]
            for a, ta in zip(ids, truths, strict=True)
            for b, tb in zip(ids, truths, strict=True)
            if ta.get(dim) - tb.get(dim) >= GOLD_MARGIN
        ]
        if relations:
            gold[dim] = relations
    return gold


def read_truth(bundle_root: Path | str) -> dict[str, Truth]:
    """Candidate id -> truth, from a bundle's ``truth.jsonl``."""
    out = {}
    for line in (Path(bundle_root) / TRUTH_FILE).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["candidate"]] = Truth.from_dict(row)
    return out


def read_groups(bundle_root: Path | str) -> list[dict]:
    """The groups of a bundle's manifest, in its order (paths relative to the bundle)."""
    lines = (Path(bundle_root) / MANIFEST).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def truth_by_image_hash(bundle_root: Path | str) -> dict[str, Truth]:
    """:func:`~editworld.oracle.pixel_hash` of every candidate image of a bundle -> its truth.
    The annotation API shows candidates under opaque tokens; their pixels are what is left to
    recognise them by (the importer strips file metadata, never pixels)."""
    root = Path(bundle_root)
    by_id = read_truth(root)
    out: dict[str, Truth] = {}
    for group in read_groups(root):
        for cand in group["candidates"]:
            digest = pixel_hash(Image.open(root / cand["image"]))
            truth = by_id[cand["id"]]
            if out.setdefault(digest, truth) != truth:
                raise ValueError(f"two candidates with the pixels of {cand['id']} have different truths")  # fmt: skip
    return out


def truth_scores_file(bundle_root: Path | str, out_path: Path | str) -> Path:
    """Write the truth as the benchmark ``file`` scorer's JSONL (``benchmark/ml/scorers.py``
    ``FileScorer``): one line per candidate, ``{"key": candidate id, "prompt_following",
    "consistency", "perceptual_quality", "overall"}`` on its 0-10 scale (truth x 10). Returns
    ``out_path``. The scorer reads it from inside ``BENCHMARK_SCORES_DIR``."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = {"quality": "perceptual_quality"}
    lines = []
    for key, truth in read_truth(bundle_root).items():
        scores = {names.get(d, d): round(10 * truth.get(d), 4) for d in DIMENSIONS}
        lines.append(json.dumps({"key": key, **scores}))
    out.write_text("\n".join(lines) + "\n")
    return out


# ---------------------------------------------------------------------------- RL prompts


class Prompt(tuple):
    """``(key, instruction, task_type, source, target)``: a plain 5-tuple wherever one is
    expected, which also knows its ``scene``, ``edit`` and ``size`` (the oracle grades an image
    of another size exactly by rendering them again)."""

    def __new__(
        cls, key: str, instruction: str, task_type: str, source: Image.Image, target: Image.Image,
        *, scene: Scene | None = None, edit: Edit | None = None, size: int | None = None,
    ) -> Prompt:  # fmt: skip
        self = super().__new__(cls, (key, instruction, task_type, source, target))
        self.scene, self.edit, self.size = scene, edit, size
        return self

    def __getnewargs_ex__(self):
        return tuple(self), {"scene": self.scene, "edit": self.edit, "size": self.size}

    key = property(lambda self: self[0])
    instruction = property(lambda self: self[1])
    task_type = property(lambda self: self[2])
    source = property(lambda self: self[3])
    target = property(lambda self: self[4])


def prompts(
    n: int, size: int = 64, seed: int = 0, task_types: Sequence[str] | None = None
) -> list[Prompt]:
    """``n`` prompts (task types cycling through ``task_types``, default all 11), the same for
    the same arguments, and ``prompts(m)`` begins with ``prompts(n)`` for n < m; keys
    ``ew{seed}-{i}``."""
    types = _check_task_types(task_types)
    out = []
    for i in range(n):
        rng = random.Random(f"editworld-prompt:{seed}:{i}")
        scene, edit = scene_and_edit(rng, size, types[i % len(types)])
        out.append(
            Prompt(
                f"ew{seed}-{i}", edit.instruction, edit.task_type, render(scene, size),
                render(edit.target(scene), size), scene=scene, edit=edit, size=size,
            )
        )  # fmt: skip
    return out


def prompt_oracle(n: int, size: int = 64, seed: int = 0, **kwargs) -> OracleReward:
    """The oracle reward of :func:`prompts` ``(n, size, seed)``, made again from the arguments
    alone (what the ``editworld_oracle`` reward spec names)."""
    return OracleReward(prompts(n, size, seed), **kwargs)


def write_prompt_file(
    path: Path | str, n: int, size: int = 64, seed: int = 0, task_types: Sequence[str] | None = None
) -> Path:
    """:func:`prompts` as an RL prompt upload (``rltraining/prompts.py``): one JSON line each,
    ``{"key", "instruction", "task_type", "source": base64 PNG}``."""
    lines = []
    for prompt in prompts(n, size, seed, task_types):
        buffer = io.BytesIO()
        prompt.source.save(buffer, "PNG")
        lines.append(json.dumps({
            "key": prompt.key, "instruction": prompt.instruction, "task_type": prompt.task_type,
            "source": base64.b64encode(buffer.getvalue()).decode("ascii"),
        }))  # fmt: skip
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


__all__ = [
    "Prompt", "prompts", "read_groups", "read_truth", "scene_and_edit", "truth_by_image_hash",
    "truth_scores_file", "write_bundle", "write_prompt_file",
]  # fmt: skip
