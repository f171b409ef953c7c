"""The RL job and the Best-of-N job on the tiny FLUX Kontext, run by the job runner against the
test database: prompts from an annotation dataset, metrics and evaluation samples stored,
the adapter saved, then the loop closed ("send to annotation") and Best-of-N."""

import io

import pytest

from annotation.models import Candidate, Group
from jobs.models import Job
from jobs.registry import InvalidJobConfig
from rltraining.jobs import rl_enqueue
from rltraining.models import RLRun, RLSample
from tests.annotation_fixtures import make_dataset

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("torch_one_thread")]
POLICY_OPTIONS = {"auto_resize": False, "max_sequence_length": 64, "height": 32, "width": 32,
                  "lora_r": 4}  # fmt: skip
TRAINING = {"rounds": 2, "num_steps": 4, "group_size": 4, "prompts_per_round": 2,
            "micro_batch": 2, "train_steps": 2, "eval_every": 1, "checkpoint_every": 1}  # fmt: skip


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RL_RUNS_DIR = tmp_path / "rl_runs"


@pytest.fixture(scope="module")
def kontext_dir(tmp_path_factory):
    from rltraining.ml.tiny import build_tiny_flux_kontext

    return str(build_tiny_flux_kontext(tmp_path_factory.mktemp("rljob") / "kontext", seed=0))


def config(dataset, policy, **extra):
    return {"run_name": "tiny-run", "policy": policy, "reward": {"kind": "brightness"},
            "dataset_id": dataset.pk, "eval_prompts": 2, "policy_options": POLICY_OPTIONS,
            "training": TRAINING, **extra}  # fmt: skip


def test_rl_job_trains_stores_samples_and_closes_the_loop(kontext_dir, tmp_path):
    from jobs.runner import run_job
    from rltraining.jobs import best_of_n_enqueue
    from rltraining.services import send_to_annotation

    dataset = make_dataset(groups=5, candidates=2)
    judge = {"kind": "colour", "target": [200, 30, 30]}
    run = rl_enqueue(config=config(dataset, kontext_dir, judge=judge))
    assert run.job.queue == "gpu" and run.job.kind == "rltraining.train"
    assert run_job(run.job_id, worker="test") == "succeeded", Job.objects.get(pk=run.job_id).error
    job = Job.objects.get(pk=run.job_id)
    assert job.result["rounds"] == 2 and job.result["train_prompts"] == 3
    assert job.result["eval_prompts"] == 2
    assert (tmp_path / "rl_runs" / "tiny-run" / "adapter").is_dir()
    assert sorted(job.metrics.filter(name="reward_mean").values_list("step", flat=True)) == [1, 2]
    names = set(job.metrics.values_list("name", flat=True))
    assert {"kl", "clip_fraction", "ratio_min", "ratio_max", "grad_norm", "lr", "seconds",
            "eval_reward_mean", "reward_mean/color_alter"} <= names  # fmt: skip
    evals = RLSample.objects.filter(run=run, kind="eval")
    assert sorted(set(evals.values_list("round", flat=True))) == [0, 1, 2]
    # the judge graded the same held-out samples: its metric is its reward of the stored images
    from PIL import Image

    from media.storage import read_stored
    from rltraining.ml.rewards import build_reward

    graded = job.metrics.filter(name="eval_judge_mean").order_by("step")
    assert list(graded.values_list("step", flat=True)) == [0, 1, 2]
    last = list(evals.filter(round=2).order_by("prompt_index"))
    images = [Image.open(io.BytesIO(read_stored(s.image))).convert("RGB") for s in last]
    sources = [Image.open(io.BytesIO(read_stored(s.source))).convert("RGB") for s in last]
    expected = build_reward(judge)(sources, [s.instruction for s in last], images)
    assert graded.last().value == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    assert evals.filter(round=2).count() == 2 and all(s.reward is not None for s in evals)
    held_out = set(evals.values_list("prompt_key", flat=True))
    assert len(held_out) == 2 and held_out <= set(
        Group.objects.values_list("external_id", flat=True)
    )

    # the prompts came from a rankings snapshot recorded on the run: Best-of-N reads the same
    # held-out prompts even after the dataset gained groups
    run.refresh_from_db()
    assert run.snapshot.kind == "rankings" and run.snapshot.dataset == dataset
    make_dataset("later", groups=1, candidates=2).groups.update(dataset=dataset)

    best_job = best_of_n_enqueue(run=run, n=3)
    assert run_job(best_job.pk, worker="test") == "succeeded", Job.objects.get(pk=best_job.pk).error
    best_job.refresh_from_db()
    picks = RLSample.objects.filter(run=run, kind="best_of_n")
    assert picks.count() == 2 * 3 and picks.filter(best=True).count() == 2
    assert set(picks.values_list("prompt_key", flat=True)) == held_out
    for sample in picks.filter(best=True):
        rivals = picks.filter(prompt_index=sample.prompt_index).values_list("reward", flat=True)
        assert sample.reward == max(rivals)
    assert best_job.result["best_reward_mean"] >= best_job.result["single_sample_reward_mean"]

    review = send_to_annotation(run=run, overlap=2)
    groups = Group.objects.filter(dataset=review)
    assert review.name == "rl-tiny-run" and groups.count() == 2
    editors = sorted(
        Candidate.objects.filter(group__dataset=review).values_list("editor", flat=True)
    )
    assert editors == ["base"] * 2 + ["best-of-n@2"] * 2 + ["trained@2"] * 2
    run.refresh_from_db()
    assert run.review_dataset == review


