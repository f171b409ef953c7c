"""import_groups: a folder or zip with manifest.jsonl; all or nothing."""

import json
import os
import zipfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from annotation.models import Candidate, Dataset, Group
from annotation.synthetic import write_bundle


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _media_files(root: Path) -> list[Path]:
    """Stored images and thumbnails (not the import lock file)."""
    return sorted(p for sub in ("images", "thumbs") for p in (root / sub).rglob("*") if p.is_file())


def _run(path, dataset="ds", *extra):
    from io import StringIO

    out = StringIO()
    call_command("import_groups", str(path), "--dataset", dataset, *extra, stdout=out)
    return json.loads(out.getvalue())


def test_folder_import_writes_groups_candidates_images_and_thumbnails(db, tmp_path, media):
    bundle = write_bundle(tmp_path / "b", groups=3, candidates=3, size=600)
    summary = _run(bundle, "ds", "--overlap", "2")
    assert summary["groups"] == 3 and summary["candidates"] == 9 and summary["images"] == 12
    assert summary["dataset_created"] is True
    dataset = Dataset.objects.get(name="ds")
    assert dataset.overlap == 2 and dataset.dimension_keys == [
        "prompt_following",
        "consistency",
        "overall",
    ]
    group = Group.objects.get(external_id="g1")
    assert (
        group.instruction == "make the shape in picture 1 blue" and group.task_type == "color_alter"
    )
    cand = Candidate.objects.get(external_id="g1-2")
    assert cand.editor == "editor-2" and cand.group == group
    with default_storage.open(cand.image) as f:
        assert Image.open(f).size == (600, 600)
    with default_storage.open(cand.thumb) as f:
        thumb = Image.open(f)
        assert thumb.format == "JPEG" and thumb.size == (300, 300)  # 600 // 2, within 256..320
    assert len(_media_files(media)) == 24  # 12 originals + 12 thumbnails


def test_zip_import_and_content_addressed_dedup(db, tmp_path):
    bundle = write_bundle(tmp_path / "b", groups=2, candidates=2, size=64)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in bundle.rglob("*"):
            if path.is_file():
                zf.write(path, f"top/{path.relative_to(bundle)}")
    first = _run(archive, "zipped")
    assert first["groups"] == 2 and first["images_stored"] == 6
    # same images, other ids: nothing new is stored
    manifest = [json.loads(line) for line in (bundle / "manifest.jsonl").read_text().splitlines()]
    for g in manifest:
        g["id"] += "-again"
        for c in g["candidates"]:
            c["id"] += "-again"
    (bundle / "manifest.jsonl").write_text("\n".join(json.dumps(g) for g in manifest))
    second = _run(bundle, "zipped")
    assert second["dataset_created"] is False and second["images_stored"] == 0
    assert Group.objects.filter(dataset__name="zipped").count() == 4


def test_identical_images_under_many_paths_are_stored_once(db, tmp_path, media):
    """A candidate byte-identical to its source (a no-op edit) hashes to the source's stored
    name; the pool's threads must not race on writing it."""
    import shutil

    bundle = write_bundle(tmp_path / "b", groups=40, candidates=2, size=64)
    manifest = [json.loads(line) for line in (bundle / "manifest.jsonl").read_text().splitlines()]
    for g in manifest:
        for c in g["candidates"]:
            shutil.copyfile(bundle / g["source"], bundle / c["image"])
    summary = _run(bundle, "same", "--workers", "8")
    assert summary["groups"] == 40 and summary["images"] == 120
    assert summary["images_stored"] == 40  # one per distinct picture
    assert len(_media_files(media)) == 80
    for cand in Candidate.objects.filter(group__dataset__name="same").select_related("group"):
        assert cand.image == cand.group.source
        with default_storage.open(cand.image) as f:
            Image.open(f).verify()


def _line(**overrides):
    base = {
        "id": "x1", "instruction": "do it", "task_type": "color_alter", "source": "img/g0.png",
        "candidates": [{"id": "x1-a", "image": "img/g0-0.png", "editor": "m"}, {"id": "x1-b", "image": "img/g0-1.png", "editor": "n"}],
    }  # fmt: skip
    base.update(overrides)
    return json.dumps(base)


