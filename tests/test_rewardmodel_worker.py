"""A fine-tune launched from the researcher page is trained by a real Celery worker
(gpu queue) on Redis: the new model is registered, its loss curve is on the job page
and the benchmark run of the new model is queued."""

import uuid
from pathlib import Path

import pytest
from django.urls import reverse

from accounts.models import Role
from accounts.services import user_create_or_update
from annotation.models import Group
from annotation.services import ranking_submit
from benchmark.models import BenchmarkDataset, BenchmarkRun
from jobs.models import Job
from rewardmodel.models import RewardModel
from tests.annotation_fixtures import make_dataset
from tests.brokers import wait_for
from tests.factories import UserFactory

pytestmark = pytest.mark.worker
DIMS = ("prompt_following", "consistency", "overall")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    # The worker's EDITLOOP_VAR_DIR is tmp_path: the same folders on both sides.
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REWARD_MODELS_DIR = tmp_path / "reward_models"


def test_finetune_form_is_trained_by_a_worker(
    redis_broker, worker_factory, client, tiny_dir, tmp_path, transactional_db
):
    annotators = [UserFactory(username=f"w{i}") for i in range(2)]
    dataset = make_dataset(groups=2, candidates=2, overlap=2, annotators=annotators)
    for group in Group.objects.filter(dataset=dataset):
        c0, c1 = (f"{group.external_id}-c{i}" for i in range(2))
        for user in annotators:
            ranking_submit(group=group, annotator=user, submission_id=uuid.uuid4(),
                           tiers=dict.fromkeys(DIMS, [[c0], [c1]]))  # fmt: skip
    bench = BenchmarkDataset.objects.create(name="b", layout="jsonl", source_path="-")
    researcher, _ = user_create_or_update(username="rita", role=Role.RESEARCHER)
    client.force_login(researcher)
    worker = worker_factory(redis_broker, "gpu")

    page = client.get(reverse("rewardmodel:list"))
    assert b'name="learning_rate" value="0.0001"' in page.content  # the paper's defaults
    response = client.post(reverse("rewardmodel:list"), {
        "action": "finetune", "name": "from-form", "dataset": dataset.pk,
        "base": str(tiny_dir), "learning_rate": "1e-3", "max_steps": "3", "grad_accum": "1",
        "lora_r": "4", "lora_alpha": "8", "max_pixels": str(28 * 28 * 16),
        "benchmark": bench.pk,
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:500]
    model = RewardModel.objects.get(name="from-form")
    assert model.status == "training" and model.job.queue == "gpu"

    job = wait_for(
        lambda: (j := Job.objects.get(pk=model.job_id)).status in ("succeeded", "failed") and j,
        timeout=180, what=f"fine-tune job\n{worker.log()}",
    )  # fmt: skip
    assert job.status == "succeeded", f"{job.error}\n{worker.log()}"
    model.refresh_from_db()
    assert model.status == "ready"
    assert Path(model.adapter) == tmp_path / "reward_models" / "from-form" / "adapter"
    assert (Path(model.adapter) / "adapter_model.safetensors").is_file()
    assert job.config["training"]["learning_rate"] == pytest.approx(1e-3)
    losses = list(job.metrics.filter(name="loss").order_by("step").values_list("step", flat=True))
    assert losses == [1, 2, 3]
    detail = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "loss" in detail and "succeeded" in detail
    run = BenchmarkRun.objects.get(dataset=bench)
    assert run.label == "from-form" and run.job.queue == "gpu"
