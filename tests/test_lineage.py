"""Lineage: what an object came from and what was made from it, as a page (and the fragment the
reward-model, benchmark-run and RL-run pages embed) and as an API, for researchers only."""

import pytest

from annotation.exports import snapshot_rankings
from benchmark.models import BenchmarkDataset, BenchmarkRun
from lineage.graph import lineage
from rewardmodel.models import RewardModel
from rltraining.models import RLRun
from tests.annotation_fixtures import make_dataset
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def chain(tmp_path):
    """dataset -> rankings snapshot -> reward model -> (benchmark run, RL run) -> review dataset,
    and a second model on other weights whose runs are not this model's."""
    dataset = make_dataset("src", groups=2, candidates=2)
    snapshot = snapshot_rankings(dataset)
    model = RewardModel.objects.create(
        name="rm", base="/m/base", adapter="/m/adapter", origin="trained", snapshot=snapshot,
        weights_sha256="a" * 64,
    )  # fmt: skip
    other = RewardModel.objects.create(name="rm2", base="/m/base", adapter="", origin="imported")
    bench = BenchmarkDataset.objects.create(name="b", layout="jsonl", source_path="-")
    spec = {"kind": "editscore", "base": "/m/base", "adapter": "/m/adapter", "k": 1}
    scored = BenchmarkRun.objects.create(
        job=JobFactory(), dataset=bench, label="rm", scorer=spec, scorer_key="f" * 64,
        metric={"overall": {"overall": 0.75}},
    )  # fmt: skip
    BenchmarkRun.objects.create(
        job=JobFactory(), dataset=bench, label="rm2", scorer={**spec, "adapter": None} | {},
        scorer_key="e" * 64,
    )  # fmt: skip
    review = make_dataset("rl-review", groups=1, candidates=2)
    run = RLRun.objects.create(
        name="r", job=JobFactory(), policy="/p", reward=spec, reward_model=model,
        dataset=dataset, snapshot=snapshot, review_dataset=review,
    )  # fmt: skip
    return locals()


def _edges(graph):
    return {(e.source, e.target, e.relation) for e in graph.edges}


def test_the_graph_walks_inputs_and_outputs_transitively(chain):
    c = chain
    d, s, m, r, rev = c["dataset"], c["snapshot"], c["model"], c["run"], c["review"]
    graph = lineage("reward_model", m.pk)
    assert _edges(graph) == {
        (f"dataset:{d.pk}", f"snapshot:{s.pk}", "snapshot"),
        (f"snapshot:{s.pk}", f"reward_model:{m.pk}", "trained"),
        (f"reward_model:{m.pk}", f"benchmark_run:{c['scored'].pk}", "scored in"),
        (f"reward_model:{m.pk}", f"rl_run:{r.pk}", "reward of"),
        (f"rl_run:{r.pk}", f"dataset:{rev.pk}", "samples sent to"),
    }
    nodes = graph.nodes
    assert nodes[f"snapshot:{s.pk}"].sha256 == s.sha256 and len(s.sha256) == 64
    assert nodes[f"reward_model:{m.pk}"].sha256 == "a" * 64
    assert nodes[f"benchmark_run:{c['scored'].pk}"].detail == "overall 0.750"
    # the other model (same base, no adapter) is not in it, nor its run
    assert f"reward_model:{c['other'].pk}" not in nodes
    # layout: each node after its inputs
    depth = {n.key: i for i, column in enumerate(graph.columns()) for n in column}
    assert all(depth[a] < depth[b] for a, b, _ in _edges(graph))
    # from the review dataset back to where its samples came from
    back = lineage("dataset", rev.pk)
    assert (f"reward_model:{m.pk}", f"rl_run:{r.pk}", "reward of") in _edges(back)
    assert (f"snapshot:{s.pk}", f"rl_run:{r.pk}", "prompts of") in _edges(back)


def test_pages_and_api_are_for_researchers(chain, client, researcher, annotator):
    model = chain["model"]
    url, api = f"/lineage/reward_model/{model.pk}/", f"/api/lineage/reward_model/{model.pk}/"
    client.force_login(annotator)
    assert client.get(url).status_code == 403
    assert client.get(api).status_code == 403
    client.force_login(researcher)
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert (
        f'id="node-snapshot-{chain["snapshot"].pk}"' in html
        and chain["snapshot"].sha256[:12] in html
    )
    fragment = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<section class="card lineage"') and "<html" not in fragment
    body = client.get(api).json()
    assert body["focus"] == f"reward_model:{model.pk}" and len(body["nodes"]) == 6
    assert client.get("/api/lineage/reward_model/999/").status_code == 404
    assert client.get("/api/lineage/nonsense/1/").json()["detail"].startswith("unknown kind")
    assert client.get("/lineage/rl_run/999/").status_code == 404
    # the pages that embed it
    for page_url in (f"/reward-models/{model.pk}/", f"/rl/{chain['run'].pk}/",
                     f"/benchmark/runs/{chain['scored'].pk}/"):  # fmt: skip
        shown = client.get(page_url)
        assert shown.status_code == 200, page_url
        assert "/lineage/" in shown.content.decode(), page_url


def test_the_reward_model_page_shows_what_it_learned_from_and_how_it_scored(
    chain, researcher_client
):
    html = researcher_client.get(f"/reward-models/{chain['model'].pk}/").content.decode()
    assert chain["snapshot"].name in html and "a" * 64 in html
    assert f"/benchmark/runs/{chain['scored'].pk}/" in html and "0.750" in html
    listing = researcher_client.get("/reward-models/").content.decode()
    assert f'href="/reward-models/{chain["model"].pk}/"' in listing


def test_an_uploaded_prompts_file_is_a_node_with_the_hash_the_run_read(chain):
    run = chain["run"]
    RLRun.objects.filter(pk=run.pk).update(snapshot=None, dataset=None,
                                           prompts_file="rl_prompts/p.jsonl",
                                           prompts_sha256="c" * 64)  # fmt: skip
    graph = lineage("rl_run", run.pk)
    assert (f"prompts_file:{run.pk}", f"rl_run:{run.pk}", "prompts of") in _edges(graph)
    node = graph.nodes[f"prompts_file:{run.pk}"]
    assert (node.label, node.sha256) == ("p.jsonl", "c" * 64)