def test_resumed_job_continues_from_its_checkpoint(kontext_dir, monkeypatch):
    """A worker dies during round 2 (after round 1's checkpoint): the next claim resumes at
    round 2 from the checkpoint instead of starting over."""
    from jobs.runner import run_job
    from rltraining.ml import trainer

    dataset = make_dataset(groups=5, candidates=2)
    run = rl_enqueue(config=config(dataset, kontext_dir))
    real_train, rounds_run = trainer.train, []

    def counting_train(config, policy, reward, prompts, on_step, *args, **kw):
        def step(round_index, metrics):
            rounds_run.append(round_index)
            if round_index == 2 and rounds_run.count(2) == 1:
                raise RuntimeError("power cut")
            on_step(round_index, metrics)

        return real_train(config, policy, reward, prompts, step, *args, **kw)

    monkeypatch.setattr(trainer, "train", counting_train)
    assert run_job(run.job_id, worker="w1") == "failed"
    assert "power cut" in Job.objects.get(pk=run.job_id).error
    assert (run.output_dir / "checkpoints" / "checkpoint-1" / "state.json").is_file()
    Job.objects.filter(pk=run.job_id).update(status="queued", error="")  # the sweeper's requeue
    assert run_job(run.job_id, worker="w2") == "succeeded"
    assert rounds_run == [0, 1, 2, 2]  # round 0 = the baseline evaluation; 1 was not rerun
    job = Job.objects.get(pk=run.job_id)
    assert job.result["rounds"] == 2
    assert sorted(job.metrics.filter(name="reward_mean").values_list("step", flat=True)) == [1, 2]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dataset_id": None}, "exactly one of a dataset or an uploaded file"),
        ({"prompts_file": "x.jsonl"}, "exactly one of a dataset or an uploaded file"),
        ({"reward": {"kind": "vibes"}}, "reward must be an object whose kind is one of"),
        ({"reward": {"kind": "colour", "target": [1, 2]}}, "a colour is three integers"),
        ({"reward": {"kind": "editscore", "base": "/m", "k": 0}}, "k must be an integer >= 1"),
        ({"reward": {"kind": "editscore", "base": "/m", "n": 1}}, "unknown keys for reward kind"),
        ({"policy_options": {"lora": 4}}, "unknown policy option 'lora'"),
        ({"policy_options": {"lora_r": "4"}}, "policy option lora_r has a wrong type"),
        ({"training": {"group_size": 1}}, "group_size must be >= 2"),
        ({"training": {"lr": 1}}, "unknown RL option"),
        ({"run_name": "no spaces"}, "run_name must be"),
        ({"gpus": 0}, "gpus must be >= 1"),
        ({"gpus": 100_000}, "gpus must be <= 64"),  # a typo must not fork 100000 trainers
        ({"gpus": True}, "gpus must be an integer"),
        ({"eval_prompts": -1}, "eval_prompts must be >= 0"),
    ],
)
def test_bad_configs_are_refused_and_create_nothing(change, message):
    dataset = make_dataset(groups=2, candidates=2)
    with pytest.raises(InvalidJobConfig, match=message):
        rl_enqueue(config={**config(dataset, "/models/kontext"), **change})
    assert not RLRun.objects.exists() and not Job.objects.exists()


