"""The reward-model registry (register, promote, fine-tune requests) and the
training targets derived from rankings."""

import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from annotation.exports import snapshot_rankings
from annotation.models import Group
from annotation.services import ranking_submit
from jobs.models import Job
from rewardmodel.ml.targets import tier_score, training_targets
from rewardmodel.models import RewardModel
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
DIMS = ("prompt_following", "consistency", "overall")


def _rank_c0_over_c1(dataset, users) -> None:
    """Every user ranks candidate 0 above candidate 1 in every group, on every dimension."""
    for group in Group.objects.filter(dataset=dataset):
        c0, c1 = (f"{group.external_id}-c{i}" for i in range(2))
        for user in users:
            ranking_submit(group=group, annotator=user, submission_id=uuid.uuid4(),
                           tiers=dict.fromkeys(DIMS, [[c0], [c1]]))  # fmt: skip


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


def test_a_model_records_its_prompt_set_and_is_scored_with_it(client, researcher, tmp_path):
    """Released checkpoints learned the authors' prompts (the default); a model trained on
    EditLoop's wording says so, and its benchmark spec asks for that wording."""
    base = _checkpoint(tmp_path / "base")
    call_command("register_reward_model", "released", "--base", str(base))
    assert RewardModel.objects.get(name="released").prompt_set == "reference"
    call_command("register_reward_model", "ours", "--base", str(base), "--prompt-set", "editloop")
    ours = RewardModel.objects.get(name="ours")
    assert ours.scorer_spec(1) == {"kind": "editscore", "base": str(base), "k": 1,
                                   "prompt_set": "editloop"}  # fmt: skip
    from benchmark.ml.scorers import make_scorer

    assert make_scorer(ours.scorer_spec(1)).config()["prompt_set"] == "editloop"
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("register_reward_model", "x", "--base", str(base), "--prompt-set", "mine")
    client.force_login(researcher)
    page = client.get("/reward-models/").content.decode()
    assert 'name="prompt_set"' in page and "<td>editloop</td>" in page
    dataset = make_dataset(groups=1)
    form = {"action": "finetune", "name": "m2", "dataset": dataset.pk, "base": "/x"}
    assert client.post("/reward-models/", {**form, "prompt_set": "editloop"}).status_code == 302
    trained = RewardModel.objects.get(name="m2")
    assert trained.prompt_set == "editloop" and trained.job.config["prompt_set"] == "editloop"
    bad = client.post("/reward-models/", {**form, "name": "m3", "prompt_set": "mine"})
    assert bad.status_code == 400 and b"prompt_set must be one of" in bad.content


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
    targets = {t.candidate: t for t in training_targets(snapshot_rankings(dataset).path)}
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
    _rank_c0_over_c1(dataset, users)
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
    # it learned from a rankings snapshot, recorded on the model; retraining names it
    assert model.snapshot.kind == "rankings" and model.snapshot.dataset == dataset
    assert job.result["snapshot"]["sha256"] == model.snapshot.sha256
    again = finetune_enqueue(config={
        "model_name": "tiny-es-2", "snapshot_id": model.snapshot.pk, "base_model": str(base),
        "training": {"max_steps": 1, "grad_accum": 1, "lora_r": 4, "lora_alpha": 8, "max_pixels": 28 * 28 * 16},
    })  # fmt: skip
    assert run_job(again.job_id, worker="test") == "succeeded", again.job.error
    again.refresh_from_db()
    assert again.snapshot == model.snapshot and again.job.result["examples"] == 8


