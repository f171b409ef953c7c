"""The truth of an edited image, measured against the known correct target, and an oracle reward.

One mechanism measures truth for everything. :class:`Reference` holds a source image and the
correct target of its edit and grades any image of the same size (:meth:`Reference.truth`);
:func:`measure` is the one-off form. :func:`oracle_truth` (used by ``editworld.editors`` for
every candidate it makes) renders the source and target of a scene and an edit and grades with
it; :class:`OracleReward` (an RL reward) finds the source and target among its prompts and
grades with it. So a candidate's stored truth and the oracle's score of the same pixels are
equal.

Definitions. Images are float RGB (0-255); ``|.|`` is the Euclidean RGB distance of a pixel;
``G`` a Gaussian average with sigma = max(3, side / 32) px, which makes prompt following and
consistency blind to pixel-level artefacts (quality's business); ``M`` a 3 x 3 median, which
takes noise out without the bias a mean shows where noise was clipped at 0 or 255.

* **prompt following**, the share of the requested change achieved. ``R`` = the pixels the
  correct edit changes, plus the gaps of a pattern (:func:`requested_region`); ``s, t, c`` =
  source, target and image averaged by ``G`` over the pixels of ``R`` only (so nothing from
  outside leaks in); per pixel ``w = |s - t|`` (the change asked for) and
  ``pf = sum_R clip(w - |c - t|, 0, w) / sum_R w``. The source scores 0, the target 1, a blend
  ``s + a (t - s)`` exactly ``a``; a pixel made into something else earns nothing there.
* **consistency**, ``1 - sqrt(mean over all pixels of clip((e - 10) / 40, 0, 1))`` where ``e``
  is the distance of ``G(M(c))`` from the segment between ``G(M(s))`` and ``G(M(t))``: a pixel
  that kept its source value, reached its target value or lies between them changed nothing it
  should not have. Inside areas flat in both source and target (all channels within 2 over
  max(4, side/32) px around) the same is checked on 3 x 3 means, with a deadzone of 50 (a
  pattern drawn on an untouched shape averages away in ``G``); the larger term counts. The
  square root makes one changed object count: another shape recoloured (~4% of the image)
  gives about 0.8.
* **quality**, ``1 - max(noise, blur, blocks)``, three artefact levels in [0, 1], each of the
  image relative to the target's own (a clean render scores 1):
  *noise* = ``(n_c - n_t - 1) / 100`` with ``n`` the median absolute Laplacian (mean over
  channels) over the pixels flat in both source and target; *blur* =
  ``(1 - h_c / h_t - 0.1) / 0.9`` with ``h`` the contrast-free sharpness of
  :func:`sharpness` (about 1 for crisp edges); *blocks* = ``((f_c - f_t) / (1 - f_t) - 0.25) /
  0.5`` with ``f`` the share of the 1-pixel difference energy that crosses the lines of a
  max(4, side/32) px grid, judged where the image shows the target's content (``G(M(.))`` within
  12) if that holds half the target's edges, else everywhere.
* **overall**, ``sqrt(min(pf, consistency) * quality)``: EditScore's combination
  (docs/method.md section 3).

All four are rounded to 4 decimals.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

from editworld.scene import Scene, render_array
from editworld.tasks import Edit

DIMENSIONS = ("prompt_following", "consistency", "quality", "overall")

CONSISTENCY_DEADZONE, CONSISTENCY_SPAN = 10.0, 40.0
FINE_DEADZONE = 50.0  # the full-resolution check inside flat areas
FLAT_LAPLACIAN = 1.0
NOISE_DEADZONE, NOISE_SCALE = 1.0, 100.0
EDGE_RANGE = 32.0  # a 5-pixel window with this range holds an edge
BLUR_DEADZONE, BLUR_SCALE = 0.1, 0.9
MATCH = 12.0  # G(M(.)) this close: the image shows the target's content there
BLOCK_DEADZONE, BLOCK_SCALE = 0.25, 0.5


@dataclass(frozen=True)
class Truth:
    """The exact grade of one edited image, every field in [0, 1]."""

    prompt_following: float
    consistency: float
    quality: float
    overall: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Truth:
        return cls(*(float(data[k]) for k in DIMENSIONS))

    def get(self, dimension: str) -> float:
        if dimension not in DIMENSIONS:
            raise KeyError(f"unknown dimension {dimension!r}: one of {DIMENSIONS}")
        return getattr(self, dimension)


def overall_of(pf: float, consistency: float, quality: float) -> float:
    return math.sqrt(max(0.0, min(pf, consistency) * quality))


# ---------------------------------------------------------------------------- image helpers


def as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 in 0..255 (alpha dropped)."""
    if isinstance(image, np.ndarray):
        return image.astype(np.float64)
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def pixel_hash(image: Image.Image | bytes) -> str:
    """sha256 of the size and the decoded RGB pixels: the same for the same picture whatever its
    file (PNG chunks and compression, the metadata the importer strips)."""
    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=32)
