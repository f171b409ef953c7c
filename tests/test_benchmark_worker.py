"""A benchmark run started over real HTTP is scored by a real Celery worker on Redis."""

import pytest
from django.core.management import call_command

from accounts.models import Role
from accounts.services import user_api_token, user_create_or_update
from benchmark.models import BenchmarkDataset
from tests.benchmark_fixtures import make_snapshot
from tests.brokers import api_call, wait_for

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"  # the worker's EDITLOOP_VAR_DIR is tmp_path too


def test_run_started_over_http_is_scored_by_a_worker(
    redis_broker, live_server, worker_factory, tmp_path
):
    path, _ = make_snapshot(tmp_path, groups=2)
    call_command("import_benchmark", str(path), "--name", "mini")
    researcher, _ = user_create_or_update(username="rita", role=Role.RESEARCHER)
    token = user_api_token(user=researcher)
    worker = worker_factory(redis_broker, "bench")

    status, body = api_call(
        live_server, token, "POST", "/api/benchmark/runs/",
        {"dataset": "mini", "scorer": "constant:value=5", "label": "flat"},
    )  # fmt: skip
    assert status == 202
    run = wait_for(
        lambda: (r := api_call(live_server, token, "GET", f"/api/benchmark/runs/{body['run']}/")[1])["status"] in ("succeeded", "failed") and r,
        timeout=60, what=f"benchmark run\n{worker.log()}",
    )  # fmt: skip
    assert run["status"] == "succeeded"
    # A constant scorer ties every pair: accuracy 0, ties as half 0.5.
    assert run["overall"] == {"prompt_following": 0.0, "consistency": 0.0, "overall": 0.0}
    assert run["metric"]["n_ties"]["total"] == BenchmarkDataset.objects.get(name="mini").rows
    board = api_call(live_server, token, "GET", "/api/benchmark/leaderboard/?dataset=mini")[1]
    assert [r["label"] for r in board] == ["flat"]
