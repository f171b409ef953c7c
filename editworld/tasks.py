"""Edits of EditReward-Bench's task types, each with a procedural correct target.

An :class:`Edit` is a task type, an unambiguous instruction and a short list of :class:`Op` (what
to change, as data, so an edit can be stored in a manifest's meta and rebuilt). :func:`apply`
gives the correct target scene; :meth:`Edit.region` the pixels the edit may touch.

Task types (EditReward-Bench's strings; ``ps_human`` and ``text_change`` have no counterpart
here):

===================  ==========================================================================
subject-add          "add a yellow star at the top right" (a free cell, a colour not in use)
subject-remove       "remove the green star"
subject-replace      "replace the red circle with a blue hexagon" (same place and size)
color_alter          "make the red circle blue" (its pattern, if any, follows the colour)
material_alter       "give the red circle a striped pattern" / "make ... a plain solid colour"
style_change         black line drawing on white, comic style, neon outlines on black
tone_transfer        warm, cool, sepia, black and white, dusk
background_change    "replace the background with a mint and peach checkerboard"
extract              "extract the yellow triangle on a white background"
motion_change        "move the blue square to the left" (one grid cell, into a free cell)
compose              two of recolour / remove / retexture / move / add on different shapes,
                     joined by "and"
===================  ==========================================================================

Regions (:meth:`Edit.region`): a shape edit touches the union of the footprints of the shapes it
involves, before and after; a background change every pixel outside the shapes; an extraction
every pixel outside the kept shape; a style or tone change (the *global* edits) every pixel.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from editworld.scene import (
    CELL_WORDS,
    SHAPE_KINDS,
    STYLES,
    TEXTURES,
    TONES,
    Background,
    Scene,
    Shape,
    footprint,
    move_to_cell,
    random_background,
    random_shape,
    render_array,
)

TASK_TYPES = (
    "subject-add",
    "subject-remove",
    "subject-replace",
    "color_alter",
    "material_alter",
    "style_change",
    "tone_transfer",
    "background_change",
    "extract",
    "motion_change",
    "compose",
)
GLOBAL_TASKS = ("style_change", "tone_transfer")
ACTIONS = (
    "add", "remove", "replace", "recolour", "retexture", "move", "background", "tone", "style",
    "extract",
)  # fmt: skip

TONE_WORDS = {
    "warm": "give the picture a warm, orange tone",
    "cool": "give the picture a cool, blue tone",
    "sepia": "give the picture a sepia tone",
    "black_and_white": "make the picture black and white",
    "dusk": "make the picture look like dusk: darker and bluer",
}
STYLE_WORDS = {
    "line_art": "turn the picture into a black line drawing on a white background",
    "comic": "redraw the picture in comic style, with flat colours and thick black outlines",
    "neon": "turn the picture into neon art: bright coloured outlines on a black background",
}
TEXTURE_WORDS = {
    "striped": "give the {name} a striped pattern",
    "dotted": "give the {name} a polka-dot pattern",
    "checked": "give the {name} a checked pattern",
    "solid": "make the {name} a plain solid colour, without its pattern",
}
DIRECTIONS = {"to the left": (-1, 0), "to the right": (1, 0), "up": (0, -1), "down": (0, 1)}


@dataclass(frozen=True)
class Op:
    """One change. ``index`` names a shape of the *source* scene."""

    action: str
    index: int | None = None
    shape: Shape | None = None  # add, replace
    colour: str | None = None  # recolour
    texture: str | None = None  # retexture
    cell: tuple[int, int] | None = None  # move
    background: Background | None = None
    tone: str | None = None
    style: str | None = None

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}: one of {ACTIONS}")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> Op:
        data = dict(data)
        if "shape" in data:
            data["shape"] = Shape(**data["shape"])
        if "background" in data:
            bg = data["background"]
            data["background"] = Background(bg["kind"], tuple(bg["colours"]), bg.get("seed", 0))
        if "cell" in data:
            data["cell"] = tuple(data["cell"])
        return cls(**data)


@dataclass(frozen=True)
class Edit:
    task_type: str
    instruction: str
    ops: tuple[Op, ...]

    def __post_init__(self):
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"unknown task type {self.task_type!r}: one of {TASK_TYPES}")

    @property
    def is_global(self) -> bool:
        """A style or tone change: every pixel may change."""
        return self.task_type in GLOBAL_TASKS

    def target(self, scene: Scene) -> Scene:
        """The correct result of this edit on ``scene``."""
        return apply(scene, self)

    def touched(self, scene: Scene) -> frozenset[int]:
        """Indices of the source shapes this edit changes (or makes vanish)."""
        out: set[int] = set()
        for op in self.ops:
            if op.action == "extract":
                out |= set(range(len(scene.shapes))) - {op.index}
            elif op.index is not None:
                out.add(op.index)
        return frozenset(out)

    def region(self, scene: Scene, size: int) -> np.ndarray:
        """(size, size) bool: the pixels this edit may change on ``scene``."""
        target = self.target(scene)
        mask = np.zeros((size, size), dtype=bool)
        for op in self.ops:
            if op.action in ("tone", "style"):
                mask[:] = True
            elif op.action == "background":
                covered = np.zeros_like(mask)
                for shape in target.shapes:
                    covered |= footprint(shape, size)
                mask |= ~covered
            elif op.action == "extract":
                mask |= ~footprint(scene.shapes[op.index], size)
            else:
                if op.index is not None:
                    mask |= footprint(scene.shapes[op.index], size)
                after = _after(scene, op)
                if after is not None:
                    mask |= footprint(after, size)
        return mask

    def to_dict(self) -> dict:
        return {
            "task_type": self.task_type,
            "instruction": self.instruction,
            "ops": [op.to_dict() for op in self.ops],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Edit:
        return cls(data["task_type"], data["instruction"], tuple(map(Op.from_dict, data["ops"])))


def _after(scene: Scene, op: Op) -> Shape | None:
    """The shape an op leaves behind (None: it leaves none)."""
    if op.action in ("add", "replace"):
        return op.shape
    if op.action == "remove":
        return None
    shape = scene.shapes[op.index]
    if op.action == "recolour":
        return replace(shape, colour=op.colour)
    if op.action == "retexture":
        return replace(shape, texture=op.texture)
    if op.action == "move":
        return move_to_cell(shape, op.cell)
    raise ValueError(f"{op.action!r} does not act on one shape")


def apply(scene: Scene, edit: Edit) -> Scene:
    """The target scene. Raises ValueError when the ops do not fit the scene (a shape index out
    of range, two shapes in one cell or of one colour)."""
    shapes: list[Shape | None] = list(scene.shapes)
    added: list[Shape] = []
    background, tone, style = scene.background, scene.tone, scene.style
    for op in edit.ops:
        if op.index is not None and not 0 <= op.index < len(scene.shapes):
            raise ValueError(f"{op.action}: no shape {op.index} in a scene of {len(shapes)}")
        if op.action == "add":
            added.append(op.shape)
        elif op.action == "background":
            background = op.background
        elif op.action == "tone":
            tone = op.tone
        elif op.action == "style":
            style = op.style
        elif op.action == "extract":
            shapes = [s if i == op.index else None for i, s in enumerate(shapes)]
            background = Background("solid", ("white",))
        else:
            shapes[op.index] = _after(scene, op)
    kept = tuple(s for s in shapes if s is not None) + tuple(added)
    return Scene(background=background, shapes=kept, tone=tone, style=style)


# ---------------------------------------------------------------------------- random edits

# A maker returns an op for one shape-level change, or None when the scene allows none.
# `avoid` = source indices not to act on; `cells` / `colours` = already claimed by another op
# of a compose.
Maker = Callable[[random.Random, Scene, set, set, set], "Op | None"]


def _a(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def describe(scene: Scene, op: Op) -> str:
    """The instruction for one op on ``scene``."""
    name = scene.shapes[op.index].name if op.index is not None else None
    if op.action == "add":
        return f"add {_a(op.shape.name)} {CELL_WORDS[op.shape.cell]}"
    if op.action == "remove":
        return f"remove the {name}"
    if op.action == "replace":
        return f"replace the {name} with {_a(op.shape.name)}"
    if op.action == "recolour":
        return f"make the {name} {op.colour}"
    if op.action == "retexture":
        return TEXTURE_WORDS[op.texture].format(name=name)
    if op.action == "move":
        here = scene.shapes[op.index].cell
        delta = (op.cell[0] - here[0], op.cell[1] - here[1])
        words = {v: k for k, v in DIRECTIONS.items()}[delta]
        return f"move the {name} {words}"
    if op.action == "background":
        return f"replace the background with {op.background.describe()}"
    if op.action == "tone":
        return TONE_WORDS[op.tone]
    if op.action == "style":
        return STYLE_WORDS[op.style]
    return f"extract the {name} on a white background"


def make_edit(scene: Scene, task_type: str, ops: tuple[Op, ...] | list[Op]) -> Edit:
    """An edit whose instruction describes its ops ("... and ..." for several)."""
    ops = tuple(ops)
    return Edit(task_type, " and ".join(describe(scene, op) for op in ops), ops)


def _pick(rng: random.Random, scene: Scene, avoid: set) -> int | None:
    choices = [i for i in range(len(scene.shapes)) if i not in avoid]
    return rng.choice(choices) if choices else None


def _free_colours(scene: Scene, colours: set) -> list[str]:
    return [c for c in scene.unused_colours() if c not in colours]


def _make_recolour(rng, scene, avoid, cells, colours):
    i, free = _pick(rng, scene, avoid), _free_colours(scene, colours)
    if i is None or not free:
        return None
    return Op("recolour", i, colour=rng.choice(free))


def _make_retexture(rng, scene, avoid, cells, colours):
    i = _pick(rng, scene, avoid)
    if i is None:
        return None
    texture = rng.choice([t for t in TEXTURES if t != scene.shapes[i].texture])
    return Op("retexture", i, texture=texture)


def _make_remove(rng, scene, avoid, cells, colours):
    i = _pick(rng, scene, avoid)
    if i is None or len(scene.shapes) < 2:
        return None
    return Op("remove", i)


def _make_move(rng, scene, avoid, cells, colours):
    free = set(scene.free_cells()) - cells
    options = []
    for i, shape in enumerate(scene.shapes):
        if i in avoid:
            continue
        for dc, dr in DIRECTIONS.values():
            cell = (shape.cell[0] + dc, shape.cell[1] + dr)
            if cell in free:
                options.append((i, cell))
    if not options:
        return None
    i, cell = rng.choice(options)
    return Op("move", i, cell=cell)


def _make_add(rng, scene, avoid, cells, colours):
    free, free_colours = sorted(set(scene.free_cells()) - cells), _free_colours(scene, colours)
    if not free or not free_colours:
        return None
    cell = rng.choice(free)
    return Op("add", shape=random_shape(rng, cell, rng.choice(free_colours), texture="solid"))


def _make_replace(rng, scene, avoid, cells, colours):
    i, free = _pick(rng, scene, avoid), _free_colours(scene, colours)
    if i is None or not free:
        return None
    old = scene.shapes[i]
    kind = rng.choice([k for k in SHAPE_KINDS if k != old.kind])
    return Op("replace", i, shape=Shape(kind, rng.choice(free), old.x, old.y, old.radius))


def _make_extract(rng, scene, avoid, cells, colours):
    i = _pick(rng, scene, avoid)
    if i is None:
        return None
    return Op("extract", i)


COMPOSABLE: dict[str, Maker] = {
    "recolour": _make_recolour,
    "remove": _make_remove,
    "retexture": _make_retexture,
    "move": _make_move,
    "add": _make_add,
}
SINGLE: dict[str, Maker] = {
    "subject-add": _make_add,
    "subject-remove": _make_remove,
    "subject-replace": _make_replace,
    "color_alter": _make_recolour,
    "material_alter": _make_retexture,
    "motion_change": _make_move,
    "extract": _make_extract,
}


def _claims(scene: Scene, op: Op) -> tuple[set, set]:
    """Cells and colours an op's result occupies (for the second op of a compose)."""
    after = _after(scene, op) if op.action in COMPOSABLE or op.action == "replace" else None
    if after is None:
        return set(), set()
    return {after.cell}, {after.colour}


