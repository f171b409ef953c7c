"""The researcher pages of RL training (no torch: runs, jobs, metrics and samples are made
directly in the database or through rl_enqueue with a dataset)."""

import base64
import hashlib
import json
import re

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from annotation.models import Candidate, Dataset
from jobs.models import Job, JobMetric, JobStatus
from media.storage import store_image
from rewardmodel.models import RewardModel
from rltraining.forms import form_hyperparameters
from rltraining.jobs import rl_enqueue
from rltraining.models import RLRun, RLSample
from tests.annotation_fixtures import make_dataset
from tests.benchmark_fixtures import png

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RL_RUNS_DIR = tmp_path / "rl_runs"


@pytest.fixture
def dataset():
    return make_dataset("prompts", groups=6, candidates=2)


def _run(dataset, name="r1", user=None):
    return rl_enqueue(
        config={"run_name": name, "policy": "/models/tiny", "reward": {"kind": "brightness"},
                "dataset_id": dataset.pk},
        user=user,
    )  # fmt: skip


def _samples(run, rounds, prompts=2, kind=RLSample.Kind.EVAL, n=1, best=None):
    """Stored images for each (round, prompt, sample); `best`: the sample index marked best."""
    for r in rounds:
        for p in range(prompts):
            source = store_image(png(p * 40, (32, 32)), f"source {p}")
            for j in range(n):
                image = store_image(png((r * 13 + p * 5 + j * 3 + 1) % 256, (32, 32)), "sample")
                RLSample.objects.create(
                    run=run, kind=kind, round=r, prompt_index=p, sample_index=j,
                    prompt_key=f"k{p}", instruction=f"make it red {p}", source=source.name,
                    source_thumb=source.thumb, image=image.name, thumb=image.thumb,
                    reward=round(0.1 * r + 0.01 * p + 0.001 * j, 4), best=(j == best),
                )  # fmt: skip


def _launch_post(dataset=None, /, **fields):
    """What the form sends: its pre-filled hyperparameters, then `fields`."""
    data = {h["name"]: h["value"] for h in form_hyperparameters() if h["kind"] != "bool"}
    data |= {
        "name": "run-a", "policy": "/models/tiny", "reward": "brightness",
        "dataset": str(dataset.pk) if dataset else "", "eval_prompts": "2", "gpus": "1",
        "lora_r": "32", "lora_alpha": "64", "height": "", "width": "",
    }  # fmt: skip
    data.update(fields)
    return data


def _jsonl(lines: int, bad_line: int | None = None) -> bytes:
    rows = []
    for i in range(1, lines + 1):
        if i == bad_line:
            rows.append('{"instruction": "x", "source": "not base64!"}')
        else:
            source = base64.b64encode(png(i * 20, (32, 32))).decode()
            rows.append(json.dumps({"instruction": f"edit {i}", "source": source, "key": f"p{i}"}))
    return ("\n".join(rows) + "\n").encode()


def _nothing_created():
    return RLRun.objects.count() == 0 and Job.objects.count() == 0


# ------------------------------------------------------------------ access


def test_annotators_and_anonymous_visitors_cannot_use_the_rl_pages(
    client, annotator, researcher, dataset
):
    run = _run(dataset, user=researcher)
    _samples(run, [0])
    sample = RLSample.objects.first()
    gets = ["/rl/", f"/rl/{run.pk}/", f"/rl/{run.pk}/gallery/?i=0",
            f"/rl/samples/{sample.pk}/thumb/", f"/rl/samples/{sample.pk}/source/"]  # fmt: skip
    posts = ["/rl/", f"/rl/{run.pk}/send/", f"/rl/{run.pk}/best-of-n/"]
    for url in gets + posts:
        response = client.get(url) if url in gets else client.post(url, {"n": "4"})
        assert response.status_code == 302 and "/login/" in response["Location"], url
    client.force_login(annotator)
    for url in gets:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url, _launch_post(dataset)).status_code == 403, url
    assert RLRun.objects.count() == 1 and Job.objects.count() == 1
    assert not Dataset.objects.filter(name__startswith="rl-").exists()
    client.force_login(researcher)
    assert client.get("/rl/").status_code == 200
    assert b'href="/rl/"' in client.get("/").content  # the nav link, for researchers only
    client.force_login(annotator)
    assert b'href="/rl/"' not in client.get("/").content


