"""benchmark/ml/bench_data.py: reading and validating EditReward-Bench datasets (no database)."""

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from benchmark.ml import bench_data
from benchmark.ml.bench_data import (
    DIMENSIONS,
    MAX_ERRORS,
    DatasetInvalid,
    detect,
    read_rows,
    validate,
)
from benchmark.ml.snapshot import ImageRef, PairRow, write_snapshot
from tests.benchmark_fixtures import PUBLISHED_FIELDS

REPO = Path(__file__).resolve().parent.parent
SCHEMA = pa.schema(
    [
        *PUBLISHED_FIELDS,
        ("votes", pa.struct([("for", pa.int64()), ("against", pa.int64()), ("tie", pa.int64())])),
        ("group_id", pa.string()),
    ]
)


def png(seed: int, size=(3, 2)) -> bytes:
    buf = io.BytesIO()
    colour = (seed % 256, (seed * 7) % 256, (seed * 13 + 5) % 256)
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def make_rows(n: int) -> list[dict]:
    """n valid rows over groups of 3: each group is one instruction with its source
    and two candidates, judged on the three dimensions (the last one swapped)."""
    rows = []
    for i in range(n):
        g, d = divmod(i, 3)
        a, b = (f"g{g}-a", png(3 * g)), (f"g{g}-b", png(3 * g + 1))
        first, second = (b, a) if d == 2 else (a, b)
        rows.append(
            {
                "key": [first[0], second[0]],
                "instruction": f"make it blue #{g} — «ünïcode»",
                "input_image": png(3 * g + 2),
                "output_images": [first[1], second[1]],
                "task_type": "color_alter" if g % 2 else "style_change",
                "dimension": DIMENSIONS[d],
                "votes": {"for": 3 + i, "against": i % 2, "tie": 0},
                "group_id": f"group-{g}",
            }
        )
    return rows


def struct(data: bytes | None, path: str | None = None) -> dict:
    if path is None and data is not None:
        path = hashlib.sha256(data).hexdigest()[:12] + ".png"
    return {"bytes": data, "path": path}


def to_arrow(rows: list[dict]) -> list[dict]:
    """Rows with images as {bytes, path} structs (already-struct values kept)."""
    out = []
    for row in rows:
        row = dict(row)
        if isinstance(row["input_image"], bytes):
            row["input_image"] = struct(row["input_image"])
        if isinstance(row["output_images"], list):
            row["output_images"] = [
                struct(v) if isinstance(v, bytes) else v for v in row["output_images"]
            ]
        out.append(row)
    return out


