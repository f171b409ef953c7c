"""A tiny RL run launched from the researcher page is trained by a real Celery worker (gpu
queue) on Redis, and the run page shows its metrics and evaluation gallery."""

import pytest
from django.urls import reverse

from accounts.models import Role
from accounts.services import user_create_or_update
from jobs.models import Job
from rltraining.models import RLRun, RLSample
from tests.annotation_fixtures import make_dataset
from tests.brokers import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    # The worker's EDITLOOP_VAR_DIR is tmp_path: the same folders on both sides.
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RL_RUNS_DIR = tmp_path / "rl_runs"


def test_rl_run_from_the_page_is_trained_by_a_worker(
    redis_broker, worker_factory, client, tmp_path, transactional_db
):
    from rltraining.ml.tiny import build_tiny_flux_kontext

    policy = build_tiny_flux_kontext(tmp_path / "kontext", seed=0)
    dataset = make_dataset(groups=4, candidates=2)
    researcher, _ = user_create_or_update(username="rita", role=Role.RESEARCHER)
    client.force_login(researcher)
    worker = worker_factory(redis_broker, "gpu")

    response = client.post(reverse("rltraining:list"), {
        "name": "worker-run", "policy": str(policy), "reward": "brightness",
        "dataset": dataset.pk, "eval_prompts": "1", "gpus": "1",
        "lora_r": "4", "lora_alpha": "8", "height": "32", "width": "32",
        "policy_json": '{"auto_resize": false, "max_sequence_length": 64}',
        "rounds": "2", "num_steps": "4", "group_size": "4", "prompts_per_round": "2",
        "micro_batch": "4", "train_steps": "2", "eval_every": "1",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    run = RLRun.objects.get(name="worker-run")
    assert run.job.queue == "gpu"

    job = wait_for(
        lambda: (j := Job.objects.get(pk=run.job_id)).status in ("succeeded", "failed") and j,
        timeout=240, what=f"RL job\n{worker.log()}",
    )  # fmt: skip
    assert job.status == "succeeded", f"{job.error}\n{worker.log()}"
    assert job.result["rounds"] == 2 and (tmp_path / "rl_runs" / "worker-run" / "adapter").is_dir()
    assert sorted(set(RLSample.objects.filter(run=run).values_list("round", flat=True))) == [
        0,
        1,
        2,
    ]

    page = client.get(reverse("rltraining:detail", args=[run.pk])).content.decode()
    for metric in ("reward_mean", "kl", "clip_fraction", "grad_norm", "eval_reward_mean"):
        assert metric in page
    assert "succeeded" in page
    sample = RLSample.objects.filter(run=run, round=2).first()
    image = client.get(reverse("rltraining:sample-image", args=[sample.pk, "image"]))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