def test_the_launch_form_checks_the_csrf_token(researcher, dataset):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(researcher)
    assert strict.post("/rl/", _launch_post(dataset)).status_code == 403
    assert _nothing_created()


# ------------------------------------------------------------------ the list and launching


def test_the_launch_form_is_prefilled_with_the_papers_values(researcher_client):
    model = RewardModel.objects.create(
        name="es-7b", base="/m/qwen", origin=RewardModel.Origin.IMPORTED, promoted=True
    )
    RewardModel.objects.create(
        name="training", base="/m/q", origin="trained", status=RewardModel.Status.TRAINING
    )
    html = researcher_client.get("/rl/").content.decode()
    expected = {"learning_rate": "0.0004", "noise_level": "0.7", "group_size": "12",
                "beta": "0.04", "clip_low": "0.0001", "clip_high": "0.0005", "num_steps": "20",
                "rounds": "100", "seed": "42", "ema_decay": ""}  # fmt: skip
    for name, value in expected.items():
        assert f'id="hp-{name}" value="{value}"' in html, name
    assert 'name="adam_betas"' not in html
    # checked: v1.1's policy-loss re-weighting is on, as in the released RL configs
    assert 'name="std_weighting" id="hp-std_weighting" checked>' in html
    assert f'<option value="model:{model.pk}" selected>es-7b (default)</option>' in html
    assert "training" not in re.findall(r"<option[^>]*>([^<]*)</option>", html)
    for name, value in {"lora_r": "32", "lora_alpha": "64", "eval_prompts": "4", "gpus": "1",
                        "k": "1"}.items():  # fmt: skip
        assert re.search(rf'name="{name}" type="number" min="\d" value="{value}"', html), name


def test_launch_holds_prompts_out_by_group(researcher_client, dataset):
    response = researcher_client.post("/rl/", _launch_post(dataset, held_out="0.5", split_seed="1"))
    assert response.status_code == 302, response.content.decode()[:2000]
    config = RLRun.objects.get().job.config
    assert config["held_out"] == 0.5 and config["split_seed"] == 1
    page = researcher_client.get(response["Location"]).content.decode()
    assert "50% of the prompts held out by group (split seed 1), never trained on" in page


def test_launch_queues_a_gpu_job_with_the_given_overrides(researcher_client, researcher, dataset):
    post = _launch_post(
        dataset, rounds="3", learning_rate="0.001", group_size="4", std_weighting="on",
        ema_decay="", lora_r="8", height="256", width="320", gpus="2",
    )  # fmt: skip
    response = researcher_client.post("/rl/", post)
    run = RLRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/rl/{run.pk}/"
    job = run.job
    assert job.kind == "rltraining.train" and job.queue == "gpu" and job.status == "queued"
    assert job.created_by == researcher and run.created_by == researcher
    assert run.dataset == dataset and run.prompts_file == "" and run.reward_model is None
    assert run.reward == {"kind": "brightness"} and run.policy == "/models/tiny"
    config = job.config
    assert config["eval_prompts"] == 2 and config["gpus"] == 2
    assert config["held_out"] == 0 and config["split_seed"] == 0
    assert config["policy_options"] == {"lora_r": 8, "lora_alpha": 64, "height": 256, "width": 320}
    training = config["training"]
    assert training["rounds"] == 3 and training["learning_rate"] == 0.001
    assert training["group_size"] == 4 and training["std_weighting"] is True
    assert training["noise_level"] == 0.7 and training["ema_decay"] is None
    page = researcher_client.get(f"/rl/{run.pk}/").content.decode()
    assert "run-a" in page and "Queued" in page and f"/jobs/{job.pk}/cancel/" in page
    listing = researcher_client.get("/rl/").content.decode()
    assert f'href="/rl/{run.pk}/">run-a</a>' in listing and "brightness" in listing


