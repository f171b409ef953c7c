"""Metadata stripping that parses every byte it keeps.

Generator tools write the model and its settings into PNG text chunks, EXIF, XMP, JPEG
comments and ICC profile descriptions, which would tell annotators which editor made a
candidate. Each container is walked segment by segment; a segment is kept only when its kind
is known to carry pixels or colour and its length is what its kind implies, so nothing can
ride along in it. Everything else is dropped: comments and APPn of every kind (also between
the scans of a progressive JPEG), text chunks, private chunks, data after the end of the
image. ICC profiles are kept for colour, with every text in them blanked. Whatever the parser
does not understand is refused (NotUnderstood), never passed through.

Bytes are kept as they are (no re-encoding, so nothing is lost); Pillow has decoded the file
before it gets here (media.images.check_image)."""

from __future__ import annotations

import struct
import zlib


class NotUnderstood(ValueError):
    """The file's structure is not one this module can vouch for."""


def strip_metadata(data: bytes, image_format: str) -> bytes:
    strip = {"PNG": strip_png, "JPEG": strip_jpeg, "WEBP": strip_webp}.get(image_format)
    if strip is None:
        raise NotUnderstood(f"no metadata stripper for {image_format}")
    return strip(data)


# --- ICC profiles: kept for colour; their text (descriptions, copyright, names) blanked


# Tag types that hold numbers only: their data is kept. Text types keep their (empty)
# structure; every other type, and every byte outside a kept tag, becomes zero.
ICC_NUMERIC = {b"XYZ ", b"curv", b"para", b"sf32", b"mft1", b"mft2", b"mAB ", b"mBA ",
               b"chrm"}  # the types colour management reads  # fmt: skip
ICC_TEXT = {b"desc", b"text", b"mluc"}
ICC_MAX_BYTES = 4 * 2**20


def sanitize_icc(profile: bytes) -> bytes:
    """The profile with its header, tag table and numeric tags as they were, the type
    signature of each text tag (now empty) and zeros everywhere else."""
    if len(profile) < 132 or len(profile) > ICC_MAX_BYTES or profile[36:40] != b"acsp":
        raise NotUnderstood("an ICC profile that is not one")
    count = int.from_bytes(profile[128:132], "big")
    table_end = 132 + 12 * count
    if table_end > len(profile):
        raise NotUnderstood("an ICC profile whose tag table runs past its end")
    out = bytearray(len(profile))
    out[:100] = profile[:100]  # the header up to the profile ID, which is zeroed (now stale)
    out[100:table_end] = b"\0" * 28 + profile[128:table_end]
    out[0:4] = len(profile).to_bytes(4, "big")
    for i in range(count):
        _sig, offset, size = struct.unpack(">4sII", profile[132 + 12 * i : 144 + 12 * i])
        if size < 8 or offset < table_end or offset + size > len(profile):
            raise NotUnderstood("an ICC profile tag outside the profile")
        kind = profile[offset : offset + 4]
        if kind in ICC_NUMERIC:
            out[offset : offset + size] = profile[offset : offset + size]
        elif kind in ICC_TEXT:
            out[offset : offset + 4] = kind  # reserved bytes and counts zero: an empty text
    return bytes(out)


# --- JPEG


SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
RESTARTS = range(0xD0, 0xD8)
FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
DHT, DQT, DRI, DAC, DNL = 0xC4, 0xDB, 0xDD, 0xCC, 0xDC
ICC_CHUNK = b"ICC_PROFILE\0"
ICC_CHUNK_DATA = 65533 - 2 - len(ICC_CHUNK) - 2  # per APP2 segment


