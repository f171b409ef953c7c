"""The quality dashboard, report and adjudication APIs, snapshot export (command,
API and job) and the agreement command, over HTTP and the command line."""

import json
import uuid

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation.models import Group, Review, Snapshot
from annotation.quality import report_refresh
from annotation.services import ranking_submit
from jobs.models import Job
from jobs.runner import run_job
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
DIMS = ("prompt_following", "consistency", "overall")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _rank(group, user, order):
    """order: list of tiers of candidate suffixes, the same on every dimension."""
    tiers = [[f"{group.external_id}-{c}" for c in tier] for tier in order]
    ranking_submit(
        group=group,
        annotator=user,
        submission_id=uuid.uuid4(),
        tiers=dict.fromkeys(DIMS, tiers),
        seconds_spent=12,
    )


@pytest.fixture
def dataset():
    """g0: both annotators c0 > c1 > c2 (3 strict pairs per dimension, unanimous);
    g1: c0 > c1 = c2 and c0 > c1 > c2 (2 unanimous strict pairs, one unsettled)."""
    users = [UserFactory(username=f"ann{i}") for i in (1, 2)]
    dataset = make_dataset(groups=2, candidates=3, overlap=2, annotators=users)
    g0, g1 = Group.objects.filter(dataset=dataset).order_by("pk")
    _rank(g0, users[0], [["c0"], ["c1"], ["c2"]])
    _rank(g0, users[1], [["c0"], ["c1"], ["c2"]])
    _rank(g1, users[0], [["c0"], ["c1", "c2"]])
    _rank(g1, users[1], [["c0"], ["c1"], ["c2"]])
    return dataset


def test_dashboard_is_for_researchers_and_shows_the_stored_report(
    client, researcher, annotator, dataset
):
    client.force_login(annotator)
    assert client.get(f"/annotate/{dataset.pk}/quality/").status_code == 403
    assert client.get(f"/api/datasets/{dataset.pk}/report/").status_code == 403
    client.force_login(researcher)
    page = client.get(f"/annotate/{dataset.pk}/quality/")
    assert page.status_code == 200 and b'id="no-report"' in page.content
    assert client.get(f"/api/datasets/{dataset.pk}/report/").status_code == 404
    report_refresh(dataset)
    page = client.get(f"/annotate/{dataset.pk}/quality/").content.decode()
    assert 'id="agreement-prompt_following"' in page and "ann1" in page and "editor-0" in page
    body = client.get(f"/api/datasets/{dataset.pk}/report/").json()
    assert body["stale"] is False and body["rankings"] == 4
    # g0 agrees fully, g1 on 2 of 3 pairs: mean (1 + 2/3) / 2
    value = body["agreement"]["overall"]["all"]["pairwise_agreement"]["value"]
    assert value == pytest.approx(5 / 6)


def test_report_post_recomputes_through_the_broker(researcher_client, dataset):
    # The memory broker has no worker: run what was sent, as a worker would.
    from annotation.tasks import refresh_reports_task

    response = researcher_client.post(f"/api/datasets/{dataset.pk}/report/")
    assert response.status_code == 202
    refresh_reports_task(dataset.pk, True)
    assert researcher_client.get(f"/api/datasets/{dataset.pk}/report/").json()["rankings"] == 4


def test_adjudication_api_validates_and_replaces_the_consensus(
    client, researcher, annotator, dataset
):
    group = Group.objects.filter(dataset=dataset).order_by("pk").last()
    Group.objects.filter(pk=group.pk).update(review=Review.QUEUED, agreement=0.6)
    client.force_login(annotator)
    url = f"/api/groups/{group.pk}/adjudication/"
    tiers = dict.fromkeys(DIMS, [[f"{group.external_id}-c0"], [f"{group.external_id}-c2"], [f"{group.external_id}-c1"]])  # fmt: skip
    assert client.post(url, {"tiers": tiers}, content_type="application/json").status_code == 403
    client.force_login(researcher)
    queue = client.get(f"/api/datasets/{dataset.pk}/adjudication/").json()
    assert [q["group"] for q in queue] == [group.pk] and len(queue[0]["rankings"]) == 2
    bad = client.post(url, {"tiers": {"overall": []}}, content_type="application/json")
    assert bad.status_code == 400 and "missing" in bad.json()["detail"]
    ok = client.post(
        url, {"tiers": tiers, "note": "c2 is cleaner"}, content_type="application/json"
    )
    assert ok.status_code == 201
    group.refresh_from_db()
    assert group.review == Review.ADJUDICATED
    assert client.get(f"/api/datasets/{dataset.pk}/adjudication/").json() == []
    page = client.get(f"/annotate/{dataset.pk}/review/")
    assert page.status_code == 200 and b"No group is waiting for adjudication" in page.content


