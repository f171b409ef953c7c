"""The truth of an edited image, measured against the known correct target, and an oracle reward.

One mechanism measures truth for everything: :func:`measure` compares an image with the source
and the correct target of its edit. :func:`oracle_truth` (used by ``editworld.editors`` for every
candidate it makes) renders the source and target of a scene and an edit and calls it;
:class:`OracleReward` (an RL reward) looks the source and target up from its prompts and calls
it. So a candidate's stored truth and the oracle's score of the same pixels are equal.

Definitions (images as float RGB; ``low`` is a Gaussian blur with sigma = side / 32, which makes
the prompt-following and consistency measures blind to pixel-level artefacts: those are
quality's business):

* **prompt following** ``pf = clip(1 - sum_R |low(c) - low(t)| / sum_R |low(s) - low(t)|, 0, 1)``
  with ``|.|`` the Euclidean RGB distance per pixel and ``R`` the pixels where ``low(s)`` and
  ``low(t)`` differ by more than 1: the fraction of the requested change achieved. The source
  scores 0, the target 1, a blend ``s + a (t - s)`` exactly ``a``.
* **consistency** ``c = 1 - sqrt(mean_pixels soft(e))`` where ``e`` is the distance of
  ``low(c)`` from the segment between ``low(s)`` and ``low(t)`` (a pixel that kept its source
  value, reached its target value or lies between them changed nothing it should not have) and
  ``soft(e) = clip((e - 8) / 40, 0, 1)``. The square root makes a changed object visible: another
  shape recoloured (~4% of the image) gives about 0.8.
* **quality** ``q = 1 - max(noise, blur, blocks)``, three artefact levels in [0, 1] of the image
  relative to the target's own: *noise*, the median absolute Laplacian over the pixels flat in
  both source and target (``(n_c - n_t - 1) / 20``); *blur*, the loss of edge sharpness
  ``1 - r_c / r_t`` with ``r = D1 / D2`` and ``D_k = sum (I[x+k] - I[x])^2 / k`` over both axes
  (1 for a sharp step, less for a soft one, whatever the contrast; deadzone 0.1, scale 0.5);
  *blocks*, the excess share of the pixel-difference energy on the boundaries of a
  side/16 block grid (``((f_c - f_t) / (1 - f_t) - 0.1) / 0.5``). Clean renders score 1.
* **overall** ``o = sqrt(min(pf, c) * q)``, EditScore's combination (docs/method.md section 3).

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

REGION_THRESHOLD = 1.0
CONSISTENCY_DEADZONE, CONSISTENCY_SPAN = 10.0, 40.0
FLAT_LAPLACIAN = 1.0
NOISE_DEADZONE, NOISE_SCALE = 1.0, 100.0
MATCH = 12.0
EDGE_RANGE = 32.0
MIN_SAME = 0.25  # blur and blocks need the target's content on a quarter of the image
BLUR_DEADZONE, BLUR_SCALE = 0.1, 0.9
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
        return getattr(self, dimension)


def overall_of(pf: float, consistency: float, quality: float) -> float:
    return math.sqrt(max(0.0, min(pf, consistency) * quality))


# ---------------------------------------------------------------------------- helpers


def as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 in 0..255 (alpha dropped)."""
    if isinstance(image, np.ndarray):
        return image.astype(np.float64)
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def pixel_hash(image: Image.Image | bytes) -> str:
    """sha256 of the decoded RGB pixels and the size: equal for the same picture whatever its
    file (PNG chunks, compression level, metadata stripped by the importer)."""
    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=32)
def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) row-stochastic matrix of a 1-D Gaussian blur with mirrored borders."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    matrix = np.zeros((n, n))
    for i in range(n):
        j = i + offsets
        j = np.where(j < 0, -j - 1, j)
        j = np.where(j >= n, 2 * n - j - 1, j)
        np.add.at(matrix[i], np.clip(j, 0, n - 1), weights)
    return matrix


