"""A hostile corpus of crafted JPEG, PNG and WebP files, each carrying a marker text where a
generator tool (or an attacker) could hide an editor's name: EXIF, XMP, IPTC and vendor APPn,
comments before the frame and between the scans of a progressive JPEG, fill bytes and stray
bytes between segments, data after the end of the image, ICC profile descriptions and unused
bytes, PNG text/EXIF/private chunks and data after the image stream, WebP EXIF/XMP/unknown
chunks. Each file is either refused with a message or stored without the marker, with the same
pixels; served to an annotator, neither the bytes nor the headers hold the marker or a name
derived from the original's hash."""

import hashlib
import io
import struct
import zlib

import pytest
from django.test import Client
from PIL import Image, PngImagePlugin

from annotation.models import Candidate, Dataset, Group
from media.images import BadImage, check_image
from media.metadata import strip_metadata
from media.storage import store_image
from tests.factories import UserFactory

MARK = b"EDITOR-MARK-7f3a"
FORMS = (MARK, MARK.decode().encode("utf-16-be"))  # mluc (ICC) text is UTF-16


def _picture() -> Image.Image:
    image = Image.new("RGB", (64, 48))
    image.putdata([(x * 4, y * 5, (x * y) % 256) for y in range(48) for x in range(64)])
    return image


def _icc(*, desc: bytes = b"sRGB", padding: bytes = b"", extra: tuple = ()) -> bytes:
    """A small ICC v2 profile: a textDescription, a copyright text, an unknown 'data' tag
    and a white point; `padding` sits in unused bytes after the tags."""
    desc_body = (b"desc" + b"\0" * 4 + struct.pack(">I", len(desc) + 1) + desc + b"\0"
                 + b"\0" * 8 + b"\0" * 3 + b"\0" * 67)  # fmt: skip
    tags = [(b"desc", desc_body), (b"cprt", b"text" + b"\0" * 4 + desc + b"\0"),
            (b"zzzz", b"data" + b"\0" * 4 + desc), (b"wtpt", b"XYZ " + b"\0" * 4
            + struct.pack(">iii", 63190, 65536, 54061)), *extra]  # fmt: skip
    offset = 132 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += struct.pack(">4sII", sig, offset + len(data), len(body))
        data += body
    data += padding
    size = offset + len(data)
    header = bytearray(128)
    header[0:4] = size.to_bytes(4, "big")
    header[8:12] = b"\x02\x10\x00\x00"
    header[12:24] = b"mntrRGB XYZ "
    header[36:40] = b"acsp"
    return bytes(header) + len(tags).to_bytes(4, "big") + table + data


def _jpeg(**options) -> bytes:
    buffer = io.BytesIO()
    _picture().save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(body) + 2).to_bytes(2, "big") + body


def _after_soi(data: bytes, extra: bytes) -> bytes:
    return data[:2] + extra + data[2:]


def _before_second_scan(data: bytes, extra: bytes) -> bytes:
    first = data.index(b"\xff\xda")
    second = data.index(b"\xff\xda", first + 2)
    return data[:second] + extra + data[second:]