def write_parquet(path: Path, rows: list[dict], schema=SCHEMA, row_group_size=4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(to_arrow(rows), schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Images under images/ beside the JSONL, named by content; paths relative."""
    folder = path.parent
    (folder / "images").mkdir(parents=True, exist_ok=True)

    def put(data):
        if not isinstance(data, bytes):
            return data  # already a path (or a deliberately odd value)
        name = f"images/{hashlib.sha256(data).hexdigest()[:16]}.png"
        (folder / name).write_bytes(data)
        return name

    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            row = dict(row)
            row["input_image"] = put(row["input_image"])
            if isinstance(row["output_images"], list):
                row["output_images"] = [put(v) for v in row["output_images"]]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def as_read(rows: list[dict]) -> list[tuple]:
    return [
        (
            tuple(r["key"]),
            r["instruction"],
            r["task_type"],
            r["dimension"],
            r["input_image"],
            tuple(r["output_images"]),
            {"votes": r["votes"], "group_id": r["group_id"]},
        )
        for r in rows
    ]


def got(source) -> list[tuple]:
    return [
        (r.key, r.instruction, r.task_type, r.dimension, r.input_image, r.output_images, r.extra)
        for r in read_rows(source)
    ]


def errors_of(path, split=None) -> list[str]:
    with pytest.raises(DatasetInvalid) as info:
        validate(path, split)
    return info.value.errors


# ---------------------------------------------------------------- layouts


def test_parquet_folder_is_detected_and_read_back_exactly(tmp_path):
    rows = make_rows(9)
    file = write_parquet(tmp_path / "ds" / "data" / "test-00000-of-00001.parquet", rows)
    source = detect(tmp_path / "ds")
    assert (source.layout, source.files, source.split) == ("parquet", [file], "test")
    assert (source.manifest, source.name, source.folder) == (None, "ds", tmp_path / "ds")
    assert got(source) == as_read(rows)
    assert [r.number for r in read_rows(source)] == list(range(1, 10))
    assert validate(tmp_path / "ds") == (source, 9)
    json.dumps([r.extra for r in read_rows(source)])  # JSON-ready


def test_single_parquet_file_and_nested_folders_without_data_dir(tmp_path):
    rows = make_rows(4)
    file = write_parquet(tmp_path / "ds" / "default" / "test" / "test.parquet", rows)
    write_parquet(tmp_path / "ds" / ".cache" / "test-stale.parquet", make_rows(2))  # hidden
    source = detect(tmp_path / "ds")
    assert (source.layout, source.files, source.split) == ("parquet", [file], "test")
    assert got(source) == as_read(rows)

    one = detect(file)
    assert (one.layout, one.files, one.split, one.folder) == (
        "parquet",
        [file],
        "test",
        file.parent,
    )
    assert got(one) == as_read(rows)


def test_parquet_without_extra_columns(tmp_path):
    rows = make_rows(3)
    plain = pa.schema([f for f in SCHEMA if f.name not in ("votes", "group_id")])
    bare = [{k: v for k, v in r.items() if k not in ("votes", "group_id")} for r in rows]
    write_parquet(tmp_path / "test.parquet", bare, schema=plain)
    read = list(read_rows(detect(tmp_path / "test.parquet")))
    assert [r.extra for r in read] == [{}, {}, {}]
    assert [r.output_images for r in read] == [tuple(r["output_images"]) for r in rows]


def test_plain_encoded_parquet_and_binary_image_columns(tmp_path):
    rows = make_rows(6)
    table = pa.Table.from_pylist(to_arrow(rows), schema=SCHEMA)
    pq.write_table(table, tmp_path / "test.parquet", use_dictionary=False, row_group_size=4)
    assert got(detect(tmp_path / "test.parquet")) == as_read(rows)

    raw = pa.schema(
        [
            pa.field(f.name, pa.binary())
            if f.name == "input_image"
            else pa.field(f.name, pa.list_(pa.binary()))
            if f.name == "output_images"
            else f
            for f in SCHEMA
        ]
    )
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=raw), tmp_path / "raw" / "test.parquet")
    assert got(detect(tmp_path / "raw")) == as_read(rows)


def test_parquet_linked_from_a_cache_folder(tmp_path):
    """The hub cache: data/*.parquet are links to blobs elsewhere."""
    rows = make_rows(3)
    blob = write_parquet(tmp_path / "blobs" / "0a1b2c", rows)
    link = tmp_path / "snapshots" / "rev" / "data" / "test-00000-of-00001.parquet"
    link.parent.mkdir(parents=True)
    link.symlink_to(blob)
    source = detect(tmp_path / "snapshots" / "rev")
    assert source.files == [link]
    assert got(source) == as_read(rows)


def test_jsonl_file_and_folder(tmp_path):
    rows = make_rows(6)
    file = write_jsonl(tmp_path / "ds" / "pairs.jsonl", rows)
    for path in (file, tmp_path / "ds"):
        source = detect(path)
        assert (source.layout, source.files, source.split) == ("jsonl", [file], None)
        assert source.folder == tmp_path / "ds"
        assert got(source) == as_read(rows)
        assert validate(path) == (source, 6)


def test_jsonl_skips_blank_lines_and_numbers_rows_by_line(tmp_path):
    file = write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    lines = file.read_text().splitlines()
    file.write_text("\n" + lines[0] + "\n\n" + lines[1] + "\n\n")
    assert [r.number for r in read_rows(detect(file))] == [2, 4]
    assert validate(file)[1] == 2


def test_jsonl_folder_with_parquet_is_the_parquet_layout(tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", make_rows(3))
    assert detect(tmp_path).layout == "parquet"


def snapshot_rows(rows: list[dict]) -> list[PairRow]:
    def ref(data: bytes) -> ImageRef:
        return ImageRef(name=hashlib.sha256(data).hexdigest() + ".png", read=lambda: data)

    return [
        PairRow(
            key=tuple(r["key"]),
            instruction=r["instruction"],
            input_image=ref(r["input_image"]),
            output_images=tuple(ref(o) for o in r["output_images"]),
            task_type=r["task_type"],
            dimension=r["dimension"],
            group_id=r["group_id"],
            votes=r["votes"],
        )
        for r in rows
    ]


def test_snapshot_written_by_the_exporter_is_read_back(tmp_path):
    rows = make_rows(12)
    files = write_snapshot(
        snapshot_rows(rows), tmp_path / "snap", metadata={"dataset": "demo"}, rows_per_group=5
    )
    source = detect(tmp_path / "snap")
    assert (source.layout, source.files, source.split) == ("snapshot", [files.parquet], "test")
    assert source.manifest["sha256"] == files.sha256
    assert (source.metadata, source.name) == ({"dataset": "demo"}, "snap")
    assert got(source) == as_read(rows)
    assert validate(tmp_path / "snap") == (source, 12)
    # the same snapshot read through its other files
    assert got(detect(files.parquet)) == as_read(rows)
    assert got(detect(files.jsonl)) == as_read(rows)
    with pytest.raises(DatasetInvalid, match="holds the test split only"):
        detect(tmp_path / "snap", "train")


def test_snapshot_changed_after_export_is_refused(tmp_path):
    files = write_snapshot(snapshot_rows(make_rows(6)), tmp_path / "snap", metadata={})
    manifest = json.loads(files.manifest.read_text())
    manifest["rows"] = 7
    manifest["files"]["parquet"]["sha256"] = "0" * 64
    files.manifest.write_text(json.dumps(manifest))
    assert errors_of(tmp_path / "snap") == [
        "file data/test-00000-of-00001.parquet: sha256 differs from the manifest's "
        "(changed after export)",
        "manifest.json says 7 rows, the parquet holds 6",
    ]
    files.parquet.unlink()
    with pytest.raises(DatasetInvalid, match="names data/test-00000-of-00001.parquet, which is"):
        detect(tmp_path / "snap")


def test_foreign_manifest_is_refused_and_a_formatless_one_ignored(tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "editloop-preferences"}))
    with pytest.raises(DatasetInvalid, match="'editloop-preferences', not 'editreward-bench'"):
        detect(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"something": "else"}))
    assert detect(tmp_path).layout == "jsonl"
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetInvalid, match="unreadable manifest"):
        detect(tmp_path)


# ---------------------------------------------------------------- splits


@pytest.fixture
def two_splits(tmp_path):
    rows = make_rows(9)
    data = tmp_path / "ds" / "data"
    test = [
        write_parquet(data / "test-00000-of-00002.parquet", rows[:5]),
        write_parquet(data / "test-00001-of-00002.parquet", rows[5:]),
    ]
    train_rows = make_rows(15)[9:]
    train = write_parquet(data / "train-00000-of-00001.parquet", train_rows)
    return tmp_path / "ds", rows, test, train_rows, train


def test_test_split_is_preferred_and_splits_never_mix(two_splits):
    folder, rows, test, _, _ = two_splits
    for split in (None, "test"):
        source = detect(folder, split)
        assert (source.split, source.files) == ("test", test)
        assert got(source) == as_read(rows)
        # numbered across the split's files, in name order
        assert [r.number for r in read_rows(source)] == list(range(1, 10))
    assert validate(folder) == (detect(folder), 9)


def test_explicit_train_split(two_splits):
    folder, _, _, train_rows, train = two_splits
    source = detect(folder, "train")
    assert (source.split, source.files) == ("train", [train])
    assert got(source) == as_read(train_rows)


def test_train_only_folder_gives_train(tmp_path):
    file = write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", make_rows(3))
    assert (detect(tmp_path).split, detect(tmp_path).files) == ("train", [file])
    with pytest.raises(DatasetInvalid, match="no test split"):
        detect(tmp_path, "test")


def test_split_mismatches_are_refused(two_splits, tmp_path):
    folder, _, test, _, _ = two_splits
    with pytest.raises(DatasetInvalid, match="split must be 'test', 'train' or None"):
        detect(folder, "validation")
    with pytest.raises(DatasetInvalid, match="is a test file, not train: two splits"):
        detect(test[0], "train")
    test[1].unlink()
    with pytest.raises(DatasetInvalid, match="incomplete: missing test-00001-of-00002.parquet"):
        detect(folder)
    write_parquet(tmp_path / "many" / "a" / "test.parquet", make_rows(2))
    write_parquet(tmp_path / "many" / "b" / "test.parquet", make_rows(2))
    with pytest.raises(DatasetInvalid, match=r"test files in several folders \(a, b\)"):
        detect(tmp_path / "many")
    assert detect(tmp_path / "many" / "a").files == [tmp_path / "many" / "a" / "test.parquet"]
    unnamed = write_parquet(tmp_path / "other" / "pairs.parquet", make_rows(2))
    with pytest.raises(DatasetInvalid, match="no parquet file named test"):
        detect(tmp_path / "other")
    assert detect(unnamed).split is None  # one file named: taken as it is


def test_rows_across_files_name_the_file_in_messages(two_splits):
    folder, _, test, _, _ = two_splits
    rows = make_rows(9)
    rows[6]["dimension"] = "aesthetics"
    write_parquet(test[1], rows[5:])
    assert errors_of(folder) == [
        "row 7 (data/test-00001-of-00002.parquet): dimension must be one of prompt_following, "
        "consistency, overall, got 'aesthetics'"
    ]


# ---------------------------------------------------------------- images by path


def test_null_bytes_fall_back_to_the_path_beside_the_parquet(tmp_path):
    rows = make_rows(3)
    data = tmp_path / "ds" / "data"
    (data / "imgs").mkdir(parents=True)
    arrow_rows = to_arrow(rows)
    (data / "imgs" / "src.png").write_bytes(rows[1]["input_image"])
    arrow_rows[1]["input_image"] = {"bytes": None, "path": "imgs/src.png"}
    (data / "imgs" / "b.png").write_bytes(rows[1]["output_images"][1])
    arrow_rows[1]["output_images"][1] = {"bytes": b"", "path": "imgs/b.png"}
    pq.write_table(pa.Table.from_pylist(arrow_rows, schema=SCHEMA), data / "test.parquet")
    assert got(detect(tmp_path / "ds")) == as_read(rows)
    assert validate(tmp_path / "ds")[1] == 3

    arrow_rows[2]["input_image"] = {"bytes": None, "path": "../../outside.png"}
    arrow_rows[2]["output_images"][0] = {"bytes": None, "path": None}
    arrow_rows[0]["output_images"][1] = {"bytes": None, "path": "imgs/nope.png"}
    pq.write_table(pa.Table.from_pylist(arrow_rows, schema=SCHEMA), data / "test.parquet")
    (tmp_path / "outside.png").write_bytes(png(1))
    assert errors_of(tmp_path / "ds") == [
        "row 1: output_images[1]: image file 'imgs/nope.png' not found",
        "row 3: input_image: image path '../../outside.png' leaves the dataset folder",
        "row 3: output_images[0] has neither bytes nor a path",
    ]


def test_jsonl_image_paths_must_stay_inside_its_folder(tmp_path):
    folder = tmp_path / "ds"
    rows, original = make_rows(6), make_rows(6)
    outside = tmp_path / "outside.png"
    outside.write_bytes(rows[0]["input_image"])
    rows[0]["input_image"] = str(outside)  # absolute
    rows[1]["input_image"] = "../outside.png"
    rows[2]["input_image"] = "images/link-out.png"
    rows[3]["output_images"] = ["images/missing.png", rows[3]["output_images"][1]]
    rows[4]["input_image"] = "images/link-in.png"  # a link inside: fine
    rows[5]["input_image"] = "images/../images/inside5.png"  # `..` staying inside: fine
    write_jsonl(folder / "pairs.jsonl", rows)
    images = folder / "images"
    (images / "link-out.png").symlink_to(outside)
    (images / "inside4.png").write_bytes(original[4]["input_image"])
    (images / "link-in.png").symlink_to(images / "inside4.png")
    (images / "inside5.png").write_bytes(original[5]["input_image"])
    assert errors_of(folder) == [
        f"row 1: input_image: image path {str(outside)!r} is absolute; it must be relative",
        "row 2: input_image: image path '../outside.png' leaves the dataset folder",
        "row 3: input_image: image path 'images/link-out.png' is a link leaving the dataset folder",
        "row 4: output_images[0]: image file 'images/missing.png' not found",
    ]
    for i in range(4):
        rows[i] = original[i]
    write_jsonl(folder / "pairs.jsonl", rows)
    assert got(detect(folder)) == as_read(original)


def test_jsonl_image_must_be_a_path_and_a_file(tmp_path):
    rows = make_rows(2)
    rows[0]["input_image"] = 42
    rows[1]["input_image"] = "images"
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert errors_of(tmp_path) == [
        "row 1: input_image must be an image path relative to the JSONL, got 42",
        "row 2: input_image: image path 'images' is not a regular file",
    ]


def test_broken_jsonl_lines_are_row_errors(tmp_path):
    file = write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    good = file.read_text()
    file.write_text(good + "{oops\n[1, 2]\n" + json.dumps({"key": ["a", "b"]}) + "\n")
    errors = errors_of(file)
    assert errors[0].startswith("row 3: not valid JSON (")
    assert errors[1:] == [
        "row 4: not a JSON object but list",
        "row 5: missing field(s) instruction, input_image, output_images, task_type, dimension",
    ]
    with pytest.raises(DatasetInvalid, match="row 3: not valid JSON"):
        list(read_rows(detect(file)))


# ---------------------------------------------------------------- row checks


ROW_CASES = {
    "key one id": (
        lambda r: r.update(key=["only"]),
        "key must hold 2 candidate ids, got 1",
    ),
    "key empty id": (
        lambda r: r.update(key=["g1-a", ""]),
        "key[1] must be a non-empty string, got ''",
    ),
    "key null": (
        lambda r: r.update(key=None),
        "key must be a list of 2 candidate ids, got None",
    ),
    "key same id twice": (
        lambda r: r.update(key=["g1-a", "g1-a"]),
        "key names the same candidate twice: 'g1-a'",
    ),
    "one output image": (
        lambda r: r.update(output_images=r["output_images"][:1]),
        "output_images must hold 2 images, got 1",
    ),
    "three output images": (
        lambda r: r.update(output_images=r["output_images"] * 2),
        "output_images must hold 2 images, got 4",
    ),
    "output images null": (
        lambda r: r.update(output_images=None),
        "output_images must be a list of 2 images, got None",
    ),
    "unknown dimension": (
        lambda r: r.update(dimension="aesthetics"),
        "dimension must be one of prompt_following, consistency, overall, got 'aesthetics'",
    ),
    "empty task type": (
        lambda r: r.update(task_type=""),
        "task_type must be a non-empty string, got ''",
    ),
    "instruction null": (
        lambda r: r.update(instruction=None),
        "instruction must be a string, got None",
    ),
    "input image null": (
        lambda r: r.update(input_image=None),
        "input_image is missing",
    ),
    "not an image": (
        lambda r: r.update(input_image=b"hello, not a picture"),
        "input_image is not an image Pillow can read",
    ),
    "truncated image": (
        lambda r: r.update(output_images=[r["output_images"][0], png(99, (64, 64))[:-40]]),
        "output_images[1] is a broken image (",
    ),
}


@pytest.mark.parametrize("case", ROW_CASES, ids=list(ROW_CASES))
@pytest.mark.parametrize("layout", ["parquet", "jsonl"])
def test_each_row_check_names_its_row(tmp_path, case, layout):
    change, message = ROW_CASES[case]
    rows = make_rows(6)
    change(rows[4])
    if layout == "parquet":
        path = write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", rows)
    else:  # images (odd bytes too) written as files by write_jsonl
        path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    errors = errors_of(tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"row 5: {message}"), errors
    with pytest.raises(DatasetInvalid) as info:
        list(read_rows(detect(path)))
    assert info.value.errors[0].startswith(f"row 5: {message}")


def test_read_rows_yields_good_rows_before_the_first_bad_one(tmp_path):
    rows = make_rows(6)
    rows[3]["task_type"] = ""
    rows[3]["dimension"] = "style"
    write_parquet(tmp_path / "test.parquet", rows)
    seen = []
    with pytest.raises(DatasetInvalid) as info:
        for row in read_rows(detect(tmp_path / "test.parquet")):
            seen.append(row.number)
    assert seen == [1, 2, 3]
    assert info.value.errors == [
        "row 4: task_type must be a non-empty string, got ''",
        "row 4: dimension must be one of prompt_following, consistency, overall, got 'style'",
    ]


def test_too_many_pixels(tmp_path):
    buf = io.BytesIO()
    Image.new("1", (8000, 5001)).save(buf, "PNG")  # 40.008 megapixels, a small file
    rows = make_rows(3)
    rows[1]["input_image"] = buf.getvalue()
    write_parquet(tmp_path / "test.parquet", rows)
    assert errors_of(tmp_path / "test.parquet") == [
        "row 2: input_image is 8000x5001 pixels (40.0 megapixels), over the 40 megapixel limit"
    ]


def test_byte_cap(tmp_path, monkeypatch):
    rows = make_rows(6)
    big = png(7, (40, 40))
    for row in rows[3:]:  # the second group's source
        row["input_image"] = big
    cap = max(len(i) for r in rows[:3] for i in [r["input_image"], *r["output_images"]])
    assert len(big) > cap
    monkeypatch.setattr(bench_data, "MAX_IMAGE_BYTES", cap)
    for path in (
        write_parquet(tmp_path / "p" / "test.parquet", rows),
        write_jsonl(tmp_path / "j" / "pairs.jsonl", rows),
    ):
        assert errors_of(path) == [
            f"row {n}: input_image is {len(big)} bytes, over the {cap} bytes limit"
            for n in (4, 5, 6)
        ]


def test_check_images_false_skips_decoding_only(tmp_path):
    rows = make_rows(3)
    for row in rows:  # the group's source
        row["input_image"] = b"not an image"
    write_parquet(tmp_path / "test.parquet", rows)
    read = list(read_rows(detect(tmp_path / "test.parquet"), check_images=False))
    assert [r.input_image for r in read] == [r["input_image"] for r in rows]
    rows[2]["key"] = ["x"]
    write_parquet(tmp_path / "test.parquet", rows)
    with pytest.raises(DatasetInvalid, match="row 3: key must hold 2"):
        list(read_rows(detect(tmp_path / "test.parquet"), check_images=False))


def test_a_candidate_keeps_its_image_instruction_and_source(tmp_path):
    rows = make_rows(9)
    rows[4]["output_images"] = [rows[4]["output_images"][0], png(500)]  # g1-b other bytes
    rows[7]["instruction"] = "something else"
    rows[8]["input_image"] = png(501)
    write_parquet(tmp_path / "test.parquet", rows)
    assert errors_of(tmp_path / "test.parquet") == [
        "row 5: candidate 'g1-b' has other image bytes than on row 4",
        "row 8: candidate 'g2-a' has another instruction than on row 7",
        "row 8: candidate 'g2-b' has another instruction than on row 7",
        "row 9: candidate 'g2-b' has another input image than on row 7",
        "row 9: candidate 'g2-a' has another input image than on row 7",
    ]


def test_the_same_pair_on_the_same_dimension_twice(tmp_path):
    rows = make_rows(6)
    rows.append(dict(rows[1]))  # again, same order
    swapped = dict(rows[3])
    swapped["key"] = swapped["key"][::-1]
    swapped["output_images"] = swapped["output_images"][::-1]
    rows.append(swapped)
    write_parquet(tmp_path / "test.parquet", rows)
    assert errors_of(tmp_path / "test.parquet") == [
        "row 7: duplicate of row 2: the pair ('g0-a', 'g0-b') on dimension 'consistency' again",
        "row 8: the pair ('g1-b', 'g1-a') on dimension 'prompt_following' repeats row 4 "
        "in the other order",
    ]


def test_validate_collects_every_error_at_once(tmp_path):
    rows = make_rows(12)
    rows[0]["key"] = ["a"]
    rows[3]["dimension"] = "x"
    rows[3]["task_type"] = ""
    rows[6]["output_images"] = [rows[6]["output_images"][0], b"junk"]
    rows[10]["instruction"] = None
    write_parquet(tmp_path / "test.parquet", rows)
    with pytest.raises(DatasetInvalid) as info:
        validate(tmp_path / "test.parquet")
    assert info.value.errors == [
        "row 1: key must hold 2 candidate ids, got 1",
        "row 4: task_type must be a non-empty string, got ''",
        "row 4: dimension must be one of prompt_following, consistency, overall, got 'x'",
        "row 7: output_images[1] is not an image Pillow can read",
        "row 11: instruction must be a string, got None",
    ]
    assert info.value.total == 5
    assert info.value.summary(limit=2).splitlines() == [
        "row 1: key must hold 2 candidate ids, got 1",
        "row 4: task_type must be a non-empty string, got ''",
        "... and 3 more",
    ]


# ---------------------------------------------------------------- files and paths


def test_broken_files(tmp_path):
    data = tmp_path / "data"
    rows = make_rows(3)
    no_dim = pa.schema([f for f in SCHEMA if f.name != "dimension"])
    write_parquet(data / "test.parquet", [{k: v for k, v in r.items()} for r in rows], no_dim)
    message = "file data/test.parquet: missing column(s) dimension"
    assert errors_of(tmp_path) == [message]
    with pytest.raises(DatasetInvalid, match=r"missing column\(s\) dimension"):
        list(read_rows(detect(tmp_path)))
    (data / "test.parquet").write_bytes(b"PAR1 not really")
    assert errors_of(tmp_path)[0].startswith("file data/test.parquet: not a readable parquet")


def test_unknown_paths(tmp_path):
    with pytest.raises(DatasetInvalid, match="no such file or directory"):
        detect(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetInvalid, match="the folder is empty"):
        detect(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.txt").write_text("hi")
    with pytest.raises(DatasetInvalid) as info:
        detect(tmp_path / "other")
    assert "no dataset found: expected .parquet files (in data/ or below), a pairs.jsonl" in str(
        info.value
    )
    with pytest.raises(DatasetInvalid, match="unknown dataset file"):
        detect(tmp_path / "other" / "readme.txt")


def test_empty_dataset_is_invalid(tmp_path):
    (tmp_path / "pairs.jsonl").write_text("\n")
    assert errors_of(tmp_path) == [f"{tmp_path / 'pairs.jsonl'}: no rows"]


def test_dataset_invalid_keeps_a_bounded_list(tmp_path):
    exc = DatasetInvalid([f"row {i}: bad" for i in range(1, 251)])
    assert exc.total == 250
    assert len(exc.errors) == MAX_ERRORS + 1
    assert exc.errors[-1] == "... and 50 more errors"
    assert exc.summary(3).splitlines() == [
        "row 1: bad",
        "row 2: bad",
        "row 3: bad",
        "... and 247 more",
    ]
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.errors, copy.total) == (exc.errors, exc.total)

    rows = make_rows(3) * 100  # 297 duplicates
    write_parquet(tmp_path / "test.parquet", rows, row_group_size=64)
    with pytest.raises(DatasetInvalid) as info:
        validate(tmp_path / "test.parquet")
    assert info.value.total == 297
    assert len(info.value.errors) == MAX_ERRORS + 1
    assert info.value.errors[0] == (
        "row 4: duplicate of row 1: the pair ('g0-a', 'g0-b') on dimension 'prompt_following' again"
    )


def test_importing_the_module_loads_neither_django_nor_pyarrow_nor_pillow():
    code = (
        "import sys, benchmark.ml.bench_data; "
        "print(sorted(m for m in ('django', 'pyarrow', 'PIL') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
