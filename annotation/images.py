"""Checking and thumbnailing one uploaded image (Pillow only, no Django)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from annotation.constants import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
THUMB_SIZE = 256  # longest side of a thumbnail: 256 to 320 px


class BadImage(ValueError):
    pass


@dataclass(frozen=True)
class CheckedImage:
    sha256: str
    extension: str
    width: int
    height: int
    thumb_jpeg: bytes


def check_image(data: bytes, name: str) -> CheckedImage:
    """Decode the whole image (a truncated file fails here), then make its thumbnail."""
    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage(f"image {name!r} is {len(data) / 2**20:.1f} MB; the limit is 25 MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise BadImage(f"image {name!r} is {image.format}; accepted: PNG, JPEG, WebP")
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise BadImage(
                    f"image {name!r} is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
                    "the limit is 40"
                )
            image.load()
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage(f"{name!r} is not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(f"image {name!r} is larger than 40 megapixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"image {name!r} is unreadable or truncated ({exc})") from None
    thumb = _thumbnail(image.convert("RGB") if image.mode != "RGB" else image)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=85)
    return CheckedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        extension=ALLOWED_FORMATS[image.format],
        width=width,
        height=height,
        thumb_jpeg=buffer.getvalue(),
    )


def _thumbnail(image: Image.Image) -> Image.Image:
    """Integer box reduction first (5-10x faster than a resampling resize), then a
    resize only when the result is still clearly larger than THUMB_SIZE."""
    factor = max(image.size) // THUMB_SIZE
    if factor >= 2:
        image = image.reduce(factor)
    if max(image.size) > THUMB_SIZE * 1.25:
        scale = THUMB_SIZE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return image
