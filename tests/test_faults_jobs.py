"""Issue 9, faults: a Celery worker SIGKILLed in the middle of a benchmark run, a reward-model
fine-tune and an RL run. On the filesystem broker the killed worker's message is lost for good;
the sweeper (beat, beside a rescuer worker) requeues the job from its stale heartbeat, and the
rescuer picks it up again, from the last checkpoint for training. The job then succeeds on its
second attempt with every score, metric point and checkpoint stored once, and with the results
an uninterrupted run gives."""

import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models import Count

from jobs.models import Job, JobMetric, JobStatus
from tests import local_http
from tests.brokers import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def folders(settings, tmp_path, monkeypatch):
    # The workers' EDITLOOP_VAR_DIR is tmp_path: the same folders on both sides.
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REWARD_MODELS_DIR = tmp_path / "reward_models"
    settings.RL_RUNS_DIR = tmp_path / "rl_runs"
    # The workers inherit the environment: one thread each, tiny tensors, a shared box.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


def _points(job_id) -> dict[tuple[str, int], float]:
    return {
        (name, step): value
        for name, step, value in JobMetric.objects.filter(job_id=job_id).values_list(
            "name", "step", "value"
        )
    }


def _kill_when(worker, job_id, ready, timeout: float, what: str) -> None:
    """SIGKILL `worker` once `ready()` holds, while the job is still running."""
    wait_for(ready, timeout, f"{what}\n{worker.log()}", interval=0.1)
    worker.kill()
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.RUNNING, f"finished before the kill: {job.status} {job.error}"


def _rescue(filesystem_broker, worker_factory, job_id, timeout: float) -> tuple:
    rescuer = worker_factory(filesystem_broker, "rescuer", beat=True)
    job = wait_for(
        lambda: (j := Job.objects.get(pk=job_id)).is_terminal and j,
        timeout,
        f"recovery\n{rescuer.log()}",
        interval=0.2,
    )
    assert job.status == JobStatus.SUCCEEDED, f"{job.error}\n{rescuer.log()}"
    assert job.attempts == 2 and job.worker.startswith("rescuer@")  # one death, one rescue
    return rescuer, job