def strip_jpeg(data: bytes) -> bytes:
    """SOI, the frame, tables and scans, and EOI; JFIF (APP0) and Adobe (APP14) only in their
    standard sizes, the ICC profile (APP2) sanitised. Fill bytes before a marker are
    dropped; anything after EOI too."""
    if data[:2] != b"\xff\xd8":
        raise NotUnderstood("a JPEG without its start-of-image marker")
    out: list[bytes | None] = [b"\xff\xd8"]
    icc: list[tuple[int, bytes]] = []
    icc_at = None
    pos, end = 2, len(data)
    while True:
        if pos >= end:  # no EOI: decoders accept it, and so do we
            break
        if data[pos] != 0xFF:
            raise NotUnderstood(f"a JPEG with stray data at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == EOI:
            break
        if marker in RESTARTS:
            out.append(bytes((0xFF, marker)))
            continue
        if pos + 2 > end:
            raise NotUnderstood("a JPEG that ends inside a segment")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            raise NotUnderstood(f"a JPEG segment 0xFF{marker:02X} that runs past the end")
        body = data[pos + 2 : pos + length]
        segment = bytes((0xFF, marker)) + data[pos : pos + length]
        pos += length
        if marker in FRAMES or marker in (DHT, DQT, DRI, DAC, DNL, SOS):
            _check_jpeg_segment(marker, body)
            out.append(segment)
            if marker == SOS:
                scan_end = _scan_end(data, pos)
                out.append(data[pos:scan_end])
                pos = scan_end
        elif marker == 0xE2 and body.startswith(ICC_CHUNK) and len(body) > len(ICC_CHUNK) + 2:
            icc.append((body[len(ICC_CHUNK)], body[len(ICC_CHUNK) + 2 :]))
            if icc_at is None:
                icc_at = len(out)
                out.append(None)  # where the profile goes back
        elif (
            marker == 0xE0
            and body.startswith(b"JFIF\0")
            and len(body) == 14
            and body[12:] == b"\0\0"
        ):
            out.append(segment)  # JFIF without a thumbnail
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) == 12:
            out.append(segment)  # the colour transform flag
        elif 0xE0 <= marker <= 0xEF or marker == COM:
            continue  # EXIF, XMP, IPTC, comments, vendors' APPn: dropped
        else:
            raise NotUnderstood(f"a JPEG with marker 0xFF{marker:02X}")
    out.append(b"\xff\xd9")
    if icc_at is not None:
        try:
            profile = sanitize_icc(b"".join(part for _, part in sorted(icc)))
        except NotUnderstood:
            pass  # a damaged or incomplete profile: the image is kept without it
        else:
            out[icc_at] = _icc_segments(profile)
    return b"".join(part for part in out if part is not None)


def _check_jpeg_segment(marker: int, body: bytes) -> None:
    """Each kept segment is exactly as long as its content says: no room for text."""
    if marker in FRAMES:
        ok = len(body) >= 6 and len(body) == 6 + 3 * body[5]
    elif marker == SOS:
        ok = len(body) >= 1 and len(body) == 1 + 2 * body[0] + 3
    elif marker == DRI:
        ok = len(body) == 2
    elif marker == DNL:
        ok = len(body) == 2
    elif marker == DAC:
        ok = len(body) % 2 == 0
    elif marker == DQT:
        i = 0
        while i < len(body):
            i += 1 + (128 if body[i] >> 4 else 64)
        ok = i == len(body) and len(body) > 0
    else:  # DHT
        i = 0
        while i + 17 <= len(body):
            i += 17 + sum(body[i + 1 : i + 17])
        ok = i == len(body) and len(body) > 0
    if not ok:
        raise NotUnderstood(f"a JPEG segment 0xFF{marker:02X} whose length does not match it")


def _scan_end(data: bytes, pos: int) -> int:
    """Where a scan's entropy-coded data ends: at the next marker that is not a stuffed zero
    (0xFF00) or a restart (0xFFD0-D7), fill bytes before it included."""
    end = len(data)
    while True:
        at = data.find(b"\xff", pos)
        if at == -1:
            return end
        code_at = at + 1
        while code_at < end and data[code_at] == 0xFF:
            code_at += 1
        if code_at >= end:
            return at
        code = data[code_at]
        if code != 0x00 and code not in RESTARTS:
            return at
        pos = code_at + 1


def _icc_segments(profile: bytes) -> bytes:
    parts = [profile[i : i + ICC_CHUNK_DATA] for i in range(0, len(profile), ICC_CHUNK_DATA)]
    if len(parts) > 255:
        raise NotUnderstood("an ICC profile too large for a JPEG")
    return b"".join(
        b"\xff\xe2" + (2 + len(ICC_CHUNK) + 2 + len(part)).to_bytes(2, "big") + ICC_CHUNK
        + bytes((n, len(parts))) + part
        for n, part in enumerate(parts, start=1)
    )  # fmt: skip


