"""Scenes of a few coloured shapes on a textured background, rendered deterministically.

A :class:`Scene` is resolution-free: positions and sizes are fractions of the image side, so one
scene renders at 64, 128 or 256 px alike (:func:`render`). Shapes sit in the cells of a 3 x 3 grid
(at most one per cell, a little off-centre), which keeps them apart, so every edit touches
exactly the pixels it should, and gives instructions plain position words ("at the top left").
Every shape in a scene has its own colour, so "the red circle" always names one shape.

Rendering is not anti-aliased on purpose: edges are exact, a shape's footprint is an exact set
of pixels, and an edit changes nothing outside the pixels it should (tests check it).

Colours have plain English names (:data:`SHAPE_COLOURS` for shapes, saturated;
:data:`BACKGROUND_COLOURS` for backgrounds, muted), so instructions read naturally.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "orange": (245, 130, 20),
    "yellow": (240, 205, 30),
    "green": (40, 160, 60),
    "teal": (0, 145, 150),
    "blue": (35, 85, 215),
    "purple": (130, 50, 180),
    "pink": (235, 95, 170),
    "brown": (125, 78, 35),
}
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "cream": (246, 238, 214),
    "light grey": (212, 212, 212),
    "pale blue": (196, 218, 242),
    "mint": (198, 236, 212),
    "lavender": (226, 214, 242),
    "peach": (250, 216, 196),
    "sand": (222, 200, 158),
    "slate": (88, 98, 116),
    "charcoal": (52, 52, 58),
}
WHITE = (255, 255, 255)
INK = (28, 28, 32)  # outlines of the line-art and comic styles
NIGHT = (14, 14, 22)  # the neon style's background

SHAPE_KINDS = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross")
TEXTURES = ("solid", "striped", "dotted", "checked")
BACKGROUND_KINDS = ("solid", "gradient", "noise", "checker")
TONES = ("none", "warm", "cool", "sepia", "black_and_white", "dusk")
STYLES = ("none", "line_art", "comic", "neon")

GRID = 3  # shapes sit in the cells of a GRID x GRID grid, one at most per cell
CELL_WORDS: dict[tuple[int, int], str] = {  # (column, row) -> where, in words
    (0, 0): "at the top left",
    (1, 0): "at the top middle",
    (2, 0): "at the top right",
    (0, 1): "at the middle left",
    (1, 1): "in the centre",
    (2, 1): "at the middle right",
    (0, 2): "at the bottom left",
    (1, 2): "at the bottom middle",
    (2, 2): "at the bottom right",
}
MIN_RADIUS, MAX_RADIUS = 0.09, 0.135  # fractions of the side
MAX_JITTER = 0.02  # MAX_RADIUS + MAX_JITTER < 1 / (2 * GRID): shapes never leave their cell
CHECKER_SQUARES = 6  # across the image


@dataclass(frozen=True)
class Shape:
    """One shape: ``x``, ``y`` its centre and ``radius`` its circumradius, all fractions of the
    image side; ``texture`` is drawn in a darker shade of ``colour``."""

    kind: str
    colour: str
    x: float
    y: float
    radius: float
    texture: str = "solid"

    def __post_init__(self):
        if self.kind not in SHAPE_KINDS:
            raise ValueError(f"unknown shape kind {self.kind!r}: one of {SHAPE_KINDS}")
        if self.colour not in SHAPE_COLOURS:
            raise ValueError(f"unknown shape colour {self.colour!r}: one of {list(SHAPE_COLOURS)}")
        if self.texture not in TEXTURES:
            raise ValueError(f"unknown texture {self.texture!r}: one of {TEXTURES}")

    @property
    def name(self) -> str:
        """How instructions call it: "the red circle" without the article."""
        return f"{self.colour} {self.kind}"

    @property
    def cell(self) -> tuple[int, int]:
        """(column, row) of the grid cell holding the centre."""
        clamp = lambda v: min(GRID - 1, max(0, int(v * GRID)))  # noqa: E731
        return clamp(self.x), clamp(self.y)


@dataclass(frozen=True)
class Background:
    """``kind``: solid (one colour), gradient (top to bottom), noise (a smooth cloudy mix of two
    colours drawn from ``seed``) or checker (two colours)."""

    kind: str
    colours: tuple[str, ...]
    seed: int = 0

    def __post_init__(self):
        if self.kind not in BACKGROUND_KINDS:
            raise ValueError(f"unknown background {self.kind!r}: one of {BACKGROUND_KINDS}")
        want = 1 if self.kind == "solid" else 2
        if len(self.colours) != want:
            raise ValueError(f"a {self.kind} background has {want} colour(s), got {self.colours}")
        for c in self.colours:
            if c not in BACKGROUND_COLOURS and c != "white":
                raise ValueError(f"unknown background colour {c!r}")

    def describe(self) -> str:
        """In words, with its article: "a mint and peach checkerboard"."""
        if self.kind == "solid":
            return f"a plain {self.colours[0]} background"
        a, b = self.colours
        if self.kind == "gradient":
            return f"a gradient from {a} at the top to {b} at the bottom"
        if self.kind == "noise":
            return f"a cloudy mix of {a} and {b}"
        return f"a {a} and {b} checkerboard"


@dataclass(frozen=True)
class Scene:
    background: Background
    shapes: tuple[Shape, ...] = ()
    tone: str = "none"
    style: str = "none"

    def __post_init__(self):
        if self.tone not in TONES:
            raise ValueError(f"unknown tone {self.tone!r}: one of {TONES}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}: one of {STYLES}")
        colours = [s.colour for s in self.shapes]
        if len(set(colours)) != len(colours):
            raise ValueError(f"two shapes share a colour: {colours}")
        cells = [s.cell for s in self.shapes]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two shapes share a grid cell: {cells}")

    def find(self, colour: str) -> int:
        """Index of the shape of that colour."""
        for i, s in enumerate(self.shapes):
            if s.colour == colour:
                return i
        raise KeyError(f"no {colour} shape in the scene")

    def free_cells(self) -> list[tuple[int, int]]:
        taken = {s.cell for s in self.shapes}
        return [(c, r) for r in range(GRID) for c in range(GRID) if (c, r) not in taken]

    def unused_colours(self) -> list[str]:
        used = {s.colour for s in self.shapes}
        return [c for c in SHAPE_COLOURS if c not in used]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        bg = data["background"]
        return cls(
            background=Background(bg["kind"], tuple(bg["colours"]), int(bg.get("seed", 0))),
            shapes=tuple(Shape(**s) for s in data.get("shapes", ())),
            tone=data.get("tone", "none"),
            style=data.get("style", "none"),
        )


def cell_centre(cell: tuple[int, int]) -> tuple[float, float]:
    return (cell[0] + 0.5) / GRID, (cell[1] + 0.5) / GRID


def move_to_cell(shape: Shape, cell: tuple[int, int]) -> Shape:
    """The shape in another cell, at the same offset from the cell's centre."""
    old, new = cell_centre(shape.cell), cell_centre(cell)
    return replace(shape, x=shape.x - old[0] + new[0], y=shape.y - old[1] + new[1])