def _compose(rng: random.Random, scene: Scene, avoid: set = frozenset()) -> Edit | None:
    for _ in range(20):
        first, second = rng.sample(list(COMPOSABLE), 2)
        op1 = COMPOSABLE[first](rng, scene, set(avoid), set(), set())
        if op1 is None:
            continue
        cells, colours = _claims(scene, op1)
        taken = set(avoid) | ({op1.index} if op1.index is not None else set())
        op2 = COMPOSABLE[second](rng, scene, taken, cells, colours)
        if op2 is None:
            continue
        edit = make_edit(scene, "compose", (op1, op2))
        try:
            apply(scene, edit)
        except ValueError:
            continue
        return edit
    return None


def _edit_of_type(rng: random.Random, scene: Scene, task_type: str) -> Edit | None:
    if task_type in SINGLE:
        op = SINGLE[task_type](rng, scene, set(), set(), set())
    elif task_type == "compose":
        return _compose(rng, scene)
    elif task_type == "tone_transfer":
        op = Op("tone", tone=rng.choice([t for t in TONES if t not in ("none", scene.tone)]))
    elif task_type == "style_change":
        op = Op("style", style=rng.choice([s for s in STYLES if s not in ("none", scene.style)]))
    elif task_type == "background_change":
        op = Op("background", background=random_background(rng, avoid=scene.background))
    else:
        raise ValueError(f"unknown task type {task_type!r}: one of {TASK_TYPES}")
    return None if op is None else make_edit(scene, task_type, (op,))


