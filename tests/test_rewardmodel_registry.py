"""The reward-model registry (register, promote, fine-tune requests) and the
training targets derived from rankings."""

import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Group
from annotation.services import ranking_submit
from jobs.models import Job
from rewardmodel.models import RewardModel
from rewardmodel.training import tier_score, training_targets
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
DIMS = ("prompt_following", "consistency", "overall")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REWARD_MODELS_DIR = tmp_path / "models"


def _checkpoint(root, *, adapter=False):
    root.mkdir(parents=True)
    (root / ("adapter_config.json" if adapter else "config.json")).write_text("{}")
    return root


def test_register_validates_folders_and_names(tmp_path):
    base = _checkpoint(tmp_path / "base")
    adapter = _checkpoint(tmp_path / "lora", adapter=True)
    call_command(
        "register_reward_model",
        "es-7b",
        "--base",
        str(base),
        "--adapter",
        str(adapter),
        "--promote",
    )
    model = RewardModel.objects.get(name="es-7b")
    assert model.promoted and model.origin == "imported" and model.adapter == str(adapter)
    assert model.scorer_spec(4) == {
        "kind": "editscore",
        "base": str(base),
        "k": 4,
        "adapter": str(adapter),
    }
    with pytest.raises(CommandError, match="no config.json"):
        call_command("register_reward_model", "x", "--base", str(tmp_path))
    with pytest.raises(CommandError, match="no adapter_config.json"):
        call_command("register_reward_model", "y", "--base", str(base), "--adapter", str(base))
    with pytest.raises(CommandError, match="exists already"):
        call_command("register_reward_model", "es-7b", "--base", str(base))
    with pytest.raises(CommandError, match="name must be"):
        call_command("register_reward_model", "../x", "--base", str(base))
    assert RewardModel.objects.count() == 1


def test_only_one_model_is_promoted(tmp_path):
    base = _checkpoint(tmp_path / "base")
    for name in ("a", "b"):
        call_command("register_reward_model", name, "--base", str(base), "--promote")
    assert list(RewardModel.objects.filter(promoted=True).values_list("name", flat=True)) == ["b"]


def test_pages_are_for_researchers_and_finetune_requests_are_validated(
    client, researcher, annotator, tmp_path
):
    client.force_login(annotator)
    assert client.get("/reward-models/").status_code == 403
    client.force_login(researcher)
    assert client.get("/reward-models/").status_code == 200
    dataset = make_dataset(groups=1)
    bad = client.post("/reward-models/", {"action": "finetune", "name": "m1", "dataset": dataset.pk, "base": "/x", "learning_rate": "fast"})  # fmt: skip
    assert bad.status_code == 400 and b"learning_rate" in bad.content
    ok = client.post("/reward-models/", {"action": "finetune", "name": "m1", "dataset": dataset.pk, "base": "/x", "epochs": "2"})  # fmt: skip
    assert ok.status_code == 302
    model = RewardModel.objects.get(name="m1")
    assert model.status == "training" and model.job.queue == "gpu"
    assert model.job.config["training"] == {"epochs": 2}  # the paper's defaults fill the rest
    again = client.post("/reward-models/", {"action": "finetune", "name": "m1", "dataset": dataset.pk, "base": "/x"})  # fmt: skip
    assert again.status_code == 400 and b"exists already" in again.content
    assert Job.objects.count() == 1
    assert client.post(f"/reward-models/{model.pk}/promote/").status_code == 302
    model.refresh_from_db()
    assert not model.promoted  # still training


def test_tier_scores_follow_the_documented_anchors():
    assert tier_score(1, 3, unusable=False) == pytest.approx(22.5)  # 0.9 R
    assert tier_score(3, 3, unusable=False) == pytest.approx(7.5)  # 0.3 R
    assert tier_score(2, 3, unusable=False) == pytest.approx(15.0)
    assert tier_score(1, 1, unusable=False) == pytest.approx(15.0)  # all tied: 0.6 R
    assert tier_score(0, 0, unusable=True) == pytest.approx(1.25)  # floor: 0.05 R


def test_training_targets_average_the_annotators():
    users = [UserFactory(username=f"t{i}") for i in range(2)]
    dataset = make_dataset(groups=1, candidates=3, overlap=2, annotators=users)
    group = Group.objects.get(dataset=dataset)
    c0, c1, c2 = (f"{group.external_id}-c{i}" for i in range(3))
    rankings = [
        {"tiers": dict.fromkeys(DIMS, [[c0], [c1], [c2]])},
        {"tiers": dict.fromkeys(DIMS, [[c0], [c1]]), "unusable": dict.fromkeys(DIMS, [c2])},
    ]
    for user, body in zip(users, rankings, strict=True):
        ranking_submit(group=group, annotator=user, submission_id=uuid.uuid4(), **body)
    targets = {t.candidate: t for t in training_targets(dataset)}
    # c0: tier 1 of 3 (22.5) and tier 1 of 2 (22.5); c1: 15 and 7.5 -> 11.25; c2: 7.5 and floor 1.25 -> 4.375
    assert targets[c0].sc == (22, 22) and targets[c0].pq == (22, 22)
    assert targets[c1].sc == (11, 11)
    assert targets[c2].sc == (4, 4)
    assert json.dumps(targets[c0].image)


def test_finetune_job_trains_registers_and_queues_a_benchmark(tmp_path, tiny_dir):
    """The job path end to end on the tiny model: targets from rankings, a few LoRA
    steps, the adapter registered, a benchmark run of the new model queued."""
    from benchmark.models import BenchmarkDataset, BenchmarkRun
    from jobs.runner import run_job
    from rewardmodel.jobs import finetune_enqueue

    base = tiny_dir
    users = [UserFactory(username=f"f{i}") for i in range(2)]
    dataset = make_dataset(groups=2, candidates=2, overlap=2, annotators=users)
    for group in Group.objects.filter(dataset=dataset):
        c0, c1 = (f"{group.external_id}-c{i}" for i in range(2))
        for user in users:
            ranking_submit(group=group, annotator=user, submission_id=uuid.uuid4(), tiers=dict.fromkeys(DIMS, [[c0], [c1]]))  # fmt: skip
    bench = BenchmarkDataset.objects.create(name="b", layout="jsonl", source_path="-")
    model = finetune_enqueue(config={
        "model_name": "tiny-es", "dataset_id": dataset.pk, "base_model": str(base),
        "training": {"max_steps": 2, "grad_accum": 1, "lora_r": 4, "lora_alpha": 8, "max_pixels": 28 * 28 * 16},
        "benchmark_dataset_id": bench.pk,
    })  # fmt: skip
    assert run_job(model.job_id, worker="test") == "succeeded", model.job.error
    model.refresh_from_db()
    assert model.status == "ready" and (tmp_path / "models" / "tiny-es" / "adapter").is_dir()
    assert model.adapter.endswith("adapter")
    job = model.job
    job.refresh_from_db()
    assert job.result["steps"] == 2 and job.result["examples"] == 2 * 2 * 2  # 4 candidates x SC/PQ
    assert job.metrics.filter(name="loss").count() == 2
    run = BenchmarkRun.objects.get(dataset=bench)
    assert run.scorer == model.scorer_spec(1) and run.job.queue == "gpu"