# --- PNG


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that affect how the still image looks, with the sizes their content allows; PLTE and
# tRNS are checked against the colour type. Everything else (text, EXIF, time, private
# chunks, an APNG's frames: the still image is what was checked) is dropped.
PNG_FIXED = {b"IHDR": {13}, b"gAMA": {4}, b"cHRM": {32}, b"sRGB": {1}, b"pHYs": {9},
             b"bKGD": {1, 2, 6}, b"sBIT": {1, 2, 3, 4}, b"IEND": {0}}  # fmt: skip
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))  # fmt: skip
PNG_MAX_ICC = 4 * 2**20


def strip_png(data: bytes) -> bytes:
    """IHDR, the palette and transparency the colour type allows, the image stream (checked to
    inflate to exactly the rows IHDR declares), the colour chunks, iCCP with its name replaced
    and its profile sanitised (dropped if not understood), IEND; nothing else."""
    if not data.startswith(PNG_SIGNATURE):
        raise NotUnderstood("a PNG without its signature")
    out = [PNG_SIGNATURE]
    pos = len(PNG_SIGNATURE)
    header = None
    palette_entries = 0
    while True:
        if pos + 12 > len(data):
            raise NotUnderstood("a PNG that ends before its IEND chunk")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise NotUnderstood(f"a PNG chunk {kind!r} that runs past the end")
        body = data[pos + 8 : pos + 8 + length]
        chunk = data[pos:end]
        if kind in PNG_FIXED:
            if length not in PNG_FIXED[kind]:
                raise NotUnderstood(f"a PNG chunk {kind.decode('latin-1')} of {length} bytes")
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            out.append(chunk)
        elif header is None:
            raise NotUnderstood("a PNG whose first chunk is not IHDR")
        elif kind == b"PLTE":
            colour, depth = header[3], header[2]
            if length % 3 or colour in (0, 4) or length // 3 > (2**depth if colour == 3 else 256):
                raise NotUnderstood("a PNG palette that its colour type does not allow")
            if colour == 3:  # in a truecolour image a palette is only a suggestion: dropped
                palette_entries = length // 3
                out.append(chunk)
        elif kind == b"tRNS":
            colour = header[3]
            allowed = {0: length == 2, 2: length == 6, 3: 0 < length <= palette_entries}
            if not allowed.get(colour, False):
                raise NotUnderstood("a PNG transparency chunk that its colour type does not allow")
            out.append(chunk)
        elif kind == b"IDAT":
            out.append(chunk)
        elif kind == b"iCCP":
            try:
                profile = sanitize_icc(_png_profile(body))
            except NotUnderstood:
                pass  # a damaged profile: the image is kept without it
            else:
                out.append(_png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(profile)))
        pos = end
        if kind == b"IEND":
            if header is None:
                raise NotUnderstood("a PNG without IHDR")
            _check_image_stream(out, header)
            return b"".join(out)


def _png_raw_size(header: tuple) -> int:
    """The bytes the image stream inflates to: every row of every (Adam7) pass with its filter
    byte."""
    width, height, depth, colour, _, _, interlace = header
    bits = PNG_CHANNELS.get(colour, 0) * depth
    if not bits:
        raise NotUnderstood("a PNG of an unknown colour type")
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        w = (width - x0 + dx - 1) // dx if width > x0 else 0
        h = (height - y0 + dy - 1) // dy if height > y0 else 0
        if w and h:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def _check_image_stream(chunks: list[bytes], header: tuple) -> None:
    """The IDAT chunks hold one zlib stream, which inflates to exactly the rows IHDR declares,
    and nothing after it (a decoder ignores what follows, so text could hide there). Inflated
    piece by piece: memory stays flat whatever the image size."""
    expected = _png_raw_size(header)
    inflate = zlib.decompressobj()
    inflated = 0
    for chunk in chunks:
        if chunk[4:8] != b"IDAT":
            continue
        if inflate.eof:
            raise NotUnderstood("a PNG with data after its image stream")
        pending = chunk[8:-4]
        try:
            while pending and not inflate.eof:
                inflated += len(inflate.decompress(pending, 2**20))
                pending = inflate.unconsumed_tail
                if inflated > expected:
                    raise NotUnderstood("a PNG whose image stream holds more than its rows")
        except zlib.error:
            raise NotUnderstood("a PNG whose image stream does not decompress") from None
        if inflate.unused_data:
            raise NotUnderstood("a PNG with data after its image stream")
    if not inflate.eof or inflated != expected:
        raise NotUnderstood("a PNG whose image stream is not the size of its rows")


