"""Checking and thumbnailing one image before it is stored (Pillow only, no Django)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

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
            clean = _encode(image, image_format)
            width, height = image.size
        else:
            clean = strip_metadata(data, image_format)
        thumb = _thumbnail(image.convert("RGB") if image.mode != "RGB" else image)
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG", quality=85)
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


# --- metadata: generator tools write the model and its settings into PNG text
# chunks and EXIF, which would tell annotators which editor made a candidate.

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that affect how the image looks; everything else (tEXt, zTXt, iTXt,
# eXIf, tIME, private chunks) is dropped.
PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP",
            b"sBIT", b"pHYs", b"bKGD", b"acTL", b"fcTL", b"fdAT"}  # fmt: skip
# JPEG segments kept before the scan: JFIF (APP0), ICC profile (APP2), Adobe
# colour transform (APP14) and the non-APP markers; EXIF/XMP (APP1), IPTC
# (APP13), other APPn and comments are dropped.
JPEG_KEEP_APP = {0xE0, 0xE2, 0xEE}


def strip_metadata(data: bytes, image_format: str) -> bytes:
    if image_format == "PNG":
        return _strip_png(data)
    if image_format == "JPEG":
        return _strip_jpeg(data)
    return _encode(Image.open(io.BytesIO(data)), image_format)


def _strip_png(data: bytes) -> bytes:
    out = [PNG_SIGNATURE]
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if kind in PNG_KEEP:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(out)


def _strip_jpeg(data: bytes) -> bytes:
    out = [data[:2]]  # SOI
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            out.append(data[pos:])
            return b"".join(out)
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos : pos + 2 + length]
        is_app = 0xE0 <= marker <= 0xEF
        if (not is_app and marker != 0xFE) or marker in JPEG_KEEP_APP:
            out.append(segment)
        pos += 2 + length
    return data  # unexpected layout: keep the file as it is rather than break it


def _encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, "JPEG", quality=95, icc_profile=image.info.get("icc_profile"))
    elif image_format == "WEBP":
        image.save(buffer, "WEBP", lossless=True, icc_profile=image.info.get("icc_profile"))
    else:
        image.save(buffer, "PNG", icc_profile=image.info.get("icc_profile"))
    return buffer.getvalue()