def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) row-stochastic matrix of a 1-D Gaussian average with mirrored borders."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    matrix = np.zeros((n, n))
    for i in range(n):
        j = np.abs(i + offsets)  # mirrored at 0 ...
        j = np.where(j >= n, 2 * n - 2 - j, j)  # ... and at n - 1
        np.add.at(matrix[i], np.clip(j, 0, n - 1), weights)
    return matrix.astype(np.float32)


def lowpass(x: np.ndarray) -> np.ndarray:
    """``G``: Gaussian average of an (H, W, C) array, sigma = max(3, side / 32)."""
    h, w, ch = x.shape
    sigma = max(3.0, min(h, w) / 32)
    out = _gaussian_matrix(h, sigma) @ x.astype(np.float32).reshape(h, w * ch)
    out = _gaussian_matrix(w, sigma) @ out.reshape(h, w, ch).transpose(1, 0, 2).reshape(w, h * ch)
    return out.reshape(w, h, ch).transpose(1, 0, 2).astype(np.float64)


def _median3(x: np.ndarray) -> np.ndarray:
    """``M``: 3 x 3 median per channel."""
    image = Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.MedianFilter(3)), dtype=np.float64)


def _laplacian(x: np.ndarray) -> np.ndarray:
    """Mean over channels of |4-neighbour Laplacian| (borders replicated)."""
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    lap = 4 * x - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]
    return np.abs(lap).mean(axis=2)


def sharpness(x: np.ndarray) -> float:
    """How crisp the edges are, whatever their contrast: over every 5-pixel window (rows and
    columns, each channel) whose range is at least EDGE_RANGE, the largest 1-pixel step in it
    divided by its range, weighted by the range. 1 for crisp edges and thin lines, about 0.4
    after a Gaussian blur of sigma 1; noise does not lower it."""
    steps, ranges = [], []
    for axis in (0, 1):
        n = x.shape[axis]
        cols = [np.take(x, np.arange(k, n - 4 + k), axis=axis) for k in range(5)]
        ranges.append((np.maximum.reduce(cols) - np.minimum.reduce(cols)).ravel())
        steps.append(np.maximum.reduce([np.abs(cols[k + 1] - cols[k]) for k in range(4)]).ravel())
    r, g = np.concatenate(ranges), np.concatenate(steps)
    strong = r >= EDGE_RANGE
    return float(g[strong].sum() / r[strong].sum()) if strong.any() else 1.0


def _gradient_map(x: np.ndarray) -> np.ndarray:
    """(H, W) squared 1-pixel forward differences, both axes, summed over channels."""
    out = np.zeros(x.shape[:2])
    out[:, :-1] += ((x[:, 1:] - x[:, :-1]) ** 2).sum(axis=2)
    out[:-1] += ((x[1:] - x[:-1]) ** 2).sum(axis=2)
    return out