def test_review_page_shows_the_votes_and_submits_to_adjudication(researcher_client, dataset):
    group = Group.objects.filter(dataset=dataset).order_by("pk").last()
    Group.objects.filter(pk=group.pk).update(review=Review.QUEUED, agreement=0.6)
    page = researcher_client.get(f"/annotate/{dataset.pk}/review/")
    html = page.content.decode()
    assert page.status_code == 200 and "ann1" in html and "ann2" in html
    data = json.loads(
        html.split('id="board-data" type="application/json">')[1].split("</script>")[0]
    )
    assert data["group"]["submit_url"] == f"/api/groups/{group.pk}/adjudication/"
    assert data["group"]["skip_url"] is None and 'id="skip-button"' not in html


# --- snapshot export


def test_export_benchmark_writes_parquet_matching_the_consensus(dataset, tmp_path):
    out = tmp_path / "bench"
    call_command("export_benchmark", "--dataset", "ds", "--policy", "unanimous", "--out", str(out))
    table = pq.read_table(out / "data" / "test-00000-of-00001.parquet").to_pylist()
    assert len(table) == (3 + 2) * 3
    rows = {(r["group_id"], r["dimension"], tuple(r["key"])) for r in table}
    assert ("ds-g0", "overall", ("ds-g0-c0", "ds-g0-c2")) in rows
    assert ("ds-g1", "consistency", ("ds-g1-c0", "ds-g1-c1")) in rows
    assert not any(g == "ds-g1" and k == ("ds-g1-c1", "ds-g1-c2") for g, _, k in rows)
    from django.core.files.storage import default_storage

    from annotation.models import Candidate

    row = next(r for r in table if r["key"] == ["ds-g0-c0", "ds-g0-c2"])
    images = dict(Candidate.objects.values_list("external_id", "image"))
    with default_storage.open(images["ds-g0-c0"], "rb") as f:
        assert row["output_images"][0]["bytes"] == f.read()
    with default_storage.open(images["ds-g0-c2"], "rb") as f:
        assert row["output_images"][1]["bytes"] == f.read()
    with default_storage.open(Group.objects.get(external_id="ds-g0").source, "rb") as f:
        assert row["input_image"]["bytes"] == f.read()
    assert row["instruction"] == "instruction 0" and row["task_type"] == "color_alter"
    assert row["votes"] == {"for": 2, "against": 0, "tie": 0}
    snapshot = Snapshot.objects.get(kind="benchmark", name="bench")
    manifest = json.loads((out / "manifest.json").read_text())
    assert snapshot.rows == 15 and snapshot.sha256 == manifest["sha256"]
    # The same consensus exported again has the same content hash.
    call_command("export_benchmark", "--dataset", "ds", "--policy", "unanimous", "--out", str(tmp_path / "again"))  # fmt: skip
    assert Snapshot.objects.get(name="again").sha256 == snapshot.sha256


def test_export_preferences_writes_chosen_rejected_per_dimension(dataset, tmp_path):
    out = tmp_path / "prefs"
    call_command(
        "export_preferences", "--dataset", "ds", "--policy", "majority",
        "--max-tie-fraction", "0.5", "--out", str(out),
    )  # fmt: skip
    lines = [json.loads(x) for x in (out / "overall.jsonl").read_text().splitlines()]
    # With half the votes allowed to be ties, 1 for + 1 tie is not > half: still unsettled.
    assert len(lines) == 5
    first = lines[0]
    assert (first["chosen"], first["rejected"]) == ("ds-g0-c0", "ds-g0-c1")
    assert first["votes"] == {"for": 2, "against": 0, "tie": 0}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 15 and manifest["policy"]["max_tie_fraction"] == 0.5


def test_export_refuses_bad_input_and_writes_nothing(dataset, tmp_path):
    with pytest.raises(CommandError, match="no dataset named 'nope'"):
        call_command("export_benchmark", "--dataset", "nope", "--policy", "unanimous", "--out", str(tmp_path / "x"))  # fmt: skip
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("export_benchmark", "--dataset", "ds", "--policy", "most", "--out", str(tmp_path / "x"))  # fmt: skip
    with pytest.raises(CommandError, match="between 0 and 1"):
        call_command("export_benchmark", "--dataset", "ds", "--policy", "majority", "--max-tie-fraction", "2", "--out", str(tmp_path / "x"))  # fmt: skip
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "other.txt").write_text("keep me")
    with pytest.raises(CommandError, match="not empty|exists"):
        call_command("export_benchmark", "--dataset", "ds", "--policy", "unanimous", "--out", str(busy))  # fmt: skip
    assert sorted(p.name for p in busy.iterdir()) == ["other.txt"]
    assert not (tmp_path / "x").exists() and Snapshot.objects.count() == 0


