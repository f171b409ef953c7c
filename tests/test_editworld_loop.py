"""The whole loop on EditWorld through the real services, at a small scale: import -> simulated
rankings over HTTP -> agreement (1.0 without noise) -> benchmark export -> scorers evaluated
(the oracle scores 1.0) -> the tiny reward model fine-tuned -> RL jobs with the oracle and with
the reward model -> "send to annotation" -> the RL outputs served to an annotator. Jobs run through the job runner on the test database
(the worker tests cover the broker)."""

import hashlib
import json
from pathlib import Path

import pytest

from accounts.models import Role
from accounts.services import user_api_token, user_create_or_update
from demo import loop as demo
from jobs.models import Job
from jobs.runner import run_job
from tests.brokers import api_call

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),  # minutes of CPU training on a busy 2-core machine
    pytest.mark.usefixtures("torch_one_thread"),
]
SCALE = demo.Scale(groups=12, candidates=4, image_size=64, overlap=3, simulated_annotators=3,
                   human_groups=2, noise=0.0, editor_steps=200, editor_pairs=96,
                   finetune_steps=60, rl_rounds=2, rl_group=4, rl_prompts_per_round=2,
                   eval_prompts=2, rl_prompts=24, rl_held_out=0.25)  # fmt: skip
JUDGE = {"groups": 4, "steps": 20}  # the demo's pre-training, small


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    for name in ("MEDIA_ROOT", "RL_RUNS_DIR", "REWARD_MODELS_DIR", "VAR_DIR"):
        setattr(settings, name, tmp_path / name.lower())
    settings.BENCHMARK_SCORES_DIR = settings.MEDIA_ROOT / "_scores"


def _run(job_id: int) -> Job:
    outcome = run_job(job_id, worker="loop-test")
    job = Job.objects.get(pk=job_id)
    assert outcome == "succeeded", job.error
    return job


