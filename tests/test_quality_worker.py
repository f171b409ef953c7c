"""Quality work that crosses the broker, through a real Celery worker on Redis:
the snapshot export job and the report refresh, started over real HTTP."""

import uuid

import pyarrow.parquet as pq
import pytest

from accounts.models import Role
from accounts.services import user_api_token, user_create_or_update
from annotation.models import Group
from annotation.services import ranking_submit
from tests.annotation_fixtures import make_dataset
from tests.brokers import api_call, wait_for
from tests.factories import UserFactory

pytestmark = pytest.mark.worker
DIMS = ("prompt_following", "consistency", "overall")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    # The worker's EDITLOOP_VAR_DIR is tmp_path, so its MEDIA_ROOT is the same folder.
    settings.MEDIA_ROOT = tmp_path / "media"


def test_export_job_and_report_refresh_run_in_a_real_worker(
    redis_broker, live_server, worker_factory
):
    users = [UserFactory(username=f"ann{i}") for i in (1, 2)]
    dataset = make_dataset(groups=2, candidates=3, overlap=2, annotators=users)
    for group in Group.objects.filter(dataset=dataset):
        ids = [f"{group.external_id}-c{i}" for i in range(3)]
        for user in users:
            ranking_submit(
                group=group, annotator=user, submission_id=uuid.uuid4(),
                tiers=dict.fromkeys(DIMS, [[c] for c in ids]),
            )  # fmt: skip
    researcher, _ = user_create_or_update(username="rita", role=Role.RESEARCHER)
    token = user_api_token(user=researcher)
    worker = worker_factory(redis_broker, "quality")

    status, body = api_call(
        live_server, token, "POST", f"/api/datasets/{dataset.pk}/snapshots/",
        {"name": "v1", "policy": "unanimous"},
    )  # fmt: skip
    assert status == 202
    job = wait_for(
        lambda: (j := api_call(live_server, token, "GET", f"/api/jobs/{body['job']}/")[1])["status"] in ("succeeded", "failed") and j,
        timeout=60, what=f"export job\n{worker.log()}",
    )  # fmt: skip
    assert job["status"] == "succeeded", job["error"]
    bench = job["result"]["benchmark"]
    assert bench["rows"] == 2 * 3 * 3  # 2 groups x 3 pairs x 3 dimensions, all unanimous
    table = pq.read_table(f"{bench['path']}/data/test-00000-of-00001.parquet")
    assert table.num_rows == 18 and table.column("dimension").to_pylist().count("overall") == 6

    status, _ = api_call(live_server, token, "POST", f"/api/datasets/{dataset.pk}/report/")
    assert status == 202
    report = wait_for(
        lambda: _report(live_server, token, dataset.pk),
        timeout=60, what=f"report\n{worker.log()}",
    )  # fmt: skip
    assert report["rankings"] == 4 and report["stale"] is False
    assert report["agreement"]["overall"]["all"]["pairwise_agreement"]["value"] == 1.0


def _report(live_server, token, dataset_id):
    try:
        return api_call(live_server, token, "GET", f"/api/datasets/{dataset_id}/report/")[1]
    except Exception:  # 404 until the worker has stored it
        return None
