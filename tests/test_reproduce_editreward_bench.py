"""benchmarks/reproduce_editreward_bench.py: its plumbing, on the tiny EditScore and a small
EditReward-Bench-format parquet folder (every task type and dimension), run as a subprocess
from its real command line. A random tiny model writes garbage, so the measured accuracies say
nothing: the tests check the table's shape and the arithmetic beside the published figures."""

import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from benchmark.ml.metric import DIMENSIONS, TASK_GROUPS, evaluate, pairs_from_rows
from tests.benchmark_fixtures import PUBLISHED_FIELDS

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "reproduce_editreward_bench.py"
PUBLISHED = json.loads((REPO / "benchmark/data/published_editreward_bench.json").read_text())[
    "results"
]
TASKS = [task for tasks in TASK_GROUPS.values() for task in tasks]
SCHEMA = pa.schema(PUBLISHED_FIELDS)


def png(seed: int, size=(56, 56)) -> dict:
    image = Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256))
    image.paste((255 - seed % 256, 0, seed % 256), (seed % 20, 8, seed % 20 + 24, 40))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return {"bytes": out.getvalue(), "path": f"{seed}.png"}


def bench_rows() -> list[dict]:
    """One source and two candidates per task type, judged on the three dimensions (the
    second candidate preferred on consistency): 39 pairs, 26 candidates."""
    rows = []
    for t, task in enumerate(TASKS):
        a, b = f"{task}/a", f"{task}/b"
        images = {a: png(3 * t), b: png(3 * t + 1, size=(48, 64))}  # b: another size
        for dimension in DIMENSIONS:
            keys = [b, a] if dimension == "consistency" else [a, b]
            rows.append(
                {
                    "key": keys,
                    "instruction": f"{task.replace('_', ' ')}: make the box red",
                    "input_image": png(3 * t + 2),
                    "output_images": [images[k] for k in keys],
                    "task_type": task,
                    "dimension": dimension,
                }
            )
    return rows


def write_bench(folder: Path, rows: list[dict], schema=SCHEMA) -> Path:
    """The layout of the downloaded dataset: data/test-00000-of-00001.parquet."""
    path = folder / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=16)
    return path


def run_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bench") / "EditReward-Bench"
    write_bench(folder, bench_rows())
    return folder