def block_size(size: int) -> int:
    """The grid the blocks artefact and its measure use: side / 32, at least 4 px."""
    return max(4, size // 32)


def _blockiness(x: np.ndarray, mask: np.ndarray) -> float:
    """Share of the squared 1-pixel differences starting in ``mask`` that cross the lines of
    the :func:`block_size` grid."""
    b = block_size(min(x.shape[:2]))
    dx = (((x[:, 1:] - x[:, :-1]) ** 2).sum(axis=2) * mask[:, :-1]).sum(axis=0)
    dy = (((x[1:] - x[:-1]) ** 2).sum(axis=2) * mask[:-1]).sum(axis=1)
    on = dx[b - 1 :: b].sum() + dy[b - 1 :: b].sum()
    total = dx.sum() + dy.sum()
    return float(on / total) if total > 0 else 0.0


def _off_segment(c: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per pixel (last axis = RGB), the distance of ``c`` from the segment [s, t]."""
    u, w = t - s, c - s
    uu = (u * u).sum(axis=-1)
    lam = np.divide((w * u).sum(axis=-1), uu, out=np.zeros_like(uu), where=uu > 0)
    return np.linalg.norm(w - np.clip(lam, 0, 1)[..., None] * u, axis=-1)


def _soft(distance: np.ndarray, deadzone: float) -> np.ndarray:
    return np.clip((distance - deadzone) / CONSISTENCY_SPAN, 0, 1)


def _flat_around(x: np.ndarray, margin: int) -> np.ndarray:
    """(H, W) bool: every channel varies by at most 2 within ``margin`` pixels."""
    image = Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8))
    size = 2 * margin + 1
    spread = as_array(image.filter(ImageFilter.MaxFilter(size))) - as_array(image.filter(ImageFilter.MinFilter(size)))  # fmt: skip
    return spread.max(axis=2) <= 2


def _box3(x: np.ndarray) -> np.ndarray:
    """3 x 3 mean (borders replicated)."""
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _packed(x: np.ndarray) -> np.ndarray:
    """(H, W) int: one number per RGB colour."""
    q = np.round(x).astype(np.int64)
    return (q[:, :, 0] << 16) | (q[:, :, 1] << 8) | q[:, :, 2]


def requested_region(source: Image.Image | np.ndarray, target: Image.Image | np.ndarray) -> np.ndarray:  # fmt: skip
    """(H, W) bool: where prompt following is judged. The pixels the correct edit changes, plus
    the gaps of a pattern: a pixel near a changed one (within side/28 px) that has that pixel's
    colour in the source or in the target (between the dots of a polka-dot edit) belongs to the
    edit; a pixel of another colour (a shape beside a changed background) does not."""
    s, t = _packed(as_array(source)), _packed(as_array(target))
    changed = s != t
    radius = max(2, round(min(changed.shape) / 28))
    h, w = changed.shape
    pc, ps, pt = (np.pad(a, radius) for a in (changed, s, t))
    region = changed.copy()
    step = 2 if radius >= 4 else 1
    for dy in range(-radius, radius + 1, step):
        for dx in range(-radius, radius + 1, step):
            window = (slice(radius + dy, radius + dy + h), slice(radius + dx, radius + dx + w))
            region |= pc[window] & ((ps[window] == s) | (pt[window] == t))
    return region


# ---------------------------------------------------------------------------- the measure


class Reference:
    """A source image and the correct target of its edit, ready to grade images of their size;
    everything that depends on them alone is computed once here."""

    def __init__(self, source: Image.Image | np.ndarray, target: Image.Image | np.ndarray):
        s, t = as_array(source), as_array(target)
        if s.shape != t.shape:
            raise ValueError(f"source {s.shape} and target {t.shape} differ in size")
        self.shape = s.shape
        self.source, self.target = s, t
        region = requested_region(s, t)
        self.region = region
        if region.any():
            weights = np.maximum(lowpass(region[:, :, None].astype(np.float64)), 1e-12)[region]
            averaged = lowpass(np.concatenate([s, t], axis=2) * region[:, :, None])[region]
            self._weights = weights
            self._t_region = averaged[:, 3:] / weights
            self._wanted = np.linalg.norm(averaged[:, :3] / weights - self._t_region, axis=1)
        smooth = lowpass(np.concatenate([_median3(s), _median3(t)], axis=2))
        self._smooth_s, self._smooth_t = smooth[:, :, :3], smooth[:, :, 3:]
        margin = block_size(min(s.shape[:2]))  # blur and blocks stay closer to their edges
        self._interior = _flat_around(s, margin) & _flat_around(t, margin)
        self._box_s, self._box_t = _box3(s), _box3(t)
        lap_s, lap_t = _laplacian(s), _laplacian(t)
        self._flat = (lap_s <= FLAT_LAPLACIAN) & (lap_t <= FLAT_LAPLACIAN)
        self._noise_t = float(np.median(lap_t[self._flat])) if self._flat.any() else 0.0
        self._sharpness_t = sharpness(t)
        self._edges_t = _gradient_map(t)

    def truth(self, image: Image.Image | np.ndarray) -> Truth:
        c = as_array(image)
        if c.shape != self.shape:
            raise ValueError(f"the image is {c.shape}, the source and target {self.shape}")
        pf = self._prompt_following(c)
        smooth_c = lowpass(_median3(c))
        consistency = self._consistency(smooth_c, c)
        same = np.linalg.norm(smooth_c - self._smooth_t, axis=2) < MATCH
        quality = 1.0 - max(self._artifact_levels(c, same).values())
        # overall from the rounded parts, so that it is what they say (a prompt following that
        # rounds to 0 gives 0, whatever float noise of 1e-8 the array library left in it)
        pf, consistency, quality = round(pf, 4), round(consistency, 4), round(quality, 4)
        return Truth(
            prompt_following=pf,
            consistency=consistency,
            quality=quality,
            overall=round(overall_of(pf, consistency, quality), 4),
        )

    def artifact_levels(self, image: Image.Image | np.ndarray) -> dict[str, float]:
        """{"noise", "blur", "blocks"} in [0, 1] (see the module docstring)."""
        c = as_array(image)
        same = np.linalg.norm(lowpass(_median3(c)) - self._smooth_t, axis=2) < MATCH
        return self._artifact_levels(c, same)

    def _prompt_following(self, c: np.ndarray) -> float:
        if not self.region.any() or self._wanted.sum() <= 0:
            return 1.0
        averaged = lowpass(c * self.region[:, :, None])[self.region] / self._weights
        missed = np.linalg.norm(averaged - self._t_region, axis=1)
        achieved = np.clip(self._wanted - missed, 0, None)
        return float(min(1.0, achieved.sum() / self._wanted.sum()))

    def _consistency(self, smooth_c: np.ndarray, c: np.ndarray) -> float:
        soft = _soft(_off_segment(smooth_c, self._smooth_s, self._smooth_t), CONSISTENCY_DEADZONE)
        # Inside areas flat in both source and target, at full resolution too: a pattern drawn
        # on an untouched shape averages away in G but is a change all the same.
        inside = self._interior
        if inside.any():
            fine = _off_segment(_box3(c)[inside], self._box_s[inside], self._box_t[inside])
            soft[inside] = np.maximum(soft[inside], _soft(fine, FINE_DEADZONE))
        return 1.0 - math.sqrt(float(soft.mean()))

    def _artifact_levels(self, c: np.ndarray, same: np.ndarray) -> dict[str, float]:
        noise = 0.0
        if self._flat.sum() >= 0.05 * self._flat.size:
            excess = float(np.median(_laplacian(c)[self._flat])) - self._noise_t
            noise = (excess - NOISE_DEADZONE) / NOISE_SCALE
        blur = (1 - sharpness(c) / self._sharpness_t - BLUR_DEADZONE) / BLUR_SCALE
        # Blocks are judged where the image shows the target's content if that holds half the
        # target's edges (stray edges of other content can line up with the grid by chance),
        # else everywhere (thin lines turned into blocks no longer look like the target).
        enough = (self._edges_t * same).sum() >= 0.5 * self._edges_t.sum()
        where = same if enough else np.ones_like(same)
        f_t, f_c = _blockiness(self.target, where), _blockiness(c, where)
        blocks = ((f_c - f_t) / max(1e-9, 1 - f_t) - BLOCK_DEADZONE) / BLOCK_SCALE
        clip = lambda v: float(min(1.0, max(0.0, v)))  # noqa: E731
        return {"noise": clip(noise), "blur": clip(blur), "blocks": clip(blocks)}


def measure(
    source: Image.Image | np.ndarray,
    target: Image.Image | np.ndarray,
    image: Image.Image | np.ndarray,
) -> Truth:
    """The truth of ``image`` as an edit of ``source`` whose correct result is ``target`` (three
    images of one size)."""
    return Reference(source, target).truth(image)


@functools.lru_cache(maxsize=8)
def scene_reference(source_scene: Scene, edit: Edit, size: int) -> Reference:
    """The :class:`Reference` of an edit on a scene at ``size`` px (cached: scenes and edits are
    immutable)."""
    return Reference(
        render_array(source_scene, size), render_array(edit.target(source_scene), size)
    )


def oracle_truth(source_scene: Scene, edit: Edit, image: Image.Image, size: int | None = None) -> Truth:  # fmt: skip
    """The truth of ``image`` as the result of ``edit`` on ``source_scene``: source and target are
    rendered at the image's size (with ``size``: at that size, the image resized to it)."""
    if size is None:
        if image.width != image.height:
            raise ValueError(f"EditWorld images are square; give size= for a {image.size} image")
        size = image.width
    elif image.size != (size, size):
        image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return scene_reference(source_scene, edit, size).truth(image)


# ---------------------------------------------------------------------------- the RL reward


class OracleReward:
    """An RL reward ``(sources, instructions, images) -> list[float]`` from the truth.

    ``prompts``: EditWorld prompts (``editworld.dataset.prompts``), or any ``(key, instruction,
    task_type, source, target)`` tuples. A (source, instruction) is found by the instruction
    text and a hash of the source's pixels; a source of another size (a policy that works at a
    lower resolution) by the instruction and its pixels after resizing. An image is graded at
    its own size when its prompt knows its scene (EditWorld prompts: source and target are
    rendered again at that size, exactly) and otherwise resized to the source's size. An unknown
    prompt raises KeyError.

    ``dimension``: which truth field is the reward (default ``overall``; all are in [0, 1]).
    ``last_truths`` holds the full truths of the latest call, for logging.
    """

    def __init__(self, prompts: Iterable[Sequence], dimension: str = "overall"):
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {DIMENSIONS}, got {dimension!r}")
        self.dimension = dimension
        self._prompts = list(prompts)  # kept alive: references are cached by id(prompt)
        self._by_key: dict[tuple[str, str], Sequence] = {}
        self._by_instruction: dict[str, list[Sequence]] = {}
        for prompt in self._prompts:
            if len(prompt) != 5:
                raise ValueError("a prompt is (key, instruction, task_type, source, target)")
            instruction, source = prompt[1], prompt[3]
            self._by_key[(instruction, pixel_hash(source))] = prompt
            self._by_instruction.setdefault(instruction, []).append(prompt)
        if not self._by_key:
            raise ValueError("OracleReward needs at least one prompt")
        self._references: dict[int, Reference] = {}  # a few, least recently used first
        self.last_truths: list[Truth] = []
        self.__name__ = f"editworld_oracle_{dimension}"

    def find(self, source: Image.Image, instruction: str) -> Sequence:
        """The prompt of this (source, instruction); KeyError if there is none."""
        prompt = self._by_key.get((instruction, pixel_hash(source)))
        if prompt is not None:
            return prompt
        for candidate in self._by_instruction.get(instruction, []):
            known = candidate[3].convert("RGB")
            probe = source.convert("RGB").resize(known.size, Image.Resampling.BICUBIC)
            if np.abs(as_array(probe) - as_array(known)).mean() <= 4.0:
                return candidate
        why = (
            "its source image matches none of the prompts with this instruction"
            if instruction in self._by_instruction
            else "no prompt has this instruction"
        )
        raise KeyError(f"unknown prompt {instruction!r}: {why}")

    def truth(self, source: Image.Image, instruction: str, image: Image.Image) -> Truth:
        prompt = self.find(source, instruction)
        image = image.convert("RGB")
        scene, edit = getattr(prompt, "scene", None), getattr(prompt, "edit", None)
        if scene is not None and edit is not None and image.width == image.height:
            return oracle_truth(scene, edit, image)
        reference = self._references.pop(id(prompt), None) or Reference(prompt[3], prompt[4])
        self._references[id(prompt)] = reference  # most recently used last
        while len(self._references) > 16:
            self._references.pop(next(iter(self._references)))
        size = (reference.shape[1], reference.shape[0])
        if image.size != size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        return reference.truth(image)

    def __call__(
        self, sources: list[Image.Image], instructions: list[str], images: list[Image.Image]
    ) -> list[float]:
        if not len(sources) == len(instructions) == len(images):
            raise ValueError(
                f"{len(sources)} sources, {len(instructions)} instructions and {len(images)} "
                "images: one of each per edited image is needed"
            )
        self.last_truths = [
            self.truth(src, text, img)
            for src, text, img in zip(sources, instructions, images, strict=True)
        ]
        return [t.get(self.dimension) for t in self.last_truths]


__all__ = [
    "DIMENSIONS", "OracleReward", "Reference", "Truth", "block_size", "measure", "oracle_truth",
    "overall_of", "pixel_hash", "requested_region", "scene_reference", "sharpness",
]  # fmt: skip
