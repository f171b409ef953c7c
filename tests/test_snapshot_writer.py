"""benchmark/ml/snapshot.py: EditReward-Bench snapshot on disk (parquet, JSONL, images, manifest)."""

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from benchmark.ml.snapshot import (
    PARQUET_NAME,
    ImageRef,
    PairRow,
    write_snapshot,
)

REPO = Path(__file__).resolve().parent.parent
META = {"dataset": "demo", "consensus": "majority"}


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (seed % 256, (seed * 7) % 256, (seed * 13) % 256)).save(buf, "PNG")
    return buf.getvalue()


class Images:
    """Tiny PNGs by name; counts how often each is read."""

    def __init__(self):
        self.data: dict[str, bytes] = {}
        self.reads: Counter = Counter()

    def ref(self, name: str, seed: int) -> ImageRef:
        self.data.setdefault(name, png(seed))

        def read():
            self.reads[name] += 1
            return self.data[name]

        return ImageRef(name=name, read=read)


def make_rows(n: int, images: Images | None = None) -> list[PairRow]:
    """n pairs over groups of 2 rows: rows of a group share the source image and
    the candidates (the same pair judged on two dimensions, swapped in the second)."""
    images = images or Images()
    rows = []
    for i in range(n):
        g = i // 2
        source = images.ref(f"src{g}.png", 1000 + g)
        a, b = images.ref(f"c{g}a.png", 2 * g), images.ref(f"c{g}b.png", 2 * g + 1)
        first = i % 2 == 0
        rows.append(
            PairRow(
                key=(f"g{g}-a", f"g{g}-b") if first else (f"g{g}-b", f"g{g}-a"),
                instruction=f"make it blue #{g} — «ünïcode»",
                input_image=source,
                output_images=(a, b) if first else (b, a),
                task_type="color" if g % 2 else "style",
                dimension="prompt_following" if first else "consistency",
                group_id=f"group-{g}",
                votes={"for": 3 + i, "against": i % 3, "tie": 1},
            )
        )
    return rows


def read_parquet(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_parquet_holds_every_field_and_the_image_bytes(tmp_path):
    images = Images()
    rows = make_rows(5, images)
    files = write_snapshot(iter(rows), tmp_path / "snap", metadata=META)

    assert files.rows == 5
    assert files.parquet == tmp_path / "snap" / "data" / "test-00000-of-00001.parquet"
    got = read_parquet(files.parquet)
    assert len(got) == len(rows)
    for row, rec in zip(rows, got, strict=True):
        assert list(rec) == [
            "key", "instruction", "input_image", "output_images",
            "task_type", "dimension", "votes", "group_id",
        ]  # fmt: skip
        assert rec["key"] == list(row.key)
        assert rec["instruction"] == row.instruction
        assert rec["input_image"] == {
            "bytes": images.data[row.input_image.name],
            "path": row.input_image.name,
        }
        preferred, other = row.output_images
        assert [o["bytes"] for o in rec["output_images"]] == [
            images.data[preferred.name],
            images.data[other.name],
        ]
        assert [o["path"] for o in rec["output_images"]] == [preferred.name, other.name]
        assert rec["task_type"] == row.task_type
        assert rec["dimension"] == row.dimension
        assert rec["votes"] == row.votes
        assert rec["group_id"] == row.group_id
    # The second row of a group swapped the pair: the preferred image really moved.
    assert got[1]["output_images"][0]["bytes"] == got[0]["output_images"][1]["bytes"]
    assert got[0]["output_images"][0]["bytes"] != got[0]["output_images"][1]["bytes"]


def test_jsonl_has_the_same_rows_with_image_paths(tmp_path):
    rows = make_rows(4)
    files = write_snapshot(rows, tmp_path / "snap", metadata=META)

    lines = files.jsonl.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "key": list(r.key),
            "instruction": r.instruction,
            "input_image": f"images/{r.input_image.name}",
            "output_images": [f"images/{o.name}" for o in r.output_images],
            "task_type": r.task_type,
            "dimension": r.dimension,
            "votes": r.votes,
            "group_id": r.group_id,
        }
        for r in rows
    ]
    for line in lines:  # every path resolves inside the snapshot
        rec = json.loads(line)
        for rel in [rec["input_image"], *rec["output_images"]]:
            assert (files.jsonl.parent / rel).is_file()


def test_each_image_is_written_and_read_once(tmp_path):
    images = Images()
    rows = make_rows(6, images)  # 3 groups: 3 sources + 6 candidates, each used twice
    files = write_snapshot(rows, tmp_path / "snap", metadata=META)

    written = sorted(p.name for p in files.images_dir.iterdir())
    assert written == sorted(images.data)
    assert len(written) == 9 == files.images
    for name, data in images.data.items():
        assert (files.images_dir / name).read_bytes() == data
    assert set(images.reads.values()) == {1}
    assert json.loads(files.manifest.read_text())["files"]["images"]["count"] == 9


def test_manifest(tmp_path):
    files = write_snapshot(make_rows(3), tmp_path / "snap", metadata=META)

    manifest = json.loads(files.manifest.read_text())
    assert manifest["format"] == "editreward-bench"
    assert manifest["rows"] == 3
    assert manifest["sha256"] == files.sha256
    assert manifest["metadata"] == META
    assert manifest["dimensions"] == {"consistency": 1, "prompt_following": 2}
    assert manifest["files"]["parquet"]["path"] == PARQUET_NAME
    assert manifest["files"]["parquet"]["bytes"] == files.parquet.stat().st_size
    assert manifest["files"]["jsonl"]["path"] == "pairs.jsonl"
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == [
        "data", "images", "manifest.json", "pairs.jsonl",
    ]  # fmt: skip