@pytest.fixture(scope="module")
def tiny_run(bench, tiny_dir, tmp_path_factory):
    """One run of the script: K=1 and K=4, compared with EditScore-7B (and its Avg@4 row)."""
    out = tmp_path_factory.mktemp("out") / "result.json"
    started = time.perf_counter()
    proc = run_script(
        "--bench", str(bench), "--base", str(tiny_dir), "--name", "EditScore-7B",
        "--k", "1", "4", "--device", "cpu", "--batch-size", "26", "--threads", "1",
        "--set", "max_new_tokens=4", "--set", "retries=0", "--out", str(out),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc, result, out, seconds


def test_prints_a_json_result_with_k1_and_k4(tiny_run, bench, tiny_dir):
    proc, result, out, _ = tiny_run
    assert json.loads(out.read_text()) == result  # --out holds the printed result
    assert result["pairs"] == 39 and result["candidates"] == 26
    assert result["bench"] == str(bench.resolve()) and result["split"] == "test"
    assert result["base"] == str(tiny_dir.resolve()) and result["adapter"] is None
    assert result["options"] == {"max_new_tokens": 4, "retries": 0}
    assert [r["k"] for r in result["results"]] == [1, 4]
    for entry in result["results"]:
        assert entry["scorer_config"]["kind"] == "editscore"
        assert entry["scorer_config"]["k"] == entry["k"]
        assert entry["scorer_config"]["max_new_tokens"] == 4
        assert f"k={entry['k']}" in entry["spec"]
        assert entry["candidates"] == 26
        assert 0 <= entry["unscored_candidates"] <= 26
        assert entry["metric"]["n_pairs"]["total"] == 39
        # Each candidate's score is reused in all its pairs: an unscored one loses them all.
        assert entry["metric"]["n_unscored"]["total"] <= 39
    assert [r["published_row"] for r in result["results"]] == [
        "EditScore-7B",
        "EditScore-7B Avg@4",
    ]


def test_every_task_and_group_is_compared_with_the_published_row(tiny_run):
    _, result, _, _ = tiny_run
    for entry in result["results"]:
        row = PUBLISHED[entry["published_row"]]
        compared = entry["comparison"]
        assert list(compared["groups"]) == list(TASK_GROUPS)
        assert list(compared["tasks"]) == TASKS
        levels = [(compared["headline"], row["Overall"])]
        levels += [(compared["groups"][g], row[g]) for g in TASK_GROUPS]
        for cells, figures in levels:
            for dim in DIMENSIONS:
                cell = cells[dim]
                assert 0.0 <= cell["measured"] <= 1.0
                assert cell["published"] == figures[dim]
                assert cell["delta"] == pytest.approx(cell["measured"] - figures[dim])
        for task in TASKS:
            for dim in DIMENSIONS:
                cell = compared["tasks"][task][dim]
                assert 0.0 <= cell["measured"] <= 1.0
                assert cell["published"] is None and cell["delta"] is None  # not published
        # The headline is the unweighted mean over the 13 tasks, groups over their tasks.
        metric = entry["metric"]
        for dim in DIMENSIONS:
            tasks = [metric["tasks"][t][dim] for t in TASKS]
            assert metric["overall"][dim] == pytest.approx(sum(tasks) / 13)
            assert compared["headline"][dim]["measured"] == metric["overall"][dim]


def test_the_printed_table_shows_measured_published_and_delta(tiny_run):
    proc, result, _, _ = tiny_run
    text = proc.stdout
    assert 'K=1 (Avg@1) against published "EditScore-7B"' in text
    assert 'K=4 (Avg@4) against published "EditScore-7B Avg@4"' in text
    tables = text.split("K=4 (Avg@4)")
    for entry, part in zip(result["results"], tables, strict=True):
        lines = part.splitlines()
        labels = ["headline (13 tasks)", *TASK_GROUPS, *(f"  {t}" for t in TASKS)]
        for label in labels:
            assert any(line.startswith(label + " ") for line in lines), label
        compared = entry["comparison"]
        headline = next(line for line in lines if line.startswith("headline (13 tasks)"))
        expected = []
        for dim in DIMENSIONS:
            cell = compared["headline"][dim]
            expected += [f"{cell['measured']:.3f}", f"{cell['published']:.3f}",
                         f"{cell['delta']:+.3f}"]  # fmt: skip
        assert headline.split()[3:] == expected
        scene = next(line for line in lines if line.startswith("Scene "))
        row = PUBLISHED[entry["published_row"]]["Scene"]
        assert [f"{row[d]:.3f}" for d in DIMENSIONS] == scene.split()[2::3]


def test_the_run_reports_its_size_and_is_quick(tiny_run):
    proc, _, _, seconds = tiny_run
    assert "bench " in proc.stderr and "39 pairs, 26 candidates" in proc.stderr
    assert seconds < 120, f"the tiny run took {seconds:.0f} s"


def test_limit_scores_the_first_pairs_only(bench, tiny_dir):
    proc = run_script(
        "--bench", str(bench), "--base", str(tiny_dir), "--k", "1", "--limit", "4",
        "--device", "cpu", "--threads", "1", "--set", "max_new_tokens=2", "--set", "retries=0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["pairs"] == 4 and result["limit"] == 4
    # subject-add's three pairs and subject-remove's first: 4 candidates.
    (entry,) = result["results"]
    assert entry["candidates"] == 4 and entry["published_row"] is None
    compared = entry["comparison"]
    assert compared["tasks"]["subject-add"]["overall"]["measured"] is not None
    assert compared["tasks"]["compose"]["overall"]["measured"] is None
    assert "no published row" in proc.stdout


# ---------------------------------------------------------------- refusals


def _missing_column(folder: Path) -> tuple[Path, list[str]]:
    schema = pa.schema([f for f in SCHEMA if f.name != "dimension"])
    rows = [{k: v for k, v in r.items() if k != "dimension"} for r in bench_rows()[:3]]
    path = write_bench(folder, rows, schema)
    return path, [path.name, "missing column(s) dimension"]


def _bad_row(folder: Path) -> tuple[Path, list[str]]:
    rows = bench_rows()[:3]
    rows[1]["dimension"] = "beauty"
    rows[2]["output_images"] = rows[2]["output_images"][:1]
    path = write_bench(folder, rows)
    return path, [path.name, "row 2: dimension must be one of", "row 3: output_images must hold 2"]


def _not_parquet(folder: Path) -> tuple[Path, list[str]]:
    path = folder / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 but not really")
    return path, [path.name, "not a readable parquet file"]


def _empty(folder: Path) -> tuple[Path, list[str]]:
    folder.mkdir()
    return folder, ["the folder is empty"]


def _missing(folder: Path) -> tuple[Path, list[str]]:
    return folder, ["no such file or directory"]


@pytest.mark.parametrize("make", [_missing, _empty, _missing_column, _bad_row, _not_parquet])
def test_a_missing_or_malformed_bench_is_refused_naming_the_file(make, tmp_path, tiny_dir):
    folder = tmp_path / "EditReward-Bench"
    _, expected = make(folder)
    proc = run_script("--bench", str(folder), "--base", str(tiny_dir), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert f"EditReward-Bench folder {folder}" in proc.stderr
    for text in expected:
        assert text in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unknown_published_row_or_scorer_option_is_refused(bench, tiny_dir):
    proc = run_script("--bench", str(bench), "--base", str(tiny_dir), "--name", "EditScore-9B")
    assert proc.returncode == 2 and "'EditScore-9B' is not a published row" in proc.stderr
    assert "EditScore-7B" in proc.stderr  # the known rows are listed
    proc = run_script("--bench", str(bench), "--base", str(tiny_dir), "--set", "warp=9")
    assert proc.returncode == 2 and "unknown option(s) warp" in proc.stderr
    proc = run_script("--bench", str(bench), "--base", str(tiny_dir), "--set", "k=2")
    assert proc.returncode == 2 and "use --k instead" in proc.stderr
    proc = run_script("--bench", str(bench), "--base", str(tiny_dir), "--set", "top_k=5,seed=1")
    assert proc.returncode == 2 and "one KEY=VALUE per --set" in proc.stderr
    proc = run_script("--bench", str(bench), "--base", str(bench / "no-model"))
    assert proc.returncode == 2 and "no-model: not a folder" in proc.stderr


# ---------------------------------------------------------------- the comparison, in process


def _script_module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("reproduce_editreward_bench", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_deltas_are_measured_minus_published_on_a_scorer_that_scores():
    """Scores that get some pairs right (and a tie, which is wrong): the comparison holds the
    metric's figures and the published row's, and their differences."""
    module = _script_module()
    rows, scores = [], {}
    for t, task in enumerate(TASKS):
        for d, dim in enumerate(DIMENSIONS):
            for p in range(t % 3 + 1):
                k0, k1 = f"{task}/{dim}/{p}/0", f"{task}/{dim}/{p}/1"
                rows.append((k0, k1, task, dim))
                good = (t + d + p) % 2 == 0
                scores[k0] = {dim: 7.0 if good else 3.0}
                scores[k1] = {dim: 5.0 if p != 2 else 7.0 if good else 3.0}  # p == 2: a tie
    metric = evaluate(pairs_from_rows(rows, scores), resamples=10)
    compared = module.comparison(metric, PUBLISHED["EditScore-32B"])
    for dim in DIMENSIONS:
        head = compared["headline"][dim]
        assert head["measured"] == metric["overall"][dim]
        assert 0 < head["measured"] < 1
        assert head["delta"] == head["measured"] - PUBLISHED["EditScore-32B"]["Overall"][dim]
        for group, tasks in TASK_GROUPS.items():
            cell = compared["groups"][group][dim]
            mean = sum(metric["tasks"][t][dim] for t in tasks) / len(tasks)
            assert cell["measured"] == pytest.approx(mean)
            assert cell["delta"] == pytest.approx(mean - PUBLISHED["EditScore-32B"][group][dim])
    entry = {"k": 1, "published_row": "EditScore-32B", "comparison": compared, "metric": metric,
             "candidates": len(scores), "unscored_candidates": 0, "seconds": 0.0}  # fmt: skip
    text = module.table(entry)
    assert f"{compared['groups']['Scene']['overall']['delta']:+.3f}" in text
    # A model without an Avg@4 row is compared at K=4 with its single-pass row, and says so.
    _, rows_for = module.published_rows("Qwen2.5-VL-7B", [1, 4])
    assert rows_for == {1: "Qwen2.5-VL-7B", 4: "Qwen2.5-VL-7B"}
    _, rows_for = module.published_rows("EditScore-Qwen3-VL-8B Avg@4", [1, 4])
    assert rows_for == {1: "EditScore-Qwen3-VL-8B", 4: "EditScore-Qwen3-VL-8B Avg@4"}
    assert "single-pass row" in module.table({**entry, "k": 4, "published_row": "Qwen2.5-VL-7B"})


def test_parse_policy_reference_is_the_default_and_set_overrides_it(monkeypatch, tiny_dir):
    module = _script_module()
    args = module.parse_args(["--bench", "x", "--base", str(tiny_dir), "--device", "cpu"])
    scorer, spec = module.build_scorer(args, 4, {})
    assert spec["parse_policy"] == "reference" and spec["k"] == 4
    assert scorer.config()["parse_policy"] == "reference"
    assert scorer.config()["decoding"] == "sample" and scorer.config()["prompt_set"] == "reference"
    _, spec = module.build_scorer(args, 1, {"parse_policy": "unscored"})
    assert spec["parse_policy"] == "unscored"
    with pytest.raises(module.Refused, match="parse_policy"):
        module.build_scorer(args, 1, {"parse_policy": "zero"})