# ---------------------------------------------------------------------------- random scenes


def random_shape(
    rng: random.Random, cell: tuple[int, int], colour: str, *, texture: str | None = None,
    kind: str | None = None, size: int = 128,
) -> Shape:  # fmt: skip
    cx, cy = cell_centre(cell)
    low = max(MIN_RADIUS, min(MAX_RADIUS, 6 / size))  # at least ~6 px, so textures show
    return Shape(
        kind=kind or rng.choice(SHAPE_KINDS),
        colour=colour,
        x=round(cx + rng.uniform(-MAX_JITTER, MAX_JITTER), 4),
        y=round(cy + rng.uniform(-MAX_JITTER, MAX_JITTER), 4),
        radius=round(rng.uniform(low, MAX_RADIUS), 4),
        texture=texture or (rng.choice(TEXTURES[1:]) if rng.random() < 0.35 else "solid"),
    )


def random_background(rng: random.Random, *, avoid: Background | None = None) -> Background:
    """A random background; with ``avoid``, one that looks different from it."""
    names = list(BACKGROUND_COLOURS)
    while True:
        kind = rng.choice(BACKGROUND_KINDS)
        colours = tuple(rng.sample(names, 1 if kind == "solid" else 2))
        bg = Background(kind, colours, seed=rng.randrange(1 << 30) if kind == "noise" else 0)
        if avoid is None or (bg.kind, bg.colours) != (avoid.kind, avoid.colours):
            return bg