def test_too_few_prompts_fail_the_job_with_a_reason(kontext_dir):
    from jobs.runner import run_job

    dataset = make_dataset(groups=2, candidates=2)
    run = rl_enqueue(config=config(dataset, kontext_dir, eval_prompts=2))
    assert run_job(run.job_id, worker="test") == "failed"
    assert "not enough to hold 2 out for evaluation" in Job.objects.get(pk=run.job_id).error


@pytest.mark.django_db
def test_a_worker_refuses_more_gpus_than_it_has_before_spawning_anything(
    kontext_dir, tmp_path, settings, monkeypatch
):
    """A CPU-only worker asked for gpus=2 fails the run with a message and starts no process
    (issue 18: gpus=100000 once forked hundreds of trainers); RL_CPU_PROCESSES lets it run that
    many CPU processes instead, up to its cores."""
    from jobs.runner import run_job
    from rltraining import jobs as rl_jobs

    spawned = []
    monkeypatch.setattr(rl_jobs.subprocess, "Popen", lambda *a, **k: spawned.append(a))
    settings.RL_CPU_PROCESSES = False
    dataset = make_dataset(groups=3, candidates=2)
    run = rl_enqueue(config=config(dataset, kontext_dir, gpus=2))
    assert run_job(run.job_id, worker="test") == "failed" and spawned == []
    job = Job.objects.get(pk=run.job_id)
    assert "asks for 2 GPUs and worker" in job.error and "has none" in job.error
    assert job.error_kind == "invalid"
    settings.RL_CPU_PROCESSES = True
    with pytest.raises(ValueError, match="asks for 64 CPU processes"):
        rl_jobs.check_devices(64)  # more than this machine's cores


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the claim's heartbeat thread must see the job row
def test_a_two_gpu_run_goes_through_torchrun(kontext_dir, tmp_path, settings):
    """gpus=2: the job spawns torchrun (gloo on CPU) and reads rank 0's metrics and samples."""
    from jobs.runner import run_job

    settings.RL_CPU_PROCESSES = True  # no CUDA here: two CPU processes stand in for two GPUs
    dataset = make_dataset(groups=5, candidates=2)
    run = rl_enqueue(config=config(dataset, kontext_dir, gpus=2, judge={"kind": "brightness"}))
    assert run_job(run.job_id, worker="test") == "succeeded", Job.objects.get(pk=run.job_id).error
    job = Job.objects.get(pk=run.job_id)
    assert job.result["rounds"] == 2
    assert sorted(job.metrics.filter(name="reward_mean").values_list("step", flat=True)) == [1, 2]
    judged = job.metrics.filter(name="eval_judge_mean").values_list("step", flat=True)
    assert sorted(judged) == [0, 1, 2]  # the judge reaches the torchrun processes too
    rounds = RLSample.objects.filter(run=run, kind="eval").values_list("round", flat=True)
    assert sorted(set(rounds)) == [0, 1, 2]
    assert (tmp_path / "rl_runs" / "tiny-run" / "adapter").is_dir()
