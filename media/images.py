"""Checking and thumbnailing one image before it is stored (Pillow only, no Django)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from media.metadata import NotUnderstood, strip_metadata

MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 25 * 1024 * 1024
ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
ORIENTATION_TAG = 0x0112
THUMB_SIZE = 256  # longest side of a thumbnail: 256 to 320 px


class BadImage(ValueError):
    pass


@dataclass(frozen=True)
class CheckedImage:
    data: bytes  # the image without metadata: what is stored and served
    sha256: str  # of `data`
    extension: str
    width: int
    height: int
    thumb_jpeg: bytes


def check_image(data: bytes, name: str) -> CheckedImage:
    """Decode the whole image (a truncated file fails here), then make its thumbnail."""
    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage(f"image {name!r} is {len(data) / 2**20:.1f} MB; the limit is 25 MB")
    # No warnings.catch_warnings() here: images are checked on a thread pool and that context
    # manager swaps the process-wide filters, so threads would leave each other's in place.
    # Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (89 MP) in open() (a header
    # declaring 50000x50000 is never decoded); MAX_IMAGE_PIXELS (40 MP) is checked below,
    # before load(): the DecompressionBombWarning open() gives for 89-178 MP stays a warning.
    try:
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
        image_format = image.format
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage(f"{name!r} is not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(f"image {name!r} is larger than 40 megapixels") from None
    except Exception as exc:  # Pillow raises many types for damaged files
        raise BadImage(
            f"image {name!r} is unreadable or truncated ({type(exc).__name__}: {exc})"
        ) from None
    try:  # damaged metadata (EXIF) or an odd mode must not escape as another exception type
        if image.getexif().get(ORIENTATION_TAG, 1) != 1:
            image = ImageOps.exif_transpose(image)  # what a browser shows is what is stored
            # Pillow's encoders carry some of the original's metadata (a JPEG comment, the
            # ICC profile): the re-encoded file is stripped like any other.
            clean = strip_metadata(_encode(image, image_format), image_format)
            width, height = image.size
        else:
            clean = strip_metadata(data, image_format)
        thumb = _thumbnail(image.convert("RGB") if image.mode != "RGB" else image)
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG", quality=85)  # Pillow copies the original's comment in
        thumb_jpeg = strip_metadata(buffer.getvalue(), "JPEG")
    except NotUnderstood as exc:
        raise BadImage(
            f"image {name!r}: {exc}, which EditLoop cannot clear of metadata; re-save it with "
            "a common tool (its pixels are fine)"
        ) from None
    except Exception as exc:
        raise BadImage(
            f"image {name!r} is unreadable or damaged ({type(exc).__name__}: {exc})"
        ) from None
    return CheckedImage(
        data=clean,
        sha256=hashlib.sha256(clean).hexdigest(),
        extension=ALLOWED_FORMATS[image_format],
        width=width,
        height=height,
        thumb_jpeg=thumb_jpeg,
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


def _encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, "JPEG", quality=95, icc_profile=image.info.get("icc_profile"))
    elif image_format == "WEBP":
        image.save(buffer, "WEBP", lossless=True, icc_profile=image.info.get("icc_profile"))
    else:
        image.save(buffer, "PNG", icc_profile=image.info.get("icc_profile"))
    return buffer.getvalue()