def _png_profile(body: bytes) -> bytes:
    name_end = body.find(b"\0")
    if not 1 <= name_end <= 79 or len(body) < name_end + 2 or body[name_end + 1] != 0:
        raise NotUnderstood("a PNG iCCP chunk that is not one")
    inflate = zlib.decompressobj()
    try:
        profile = inflate.decompress(body[name_end + 2 :], PNG_MAX_ICC)
    except zlib.error:
        raise NotUnderstood("a PNG iCCP chunk that does not decompress") from None
    if inflate.unconsumed_tail:
        raise NotUnderstood("a PNG ICC profile over 4 MB")
    return profile


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + kind + body + crc


# --- WebP


WEBP_IMAGE = {b"VP8 ", b"VP8L", b"ALPH"}
VP8X_ICC, VP8X_ALPHA, VP8X_ANIMATION = 0x20, 0x10, 0x02  # EXIF 0x08, XMP 0x04: never kept


def strip_webp(data: bytes) -> bytes:
    """The image chunks (VP8, VP8L, ALPH) and VP8X with its flags set to what is kept; the
    ICC profile sanitised; EXIF, XMP, unknown chunks and anything after the RIFF dropped.
    Animations are refused."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise NotUnderstood("a WebP without its RIFF header")
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > len(data):
        raise NotUnderstood("a WebP whose RIFF size runs past the end")
    chunks: list[bytes | bytearray] = []
    pos = 12
    vp8x_at = None
    has_icc = False
    seen: dict[bytes, int] = {}
    while pos + 8 <= riff_end:
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body_end = pos + 8 + size
        if body_end > riff_end:
            raise NotUnderstood(f"a WebP chunk {kind!r} that runs past the end")
        body = data[pos + 8 : body_end]
        if kind in (b"ANIM", b"ANMF"):
            raise NotUnderstood("an animated WebP")
        if kind == b"VP8X":
            if size != 10:
                raise NotUnderstood("a WebP VP8X chunk of the wrong size")
            vp8x_at = len(chunks)
            chunks.append(bytearray(body))
        elif kind in WEBP_IMAGE:
            seen[kind] = seen.get(kind, 0) + 1
            chunks.append(_riff_chunk(kind, body))
        elif kind == b"ICCP":
            try:
                chunks.append(_riff_chunk(kind, sanitize_icc(body)))
                has_icc = True
            except NotUnderstood:
                pass  # a damaged profile: the image is kept without it
        pos = body_end + (size & 1)  # chunks are padded to an even size
    # one image, its alpha at most once and only beside a lossy one: no second bitstream
    if seen.get(b"VP8 ", 0) + seen.get(b"VP8L", 0) != 1 or seen.get(b"ALPH", 0) > (
        1 if b"VP8 " in seen else 0
    ):
        raise NotUnderstood("a WebP that is not one image")
    if vp8x_at is not None:
        flags = bytearray(chunks[vp8x_at])
        if flags[0] & VP8X_ANIMATION:
            raise NotUnderstood("an animated WebP")
        flags[0] = (flags[0] & VP8X_ALPHA) | (VP8X_ICC if has_icc else 0)
        flags[1:4] = b"\0\0\0"  # reserved
        chunks[vp8x_at] = _riff_chunk(b"VP8X", bytes(flags))
    payload = b"WEBP" + b"".join(bytes(c) for c in chunks)
    return b"RIFF" + len(payload).to_bytes(4, "little") + payload


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + len(body).to_bytes(4, "little") + body + (b"\0" if len(body) & 1 else b"")