def lowpass(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    sigma = max(1.0, min(h, w) / 32)
    out = (_gaussian_matrix(h, sigma) @ x.reshape(h, -1)).reshape(x.shape)
    out = _gaussian_matrix(w, sigma) @ out.transpose(1, 0, 2).reshape(w, -1)
    return out.reshape(w, h, -1).transpose(1, 0, 2)


def _laplacian(x: np.ndarray) -> np.ndarray:
    """Mean over channels of |4-neighbour Laplacian| (borders replicated)."""
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    lap = 4 * x - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]
    return np.abs(lap).mean(axis=2)


def _local_max(x: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over the (2 radius + 1)^2 neighbourhood."""
    p = np.pad(x, radius, mode="edge")
    h, w = x.shape
    shifts = range(2 * radius + 1)
    return np.max([p[i : i + h, j : j + w] for i in shifts for j in shifts], axis=0)


def _sharpness(x: np.ndarray) -> float:
    """How sharp the image's edges are, whatever their contrast: over every 5-pixel window (both
    axes, each channel) whose range is at least EDGE_RANGE, the largest 1-pixel step divided by
    the range, weighted by the range. 1 for crisp edges and thin lines, about 0.4 for a
    Gaussian blur of sigma 1; noise does not lower it."""
    steps, ranges = [], []
    for axis in (0, 1):
        windows = np.lib.stride_tricks.sliding_window_view(x, 5, axis=axis)
        ranges.append((windows.max(axis=-1) - windows.min(axis=-1)).ravel())
        steps.append(np.abs(np.diff(windows, axis=-1)).max(axis=-1).ravel())
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
    return max(4, size // 32)


def _blockiness(x: np.ndarray, mask: np.ndarray) -> float:
    """Share of the squared 1-pixel differences starting in ``mask`` that cross the boundaries
    of a side/32 block grid (at least 4 px)."""
    b = block_size(min(x.shape[:2]))
    dx = (((x[:, 1:] - x[:, :-1]) ** 2).sum(axis=2) * mask[:, :-1]).sum(axis=0)
    dy = (((x[1:] - x[:-1]) ** 2).sum(axis=2) * mask[:-1]).sum(axis=1)
    on = dx[b - 1 :: b].sum() + dy[b - 1 :: b].sum()
    total = dx.sum() + dy.sum()
    return float(on / total) if total > 0 else 0.0


# ---------------------------------------------------------------------------- the measure


def artifact_levels(
    source: np.ndarray, target: np.ndarray, image: np.ndarray, same: np.ndarray | None = None
) -> dict[str, float]:
    """{"noise", "blur", "blocks"} in [0, 1] (see the module docstring). ``same``: the pixels
    where the image shows the target's content (smoothed images within MATCH of each other);
    blur and blocks are judged there only, so other content is never taken for an artefact."""
    if same is None:
        same = _same_content(target, image)
    lap_s, lap_t, lap_c = _laplacian(source), _laplacian(target), _laplacian(image)
    flat = (lap_s <= FLAT_LAPLACIAN) & (lap_t <= FLAT_LAPLACIAN)
    noise = blur = blocks = 0.0
    if flat.sum() >= 0.05 * flat.size:
        excess = float(np.median(lap_c[flat]) - np.median(lap_t[flat]))
        noise = (excess - NOISE_DEADZONE) / NOISE_SCALE
    blur = (1 - _sharpness(image) / _sharpness(target) - BLUR_DEADZONE) / BLUR_SCALE
    if same.mean() >= MIN_SAME:
        # Judged where the target's own edges mostly are: on a few stray edges of other
        # content, chance alignments with the grid would look like blocks.
        edges_t = _gradient_map(target)
        if (edges_t * same).sum() >= 0.5 * edges_t.sum() > 0:
            f_t, f_c = _blockiness(target, same), _blockiness(image, same)
            blocks = ((f_c - f_t) / max(1e-9, 1 - f_t) - BLOCK_DEADZONE) / BLOCK_SCALE
    clip = lambda v: float(min(1.0, max(0.0, v)))  # noqa: E731
    return {"noise": clip(noise), "blur": clip(blur), "blocks": clip(blocks)}


def _smooth(x: np.ndarray) -> np.ndarray:
    return lowpass(_median3(x))


def _same_content(target: np.ndarray, image: np.ndarray) -> np.ndarray:
    return np.linalg.norm(_smooth(target) - _smooth(image), axis=2) < MATCH


def _median3(x: np.ndarray) -> np.ndarray:
    """3 x 3 median per channel: takes noise out without the bias a mean shows where noise was
    clipped at 0 or 255, and keeps edges where they are."""
    image = Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.MedianFilter(3)), dtype=np.float64)


def requested_region(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(H, W) bool: where prompt following is judged. The pixels the correct edit changes, plus
    the gaps of a pattern: a pixel near a changed one that has its colour in the source or in
    the target (between the dots of a polka-dot edit) belongs to the edit; a pixel of another
    colour (a shape beside a changed background) does not."""
    s, t = as_array(source), as_array(target)
    changed = np.abs(s - t).max(axis=2) > 0
    radius = max(2, round(min(changed.shape) / 28))
    h, w = changed.shape
    pad = lambda x: np.pad(x, [(radius, radius), (radius, radius)] + [(0, 0)] * (x.ndim - 2))  # noqa: E731
    pc, ps, pt = pad(changed), pad(s), pad(t)
    region = changed.copy()
    step = max(1, radius // 3)
    for dy in range(-radius, radius + 1, step):
        for dx in range(-radius, radius + 1, step):
            window = (slice(radius + dy, radius + dy + h), slice(radius + dx, radius + dx + w))
            alike = (ps[window] == s).all(axis=2) | (pt[window] == t).all(axis=2)
            region |= pc[window] & alike
    return region


def _masked_lowpass(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Gaussian average over the pixels of ``mask`` only (normalised convolution): nothing
    outside the mask leaks in."""
    weights = lowpass(mask.astype(np.float64)[:, :, None])
    return lowpass(x * mask[:, :, None]) / np.maximum(weights, 1e-12)


def measure(
    source: Image.Image | np.ndarray,
    target: Image.Image | np.ndarray,
    image: Image.Image | np.ndarray,
) -> Truth:
    """The truth of ``image`` as an edit of ``source`` whose correct result is ``target`` (three
    images of one size)."""
    s, t, c = as_array(source), as_array(target), as_array(image)
    if not s.shape == t.shape == c.shape:
        raise ValueError(f"sizes differ: source {s.shape}, target {t.shape}, image {c.shape}")
    ms, mt, mc = _median3(s), _median3(t), _median3(c)
    region = requested_region(s, t)
    if region.any():
        ls, lt, lc = (_masked_lowpass(x, region)[region] for x in (s, t, c))
        wanted = np.linalg.norm(ls - lt, axis=1)
        achieved = np.clip(wanted - np.linalg.norm(lc - lt, axis=1), 0, None)
        pf = achieved.sum() / wanted.sum() if wanted.sum() > 0 else 1.0
    else:
        pf = 1.0
    # Distance of each pixel from the segment [S(s), S(t)].
    ls, lt, lc = lowpass(ms), lowpass(mt), lowpass(mc)
    same = np.linalg.norm(lc - lt, axis=2) < MATCH
    u, w = lt - ls, lc - ls
    uu = (u * u).sum(axis=2)
    lam = np.clip(np.divide((w * u).sum(axis=2), uu, out=np.zeros_like(uu), where=uu > 0), 0, 1)
    off = np.linalg.norm(w - lam[:, :, None] * u, axis=2)
    soft = np.clip((off - CONSISTENCY_DEADZONE) / CONSISTENCY_SPAN, 0, 1)
    consistency = 1.0 - math.sqrt(float(soft.mean()))
    quality = 1.0 - max(artifact_levels(s, t, c, same).values())
    pf = min(1.0, max(0.0, float(pf)))
    return Truth(
        prompt_following=round(pf, 4),
        consistency=round(consistency, 4),
        quality=round(quality, 4),
        overall=round(overall_of(pf, consistency, quality), 4),
    )


def oracle_truth(source_scene: Scene, edit: Edit, image: Image.Image, size: int | None = None) -> Truth:  # fmt: skip
    """The truth of ``image`` as the result of ``edit`` on ``source_scene``: source and target are
    rendered at the image's size (``size``: at that size, the image resized to it)."""
    if size is None:
        if image.width != image.height:
            raise ValueError(f"EditWorld images are square; give size= for {image.size}")
        size = image.width
    elif image.size != (size, size):
        image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    source = render_array(source_scene, size)
    target = render_array(edit.target(source_scene), size)
    return measure(source, target, image)


# ---------------------------------------------------------------------------- the RL reward


class OracleReward:
    """An RL reward ``(sources, instructions, images) -> list[float]`` from the truth.

    ``prompts``: EditWorld prompts (``editworld.dataset.prompts``), or any
    ``(key, instruction, task_type, source, target)`` tuples. A (source, instruction) is found by
    the instruction text and a hash of the source's pixels; a source of another size (a policy
    working at a lower resolution) is matched by its instruction and its pixels after resizing.
    An image is scored at its own size when the prompt knows its scene (EditWorld prompts:
    source and target re-rendered there, exact) and otherwise resized to the source's size.
    Unknown prompts raise KeyError.

    ``dimension``: which truth field is the reward (default ``overall``, in [0, 1]).
    ``last_truths`` holds the full truths of the latest call, for logging.
    """

    def __init__(self, prompts: Iterable[Sequence], dimension: str = "overall"):
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {DIMENSIONS}, got {dimension!r}")
        self.dimension = dimension
        self._by_key: dict[tuple[str, str], Sequence] = {}
        self._by_instruction: dict[str, list[Sequence]] = {}
        for prompt in prompts:
            if len(prompt) != 5:
                raise ValueError("a prompt is (key, instruction, task_type, source, target)")
            _, instruction, _, source, _ = prompt
            self._by_key[(instruction, pixel_hash(source))] = prompt
            self._by_instruction.setdefault(instruction, []).append(prompt)
        if not self._by_key:
            raise ValueError("OracleReward needs at least one prompt")
        self.last_truths: list[Truth] = []
        self.__name__ = f"editworld_oracle_{dimension}"

    @classmethod
    def generated(cls, n: int, size: int = 64, seed: int = 0, **kwargs) -> OracleReward:
        """The oracle of ``editworld.dataset.prompts(n, size, seed)``, made again."""
        from editworld.dataset import prompts

        return cls(prompts(n, size, seed), **kwargs)

    def find(self, source: Image.Image, instruction: str) -> Sequence:
        prompt = self._by_key.get((instruction, pixel_hash(source)))
        if prompt is not None:
            return prompt
        for candidate in self._by_instruction.get(instruction, []):
            known = candidate[3].convert("RGB")
            probe = source.convert("RGB").resize(known.size, Image.Resampling.BICUBIC)
            if np.abs(as_array(probe) - as_array(known)).mean() <= 4.0:
                return candidate
        known = "no prompt has this instruction" if instruction not in self._by_instruction else (
            "its source image matches none of the prompts with this instruction"
        )  # fmt: skip
        raise KeyError(f"unknown prompt {instruction!r}: {known}")

    def truth(self, source: Image.Image, instruction: str, image: Image.Image) -> Truth:
        prompt = self.find(source, instruction)
        scene, edit = getattr(prompt, "scene", None), getattr(prompt, "edit", None)
        image = image.convert("RGB")
        if scene is not None and edit is not None and image.width == image.height:
            return oracle_truth(scene, edit, image)
        src, tgt = prompt[3].convert("RGB"), prompt[4].convert("RGB")
        if image.size != src.size:
            image = image.resize(src.size, Image.Resampling.BICUBIC)
        return measure(src, tgt, image)

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
    "DIMENSIONS", "OracleReward", "Truth", "artifact_levels", "measure", "oracle_truth",
    "overall_of", "pixel_hash", "requested_region",
]  # fmt: skip