def test_curated_reasoning_keeps_a_teacher_only_where_it_orders_like_the_humans():
    from types import SimpleNamespace as NS

    from rewardmodel.ml.targets import Target, curated_reasoning, orders_agree

    assert orders_agree([3, 2, 1], [9.0, 5.0, 1.0])
    assert orders_agree([3, 3, 1], [4.0, 5.0, 1.0])  # a human tie constrains nothing
    assert not orders_agree([3, 2, 1], [9.0, 9.0, 1.0])  # a teacher tie where humans differ
    assert not orders_agree([3, 2], [1.0, 2.0])
    assert not orders_agree([3, 2], [None, 2.0])
    assert orders_agree([5], [None])  # one candidate: nothing to order

    def target(sc, pq):
        return Target("g", f"c{sc}", "i", "s", "e", sc=sc, pq=pq)

    group = [target((20, 10), (20, 20)), target((10, 20), (10, 10))]

    def teacher(pf, c, pq, error=None):
        return NS(prompt_following=pf, consistency=c, perceptual_quality=pq, error=error,
                  reasoning={"SC": f"sc {pf}", "PQ": f"pq {pq}"})  # fmt: skip

    assert curated_reasoning(group, [teacher(8, 2, 9), teacher(3, 7, 1)]) == [
        ("sc 8", "pq 9"), ("sc 3", "pq 1"),
    ]  # fmt: skip
    # consistency ordered the other way: the SC reasoning goes, the PQ stays
    assert curated_reasoning(group, [teacher(8, 7, 9), teacher(3, 2, 1)]) == [
        (None, "pq 9"), (None, "pq 1"),
    ]  # fmt: skip
    # an unscored candidate: nothing of the group is kept
    unscored = teacher(None, None, None, error="HTTP 500")
    assert curated_reasoning(group, [teacher(8, 2, 9), unscored]) == [(None, None)] * 2
    with pytest.raises(ValueError, match="one teacher score per target"):
        curated_reasoning(group, [teacher(8, 2, 9)])


def test_finetune_job_keeps_the_teachers_reasoning_where_it_agrees(tmp_path, tiny_dir, monkeypatch):
    """A teacher judge over real HTTP: group 0 is ordered as the humans did on every
    dimension, group 1 only on perceptual quality. The training targets carry the
    teacher's SC reasoning for group 0 only, its PQ reasoning for both."""
    import base64
    import io
    import re

    from PIL import Image

    import rewardmodel.ml.finetune as ft
    from jobs.runner import run_job
    from rewardmodel.jobs import finetune_enqueue
    from tests.test_scorers import Judge

    def reply(request):
        content = request["body"]["messages"][1]["content"]
        url = [p["image_url"]["url"] for p in content if p["type"] == "image_url"][-1]
        png = base64.b64decode(url.split(",", 1)[1])
        red, green, _ = Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))
        g, c = red // 20, (green - 40) // 40
        if len(content) == 5:  # SC: two labelled images and the prompt
            pf = 20 - 10 * c if g == 0 else 5 + 10 * c
            scores, why = [pf, 20 - 10 * c], f"SC says g{g}c{c}"
        else:
            scores, why = [20 - 10 * c, 20 - 10 * c], f"PQ says g{g}c{c}"
        return 200, json.dumps({"reasoning": why, "score": scores}), 0

    judge = Judge(reply)
    seen = []
    real = ft.finetune
    monkeypatch.setattr(ft, "finetune", lambda config, examples, **kw: (
        seen.extend(examples), real(config, examples, **kw))[1])  # fmt: skip
    try:
        users = [UserFactory(username=f"r{i}") for i in range(2)]
        dataset = make_dataset(groups=2, candidates=2, overlap=1, annotators=users)
        _rank_c0_over_c1(dataset, users[:1])
        model = finetune_enqueue(config={
            "model_name": "taught", "dataset_id": dataset.pk, "base_model": str(tiny_dir),
            "training": {"max_steps": 1, "grad_accum": 1, "lora_r": 2, "lora_alpha": 4,
                         "max_pixels": 28 * 28 * 16},
            "teacher": {"kind": "openai", "model": "judge", "base_url": judge.url},
        })  # fmt: skip
        assert run_job(model.job_id, worker="test") == "succeeded", model.job.error
    finally:
        judge.close()
    model.job.refresh_from_db()
    assert model.job.result["teacher_reasoning_kept"] == {"groups": 2, "sc": 1, "pq": 2}
    reasons = sorted(json.loads(e.target)["reasoning"] for e in seen)
    assert reasons == sorted([
        "SC says g0c0", "SC says g0c1", ft.NEUTRAL_REASONING_SC, ft.NEUTRAL_REASONING_SC,
        "PQ says g0c0", "PQ says g0c1", "PQ says g1c0", "PQ says g1c1",
    ])  # fmt: skip
    assert all(re.search(r'"score": \[\d+, \d+\]', e.target) for e in seen)
    assert len(judge.requests) == 2 * 2 * 2  # 4 candidates x SC/PQ, one pass


