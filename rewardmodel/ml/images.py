"""Images as the reward model takes them: opened as RGB, shrunk to a pixel budget (shared by
scoring, the vLLM backend and fine-tuning)."""

from __future__ import annotations

import io
import math

from PIL import Image


def open_image(image: bytes | Image.Image) -> Image.Image:
    """An RGB PIL image from encoded bytes or a PIL image; ValueError when unreadable."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if not isinstance(image, bytes | bytearray | memoryview):
        raise ValueError(f"an image must be bytes or a PIL image, not {type(image).__name__}")
    try:
        with Image.open(io.BytesIO(bytes(image))) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image: {exc}") from exc


def cap_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image`` shrunk (aspect ratio kept) so that width * height <= max_pixels."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
    while size[0] * size[1] > max_pixels:  # floating-point slack
        size = (max(1, size[0] - 1), max(1, size[1] - 1))
    return image.resize(size, Image.Resampling.BICUBIC)
