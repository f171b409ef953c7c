"""Small benchmark datasets written as real snapshots, for benchmark tests."""

import io

import pyarrow as pa
from PIL import Image

from benchmark.ml.snapshot import ImageRef, PairRow, write_snapshot

# The published EditReward-Bench parquet layout, as the `datasets` library stores it.
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PUBLISHED_FIELDS = [
    ("key", pa.list_(pa.string())),
    ("instruction", pa.string()),
    ("input_image", IMAGE_STRUCT),
    ("output_images", pa.list_(IMAGE_STRUCT)),
    ("task_type", pa.string()),
    ("dimension", pa.string()),
]

TASKS = ["subject-add", "color_alter", "extract", "text_change"]
DIMS = ["prompt_following", "consistency", "overall"]


def png(value: int, size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, (value * 7) % 256)).save(buffer, "PNG")
    return buffer.getvalue()


def _ref(name: str, data: bytes) -> ImageRef:
    return ImageRef(name=name, read=lambda: data)


def make_snapshot(root, *, groups=4) -> tuple:
    """groups x (3 candidates a > b > c) x 3 dimensions: 9 strict pairs per group.
    Returns (path, human order {candidate: rank}) so scores can be made to agree."""
    rows, rank = [], {}
    for g in range(groups):
        source = png(g * 40)
        cands = {f"g{g}-{x}": png(g * 40 + i + 1) for i, x in enumerate("abc")}
        for i, key in enumerate(cands):
            rank[key] = i
        for dim in DIMS:
            for better, worse in (("a", "b"), ("a", "c"), ("b", "c")):
                k0, k1 = f"g{g}-{better}", f"g{g}-{worse}"
                rows.append(PairRow(
                    key=(k0, k1), instruction=f"edit {g}", input_image=_ref(f"s{g}.png", source),
                    output_images=(_ref(f"{k0}.png", cands[k0]), _ref(f"{k1}.png", cands[k1])),
                    task_type=TASKS[g % len(TASKS)], dimension=dim, group_id=f"g{g}",
                    votes={"for": 3, "against": 0, "tie": 0},
                ))  # fmt: skip
    path = root / "snap"
    write_snapshot(rows, path, metadata={"dataset": "test"})
    return path, rank


def make_identical_pair_snapshot(root):
    """One group whose two candidates, x (preferred) and y, have identical bytes."""
    source, same = png(10), png(99)
    rows = [
        PairRow(
            key=("x", "y"), instruction="edit", input_image=ImageRef("s.png", lambda: source),
            output_images=(ImageRef("x.png", lambda: same), ImageRef("y.png", lambda: same)),
            task_type="extract", dimension=dim, group_id="g", votes={"for": 2, "against": 0, "tie": 0},
        )
        for dim in DIMS
    ]  # fmt: skip
    path = root / "twins"
    write_snapshot(rows, path, metadata={})
    return path