def test_a_teacher_must_be_an_openai_judge():
    from jobs.registry import InvalidJobConfig
    from rewardmodel.jobs import finetune_enqueue

    dataset = make_dataset(groups=1, candidates=2)
    base = {"model_name": "m", "dataset_id": dataset.pk, "base_model": "/x"}
    with pytest.raises(InvalidJobConfig, match="teacher must be an openai scorer"):
        finetune_enqueue(config={**base, "teacher": {"kind": "random"}})
    with pytest.raises(InvalidJobConfig, match="unknown option"):
        finetune_enqueue(config={**base, "teacher": {"kind": "openai", "model": "m", "x": 1}})
    assert not RewardModel.objects.exists()


def test_target_modules_are_checked():
    from jobs.registry import InvalidJobConfig
    from rewardmodel.jobs import finetune_enqueue

    dataset = make_dataset(groups=1, candidates=2)
    base = {"model_name": "m", "dataset_id": dataset.pk, "base_model": "/x"}
    for bad in ("all-linear", [], [""], [3]):
        with pytest.raises(InvalidJobConfig, match="target_modules must be a (non-empty )?list"):
            finetune_enqueue(config={**base, "target_modules": bad})
    model = finetune_enqueue(config={**base, "target_modules": ["all-linear", "lm_head"]})
    assert model.job.config["target_modules"] == ["all-linear", "lm_head"]


def test_a_held_out_split_keeps_groups_out_of_training_and_marks_the_benchmark(
    tmp_path, tiny_dir, researcher_client
):
    from annotation.ml.split import Split
    from annotation.models import Snapshot
    from benchmark.models import BenchmarkDataset, BenchmarkRun
    from jobs.runner import run_job
    from rewardmodel.jobs import finetune_enqueue

    users = [UserFactory(username=f"h{i}") for i in range(2)]
    dataset = make_dataset(groups=8, candidates=2, overlap=2, annotators=users)
    _rank_c0_over_c1(dataset, users)
    split = Split(0.5, seed=0)
    sides = split.sides(Group.objects.filter(dataset=dataset).values_list("external_id", flat=True))
    assert sides["train"] and sides["held_out"]
    held = Snapshot.objects.create(name="held", kind="benchmark", dataset=dataset, policy={},
                                   path="-", sha256="0" * 64, rows=1,
                                   split={**split.as_dict(), "side": "held_out"})  # fmt: skip
    bench = BenchmarkDataset.objects.create(name="held", layout="snapshot", source_path="-",
                                            snapshot=held)  # fmt: skip
    everything = BenchmarkDataset.objects.create(name="all", layout="jsonl", source_path="-")
    training = {"max_steps": 1, "grad_accum": 1, "lora_r": 4, "lora_alpha": 8, "max_pixels": 28 * 28 * 16}  # fmt: skip
    results = {}
    for name, benchmark in (("split-es", bench), ("split-es-all", everything)):
        model = finetune_enqueue(config={
            "model_name": name, "dataset_id": dataset.pk, "base_model": str(tiny_dir),
            "training": training, "held_out": 0.5, "split_seed": 0,
            "benchmark_dataset_id": benchmark.pk,
        })  # fmt: skip
        assert run_job(model.job_id, worker="test") == "succeeded", model.job.error
        model.refresh_from_db()
        results[name] = model.job.result
    result = results["split-es"]
    assert result["groups_trained_on"] == len(sides["train"])
    assert result["examples"] == len(sides["train"]) * 2 * 2  # candidates x (SC, PQ)
    assert (
        result["benchmark_held_out"] is True
        and results["split-es-all"]["benchmark_held_out"] is False
    )
    model = RewardModel.objects.get(name="split-es")
    assert model.snapshot.split == {"held_out": 0.5, "seed": 0}
    page = researcher_client.get(f"/reward-models/{model.pk}/").content.decode()
    assert "50% of groups held out (seed 0): trained on the rest" in page
    assert "<td>yes</td>" in page  # its benchmark result is on pairs it never saw
    run = BenchmarkRun.objects.get(dataset=bench)
    assert run.label == "split-es"
    with pytest.raises(Exception, match="a snapshot carries its own split"):
        finetune_enqueue(config={"model_name": "x", "snapshot_id": model.snapshot.pk,
                                 "base_model": "/x", "held_out": 0.2})  # fmt: skip