@pytest.mark.parametrize("adapter", ["/m/lora", ""])
def test_launch_with_a_reward_model_builds_its_editscore_spec(researcher_client, dataset, adapter):
    model = RewardModel.objects.create(
        name="es", base="/m/qwen", adapter=adapter, origin=RewardModel.Origin.IMPORTED
    )
    post = _launch_post(dataset, reward=f"model:{model.pk}", k="3")
    assert researcher_client.post("/rl/", post).status_code == 302
    run = RLRun.objects.get()
    assert run.reward_model == model
    assert run.reward == {"kind": "editscore", "base": "/m/qwen", "adapter": adapter or None,
                          "k": 3}  # fmt: skip
    assert run.job.config["reward"] == run.reward
    assert "es (EditScore)" in researcher_client.get("/rl/").content.decode()


def test_launch_with_a_colour_reward_and_with_a_json_spec(researcher_client, dataset):
    post = _launch_post(dataset, name="red", reward="colour", colour_target="255, 10 0")
    assert researcher_client.post("/rl/", post).status_code == 302
    spec = {"kind": "weighted", "terms": [[{"kind": "brightness"}, 0.5]]}
    post = _launch_post(dataset, name="mixed", reward="json", reward_json=json.dumps(spec))
    assert researcher_client.post("/rl/", post).status_code == 302
    runs = {run.name: run.reward for run in RLRun.objects.all()}
    assert runs == {"red": {"kind": "colour", "target": [255, 10, 0]}, "mixed": spec}


def test_launch_with_an_uploaded_prompt_file_stores_it_by_content_hash(researcher_client):
    data = _jsonl(5)
    upload = SimpleUploadedFile("prompts.jsonl", data, content_type="application/jsonl")
    response = researcher_client.post("/rl/", _launch_post(prompts=upload))
    assert response.status_code == 302, response.content.decode()[:2000]
    run = RLRun.objects.get()
    name = f"rl_prompts/{hashlib.sha256(data).hexdigest()}.jsonl"
    assert run.prompts_file == name and run.dataset is None
    assert run.job.config["prompts_file"] == name
    with default_storage.open(name, "rb") as f:
        assert f.read() == data
    # the same file again: stored once
    upload = SimpleUploadedFile("again.jsonl", data)
    assert (
        researcher_client.post("/rl/", _launch_post(name="run-b", prompts=upload)).status_code
        == 302
    )
    assert default_storage.listdir("rl_prompts")[1] == [name.split("/")[1]]


