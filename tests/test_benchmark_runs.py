"""Benchmark datasets, runs and the leaderboard, through the commands, the job
runner, the pages and the API."""

import json

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Role
from benchmark import runs as runs_module
from benchmark.models import (
    BenchmarkCandidate,
    BenchmarkDataset,
    BenchmarkPair,
    BenchmarkRun,
    ScoreCache,
)
from jobs.models import Job
from jobs.runner import run_job
from tests.benchmark_fixtures import DIMS, make_snapshot, png
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BENCHMARK_SCORES_DIR = tmp_path  # the scores files the tests write


def _scores_file(path, rank, *, agree=True, drop=()):
    lines = []
    for key, r in rank.items():
        if key in drop:
            continue
        value = (10 - r) if agree else 5.0
        lines.append(
            json.dumps(
                {"key": key, "prompt_following": value, "consistency": value, "overall": value}
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def bench(tmp_path):
    path, rank = make_snapshot(tmp_path)
    call_command("import_benchmark", str(path), "--name", "mini")
    return BenchmarkDataset.objects.get(name="mini"), rank


def test_import_stores_candidates_once_and_pairs_in_order(bench):
    dataset, rank = bench
    assert dataset.layout == "snapshot" and dataset.rows == 4 * 9
    assert BenchmarkCandidate.objects.filter(dataset=dataset).count() == len(rank) == 12
    first = BenchmarkPair.objects.filter(dataset=dataset).order_by("row").first()
    assert (first.preferred.key, first.other.key, first.dimension) == (
        "g0-a",
        "g0-b",
        "prompt_following",
    )
    assert len({c.content_hash for c in BenchmarkCandidate.objects.all()}) == 12
    with pytest.raises(CommandError, match="exists already"):
        call_command("import_benchmark", dataset.source_path, "--name", "mini")


def test_import_refuses_bad_rows_and_writes_nothing(tmp_path, settings):
    folder = tmp_path / "bad"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "s.png").write_bytes(png(1))
    (folder / "images" / "a.png").write_bytes(png(2))
    good = {"key": ["a", "b"], "instruction": "x", "input_image": "images/s.png",
            "output_images": ["images/a.png", "images/a.png"], "task_type": "extract",
            "dimension": "overall"}  # fmt: skip
    rows = [
        good,
        {**good, "key": ["a"]},
        {**good, "dimension": "beauty"},
        {**good, "output_images": ["images/a.png"]},
    ]
    (folder / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(CommandError) as err:
        call_command("import_benchmark", str(folder / "pairs.jsonl"), "--name", "bad")
    message = str(err.value)
    assert "import refused, nothing written" in message
    assert "row 2" in message and "row 3" in message and "row 4" in message
    assert BenchmarkDataset.objects.count() == 0 and BenchmarkCandidate.objects.count() == 0
    media = settings.MEDIA_ROOT
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def _run(dataset, spec, label=""):
    run = runs_module.run_enqueue(dataset=dataset, scorer=spec, label=label)
    assert run_job(run.job_id, worker="test") == "succeeded", Job.objects.get(pk=run.job_id).error
    run.refresh_from_db()
    return run


def test_human_order_scores_one_and_constant_scores_zero(bench, tmp_path):
    dataset, rank = bench
    perfect = _run(dataset, {"kind": "file", "path": str(_scores_file(tmp_path / "s.jsonl", rank))})
    assert perfect.metric["overall"] == dict.fromkeys(DIMS, 1.0)
    constant = _run(dataset, {"kind": "constant", "value": 5.0})
    assert constant.metric["overall"] == dict.fromkeys(DIMS, 0.0)
    assert (
        constant.metric["n_ties"]["total"] == 36
        and constant.metric["tie_half"]["overall"]["overall"] == 0.5
    )


def test_missing_keys_are_unscored_and_wrong(bench, tmp_path):
    dataset, rank = bench
    scores = _scores_file(tmp_path / "s.jsonl", rank, drop={"g0-a"})
    run = _run(dataset, {"kind": "file", "path": str(scores)})
    # g0 (subject-add) loses its 2 pairs with g0-a of 3, per dimension: task accuracy 1/3.
    assert run.metric["tasks"]["subject-add"]["overall"] == pytest.approx(1 / 3)
    assert run.metric["n_unscored"]["overall"] == 2
    assert run.metric["overall"]["overall"] == pytest.approx((1 / 3 + 1 + 1 + 1) / 4)


def test_a_crashed_run_resumes_and_a_rerun_scores_nothing_twice(bench, monkeypatch):
    dataset, _ = bench
    calls = []
    real = runs_module.make_scorer

    class Flaky:
        keyed_by_candidate = False

        def __init__(self, inner, fail_after):
            self.inner, self.fail_after = inner, fail_after

        def cache_key(self):
            return self.inner.cache_key()

        def config(self):
            return self.inner.config()

        def settings(self):
            return self.inner.settings()

        def score(self, candidates):
            if fail_after is not None and len(calls) >= self.fail_after:
                raise RuntimeError("worker lost")
            calls.extend(c.key for c in candidates)
            return self.inner.score(candidates)

    fail_after = 4
    monkeypatch.setattr(
        runs_module, "make_scorer", lambda spec, **kw: Flaky(real(spec, **kw), fail_after)
    )
    run = runs_module.run_enqueue(dataset=dataset, scorer={"kind": "random", "seed": 7})
    Job.objects.filter(pk=run.job_id).update(config={**run.job.config, "batch_size": 4})
    assert run_job(run.job_id, worker="test") in ("failed", "requeued")
    assert ScoreCache.objects.count() == 4
    fail_after = None
    second = runs_module.run_enqueue(dataset=dataset, scorer={"kind": "random", "seed": 7})
    assert run_job(second.job_id, worker="test") == "succeeded"
    assert len(calls) == 12 and len(set(calls)) == 12  # every candidate scored exactly once
    third = runs_module.run_enqueue(dataset=dataset, scorer={"kind": "random", "seed": 7})
    assert run_job(third.job_id, worker="test") == "succeeded"
    assert len(calls) == 12 and ScoreCache.objects.count() == 12
    third.refresh_from_db()
    second.refresh_from_db()
    assert third.metric == second.metric


def test_benchmark_run_command_inline_and_bad_specs(bench, tmp_path, capsys):
    dataset, rank = bench
    scores = _scores_file(tmp_path / "s.jsonl", rank)
    call_command(
        "benchmark_run", "--dataset", "mini", "--scorer", f"file:path={scores}", "--inline"
    )
    out = json.loads(capsys.readouterr().out)
    assert out["overall"]["consistency"] == 1.0
    with pytest.raises(CommandError, match="no benchmark dataset named 'nope'"):
        call_command("benchmark_run", "--dataset", "nope", "--scorer", "random")
    with pytest.raises(CommandError, match="--scorer"):
        call_command("benchmark_run", "--dataset", "mini", "--scorer", "magic:x=1")
    with pytest.raises(CommandError, match="needs option base"):
        call_command("benchmark_run", "--dataset", "mini", "--scorer", "editscore")
    with pytest.raises(CommandError, match="not a folder"):
        call_command("benchmark_run", "--dataset", "mini", "--scorer", "editscore:base=/nowhere")
    assert BenchmarkRun.objects.count() == 1


def test_leaderboard_shows_measured_and_reported_rows(client, bench, tmp_path, settings):
    dataset, rank = bench
    run = _run(
        dataset,
        {"kind": "file", "path": str(_scores_file(tmp_path / "s.jsonl", rank))},
        label="oracle",
    )
    # Anonymous: login first, unless public read is on.
    assert client.get("/benchmark/").status_code == 302
    assert client.get("/api/benchmark/leaderboard/").status_code in (401, 403)
    settings.BENCHMARK_PUBLIC_READ = True
    page = client.get("/benchmark/").content.decode()
    assert "oracle" in page and "EditScore-7B" in page and "badge reported" in page
    assert "Evaluate a reward model" not in page  # the run form is for researchers
    rows = client.get("/api/benchmark/leaderboard/").json()
    measured = [r for r in rows if r["source"] == "measured"]
    reported = {r["label"]: r for r in rows if r["source"] == "reported"}
    assert [r["label"] for r in measured] == ["oracle"]
    assert "scorer" not in measured[0]  # a spec may name server paths: not for anonymous readers
    assert reported["EditScore-7B"]["overall"]["prompt_following"] == 0.592
    detail = client.get(f"/benchmark/runs/{run.pk}/").content.decode()
    assert 'id="heatmap"' in detail and "subject-add" in detail
    compare = client.get(f"/benchmark/compare/?a={run.pk}&b=reported:EditScore-7B")
    assert compare.status_code == 200 and "Subject" in compare.content.decode()


def test_researchers_start_runs_from_the_page_and_the_api(client, bench):
    dataset, _ = bench
    annotator = UserFactory(username="anna")
    client.force_login(annotator)
    assert (
        client.post("/benchmark/", {"dataset": dataset.pk, "scorer": "random"}).status_code == 403
    )
    assert (
        client.post(
            "/api/benchmark/runs/",
            {"dataset": "mini", "scorer": "random"},
            content_type="application/json",
        ).status_code
        == 403
    )
    client.force_login(UserFactory(username="rita", role=Role.RESEARCHER))
    response = client.post(
        "/benchmark/", {"dataset": dataset.pk, "scorer": "random:seed=3", "label": "coin"}
    )
    assert response.status_code == 302
    run = BenchmarkRun.objects.get(label="coin")
    assert run.scorer == {"kind": "random", "seed": 3} and run.job.queue == "default"
    bad = client.post("/benchmark/", {"dataset": dataset.pk, "scorer": "nonsense:"})
    assert bad.status_code == 400 and b'id="run-error"' in bad.content
    api = client.post(
        "/api/benchmark/runs/",
        {"dataset": "mini", "scorer": {"kind": "constant"}, "label": "flat"},
        content_type="application/json",
    )
    assert api.status_code == 202 and BenchmarkRun.objects.filter(label="flat").exists()
    assert (
        client.post("/api/benchmark/runs/", [1], content_type="application/json").status_code == 400
    )
    listed = client.get("/api/benchmark/runs/").json()
    assert {r["label"] for r in listed} == {"coin", "flat"}


def test_scores_files_of_runs_come_from_the_scores_folder(bench, tmp_path, settings):
    dataset, rank = bench
    outside = tmp_path.parent / "elsewhere.jsonl"
    _scores_file(outside, rank)
    for path in (str(outside), "../elsewhere.jsonl", "/etc/passwd", "/dev/zero", "missing.jsonl"):
        with pytest.raises(Exception, match="inside the scores folder"):
            runs_module.run_enqueue(dataset=dataset, scorer={"kind": "file", "path": path})
    assert BenchmarkRun.objects.count() == 0 and Job.objects.count() == 0
    _scores_file(tmp_path / "ok.jsonl", rank)
    run = _run(dataset, {"kind": "file", "path": "ok.jsonl"})  # relative to the folder
    assert run.metric["overall"]["overall"] == 1.0


def test_file_scores_follow_candidate_ids_even_for_identical_images(tmp_path, settings):
    """Two candidates with the same bytes but different ids keep their own file scores."""
    from tests.benchmark_fixtures import make_identical_pair_snapshot

    path = make_identical_pair_snapshot(tmp_path)
    call_command("import_benchmark", str(path), "--name", "twins")
    dataset = BenchmarkDataset.objects.get(name="twins")
    lines = [
        {"key": "x", "prompt_following": 9, "consistency": 9, "overall": 9},
        {"key": "y", "prompt_following": 1, "consistency": 1, "overall": 1},
    ]
    (tmp_path / "twins.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    run = _run(dataset, {"kind": "file", "path": "twins.jsonl"})
    assert run.metric["overall"] == dict.fromkeys(DIMS, 1.0)


def test_editscore_scorer_runs_a_benchmark_on_the_tiny_model(bench, tiny_dir):
    """The editscore path for real: the run's worker loads the tiny Qwen2.5-VL through
    EditScore.from_pretrained and generates; an untrained model writes no valid JSON, so
    every candidate is unscored (raw text kept on the run), nothing is cached, nothing
    invented, and every pair counts as wrong."""
    dataset, rank = bench
    spec = {
        "kind": "editscore",
        "base": str(tiny_dir),
        "max_new_tokens": 8,
        "retries": 0,
        "device": "cpu",
    }
    run = _run(dataset, spec)
    assert run.job.queue == "gpu"
    assert run.metric["n_unscored"]["total"] == dataset.rows
    assert run.metric["overall"] == dict.fromkeys(DIMS, 0.0)
    assert len(run.unscored) == len(rank) and all(u["raw"] for u in run.unscored.values())
    assert ScoreCache.objects.count() == 0


def test_run_page_says_how_answers_became_scores(client, bench, tiny_dir):
    """Every setting that determines the scores is recorded with the run (defaults included)
    and its page says which parse policy, prompts and decoding were used; model folders are
    for researchers only."""
    dataset, _ = bench
    spec = {"kind": "editscore", "base": str(tiny_dir), "k": 4, "parse_policy": "reference"}
    run = runs_module.run_enqueue(dataset=dataset, scorer=spec, label="es")
    config = run.scorer_config
    assert (config["parse_policy"], config["decoding"], config["prompt_set"]) == (
        "reference",
        "sample",
        "reference",
    )
    assert config["seed"] == 42 and config["temperature"] == 0.7 and config["max_pixels"] is None
    client.force_login(UserFactory(username="rita", role=Role.RESEARCHER))
    page = client.get(f"/benchmark/runs/{run.pk}/").content.decode()
    assert 'id="scoring-settings"' in page and "as the authors&#x27; package" in page
    assert "prompts <strong>reference</strong>" in page and str(tiny_dir) in page
    assert "parse policy <strong>reference</strong>" in page
    client.force_login(UserFactory(username="anna"))
    page = client.get(f"/benchmark/runs/{run.pk}/").content.decode()
    assert "as the authors&#x27; package" in page and str(tiny_dir) not in page
    other = {**spec, "parse_policy": "unscored"}
    key = runs_module.build_scorer(spec).cache_key()
    assert runs_module.build_scorer(other).cache_key() != key  # the policy is in the cache key
    assert run.scorer_key == "" and config["base_fingerprint"] == "computed when the run starts"


def test_queuing_an_editscore_run_reads_no_model_file(bench, tiny_dir, monkeypatch):
    """A web request that queues a run must not walk a model's folder (a 6 GB folder held
    SQLite's write lock for 100 s): the fingerprint is the worker's job."""
    from benchmark.ml import scorers
    from jobs.registry import InvalidJobConfig

    dataset, _ = bench

    def refuse(path):
        raise AssertionError(f"read {path} while queuing")

    monkeypatch.setattr(scorers, "folder_fingerprint", refuse)
    run = runs_module.run_enqueue(
        dataset=dataset, scorer={"kind": "editscore", "base": str(tiny_dir)}
    )
    assert run.scorer_config["base_fingerprint"] == "computed when the run starts"
    with pytest.raises(InvalidJobConfig, match="not a folder"):
        runs_module.run_enqueue(dataset=dataset, scorer={"kind": "editscore", "base": "/nowhere"})


def test_a_runs_default_name_shows_no_server_path_or_address():
    """Everyone who may read the leaderboard (annotators too) reads a run's default name."""
    label = runs_module.spec_label({
        "kind": "editscore", "base": "/srv/models/EditScore-7B/", "adapter": "/srv/a/adapter",
        "k": 4, "base_url": "http://10.0.0.5:8000/v1",
    })  # fmt: skip
    assert label == "editscore:base=…/EditScore-7B,adapter=…/adapter,k=4"
    assert runs_module.spec_label({"kind": "pixel"}) == "pixel"