def random_scene(rng: random.Random, size: int = 128, *, shapes: tuple[int, int] = (2, 4)) -> Scene:
    """2-4 shapes (``shapes`` = (min, max)) in distinct cells with distinct colours, on a random
    background. ``size`` is the side the scene is meant for: radii stay >= ~6 px there."""
    count = rng.randint(*shapes)
    cells = rng.sample([(c, r) for r in range(GRID) for c in range(GRID)], count)
    colours = rng.sample(list(SHAPE_COLOURS), count)
    return Scene(
        background=random_background(rng),
        shapes=tuple(
            random_shape(rng, cell, colour, size=size)
            for cell, colour in zip(cells, colours, strict=True)
        ),
    )


# ---------------------------------------------------------------------------- rendering


def pattern_period(size: int) -> int:
    """Texture period in pixels: edges of a texture stay >= 3 px apart at every size."""
    return max(6, round(size / 14))


def outline_width(size: int, style: str) -> int:
    return max(2, round(size / {"comic": 32, "neon": 40}.get(style, 48)))


def _polygon(shape: Shape, size: int) -> list[tuple[float, float]] | None:
    cx, cy, r = shape.x * size, shape.y * size, shape.radius * size

    def ring(n: int, radius: float, start: float) -> list[tuple[float, float]]:
        return [
            (cx + radius * math.cos(start + 2 * math.pi * k / n),
             cy + radius * math.sin(start + 2 * math.pi * k / n))
            for k in range(n)
        ]  # fmt: skip

    if shape.kind == "triangle":
        return ring(3, r, -math.pi / 2)
    if shape.kind == "hexagon":
        return ring(6, r, 0.0)
    if shape.kind == "diamond":
        return [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    if shape.kind == "star":
        outer, inner = ring(5, r, -math.pi / 2), ring(5, 0.45 * r, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if shape.kind == "cross":
        a, w = 0.92 * r, 0.32 * r
        pts = [(w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a),
               (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w), (-w, -a)]  # fmt: skip
        return [(cx + x, cy + y) for x, y in pts]
    return None


def footprint(shape: Shape, size: int) -> np.ndarray:
    """(size, size) bool: the pixels the shape covers."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    points = _polygon(shape, size)
    if points is not None:
        draw.polygon(points, fill=255)
    else:
        cx, cy, r = shape.x * size, shape.y * size, shape.radius * size
        if shape.kind == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        else:  # square: its corners on a circle of 1.1 r would look too big beside the others
            h = 0.78 * r
            draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=255)
    return np.asarray(mask) > 0


def _texture_mask(shape: Shape, size: int) -> np.ndarray:
    """Where the darker pattern colour goes, in coordinates relative to the shape's centre (the
    pattern moves with its shape)."""
    if shape.texture == "solid":
        return np.zeros((size, size), dtype=bool)
    p = pattern_period(size)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = xs - round(shape.x * size), ys - round(shape.y * size)
    if shape.texture == "striped":
        return np.mod(dx + dy, p) < p / 2
    if shape.texture == "checked":
        half = p / 2
        return (np.floor(dx / half) + np.floor(dy / half)) % 2 == 0
    # dotted
    gx, gy = np.mod(dx, p) - p / 2, np.mod(dy, p) - p / 2
    return gx * gx + gy * gy <= (0.3 * p) ** 2


def neon(colour: tuple[int, int, int]) -> np.ndarray:
    return np.minimum(255.0, np.asarray(colour, dtype=np.float64) * 1.15 + 40)


def shade(colour: tuple[int, int, int]) -> np.ndarray:
    return np.asarray(colour, dtype=np.float64) * 0.55


def _background(bg: Background, size: int) -> np.ndarray:
    def rgb(name: str) -> np.ndarray:
        return np.asarray(WHITE if name == "white" else BACKGROUND_COLOURS[name], np.float64)

    first = rgb(bg.colours[0])
    if bg.kind == "solid":
        return np.broadcast_to(first, (size, size, 3)).copy()
    second = rgb(bg.colours[1])
    if bg.kind == "gradient":
        weight = np.linspace(0.0, 1.0, size)[:, None, None] * np.ones((1, size, 1))
    elif bg.kind == "checker":
        idx = np.floor(np.arange(size) * CHECKER_SQUARES / size)
        weight = ((idx[:, None] + idx[None, :]) % 2)[:, :, None]
    else:  # noise: smooth value noise, the same picture at every size
        grid = np.random.default_rng(bg.seed).random((5, 5))
        lo, hi, s = _smooth_index(size, 5)
        rows = grid[lo] * (1 - s)[:, None] + grid[hi] * s[:, None]  # (size, 5)
        weight = (rows[:, lo] * (1 - s)[None, :] + rows[:, hi] * s[None, :])[:, :, None]
    return first + weight * (second - first)


def _smooth_index(size: int, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothstep interpolation indices and weights from ``points`` values to ``size`` pixels."""
    u = (np.arange(size) + 0.5) / size * (points - 1)
    lo = np.minimum(np.floor(u).astype(int), points - 2)
    f = u - lo
    return lo, lo + 1, f * f * (3 - 2 * f)


def _erode(mask: np.ndarray, width: int) -> np.ndarray:
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.filter(ImageFilter.MinFilter(2 * width + 1))) > 0