BAD_LINES = [
    ("{not json", "invalid JSON"),
    (
        _line(candidates=[{"id": "a", "image": "img/g0-0.png", "editor": "m"}]),
        "1 candidate(s); a group needs 2 to 8",
    ),
    (_line(instruction=""), "'instruction' must be a non-empty string"),
    (_line(source="../outside.png"), "escapes the bundle"),
    (_line(source="/etc/passwd"), "must be relative"),
    (_line(source="img/missing.png"), "not found"),
    (_line(source="notes.txt"), "is not an image"),
    (_line(source="img/truncated.png"), "unreadable or truncated"),
    (_line(candidiates=[]), "unknown field(s) 'candidiates'"),
    (_line(id="g0"), "duplicate group id 'g0' (first on line 1)"),
    (
        _line(
            candidates=[
                {"id": "g0-0", "image": "img/g0-0.png", "editor": "m"},
                {"id": "z", "image": "img/g0-1.png", "editor": "m"},
            ]
        ),
        "duplicate candidate id 'g0-0'",
    ),
    (_line(source="img/huge.png"), "megapixels"),
    ("[1, 2]", "each line must be a JSON object"),
    (_line(gold={"overall": [["x1-a", "~", "x1-b"]]}), "operator '~' is not one of"),
    (_line(gold={"overall": [["x1-a", ">", "g0-0"]]}), "two different candidates of this group"),
    (_line(gold={"overall": [[["x1-a"], ">", "x1-b"]]}), "must be three strings"),
    (_line(gold={"aesthetics": [["x1-a", ">", "x1-b"]]}), "gold: unknown dimension 'aesthetics'"),
    (_line(gold=[]), "'gold' must be a non-empty object"),
    (b"\xff\xfe{}".decode("latin-1"), "invalid JSON"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_LINES)
def test_one_bad_line_refuses_the_whole_import(db, tmp_path, media, bad, reason):
    bundle = write_bundle(tmp_path / "b", groups=3, candidates=2, size=32)
    (bundle / "notes.txt").write_text("hello, not an image")
    png = (bundle / "img/g1.png").read_bytes()
    (bundle / "img/truncated.png").write_bytes(png[: len(png) // 2])
    Image.new("1", (8000, 6000)).save(bundle / "img/huge.png")  # 48 MP, tiny file
    lines = (bundle / "manifest.jsonl").read_text().splitlines()
    lines.insert(2, bad)  # becomes line 3
    (bundle / "manifest.jsonl").write_text("\n".join(lines))
    with pytest.raises(CommandError) as err:
        _run(bundle)
    assert "import refused, nothing written" in str(err.value)
    assert "manifest.jsonl line 3: " in str(err.value) and reason in str(err.value)
    assert Dataset.objects.count() == 0 and Group.objects.count() == 0
    assert _media_files(media) == []  # the good images stored meanwhile were removed again


def test_symlink_escaping_the_folder_is_refused(db, tmp_path):
    bundle = write_bundle(tmp_path / "b", groups=2, candidates=2, size=32)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    os.remove(bundle / "img/g1-0.png")
    os.symlink(secret, bundle / "img/g1-0.png")
    with pytest.raises(
        CommandError, match="line 2: image 'img/g1-0.png' is a link or escapes the folder"
    ):
        _run(bundle)


def test_zip_slip_and_zip_symlink_are_refused(db, tmp_path):
    bundle = write_bundle(tmp_path / "b", groups=1, candidates=2, size=32)
    archive = tmp_path / "evil.zip"
    manifest = _line(id="e1", source="../../etc/passwd.png", candidates=[
        {"id": "e-a", "image": "img/link.png", "editor": "m"}, {"id": "e-b", "image": "img/g0-1.png", "editor": "m"}])  # fmt: skip
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.jsonl", manifest)
        zf.write(bundle / "img/g0-1.png", "img/g0-1.png")
        link = zipfile.ZipInfo("img/link.png")
        link.external_attr = 0o120777 << 16  # a symbolic link entry
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(CommandError) as err:
        _run(archive)
    assert "escapes the bundle" in str(err.value) and "is a symbolic link" in str(err.value)


def test_existing_group_ids_are_refused_and_bad_paths_named(db, tmp_path):
    bundle = write_bundle(tmp_path / "b", groups=2, candidates=2, size=32)
    _run(bundle)
    with pytest.raises(CommandError, match="line 1: group id 'g0' is already in dataset 'ds'"):
        _run(bundle)
    with pytest.raises(CommandError, match="no such file or folder"):
        _run(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(CommandError, match="not a folder or a .zip file"):
        _run(tmp_path / "x.txt")
    assert Group.objects.count() == 2


def test_metadata_that_could_name_the_editor_is_stripped(db, tmp_path):
    import io

    from PIL import PngImagePlugin

    from media.images import check_image

    image = Image.new("RGB", (40, 30), (200, 10, 10))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "model: secret-editor-v2, steps 30")
    png = io.BytesIO()
    image.save(png, "PNG", pnginfo=info)
    checked = check_image(png.getvalue(), "a.png")
    assert b"secret-editor" in png.getvalue() and b"secret-editor" not in checked.data
    assert Image.open(io.BytesIO(checked.data)).tobytes() == image.tobytes()  # same pixels

    exif = Image.Exif()
    exif[0x0131] = "secret-editor-v2"  # Software
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", exif=exif)
    checked = check_image(jpeg.getvalue(), "a.jpg")
    assert b"secret-editor" in jpeg.getvalue() and b"secret-editor" not in checked.data
    assert Image.open(io.BytesIO(checked.data)).size == (40, 30)

    rotated = Image.Exif()
    rotated[0x0112] = 6  # shown rotated 90 degrees by browsers
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", exif=rotated)
    checked = check_image(jpeg.getvalue(), "r.jpg")
    assert (checked.width, checked.height) == (30, 40)
    assert Image.open(io.BytesIO(checked.data)).size == (30, 40)


def test_oversized_zip_member_is_refused_before_it_is_read(db, tmp_path, settings):
    bundle = write_bundle(tmp_path / "b", groups=1, candidates=2, size=32)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in bundle.rglob("*"):
            if path.is_file() and path.name != "g0-1.png":
                zf.write(path, str(path.relative_to(bundle)))
        zf.writestr("img/g0-1.png", b"\0" * (26 * 1024 * 1024))  # 26 MB of zeros, tiny compressed
    with pytest.raises(
        CommandError, match=r"line 1: image 'img/g0-1.png' is 26.0 MB; the limit is 25 MB"
    ):
        _run(archive)


def test_gold_groups_import_with_their_relations(db, tmp_path, media):
    bundle = write_bundle(tmp_path / "b", groups=2, candidates=2, size=32)
    lines = [json.loads(x) for x in (bundle / "manifest.jsonl").read_text().splitlines()]
    lines[1]["gold"] = {"prompt_following": [["g1-0", ">", "g1-1"]], "consistency": [["g1-1", ">=", "g1-0"]]}  # fmt: skip
    (bundle / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    _run(bundle)
    gold = Group.objects.get(is_gold=True)
    assert gold.external_id == "g1" and gold.gold["consistency"] == [["g1-1", ">=", "g1-0"]]
    assert Group.objects.get(external_id="g0").is_gold is False
