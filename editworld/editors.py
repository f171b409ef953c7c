"""Candidate editors of controlled quality, each candidate with its exact truth.

Editors (:data:`EDITORS`), on a source scene and an :class:`~editworld.tasks.Edit`:

============  ==============================================================================
correct       the correct target
partial       the source blended towards the target by ``strength`` (default 0.35-0.65):
              a half-done recolour, a half-transparent added or removed shape, a half-toned
              picture
wrong_object  the same kind of change on another object (:func:`editworld.tasks.wrong_edit`)
over_edit     the correct edit, plus changes nobody asked for: untouched shapes recoloured
              (``strength`` of them, at least one) and, for ``strength`` >= 0.5, the
              background's colours changed, outside the edit's region only; for style and tone
              edits (whose region is everything) a plain coloured shape pasted into an empty
              cell instead (two for ``strength`` >= 0.5)
artifacts     the correct target with noise, blur or blocks (``artifact``) of ``strength``
              (default 0.6-1.0)
no_op         the source, unchanged
============  ==============================================================================

The truth of every candidate is measured by :func:`editworld.oracle.oracle_truth` on its pixels,
the same function the oracle reward uses, so the stored truth and the oracle always agree. On
the measures of :mod:`editworld.oracle` (checked on every task type over many seeds by
tests/test_editworld.py): correct scores 1 everywhere; partial gets prompt following
``strength`` (within 0.05); no_op prompt following and overall 0, consistency and quality 1;
over_edit the lowest consistency of the candidates that follow the prompt (correct, partial,
artifacts); artifacts the lowest quality, every other editor >= 0.75; wrong_object a low prompt
following (below 0.55), except an extraction of another shape, which whitens the same
background (most of the requested pixels) and shows its mistake in consistency instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageFilter

from editworld.oracle import Truth, block_size, oracle_truth, scene_reference
from editworld.scene import (
    BACKGROUND_COLOURS,
    SHAPE_COLOURS,
    Scene,
    footprint,
    random_shape,
    render_array,
)
from editworld.tasks import Edit, _a, wrong_edit

EDITORS = ("correct", "partial", "wrong_object", "over_edit", "artifacts", "no_op")
ARTIFACTS = ("noise", "blur", "blocks")


@dataclass
class Candidate:
    image: Image.Image
    editor: str
    truth: Truth
    meta: dict = field(default_factory=dict)  # how it was made: strength, artifact, what it did


def make_candidate(
    kind: str,
    source_scene: Scene,
    edit: Edit,
    rng: random.Random,
    size: int = 128,
    *,
    strength: float | None = None,
    artifact: str | None = None,
) -> Candidate:
    """One candidate of editor ``kind`` (see the module docstring for ``strength``)."""
    if kind not in EDITORS:
        raise ValueError(f"unknown editor {kind!r}: one of {EDITORS}")
    if strength is not None and not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    meta: dict = {"editor": kind}
    reference = scene_reference(source_scene, edit, size)  # renders both, once per (scene, edit)
    source, target = reference.source.astype(np.uint8), reference.target.astype(np.uint8)
    if kind == "correct":
        pixels = target
    elif kind == "no_op":
        pixels = source
    elif kind == "partial":
        alpha = strength if strength is not None else round(rng.uniform(0.35, 0.65), 3)
        meta["strength"] = alpha
        pixels = _blend(source, target, alpha)
    elif kind == "wrong_object":
        wrong = wrong_edit(rng, source_scene, edit)
        meta["did"] = wrong.instruction
        pixels = render_array(wrong.target(source_scene), size)
    elif kind == "over_edit":
        amount = strength if strength is not None else round(rng.uniform(0.5, 1.0), 3)
        meta["strength"] = amount
        pixels, meta["did"] = _over_edit(rng, source_scene, edit, size, amount, target)
    else:
        amount = strength if strength is not None else round(rng.uniform(0.6, 1.0), 3)
        artifact = artifact or rng.choice(ARTIFACTS)
        meta.update(strength=amount, artifact=artifact)
        pixels = add_artifact(target, artifact, amount, rng)
    image = Image.fromarray(pixels)
    return Candidate(image, kind, oracle_truth(source_scene, edit, image), meta)


def _blend(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    mixed = a.astype(np.float64) * (1 - alpha) + b.astype(np.float64) * alpha
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def _over_edit(
    rng: random.Random, source: Scene, edit: Edit, size: int, amount: float, target: np.ndarray
) -> tuple[np.ndarray, str]:
    after = edit.target(source)
    spare = [c for c in SHAPE_COLOURS if c not in {s.colour for s in (*source.shapes, *after.shapes)}]  # fmt: skip
    shapes, did = list(after.shapes), []
    if edit.is_global:
        # Shapes nobody asked for, pasted in as they are (a tone or a line drawing could hide a
        # recoloured shape; a plain coloured shape shows whatever the style).
        free = [c for c in after.free_cells() if c not in {s.cell for s in source.shapes}]
        count = min(len(free), len(spare), 2 if amount >= 0.5 else 1)
        over = target.copy()
        for cell, colour in zip(rng.sample(free, count), rng.sample(spare, count), strict=True):
            shape = random_shape(rng, cell, colour, texture="solid", size=size)
            over[footprint(shape, size)] = SHAPE_COLOURS[colour]
            did.append(f"added {_a(shape.name)}")
        return over, "; ".join(did)
    touched = edit.touched(source)
    keep = [s.colour for i, s in enumerate(source.shapes) if i not in touched]
    present = [after.find(c) for c in keep if any(s.colour == c for s in after.shapes)]
    count = min(len(present), len(spare), max(1, round(amount * len(present)))) if present else 0
    for index, colour in zip(rng.sample(present, count), rng.sample(spare, count), strict=True):
        did.append(f"made the {shapes[index].name} {colour}")
        shapes[index] = replace(shapes[index], colour=colour)
    background = after.background
    if edit.task_type not in ("background_change", "extract") and (amount >= 0.5 or count == 0):
        names = [n for n in BACKGROUND_COLOURS if n not in background.colours]
        background = replace(background, colours=tuple(rng.sample(names, len(background.colours))))
        did.append(f"changed the background to {background.describe()}")
    over = render_array(Scene(background, tuple(shapes), after.tone, after.style), size)
    # Outside the edit's region only: the requested edit itself stays correct.
    keep = edit.region(source, size) | scene_reference(source, edit, size).region
    over = np.where(keep[:, :, None], target, over)
    return over, "; ".join(did)


def add_artifact(
    pixels: np.ndarray, artifact: str, strength: float, rng: random.Random
) -> np.ndarray:
    """Gaussian noise (sigma 30 * strength), Gaussian blur (sigma 0.4 + 1.2 * strength pixels, at every size: sharpness is a matter of pixels), or
    blocks (the image averaged over a side/32 grid (at least 4 px), blended in by ``strength``)."""
    size = min(pixels.shape[:2])
    if artifact == "noise":
        noise = np.random.default_rng(rng.randrange(1 << 32)).normal(0, 30 * strength, pixels.shape)
        return np.clip(np.round(pixels + noise), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if artifact == "blur":
        return np.asarray(image.filter(ImageFilter.GaussianBlur(0.4 + 1.2 * strength)))
    if artifact == "blocks":
        b = block_size(size)
        blocky = image.reduce(b).resize(image.size, Image.Resampling.NEAREST)
        return _blend(pixels, np.asarray(blocky), strength)
    raise ValueError(f"unknown artifact {artifact!r}: one of {ARTIFACTS}")


__all__ = ["ARTIFACTS", "EDITORS", "Candidate", "Truth", "add_artifact", "make_candidate"]
