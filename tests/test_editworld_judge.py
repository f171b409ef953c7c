"""The demo's pre-trained tiny EditScore (editworld/judge.py): built from EditWorld truth by the
fine-tuning code, merged into a checkpoint folder any fine-tune or scorer loads, cached by its
recipe, and run as a job with progress."""

import json
import re

import pytest

from editworld.judge import READY, JudgeRecipe, build_cached_judge, truth_examples

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SMALL = JudgeRecipe(groups=3, steps=6, width=16, vocab_size=400)


def test_targets_are_the_truth_on_the_score_range(tmp_path):
    from editworld.dataset import read_truth, write_bundle

    bundle = write_bundle(tmp_path / "b", groups=2, candidates=3, size=64, seed=31)
    examples = truth_examples(bundle)
    assert len(examples) == 2 * 2 * 3  # SC and PQ per candidate
    truth = list(read_truth(bundle).values())[0]
    sc, pq = (json.loads(e.target)["score"] for e in examples[:2])
    assert sc == [round(25 * truth.prompt_following), round(25 * truth.consistency)]
    assert pq == [round(25 * truth.quality)] * 2


def test_the_judge_is_built_once_and_loads_like_any_checkpoint(tmp_path):
    from rewardmodel.ml.model import EditScore, ScoreItem
    from tests.benchmark_fixtures import png

    steps = []
    folder = build_cached_judge(tmp_path, SMALL, on_step=lambda s, m: steps.append(s))
    assert steps == list(range(1, 7)) and (folder / READY).is_file()
    log = json.loads((folder / READY).read_text())
    assert log["recipe"]["steps"] == 6 and len(log["losses"]) == 6
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json",
            "chat_template.jinja"} <= {p.name for p in folder.iterdir()}  # fmt: skip
    # the merged weights differ from a fresh base's: the pre-training is in them
    from safetensors.torch import load_file

    from rewardmodel.ml.tiny import build_tiny_editscore

    fresh = load_file(build_tiny_editscore(tmp_path / "fresh", width=16) / "model.safetensors")
    merged = load_file(folder / "model.safetensors")
    assert fresh.keys() == merged.keys()
    assert any(not (fresh[k] == merged[k]).all() for k in fresh)
    scorer = EditScore.from_pretrained(folder)
    [result] = scorer.score([ScoreItem("make it red", png(10, (64, 64)), png(200, (64, 64)))])
    assert len(result["raw"]) >= 2  # it answered the SC and the PQ prompt
    # cached: a second call builds nothing; another recipe is another folder
    again = build_cached_judge(tmp_path, SMALL, on_step=lambda s, m: steps.append(s))
    assert again == folder and len(steps) == 6
    assert JudgeRecipe(groups=4, steps=6).key() != SMALL.key()


@pytest.mark.django_db
def test_the_demo_runs_it_as_a_job_with_progress(settings, tmp_path, monkeypatch):
    from demo import loop as demo
    from demo.jobs import JudgeJobConfig
    from jobs.models import Job
    from jobs.runner import run_job

    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(JudgeJobConfig, "recipe", lambda self: SMALL)
    folder, job_id = demo.queue_judge()
    assert job_id is not None and not folder.exists()
    assert demo.queue_judge() == (folder, job_id)  # a second demo waits for the same build
    assert run_job(job_id, worker="test") == "succeeded", Job.objects.get(pk=job_id).error
    job = Job.objects.get(pk=job_id)
    assert job.result == {"folder": str(folder)} and job.progress == 1.0
    assert re.fullmatch(r"step 6 of 6, loss \d+\.\d{3}", job.progress_message)
    assert demo.queue_judge() == (folder, None)
    assert demo.wait_for_judge(folder, None, timeout=1) == folder