def random_edit(rng: random.Random, scene: Scene, task_type: str | None = None) -> Edit:
    """A random edit of ``task_type`` (default: a random type that fits the scene). Raises
    ValueError when the scene allows no edit of the requested type (e.g. no shape can move)."""
    if task_type is not None:
        edit = _edit_of_type(rng, scene, task_type)
        if edit is None:
            raise ValueError(f"no {task_type} edit fits this scene")
        return edit
    types = list(TASK_TYPES)
    rng.shuffle(types)
    for kind in types:
        edit = _edit_of_type(rng, scene, kind)
        if edit is not None:
            return edit
    raise ValueError("no edit fits this scene")


# ---------------------------------------------------------------------------- wrong edits


def _farthest(scene: Scene, op: Op, options: list[Op]) -> Op:
    """Of ``options`` (ops without an object), the one that goes least of the way from the
    source to ``op``'s result (per pixel at 32 px): a wrong tone, style or background is
    plainly wrong, not nearly right."""
    source = render_array(scene, 32).astype(np.float64)
    want = render_array(apply(scene, Edit("compose", "", (op,))), 32).astype(np.float64)
    asked = np.linalg.norm(want - source, axis=2)

    def progress(other: Op) -> float:
        got = render_array(apply(scene, Edit("compose", "", (other,))), 32)
        missed = np.linalg.norm(got - want, axis=2)
        return float(np.clip(asked - missed, 0, None).sum() / max(asked.sum(), 1e-9))

    return min(options, key=progress)