def _png(**options) -> bytes:
    buffer = io.BytesIO()
    _picture().save(buffer, "PNG", **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def _before_iend(data: bytes, extra: bytes) -> bytes:
    at = data.rindex(b"IEND") - 4
    return data[:at] + extra + data[at:]


def _before_idat(data: bytes, extra: bytes) -> bytes:
    at = data.index(b"IDAT") - 4
    return data[:at] + extra + data[at:]


def _png_text(kind: bytes) -> bytes:
    body = {
        b"tEXt": b"parameters\0" + MARK,
        b"zTXt": b"parameters\0\0" + zlib.compress(MARK),
        b"iTXt": b"parameters\0\1\0en\0\0" + zlib.compress(MARK),
    }[kind]
    return _before_iend(_png(), _chunk(kind, body))


def _png_idat_tail() -> bytes:
    """Text inside the IDAT chunk, after the end of its zlib stream."""
    data = _png()
    at = data.index(b"IDAT") - 4
    length = int.from_bytes(data[at : at + 4], "big")
    body = data[at + 8 : at + 8 + length] + MARK
    return data[:at] + _chunk(b"IDAT", body) + data[at + 12 + length :]


def _webp(**options) -> bytes:
    buffer = io.BytesIO()
    _picture().save(buffer, "WEBP", lossless=True, **options)
    return buffer.getvalue()


def _webp_extra(data: bytes, chunk: bytes, *, inside: bool) -> bytes:
    if not inside:
        return data + chunk
    payload = data[8:] + chunk
    return b"RIFF" + len(payload).to_bytes(4, "little") + payload


def _exif(tag: int, value) -> Image.Exif:
    exif = Image.Exif()
    exif[tag] = value
    return exif


CORPUS = {
    # JPEG
    "jpeg-exif": lambda: _jpeg(exif=_exif(0x0131, MARK.decode())),
    "jpeg-xmp": lambda: _after_soi(
        _jpeg(), _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0" + MARK)
    ),
    "jpeg-comment": lambda: _jpeg(comment=MARK),
    "jpeg-iptc": lambda: _after_soi(_jpeg(), _segment(0xED, b"Photoshop 3.0\0" + MARK)),
    "jpeg-app15": lambda: _after_soi(_jpeg(), _segment(0xEF, MARK)),
    "jpeg-comment-between-scans": lambda: _before_second_scan(
        _jpeg(progressive=True), _segment(0xFE, MARK)
    ),
    "jpeg-app1-between-scans": lambda: _before_second_scan(
        _jpeg(progressive=True), _segment(0xE1, b"Exif\0\0" + MARK)
    ),
    "jpeg-fill-bytes": lambda: _after_soi(_jpeg(), b"\xff\xff\xff" + _segment(0xE1, MARK)),
    "jpeg-stray-byte": lambda: _after_soi(
        _jpeg(), _segment(0xE0, b"JFIF\0\1\1\0\0\1\0\1\0\0") + b"\x00" + _segment(0xFE, MARK)
    ),  # fmt: skip
    "jpeg-after-eoi": lambda: _jpeg() + MARK,
    "jpeg-jfif-thumbnail": lambda: _after_soi(
        _jpeg(), _segment(0xE0, b"JFIF\0\1\1\0\0\1\0\1\1\6" + MARK + b"\0\0")
    ),
    "jpeg-icc-text": lambda: _jpeg(icc_profile=_icc(desc=MARK, padding=MARK)),
    "jpeg-padded-table": lambda: _after_soi(
        _jpeg(), _segment(0xDB, b"\0" + bytes(range(64)) + MARK)
    ),  # fmt: skip
    "jpeg-rotated-with-comment": lambda: _jpeg(
        exif=_exif(0x0112, 6), comment=MARK, icc_profile=_icc(desc=MARK)
    ),  # fmt: skip
    # PNG
    "png-text": lambda: _png_text(b"tEXt"),
    "png-ztxt": lambda: _png_text(b"zTXt"),
    "png-itxt": lambda: _png_text(b"iTXt"),
    "png-pnginfo": lambda: _png(pnginfo=_pnginfo()),
    "png-exif": lambda: _png(exif=_exif(0x0131, MARK.decode())),
    "png-private-chunk": lambda: _before_iend(_png(), _chunk(b"prVt", MARK)),
    "png-after-iend": lambda: _png() + MARK,
    "png-iccp": lambda: _png(icc_profile=_icc(desc=MARK, padding=MARK)),
    "png-iccp-name": lambda: _before_iend(
        _png(), _chunk(b"iCCP", MARK + b"\0\0" + zlib.compress(_icc()))
    ),  # fmt: skip
    "png-padded-phys": lambda: _before_iend(_png(), _chunk(b"pHYs", b"\0" * 9 + MARK)),
    "png-idat-tail": _png_idat_tail,
    "png-rotated-with-icc": lambda: _png(exif=_exif(0x0112, 6), icc_profile=_icc(desc=MARK)),
    "png-transparency-text": lambda: _before_idat(_png(), _chunk(b"tRNS", MARK)),
    "png-truecolour-palette": lambda: _before_idat(_png(), _chunk(b"PLTE", MARK + b"\0\0")),
    "png-icc-private-tag": lambda: _png(
        icc_profile=_icc(extra=((b"priv", b"ui08\0\0\0\0" + MARK),))
    ),
    "png-broken-icc": lambda: _before_idat(_png(), _chunk(b"iCCP", b"x\0\0" + zlib.compress(MARK))),
    "jpeg-broken-icc": lambda: _after_soi(_jpeg(), _segment(0xE2, b"ICC_PROFILE\0\1\1" + MARK)),
    # WebP
    "webp-exif": lambda: _webp(exif=_exif(0x0131, MARK.decode())),
    "webp-xmp": lambda: _webp(xmp=MARK),
    "webp-icc": lambda: _webp(icc_profile=_icc(desc=MARK, padding=MARK)),
    "webp-unknown-chunk": lambda: _webp_extra(
        _webp(), b"ZZZZ" + len(MARK).to_bytes(4, "little") + MARK, inside=True
    ),  # fmt: skip
    "webp-after-riff": lambda: _webp_extra(_webp(), MARK, inside=False),
    "webp-second-bitstream": lambda: _webp_extra(
        _webp(), b"VP8L" + len(MARK).to_bytes(4, "little") + MARK, inside=True
    ),  # fmt: skip
}


def _pnginfo():
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", MARK.decode(), zip=True)
    info.add_itxt("Comment", MARK.decode(), zip=True)
    return info


def _leaks(data: bytes) -> bool:
    """The marker in the bytes, or in a zlib stream they hold (PNG chunks are compressed)."""
    if any(form in data for form in FORMS):
        return True
    for at in range(len(data) - 1):
        if data[at] == 0x78 and data[at + 1] in (0x01, 0x5E, 0x9C, 0xDA):
            try:
                inflated = zlib.decompressobj().decompress(data[at:], 2**22)
            except zlib.error:
                continue
            if any(form in inflated for form in FORMS):
                return True
    return False


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_no_marker_survives_a_crafted_file(name):
    original = CORPUS[name]()
    assert MARK in original or _leaks(original), "the crafted file must carry the marker"
    try:
        checked = check_image(original, name)
    except BadImage as refused:
        # refused: the message names the file and says what to do
        assert name in str(refused) and MARK.decode() not in str(refused)
        return
    assert not _leaks(checked.data), name
    stored = Image.open(io.BytesIO(checked.data))
    stored.load()
    if "rotated" in name:
        assert stored.size == (48, 64)
    else:  # kept as it was: the same pixels
        reference = Image.open(io.BytesIO(original))
        assert stored.tobytes() == reference.convert(stored.mode).tobytes()
    # stripping is idempotent: a stripped file passes through unchanged
    assert strip_metadata(checked.data, stored.format) == checked.data


@pytest.mark.parametrize(
    "name, message",
    [
        ("jpeg-stray-byte", "cannot clear of metadata; re-save it"),
        ("png-padded-phys", "cannot clear of metadata; re-save it"),
        ("png-idat-tail", "cannot clear of metadata; re-save it"),
        ("png-transparency-text", "cannot clear of metadata; re-save it"),
        ("webp-second-bitstream", "cannot clear of metadata; re-save it"),
        ("jpeg-padded-table", "is not an image"),  # Pillow refuses it first
    ],
)
def test_structures_it_cannot_vouch_for_are_refused(name, message):
    """Decodable files whose structure hides bytes the parser cannot account for."""
    with pytest.raises(BadImage, match=message):
        check_image(CORPUS[name](), name)


def test_clean_files_keep_their_bytes_and_colour_profile():
    """Stripping does not re-encode: a file without metadata keeps its bytes; an ICC profile
    stays (sanitised) so colours do not change."""
    for data in (_png(), _webp()):
        assert check_image(data, "plain").data == data
    jpeg = check_image(_jpeg(icc_profile=_icc()), "icc.jpg").data
    profile = Image.open(io.BytesIO(jpeg)).info["icc_profile"]
    assert profile[36:40] == b"acsp" and b"XYZ " in profile
    assert b"sRGB" not in profile  # the description text is blanked


@pytest.mark.django_db
def test_served_images_carry_no_marker_and_no_name_from_the_hash(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    annotator = UserFactory()
    dataset = Dataset.objects.create(name="hostile", gold_rate=0, repeat_rate=0)
    dataset.annotators.add(annotator)
    plain = store_image(_png(), "source")
    group = Group.objects.create(dataset=dataset, external_id="g", instruction="i",
                                 task_type="t", source=plain.name, source_thumb=plain.thumb)  # fmt: skip
    originals = {}
    for name, make in CORPUS.items():
        data = make()
        try:
            stored = store_image(data, name)
        except BadImage:
            continue
        candidate = Candidate.objects.create(group=group, external_id=name, editor="e",
                                             image=stored.name, thumb=stored.thumb)  # fmt: skip
        originals[candidate.token] = data
    assert len(originals) >= 20  # most of the corpus is stored (stripped), not refused
    client = Client()
    client.force_login(annotator)
    for token, original in originals.items():
        for kind in ("candidate", "candidate-thumb"):
            response = client.get(f"/api/images/{kind}/{token}")
            assert response.status_code == 200
            body = b"".join(response.streaming_content)
            headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
            assert not _leaks(body) and MARK.decode() not in headers
            for digest in (hashlib.sha256(original).hexdigest(), hashlib.sha256(body).hexdigest()):
                assert digest not in headers  # no name made from the content's hash
            assert f'filename="{kind}.' in response["Content-Disposition"]


def test_an_animated_png_keeps_its_still_image_only():
    """Pillow checked the still image; a browser would play the frames: they are dropped."""
    frames = [_picture(), _picture().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    assert b"acTL" in buffer.getvalue() and b"fdAT" in buffer.getvalue()
    clean = check_image(buffer.getvalue(), "animated.png").data
    assert b"acTL" not in clean and b"fcTL" not in clean and b"fdAT" not in clean
    assert Image.open(io.BytesIO(clean)).tobytes() == frames[0].tobytes()