def render_array(scene: Scene, size: int) -> np.ndarray:
    """(size, size, 3) uint8."""
    if size < 16:
        raise ValueError(f"a scene renders at 16 px or more, not {size}")
    if scene.style in ("line_art", "neon"):  # outlines only: black on white, or bright on night
        out = np.broadcast_to(np.asarray(WHITE if scene.style == "line_art" else NIGHT, np.float64), (size, size, 3)).copy()  # fmt: skip
        width = outline_width(size, scene.style)
        for shape in scene.shapes:
            mask = footprint(shape, size)
            colour = INK if scene.style == "line_art" else neon(SHAPE_COLOURS[shape.colour])
            out[mask & ~_erode(mask, width)] = colour
        return _tone(out, scene.tone)
    if scene.style == "comic":
        colours = [BACKGROUND_COLOURS.get(c, WHITE) for c in scene.background.colours]
        out = np.broadcast_to(np.mean(colours, axis=0), (size, size, 3)).copy()
    else:
        out = _background(scene.background, size)
    for shape in scene.shapes:
        mask = footprint(shape, size)
        colour = np.asarray(SHAPE_COLOURS[shape.colour], dtype=np.float64)
        out[mask] = colour
        if scene.style == "comic":
            out[mask & ~_erode(mask, outline_width(size, "comic"))] = INK
        else:
            out[mask & _texture_mask(shape, size)] = shade(SHAPE_COLOURS[shape.colour])
    return _tone(out, scene.tone)


def _tone(rgb: np.ndarray, tone: str) -> np.ndarray:
    x = np.round(rgb)
    if tone == "warm":
        x = x * np.array([1.06, 1.0, 0.82]) + np.array([20.0, 6.0, -6.0])
    elif tone == "cool":
        x = x * np.array([0.82, 1.0, 1.06]) + np.array([-6.0, 6.0, 20.0])
    elif tone == "sepia":
        matrix = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
        x = x @ matrix.T
    elif tone == "black_and_white":
        x = np.repeat((x @ np.array([0.299, 0.587, 0.114]))[:, :, None], 3, axis=2)
    elif tone == "dusk":
        x = x * np.array([0.55, 0.6, 0.72]) + np.array([0.0, 0.0, 18.0])
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def render(scene: Scene, size: int = 128) -> Image.Image:
    """The scene as an RGB image of ``size`` x ``size``; the same scene and size always give the
    same pixels."""
    return Image.fromarray(render_array(scene, size))


__all__ = [
    "BACKGROUND_COLOURS", "BACKGROUND_KINDS", "CELL_WORDS", "GRID", "SHAPE_COLOURS",
    "SHAPE_KINDS", "STYLES", "TEXTURES", "TONES", "Background", "Scene", "Shape",
    "cell_centre", "footprint", "move_to_cell", "random_background", "random_scene",
    "random_shape", "render", "render_array",
]  # fmt: skip