def _wrong_op(rng: random.Random, scene: Scene, op: Op, avoid: set) -> Op | None:
    """The same change applied to another shape (or with another parameter where the edit has
    no object); None when there is no other shape to act on."""
    if op.action == "tone":
        tones = [Op("tone", tone=t) for t in TONES if t not in ("none", op.tone, scene.tone)]
        return _farthest(scene, op, tones)
    if op.action == "style":
        styles = [Op("style", style=s) for s in STYLES if s not in ("none", op.style)]
        return _farthest(scene, op, styles)
    if op.action == "background":  # another kind of background, in other colours
        options = []
        while len(options) < 6:
            bg = random_background(rng, avoid=op.background)
            shared = set(bg.colours) & set(op.background.colours)
            if bg.kind != op.background.kind and not shared and bg != scene.background:
                options.append(Op("background", background=bg))
        return _farthest(scene, op, options)
    if op.action == "add":
        free = [c for c in scene.free_cells() if c != op.shape.cell]
        colours = [c for c in scene.unused_colours() if c != op.shape.colour]
        if not free or not colours:
            return None
        return Op("add", shape=move_to_cell(replace(op.shape, colour=rng.choice(colours)), rng.choice(free)))  # fmt: skip
    j = _pick(rng, scene, avoid)
    if j is None:
        return None
    other = scene.shapes[j]
    if op.action == "recolour":
        return Op("recolour", j, colour=op.colour)
    if op.action == "retexture":
        texture = (
            op.texture
            if other.texture != op.texture
            else rng.choice([t for t in TEXTURES if t != other.texture])
        )
        return Op("retexture", j, texture=texture)
    if op.action in ("remove", "extract"):
        return Op(op.action, j)
    if op.action == "replace":
        return Op("replace", j, shape=replace(op.shape, x=other.x, y=other.y, radius=other.radius))
    if op.action == "move":
        moved = _make_move(rng, scene, set(range(len(scene.shapes))) - {j}, set(), set())
        return moved or Op("recolour", j, colour=rng.choice(scene.unused_colours()))
    raise ValueError(op.action)


def wrong_edit(rng: random.Random, scene: Scene, edit: Edit) -> Edit:
    """What a confused editor does: the same kind of change on another object (another shape, or
    another tone / style / background for edits without one); its instruction says what it did.
    Falls back to another change of a shape the edit does not act on (or an added shape) when
    the scene has no other object of the kind."""
    acted_on = {op.index for op in edit.ops if op.index is not None}
    correct = apply(scene, edit)
    for _ in range(20):
        avoid, ops = set(acted_on), []
        for op in edit.ops:
            wrong = _wrong_op(rng, scene, op, avoid)
            if wrong is None:
                break
            ops.append(wrong)
            if wrong.index is not None:
                avoid.add(wrong.index)
        else:
            candidate = make_edit(scene, edit.task_type, ops)
            try:
                result = apply(scene, candidate)
            except ValueError:
                continue
            if result not in (correct, scene):
                return candidate
    makers = list(COMPOSABLE.values())
    rng.shuffle(makers)
    for maker in makers:
        op = maker(rng, scene, set(acted_on), set(), set())
        if op is not None and apply(scene, Edit(edit.task_type, "", (op,))) != correct:
            return make_edit(scene, edit.task_type, (op,))
    raise ValueError("no wrong edit fits this scene")


__all__ = [
    "ACTIONS", "GLOBAL_TASKS", "TASK_TYPES", "Edit", "Op", "apply", "describe", "make_edit",
    "random_edit", "wrong_edit",
]  # fmt: skip