def _assert_each_point_once(job_id) -> None:
    dupes = (
        JobMetric.objects.filter(job_id=job_id)
        .values("name", "step")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not dupes.exists(), list(dupes)


def _checkpoint_folders(root: Path) -> list[str]:
    """Every checkpoint-like folder, half-written ones (.checkpoint-N.tmp) included."""
    return sorted(p.name for p in root.iterdir() if "checkpoint" in p.name)


def _newest_checkpoint(root: Path) -> int:
    """The step of the newest complete checkpoint (one with its state.json), 0 if none."""
    done = [int(p.name[11:]) for p in root.glob("checkpoint-*") if (p / "state.json").is_file()]
    return max(done, default=0)


def _logged_past_checkpoint(job_id, metric: str, root: Path) -> bool:
    """A checkpoint is written and a later step is logged: the state a kill must find."""
    newest = _newest_checkpoint(root)
    logged = JobMetric.objects.filter(job_id=job_id, name=metric, step__gt=newest)
    return newest > 0 and logged.exists()


# ---------------------------------------------------------------- benchmark run


class _Judge:
    """A slow local chat-completions judge: its scores are a function of the edited image
    alone, so any run of any model name scores the same; it records which image each SC
    question was about."""

    def __init__(self, delay: dict[str, float]):
        self.sc_asked: list[tuple[str, str]] = []  # (model, edited image digest)
        self.lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                images = [
                    p["image_url"]["url"]
                    for p in body["messages"][-1]["content"]
                    if p["type"] == "image_url"
                ]
                digest = hashlib.sha256(images[-1].encode()).digest()
                if len(images) == 2:
                    with judge.lock:
                        judge.sc_asked.append((body["model"], digest.hex()))
                    score = [digest[0] % 26, digest[1] % 26]
                else:
                    score = [digest[2] % 26, digest[3] % 26]
                time.sleep(delay.get(body["model"], 0.0))
                content = json.dumps({"reasoning": "fine", "score": score})
                payload = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker asking was killed

        self.server, root = local_http.serve(Handler, poll=0.05)
        self.url = f"{root}/v1"

    def close(self):
        local_http.stop(self.server)


@pytest.fixture
def judge():
    server = _Judge(delay={"slow-judge": 0.15})
    yield server
    server.close()


def test_benchmark_run_survives_a_sigkilled_worker(
    transactional_db, filesystem_broker, worker_factory, judge, tmp_path
):
    from django.db import transaction

    from benchmark.models import BenchmarkCandidate, BenchmarkDataset, BenchmarkRun, ScoreCache
    from benchmark.runs import build_scorer, run_enqueue
    from jobs.services import job_enqueue
    from tests.benchmark_fixtures import make_snapshot

    path, _ = make_snapshot(tmp_path, groups=6)  # 18 candidates, 54 pairs
    call_command("import_benchmark", str(path), "--name", "mini")
    dataset = BenchmarkDataset.objects.get(name="mini")
    distinct = set(
        BenchmarkCandidate.objects.filter(dataset=dataset).values_list("content_hash", flat=True)
    )
    assert len(distinct) == 18
    first = worker_factory(filesystem_broker, "doomed")

    # run_enqueue with small batches: each batch of 2 candidates is committed to the cache
    # on its own (2 x (SC + PQ) questions x 0.15 s), so the kill falls between batches.
    scorer = {"kind": "openai", "model": "slow-judge", "base_url": judge.url,
              "concurrency": 1, "retries": 0}  # fmt: skip
    key = build_scorer(scorer).cache_key()
    with transaction.atomic():
        job = job_enqueue(
            kind="benchmark.run",
            config={"dataset_id": dataset.pk, "scorer": scorer, "label": "", "batch_size": 2},
        )
        run = BenchmarkRun.objects.create(
            job=job, dataset=dataset, label="faulted", scorer=scorer, scorer_key=key
        )
    cached = ScoreCache.objects.filter(scorer_key=key)

    _kill_when(first, job.pk, lambda: cached.count() >= 6, 60, "6 candidates scored")
    cached_at_kill = cached.count()
    assert cached_at_kill < len(distinct)

    rescuer, job = _rescue(filesystem_broker, worker_factory, job.pk, 60)
    # Resumed: the rescuer scored only what the cache did not hold at the kill.
    assert job.result["from_cache"] == cached_at_kill
    assert job.result["scored_now"] == len(distinct) - cached_at_kill
    assert job.result["candidates"] == 18 and job.result["n_unscored"]["total"] == 0
    # One cached score per candidate content, none twice; the judge was asked again at most
    # about the batch in flight at the kill.
    assert cached.count() == len(distinct)
    assert set(cached.values_list("content_hash", flat=True)) == distinct
    assert not cached.values("content_hash").annotate(n=Count("id")).filter(n__gt=1).exists()
    asked = [digest for model, digest in judge.sc_asked if model == "slow-judge"]
    assert len(set(asked)) == len(distinct) and len(asked) <= len(distinct) + 2
    assert BenchmarkRun.objects.filter(dataset=dataset).count() == 1

    # The same judge (another model name: another cache key), uninterrupted: the same metric.
    reference = run_enqueue(
        dataset=dataset, scorer={**scorer, "model": "fast-judge", "concurrency": 4}
    )
    ref_job = wait_for(
        lambda: (j := Job.objects.get(pk=reference.job_id)).is_terminal and j,
        60,
        f"reference run\n{rescuer.log()}",
    )
    assert ref_job.status == JobStatus.SUCCEEDED and ref_job.attempts == 1, ref_job.error
    run.refresh_from_db()
    reference.refresh_from_db()
    assert run.metric == reference.metric
    assert run.metric["overall"] == job.result["overall"]


# ---------------------------------------------------------------- reward-model fine-tune


def test_finetune_resumes_from_its_checkpoint_after_a_sigkill(
    transactional_db, filesystem_broker, worker_factory, tiny_dir, tmp_path
):
    from accounts.models import Role
    from accounts.services import user_create_or_update
    from annotation.models import Group
    from annotation.services import ranking_submit
    from rewardmodel.jobs import finetune_enqueue
    from rewardmodel.models import RewardModel
    from tests.annotation_fixtures import make_dataset
    from tests.factories import UserFactory

    dims = ("prompt_following", "consistency", "overall")
    annotators = [UserFactory(username=f"w{i}") for i in range(2)]
    dataset = make_dataset(groups=2, candidates=2, overlap=2, annotators=annotators)
    for group in Group.objects.filter(dataset=dataset):
        c0, c1 = (f"{group.external_id}-c{i}" for i in range(2))
        for user in annotators:
            ranking_submit(group=group, annotator=user, submission_id=uuid.uuid4(),
                           tiers=dict.fromkeys(dims, [[c0], [c1]]))  # fmt: skip
    researcher, _ = user_create_or_update(username="rita", role=Role.RESEARCHER)
    first = worker_factory(filesystem_broker, "doomed")

    total, every = 14, 4  # periodic checkpoints at 4, 8, 12; the newest 2 are kept
    model = finetune_enqueue(
        config={
            "model_name": "faulted", "dataset_id": dataset.pk, "base_model": str(tiny_dir),
            "training": {"max_steps": total, "checkpoint_every": every, "grad_accum": 1,
                         "learning_rate": 1e-3, "lora_r": 4, "lora_alpha": 8,
                         "max_pixels": 28 * 28 * 16},
        },
        user=researcher,
    )  # fmt: skip
    job_id = model.job_id
    out = tmp_path / "reward_models" / "faulted"

    def past_a_checkpoint():
        # a step logged after the newest checkpoint: the rescuer must redo it, not log it twice
        return _logged_past_checkpoint(job_id, "loss", out)

    _kill_when(first, job_id, past_a_checkpoint, 120, "a step after the first checkpoint")
    before = _points(job_id)
    resume_step = _newest_checkpoint(out)
    last_logged = max(step for name, step in before if name == "loss")
    assert 0 < resume_step < last_logged < total  # steps to train (and log) again
    assert RewardModel.objects.get(pk=model.pk).status == RewardModel.Status.TRAINING

    _, job = _rescue(filesystem_broker, worker_factory, job_id, 150)
    assert job.result["resumed_from"] == resume_step  # from the checkpoint, not from step 0
    assert job.result["steps"] == total and job.result["model"] == "faulted"
    model.refresh_from_db()
    assert model.status == RewardModel.Status.READY and RewardModel.objects.count() == 1

    _assert_each_point_once(job_id)
    after = _points(job_id)
    for name in ("loss", "lr", "grad_norm", "epoch"):
        assert sorted(s for n, s in after if n == name) == list(range(1, total + 1)), name
    # Steps up to the checkpoint were not trained again; those trained after it and before
    # the kill were trained again, from the restored state (RNG included), to the same values.
    for (name, step), value in before.items():
        if step <= resume_step:
            assert after[(name, step)] == value, (name, step)
        else:
            assert after[(name, step)] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, step)
    # The checkpoint policy: one folder per step, the newest keep_checkpoints (2) periodic ones,
    # no half-written folder; one final adapter.
    assert _checkpoint_folders(out) == ["checkpoint-12", "checkpoint-8"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((out / "result.json").read_text())["result"]["steps"] == total


# ---------------------------------------------------------------- RL run


def test_rl_run_resumes_from_its_checkpoint_after_a_sigkill(
    transactional_db, filesystem_broker, worker_factory, tmp_path
):
    from rltraining.jobs import rl_enqueue
    from rltraining.ml.tiny import build_tiny_flux_kontext
    from rltraining.models import RLSample
    from tests.annotation_fixtures import make_dataset

    policy = build_tiny_flux_kontext(tmp_path / "kontext", seed=0)
    dataset = make_dataset(groups=5, candidates=2)
    first = worker_factory(filesystem_broker, "doomed")

    rounds, every = 6, 2  # checkpoints at rounds 2, 4, 6 (the last); the newest 2 are kept
    run = rl_enqueue(
        config={
            "run_name": "faulted", "policy": str(policy), "reward": {"kind": "brightness"},
            "dataset_id": dataset.pk, "eval_prompts": 2,
            "policy_options": {"auto_resize": False, "max_sequence_length": 64, "height": 32,
                               "width": 32, "lora_r": 4, "lora_alpha": 8},
            "training": {"rounds": rounds, "num_steps": 4, "group_size": 4,
                         "prompts_per_round": 2, "micro_batch": 4, "train_steps": 2,
                         "eval_every": 1, "checkpoint_every": every},
        }
    )  # fmt: skip
    job_id = run.job_id
    ckpts = tmp_path / "rl_runs" / "faulted" / "checkpoints"

    def past_a_checkpoint():
        return _logged_past_checkpoint(job_id, "reward_mean", ckpts)

    _kill_when(first, job_id, past_a_checkpoint, 120, "a round after the first checkpoint")
    before = _points(job_id)
    resume_round = _newest_checkpoint(ckpts)
    last_logged = max(step for name, step in before if name == "reward_mean")
    assert 0 < resume_round < last_logged < rounds  # rounds to run (and log) again

    _, job = _rescue(filesystem_broker, worker_factory, job_id, 150)
    assert job.result["resumed_from"] == resume_round  # from the checkpoint, not from round 0
    assert job.result["rounds"] == rounds
    # The checkpoint carries the history: the first round's reward is still round 1's.
    assert job.result["reward_first"] == before[("reward_mean", 1)]

    _assert_each_point_once(job_id)
    after = _points(job_id)
    assert sorted(s for n, s in after if n == "reward_mean") == list(range(1, rounds + 1))
    assert sorted(s for n, s in after if n == "eval_reward_mean") == list(range(rounds + 1))
    for (name, step), value in before.items():
        if step <= resume_round:
            # not run again: even the wall-clock "seconds" of those rounds is the first one's
            assert after[(name, step)] == value, (name, step)
        elif name != "seconds":
            # run again from the checkpoint: exactly the step the uninterrupted run takes
            assert after[(name, step)] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, step)
    # One evaluation sample per (round, held-out prompt), rounds 0..6, none twice.
    evals = RLSample.objects.filter(run=run, kind="eval")
    assert evals.count() == 2 * (rounds + 1)
    assert set(evals.values_list("round", "prompt_index")) == {
        (r, p) for r in range(rounds + 1) for p in range(2)
    }
    assert _checkpoint_folders(ckpts) == ["checkpoint-4", "checkpoint-6"]
    assert (tmp_path / "rl_runs" / "faulted" / "adapter").is_dir()