def test_the_whole_loop(live_server, transactional_db):
    from annotation.models import Group
    from benchmark.models import BenchmarkRun
    from rltraining.jobs import rl_enqueue
    from rltraining.services import send_to_annotation

    human, _ = user_create_or_update(username="human", role=Role.ANNOTATOR)
    dataset, bundle = demo.import_dataset(SCALE, annotators=[human], name="loop")
    assert dataset.groups.count() == 12

    # 3 noise-free simulated annotators rank 10 of the 12 groups through the HTTP API
    assert demo.rank_over_http(live_server.url, dataset, bundle, SCALE) == 3 * 10
    report = demo.refresh_report(dataset)
    for dim in ("prompt_following", "consistency", "overall"):
        agreement = report.data["agreement"][dim]["all"]["pairwise_agreement"]["value"]
        assert agreement == pytest.approx(1.0), dim

    bench = demo.benchmark_dataset(dataset, name="loop-bench")
    assert bench.rows > 0
    runs = demo.queue_benchmark_runs(bench, demo.baseline_scorers(bundle))
    for run in runs.values():
        _run(run.job_id)
    oracle = BenchmarkRun.objects.get(pk=runs["oracle (EditWorld truth)"].pk)
    assert oracle.metric["overall"] == {"prompt_following": 1.0, "consistency": 1.0,
                                        "overall": 1.0}  # fmt: skip
    random_run = BenchmarkRun.objects.get(pk=runs["random"].pk)
    assert random_run.metric["overall"]["overall"] < 0.9

    judge, judge_job = demo.queue_judge(config=JUDGE)
    _run(judge_job)
    base_run = demo.queue_benchmark_runs(bench, demo.base_scorer(judge))[demo.BASE_LABEL]
    _run(base_run.job_id)
    model = demo.queue_finetune(dataset, bench, judge, SCALE)
    _run(model.job_id)
    model.refresh_from_db()
    assert model.status == "ready"
    # held out by group: the benchmark's pairs come from groups the model never trained on
    from annotation.ml.rankings import read_manifest
    from benchmark.models import BenchmarkPair

    sides = read_manifest(Path(model.snapshot.path))["split"]["groups"]
    benchmarked = set(BenchmarkPair.objects.filter(dataset=bench)
                      .values_list("extra__group_id", flat=True))  # fmt: skip
    assert benchmarked and benchmarked <= set(sides["held_out"])
    assert not benchmarked & set(sides["train"])
    assert model.job.result["benchmark_held_out"] is True
    scored = BenchmarkRun.objects.get(dataset=bench, label=model.name)
    assert _run(scored.job_id).result["scored_now"] > 0
    # the promotion gate reads the held-out run and the pixel baseline's on the same benchmark
    from rewardmodel import gate

    scored.refresh_from_db()
    pixel = BenchmarkRun.objects.get(dataset=bench, label="pixel")
    verdict = gate.check(model, against="pixel")
    assert (verdict.benchmark, verdict.run, verdict.against_run) == (
        bench.name,
        scored.pk,
        pixel.pk,
    )
    assert verdict.accuracy == scored.metric["overall"]["overall"]
    assert verdict.against_accuracy == pytest.approx(pixel.metric["overall"]["overall"])
    low = verdict.difference_interval[0]
    assert verdict.passed == (low > 0) and low <= verdict.difference
    chosen, why = demo.choose_rl_reward(model, against="pixel")
    model.refresh_from_db()
    assert (chosen == model) == verdict.passed == model.promoted and model.gate["reason"] in why
    model.promote()  # the RL below runs with the learned reward whatever the gate said

    editor = demo.tiny_editor(SCALE)
    # RL with the truth as reward (the reward is the oracle's overall grade, in [0, 1])
    prompts_file = demo.rl_prompts_file(SCALE)
    oracle_spec = demo.oracle_reward(SCALE)
    oracle_run = rl_enqueue(config={
        "run_name": "oracle-rl", "policy": str(editor), "reward": oracle_spec,
        "prompts_file": prompts_file, "eval_prompts": 2, "policy_options": {"lora_r": 8},
        "training": {"rounds": 3, "num_steps": 8, "group_size": 4, "prompts_per_round": 6,
                     "micro_batch": 4, "train_steps": 4, "learning_rate": 1e-3,
                     "eval_every": 3},
    })  # fmt: skip
    job = _run(oracle_run.job_id)
    metrics = job.metrics.filter(name="reward_mean").order_by("step")
    curve = [value for value in metrics.values_list("value", flat=True)]
    print("oracle-reward RL, reward_mean per round:", [round(v, 4) for v in curve])
    assert len(curve) == 3 and all(0 < v < 1 for v in curve)
    # the editor edits somewhat: better than leaving the source as it is (overall 0 here,
    # since an unedited source does not follow the instruction)
    assert min(curve) > 0.05

    # RL with the fine-tuned reward model, then its outputs go back to an annotator
    run = demo.queue_rl(editor, model, SCALE)
    _run(run.job_id)
    review = send_to_annotation(run=run, overlap=1, annotators=[human])
    # the run's held-out prompts: a quarter by key, never trained on, two of them evaluated
    job = Job.objects.get(pk=run.job_id)
    assert job.config["held_out"] == 0.25 and job.result["eval_prompts"] == 2
    assert Group.objects.filter(dataset=review).count() == SCALE.eval_prompts
    token = user_api_token(user=human)
    status, served = api_call(live_server, token, "POST", f"/api/datasets/{review.pk}/next/", {})
    assert status == 200, served
    assert served["group"]["instruction"] and len(served["group"]["candidates"]) >= 2

    # lineage: what made the RL run, with the hashes that pin it, in the graph and the API
    from lineage.graph import lineage
    from media.digest import folder_sha256
    from media.storage import read_stored

    model.refresh_from_db()
    snapshot = model.snapshot
    graph = lineage("rl_run", run.pk)
    assert {(e.source, e.target, e.relation) for e in graph.edges} == {
        (f"dataset:{dataset.pk}", f"snapshot:{snapshot.pk}", "snapshot"),
        (f"snapshot:{snapshot.pk}", f"reward_model:{model.pk}", "trained"),
        (f"reward_model:{model.pk}", f"rl_run:{run.pk}", "reward of"),
        (f"rl_run:{run.pk}", f"dataset:{review.pk}", "samples sent to"),
        (f"prompts_file:{run.pk}", f"rl_run:{run.pk}", "prompts of"),
    }
    run.refresh_from_db()
    prompts = hashlib.sha256(read_stored(run.prompts_file)).hexdigest()
    assert graph.nodes[f"prompts_file:{run.pk}"].sha256 == prompts == run.prompts_sha256
    assert snapshot.kind == "rankings" and snapshot.dataset == dataset
    assert graph.nodes[f"snapshot:{snapshot.pk}"].sha256 == snapshot.sha256
    assert graph.nodes[f"reward_model:{model.pk}"].sha256 == folder_sha256(model.adapter)
    # the model's own lineage reaches its benchmark run and the RL run it rewarded
    downstream = {(e.source, e.target) for e in lineage("reward_model", model.pk).edges}
    assert (f"reward_model:{model.pk}", f"benchmark_run:{scored.pk}") in downstream
    assert (f"reward_model:{model.pk}", f"rl_run:{run.pk}") in downstream
    researcher, _ = user_create_or_update(username="lineage-r", role=Role.RESEARCHER)
    status, body = api_call(
        live_server, user_api_token(user=researcher), "GET", f"/api/lineage/rl_run/{run.pk}/"
    )
    assert status == 200 and body == json.loads(json.dumps(graph.as_dict()))