def test_snapshot_api_runs_the_export_job(client, researcher, annotator, dataset):
    url = f"/api/datasets/{dataset.pk}/snapshots/"
    client.force_login(annotator)
    assert client.post(url, {"name": "v1"}, content_type="application/json").status_code == 403
    client.force_login(researcher)
    researcher_client = client
    bad = researcher_client.post(
        url, {"name": "../etc", "policy": "unanimous"}, content_type="application/json"
    )
    assert bad.status_code == 400 and "name must be" in bad.json()["detail"]
    bad = researcher_client.post(
        url, {"name": "v1", "policy": "plurality"}, content_type="application/json"
    )
    assert (
        bad.status_code == 400
        and "policy must be one of unanimous, majority" in bad.json()["detail"]
    )
    response = researcher_client.post(
        url, {"name": "v1", "policy": "unanimous"}, content_type="application/json"
    )
    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["job"])
    assert run_job(job.pk, worker="test") == "succeeded"
    job.refresh_from_db()
    assert job.result["benchmark"]["rows"] == 15 and job.result["preferences"]["rows"] == 15
    listed = researcher_client.get(url).json()
    assert {s["kind"] for s in listed} == {"benchmark", "preferences"}
    again = researcher_client.post(
        url, {"name": "v1", "policy": "unanimous"}, content_type="application/json"
    )
    assert again.status_code == 400 and "exists already" in again.json()["detail"]
    # a held-out benchmark: only the pairs of the split's held-out groups
    held = researcher_client.post(
        url, {"name": "v2", "policy": "unanimous", "held_out": "0.5", "split_seed": "1"},
        content_type="application/json",
    )  # fmt: skip
    assert held.status_code == 202
    job = Job.objects.get(pk=held.json()["job"])
    assert run_job(job.pk, worker="test") == "succeeded"
    job.refresh_from_db()
    assert 0 < job.result["benchmark"]["rows"] < 15 and job.result["preferences"]["rows"] == 15
    assert any(s.get("split", {}).get("side") == "held_out" for s in
               researcher_client.get(url).json())  # fmt: skip


def test_agreement_command_prints_json_and_names_bad_datasets(dataset, capsys):
    call_command("agreement", "--dataset", "ds", "--json", "--resamples", "100")
    report = json.loads(capsys.readouterr().out)
    pf = report["agreement"]["prompt_following"]
    assert pf["all"]["pairwise_agreement"]["value"] == pytest.approx(5 / 6)
    assert pf["by_task_type"]["color_alter"]["groups"] == 2
    assert pf["all"]["resamples"] == 100
    call_command("agreement", "--dataset", "ds", "--resamples", "0")
    text = capsys.readouterr().out
    assert "prompt_following" in text and "pairwise_agreement 0.833" in text
    with pytest.raises(CommandError, match="no dataset named"):
        call_command("agreement", "--dataset", "missing")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1], "send an object"),
        ('"v1"', "send an object"),  # a JSON string
        ({"name": "v1", "policy": "majority", "min_votes": 2.5}, "min_votes must be an integer"),
        ({"name": "v1", "policy": "majority", "min_votes": True}, "min_votes must be an integer"),
        ({"name": "v1", "policy": "majority", "min_votes": 0}, "min_votes must be >= 1"),
        ({"name": "v1", "policy": "majority", "max_tie_fraction": [1]}, "max_tie_fraction must be a number"),
        ({"name": "v1\n", "policy": "unanimous"}, "name must be"),
        ({"policy": "unanimous"}, "name is required"),
    ],
)  # fmt: skip
def test_snapshot_api_refuses_bad_bodies_with_400(researcher_client, dataset, body, message):
    response = researcher_client.post(
        f"/api/datasets/{dataset.pk}/snapshots/", body, content_type="application/json"
    )
    assert response.status_code == 400 and message in response.json()["detail"]
    assert Job.objects.count() == 0


def test_adjudicating_a_group_without_dispute_is_a_conflict(researcher_client, dataset):
    group = Group.objects.filter(dataset=dataset).order_by("pk").first()
    tiers = dict.fromkeys(DIMS, [[f"{group.external_id}-c{i}"] for i in range(3)])
    response = researcher_client.post(
        f"/api/groups/{group.pk}/adjudication/", {"tiers": tiers}, content_type="application/json"
    )
    assert response.status_code == 409 and "not flagged" in response.json()["detail"]


def test_beat_refreshes_reports_on_schedule(settings):
    from config.celery import app

    entry = app.conf.beat_schedule["annotation-reports"]
    assert entry["task"] == "annotation.refresh_reports"
    assert entry["schedule"] == settings.REPORT_REFRESH_SECONDS


def test_a_snapshot_name_with_a_nul_byte_is_refused_before_the_database(researcher_client, dataset):
    """PostgreSQL refuses NUL in text (a 500 if it reached a query): the API's parser refuses it,
    and the page's form checks the name before looking it up."""
    response = researcher_client.post(
        f"/api/datasets/{dataset.pk}/snapshots/", {"name": "\x00"}, content_type="application/json"
    )
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    page = researcher_client.post(f"/annotate/{dataset.pk}/snapshots/", {"name": "a\x00"},
                                  follow=True)  # fmt: skip
    assert page.status_code == 200 and b"Export refused: name must be" in page.content