BAD_INPUTS = [
    ({"name": "bad name"}, "run name"),
    ({"name": ""}, "run name"),
    ({"policy": ""}, "policy"),
    ({"dataset": ""}, "choose a dataset or upload"),  # neither source
    ({"dataset": "999"}, "unknown dataset"),
    ({"learning_rate": "fast"}, "learning_rate: &#x27;fast&#x27; is not a valid float"),
    ({"learning_rate": "-1"}, "learning_rate must be &gt; 0"),
    ({"group_size": "1"}, "group_size must be &gt;= 2"),
    ({"rounds": "2.5"}, "rounds: &#x27;2.5&#x27; is not a valid int"),
    ({"train_steps": "25"}, "train_steps must be at most num_steps - 1 = 19"),
    ({"ema_decay": "1.5"}, "ema_decay must be &lt;= 0.999999"),
    ({"reward": "model:999"}, "unknown reward model"),
    ({"reward": "colour", "colour_target": "300, 0, 0"}, "colour target"),
    ({"reward": "json", "reward_json": "{nope"}, "reward spec: not JSON"),
    ({"reward": "json", "reward_json": '{"kind": "brightness", "x": 1}'}, "unknown keys"),
    ({"reward": "json", "reward_json": '{"kind": "magic"}'}, "reward must be an object"),
    ({"reward": ""}, "choose a reward"),
    ({"eval_prompts": "6"}, "not enough to hold 6 out"),
    ({"gpus": "0"}, "gpus must be an integer &gt;= 1"),
    ({"held_out": "1.5"}, "held_out must be a fraction between 0 and 0.9"),
    ({"held_out": "0.5", "split_seed": "-1"}, "split_seed must be an integer &gt;= 0"),
    ({"lora_r": "0"}, "lora_r must be an integer &gt;= 1"),
    ({"policy_json": "[1]"}, "policy options: a JSON object"),
    ({"policy_json": '{"guidence": "dual"}'}, "unknown policy option &#x27;guidence&#x27;"),
    ({"k": "0", "reward": "model:{model}"}, "k must be an integer &gt;= 1"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_INPUTS)
def test_bad_launch_inputs_answer_400_with_the_message_and_create_nothing(
    researcher_client, dataset, fields, message
):
    model = RewardModel.objects.create(name="es", base="/m", origin=RewardModel.Origin.IMPORTED)
    fields = {k: v.replace("{model}", str(model.pk)) for k, v in fields.items()}
    response = researcher_client.post("/rl/", _launch_post(dataset, **fields))
    assert response.status_code == 400
    html = response.content.decode()
    error = re.search(r'<p class="flash error" id="rl-error" role="alert">(.*?)</p>', html, re.S)
    assert error and message in error.group(1), html[:3000]
    assert _nothing_created()
    # the form keeps what was typed
    if fields.get("name"):
        assert re.search(rf'<input name="name" [^>]*value="{re.escape(fields["name"])}"', html)


def test_both_prompt_sources_are_refused(researcher_client, dataset):
    upload = SimpleUploadedFile("prompts.jsonl", _jsonl(5))
    response = researcher_client.post("/rl/", _launch_post(dataset, prompts=upload))
    assert response.status_code == 400 and b"not both" in response.content
    assert _nothing_created() and not default_storage.exists("rl_prompts")


def test_a_prompt_file_with_a_bad_line_is_refused_naming_the_line(researcher_client):
    upload = SimpleUploadedFile("mine.jsonl", _jsonl(5, bad_line=3))
    response = researcher_client.post("/rl/", _launch_post(prompts=upload))
    assert response.status_code == 400
    assert b"mine.jsonl:3: &#x27;source&#x27; is not valid base64" in response.content
    assert _nothing_created() and not default_storage.exists("rl_prompts")


def test_a_prompt_file_with_too_few_prompts_is_refused(researcher_client):
    upload = SimpleUploadedFile("few.jsonl", _jsonl(2))
    response = researcher_client.post("/rl/", _launch_post(prompts=upload, eval_prompts="2"))
    assert response.status_code == 400 and b"not enough to hold 2 out" in response.content
    assert _nothing_created()


def test_an_oversized_prompt_file_is_refused(researcher_client, settings):
    data = _jsonl(5)
    settings.RL_PROMPTS_MAX_BYTES = len(data) - 1  # within the Content-Length slack: the handler
    upload = SimpleUploadedFile("big.jsonl", data)
    response = researcher_client.post("/rl/", _launch_post(prompts=upload))
    assert response.status_code == 400 and b"larger than the limit" in response.content
    assert _nothing_created() and not default_storage.exists("rl_prompts")
    # far above the limit: refused from the Content-Length, the body unread
    settings.RL_PROMPTS_MAX_BYTES = 1000
    upload = SimpleUploadedFile("huge.jsonl", b"x" * (1024 * 1024 + 5000))
    response = researcher_client.post("/rl/", _launch_post(prompts=upload))
    assert response.status_code == 400 and b"larger than the limit" in response.content
    assert _nothing_created() and not default_storage.exists("rl_prompts")


def test_a_taken_run_name_is_refused_and_the_new_upload_not_kept(researcher_client, dataset):
    _run(dataset, name="taken")
    upload = SimpleUploadedFile("p.jsonl", _jsonl(5))
    response = researcher_client.post("/rl/", _launch_post(name="taken", prompts=upload))
    assert response.status_code == 400 and b"exists already" in response.content
    assert RLRun.objects.count() == 1 and Job.objects.count() == 1
    assert default_storage.listdir("rl_prompts")[1] == []


# ------------------------------------------------------------------ a run's page


def _metrics(job, rounds=5):
    for step in range(1, rounds + 1):
        for name, value in {"reward_mean": 0.1 * step, "reward_std": 0.05, "kl": 0.001 * step,
                            "clip_fraction": 0.2, "ratio_min": 0.99, "ratio_max": 1.01,
                            "grad_norm": 0.5, "lr": 4e-4, "seconds": 12.0,
                            "reward_mean/color_alter": 0.2 * step,
                            "policy_loss": -0.01}.items():  # fmt: skip
            JobMetric.objects.create(job=job, step=step, name=name, value=value)
    for step in (0, rounds):
        JobMetric.objects.create(job=job, step=step, name="eval_reward_mean", value=0.3 + step)


def test_the_run_page_shows_the_curves_the_gallery_rounds_and_the_result(
    researcher_client, dataset
):
    run = _run(dataset)
    _metrics(run.job)
    _samples(run, [0, 5, 10], prompts=2)
    Job.objects.filter(pk=run.job_id).update(status=JobStatus.RUNNING, progress=0.5)
    html = researcher_client.get(f"/rl/{run.pk}/").content.decode()
    metrics = re.findall(r'data-metric="([^"]+)"', html)
    assert metrics == ["eval_reward_mean", "reward_mean", "reward_std", "kl", "clip_fraction",
                       "ratio_min", "ratio_max", "grad_norm", "lr", "seconds",
                       "reward_mean/color_alter", "policy_loss"]  # fmt: skip
    assert "Evaluated rounds: 0, 5, 10" in html
    assert re.search(
        r'type="range" id="round-slider" name="i" min="0" max="2" step="1" value="2"', html
    )
    assert 'data-rounds="0,5,10"' in html and 'aria-valuetext="round 10"' in html
    assert '<strong id="gallery-round">10</strong>' in html
    shown = RLSample.objects.filter(run=run, round=10).order_by("prompt_index")
    for sample in shown:
        assert f"/rl/samples/{sample.pk}/thumb/" in html
        assert f"/rl/samples/{sample.pk}/source_thumb/" in html
    assert (
        'reward <strong class="rl-reward">1.000</strong> <span class="muted">(base 0.000)' in html
    )
    assert f'hx-get="/rl/{run.pk}/?shown=3" hx-trigger="every 2s"' in html
    assert f"/jobs/{run.job_id}/cancel/" in html

    # the live partial (htmx polling) while running, then 286 once the job is over
    live = researcher_client.get(f"/rl/{run.pk}/?shown=2", HTTP_HX_REQUEST="true")
    assert live.status_code == 200 and b'id="rl-live"' in live.content
    assert b"<html" not in live.content and b"new evaluation rounds" in live.content
    result = {"rounds": 10, "reward_last": 0.5, "eval_reward_last": 10.3}
    Job.objects.filter(pk=run.job_id).update(status=JobStatus.SUCCEEDED, result=result)
    live = researcher_client.get(f"/rl/{run.pk}/?shown=3", HTTP_HX_REQUEST="true")
    assert live.status_code == 286 and b"new evaluation rounds" not in live.content
    assert b"<dt>eval_reward_last</dt><dd>10.3</dd>" in live.content
    assert b"/cancel/" not in live.content


def test_the_gallery_partial_follows_the_slider(researcher_client, dataset):
    run = _run(dataset)
    _samples(run, [0, 5, 10], prompts=2)

    def gallery(index):
        response = researcher_client.get(f"/rl/{run.pk}/gallery/?i={index}", HTTP_HX_REQUEST="true")
        assert response.status_code == 200 and b"<html" not in response.content
        return response.content.decode()

    for index, round_index in [(0, 0), (1, 5), (2, 10), (9, 10), (-3, 0), ("x", 10)]:
        html = gallery(index)
        assert f'<strong id="gallery-round">{round_index}</strong>' in html
        for sample in RLSample.objects.filter(run=run, round=round_index):
            assert f"/rl/samples/{sample.pk}/thumb/" in html
        others = RLSample.objects.filter(run=run).exclude(round=round_index)
        assert not any(f"/rl/samples/{s.pk}/thumb/" in html for s in others)
    assert "(base policy)" in gallery(0) and "(base policy)" not in gallery(1)


def test_a_run_without_samples_or_metrics_still_renders(researcher_client, dataset):
    run = _run(dataset)
    html = researcher_client.get(f"/rl/{run.pk}/").content.decode()
    assert "No evaluation samples yet" in html and 'id="round-slider"' not in html
    assert "No metrics yet" in html
    assert researcher_client.get(f"/rl/{run.pk}/gallery/").status_code == 200
    assert researcher_client.get("/rl/999/").status_code == 404


def test_sample_images_are_streamed_with_their_content_type(researcher_client, dataset):
    run = _run(dataset)
    _samples(run, [0], prompts=1)
    sample = RLSample.objects.get()
    for which, name, kind in [("image", sample.image, "image/png"),
                              ("thumb", sample.thumb, "image/jpeg"),
                              ("source", sample.source, "image/png"),
                              ("source_thumb", sample.source_thumb, "image/jpeg")]:  # fmt: skip
        response = researcher_client.get(f"/rl/samples/{sample.pk}/{which}/")
        assert response.status_code == 200 and response["Content-Type"] == kind, which
        with default_storage.open(name, "rb") as f:
            assert b"".join(response.streaming_content) == f.read()
    assert researcher_client.get(f"/rl/samples/{sample.pk}/other/").status_code == 404
    assert researcher_client.get(f"/rl/samples/{sample.pk + 1}/image/").status_code == 404
    default_storage.delete(sample.image)
    assert researcher_client.get(f"/rl/samples/{sample.pk}/image/").status_code == 404


# ------------------------------------------------------------------ send to annotation


def test_send_to_annotation_needs_base_and_trained_samples(researcher_client, dataset, annotator):
    run = _run(dataset)
    before = Dataset.objects.count()
    response = researcher_client.post(f"/rl/{run.pk}/send/", {"overlap": "2"})
    assert response.status_code == 400
    assert b"has no evaluation samples of both the base and the trained policy" in response.content
    _samples(run, [0], prompts=3)  # the base policy only
    assert researcher_client.post(f"/rl/{run.pk}/send/", {"overlap": "2"}).status_code == 400
    assert Dataset.objects.count() == before
    assert researcher_client.post(f"/rl/{run.pk}/send/", {"overlap": "0"}).status_code == 400

    _samples(run, [10], prompts=3)
    response = researcher_client.post(
        f"/rl/{run.pk}/send/", {"overlap": "2", "annotators": [str(annotator.pk)]}
    )
    assert response.status_code == 302 and response["Location"] == f"/rl/{run.pk}/"
    run.refresh_from_db()
    review = run.review_dataset
    assert review.name == "rl-r1" and review.overlap == 2
    assert list(review.annotators.all()) == [annotator]
    assert review.groups.count() == 3
    editors = sorted(
        Candidate.objects.filter(group__dataset=review).values_list("editor", flat=True)
    )
    assert editors == ["base"] * 3 + ["trained@10"] * 3
    html = researcher_client.get(f"/rl/{run.pk}/").content.decode()
    assert "Sent to annotation as dataset rl-r1 (3 groups)." in html
    assert f'href="/annotate/{review.pk}/quality/"' in html


# ------------------------------------------------------------------ Best-of-N


def test_best_of_n_queues_a_job_and_its_samples_are_shown(researcher_client, researcher, dataset):
    run = _run(dataset)
    response = researcher_client.post(f"/rl/{run.pk}/best-of-n/", {"n": "8", "policy": "base"})
    assert response.status_code == 302 and response["Location"] == f"/rl/{run.pk}/"
    job = Job.objects.get(kind="rltraining.best_of_n")
    assert job.queue == "gpu" and job.created_by == researcher
    assert job.config == {"run_id": run.pk, "n": 8, "trained": False, "noise_level": None}
    response = researcher_client.post(f"/rl/{run.pk}/best-of-n/", {"n": "1"})
    assert response.status_code == 400 and b"n must be &gt;= 2" in response.content
    assert Job.objects.filter(kind="rltraining.best_of_n").count() == 1

    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED,
        result={"best_reward_mean": 0.91, "single_sample_reward_mean": 0.5,
                "all_samples_reward_mean": 0.55},
    )  # fmt: skip
    _samples(run, [0], prompts=2, kind=RLSample.Kind.BEST_OF_N, n=4, best=2)
    html = researcher_client.get(f"/rl/{run.pk}/").content.decode()
    assert "Best-of-4 at round 0 (base policy)" in html
    assert re.search(rf'<a href="/jobs/{job.pk}/">#{job.pk}</a></th><td>8</td><td>base</td>', html)
    assert "<td>0.910</td><td>0.500</td><td>0.550</td>" in html
    best = RLSample.objects.filter(kind=RLSample.Kind.BEST_OF_N, best=True)
    assert html.count('class="bon-sample best"') == best.count() == 2
    for sample in best:
        assert re.search(
            rf'<a href="/rl/samples/{sample.pk}/image/" class="bon-sample best"[^>]*>\s*'
            rf'<img src="/rl/samples/{sample.pk}/thumb/"', html
        )  # fmt: skip
    assert html.count('class="bon-sample"') == 6