def test_content_hash_is_stable_and_tracks_content(tmp_path):
    first = write_snapshot(make_rows(5), tmp_path / "a", metadata=META)
    again = write_snapshot(make_rows(5), tmp_path / "b", metadata={"other": "metadata"})
    assert again.sha256 == first.sha256
    assert len(first.sha256) == 64

    images = Images()
    rows = make_rows(5, images)
    data = bytearray(images.data["c1b.png"])
    data[-1] ^= 1  # one bit of one image
    images.data["c1b.png"] = bytes(data)
    flipped = write_snapshot(rows, tmp_path / "c", metadata=META)
    assert flipped.sha256 != first.sha256

    rows = make_rows(5)
    rows[4] = PairRow(**{**vars(rows[4]), "votes": {"for": 8, "against": 1, "tie": 2}})
    one_vote = write_snapshot(rows, tmp_path / "d", metadata=META)
    assert one_vote.sha256 != first.sha256

    reordered = write_snapshot(make_rows(5)[::-1], tmp_path / "e", metadata=META)
    assert reordered.sha256 != first.sha256


def test_refuses_a_non_empty_out_dir(tmp_path):
    out = tmp_path / "snap"
    out.mkdir()
    (out / "old.txt").write_text("previous snapshot")
    images = Images()
    with pytest.raises(FileExistsError, match="not empty"):
        write_snapshot(make_rows(2, images), out, metadata=META)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["snap"]  # no temporary left
    assert not images.reads  # refused before any work

    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(FileExistsError):
        write_snapshot(make_rows(2), afile, metadata=META)


def test_accepts_an_empty_out_dir(tmp_path):
    out = tmp_path / "snap"
    out.mkdir()
    files = write_snapshot(make_rows(2), out, metadata=META)
    assert files.rows == 2
    assert len(read_parquet(files.parquet)) == 2


def _failing_rows(rows):
    yield from rows
    raise RuntimeError("database went away")


def _failing_image(rows):
    def boom():
        raise OSError("image store unreachable")

    bad = PairRow(**{**vars(rows[-1]), "input_image": ImageRef("late.png", boom)})
    return [*rows, bad]


@pytest.mark.parametrize(
    "rows, error",
    [
        (lambda: _failing_rows(make_rows(7)), RuntimeError),
        (lambda: _failing_image(make_rows(7)), OSError),
        (lambda: [*make_rows(7), "not a row"], TypeError),
    ],
    ids=["row-iterator", "image-reader", "bad-row"],
)
@pytest.mark.parametrize("pre_existing", [False, True], ids=["absent", "empty"])
def test_failure_mid_stream_leaves_nothing(tmp_path, rows, error, pre_existing):
    out = tmp_path / "snaps" / "v1"
    if pre_existing:
        out.mkdir(parents=True)
    with pytest.raises(error):
        write_snapshot(rows(), out, metadata=META, rows_per_group=2)  # groups already flushed
    if pre_existing:
        assert list(out.iterdir()) == []
        assert [p.name for p in out.parent.iterdir()] == ["v1"]
    else:
        assert not out.exists()
        assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("name", ["../escape.png", "sub/x.png", ".hidden", ""])
def test_refuses_image_names_that_are_not_plain_file_names(tmp_path, name):
    rows = make_rows(1)
    rows[0] = PairRow(**{**vars(rows[0]), "input_image": ImageRef(name, lambda: png(1))})
    with pytest.raises(ValueError, match="plain file name"):
        write_snapshot(rows, tmp_path / "snap", metadata=META)
    assert list(tmp_path.iterdir()) == []


def test_row_groups(tmp_path):
    files = write_snapshot(make_rows(5), tmp_path / "a", metadata=META, rows_per_group=2)
    meta = pq.ParquetFile(files.parquet).metadata
    assert meta.num_rows == 5
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2, 2, 1]

    # Big images close a group early, so memory stays bounded by bytes too.
    files = write_snapshot(
        make_rows(5), tmp_path / "b", metadata=META, rows_per_group=100, max_group_bytes=1
    )
    assert pq.ParquetFile(files.parquet).metadata.num_row_groups == 5


def test_empty_snapshot(tmp_path):
    files = write_snapshot(iter(()), tmp_path / "snap", metadata=META)
    assert files.rows == 0
    table = pq.read_table(files.parquet)
    assert table.num_rows == 0
    assert table.schema.names[:6] == [
        "key", "instruction", "input_image", "output_images", "task_type", "dimension",
    ]  # fmt: skip
    assert b"huggingface" in table.schema.metadata
    assert files.jsonl.read_bytes() == b""
    assert list(files.images_dir.iterdir()) == []
    assert json.loads(files.manifest.read_text())["rows"] == 0


def test_huggingface_schema_metadata_declares_image_features(tmp_path):
    files = write_snapshot(make_rows(2), tmp_path / "snap", metadata=META)
    schema = pq.read_schema(files.parquet)
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]

    assert list(features) == schema.names
    assert features["input_image"] == {"_type": "Image"}
    assert features["output_images"] == {"feature": {"_type": "Image"}, "_type": "Sequence"}
    assert features["key"] == {
        "feature": {"dtype": "string", "_type": "Value"},
        "_type": "Sequence",
    }
    for name in ("instruction", "task_type", "dimension", "group_id"):
        assert features[name] == {"dtype": "string", "_type": "Value"}
    assert set(features["votes"]) == {"for", "against", "tie"}
    # The arrow types are the ones the Image feature stores.
    image = schema.field("input_image").type
    assert [(f.name, str(f.type)) for f in image] == [("bytes", "binary"), ("path", "string")]
    assert schema.field("output_images").type.value_type == image


def test_importing_the_module_is_cheap():
    probe = (
        "import sys, benchmark.ml.snapshot; print(sorted({'pyarrow', 'django'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
