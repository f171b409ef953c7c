"""Small synthetic bundles for tests and benchmarks (Pillow only)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw


def write_bundle(
    root: Path, *, groups: int, candidates: int = 4, size: int = 512, seed: int = 0
) -> Path:
    """A folder with manifest.jsonl and PNG images: a shape on a gradient per image."""
    rng = random.Random(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for g in range(groups):
        names = [f"img/g{g}.png", *(f"img/g{g}-{c}.png" for c in range(candidates))]
        for name in names:
            _shape_image(size, rng).save(root / name, compress_level=1)
        lines.append(
            json.dumps(
                {
                    "id": f"g{g}",
                    "instruction": f"make the shape in picture {g} blue",
                    "task_type": "color_alter",
                    "source": names[0],
                    "candidates": [
                        {"id": f"g{g}-{c}", "image": names[c + 1], "editor": f"editor-{c}"}
                        for c in range(candidates)
                    ],
                    "meta": {"seed": seed},
                }
            )
        )
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _shape_image(size: int, rng: random.Random) -> Image.Image:
    base = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(image)
    x, y = rng.randrange(size // 2), rng.randrange(size // 2)
    r = rng.randrange(size // 8, size // 3)
    draw.ellipse((x, y, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image
