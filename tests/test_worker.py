"""Real Celery workers, started as subprocesses, on Redis and on the filesystem broker."""

import pytest

from jobs.models import Job, JobMetric, JobStatus
from tests.brokers import api_call as _api
from tests.brokers import wait_for

pytestmark = pytest.mark.worker


@pytest.mark.parametrize("broker", ["redis_broker", "filesystem_broker"])
def test_job_end_to_end_through_a_real_worker(broker, request, live_server, worker_factory):
    from accounts.models import Role
    from accounts.services import user_api_token, user_create_or_update

    broker_url = request.getfixturevalue(broker)
    worker = worker_factory(broker_url, "e2e")
    user, _ = user_create_or_update(username="rita", role=Role.RESEARCHER)
    token = user_api_token(user=user)

    status, job = _api(
        live_server,
        token,
        "POST",
        "/api/jobs/",
        {"kind": "jobs.selftest", "config": {"steps": 6, "step_seconds": 0.05}},
    )
    assert status == 201 and job["status"] == "queued"
    done = wait_for(
        lambda: (d := _api(live_server, token, "GET", f"/api/jobs/{job['id']}/")[1])["status"] in ("succeeded", "failed") and d,
        timeout=60, what=f"job to finish\n{worker.log()}",
    )  # fmt: skip
    assert done["status"] == "succeeded", done["error"]
    assert done["result"] == {"steps": 6, "resumed_from": 0, "attempt": 1}
    assert done["worker"].startswith("e2e@")
    _, metrics = _api(live_server, token, "GET", f"/api/jobs/{job['id']}/metrics/")
    assert [p["step"] for p in metrics["loss"]] == [0, 1, 2, 3, 4, 5]
    assert metrics["reward"][-1]["value"] == pytest.approx(5 / 6)


def test_sigkilled_worker_on_filesystem_broker_job_still_succeeds(
    transactional_db, filesystem_broker, worker_factory
):
    """The filesystem broker loses the message of a SIGKILLed worker; the sweeper
    (beat, in the next worker) requeues the job from its stale heartbeat."""
    from jobs.services import job_enqueue

    first = worker_factory(filesystem_broker, "doomed")
    job = job_enqueue(kind="jobs.selftest", config={"steps": 30, "step_seconds": 0.15})
    wait_for(lambda: Job.objects.get(pk=job.pk).progress >= 0.2, 60, f"progress\n{first.log()}")
    first.kill()
    steps_before = JobMetric.objects.filter(job=job, name="loss").count()
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING  # nobody told the database

    second = worker_factory(filesystem_broker, "rescuer", beat=True)
    job = wait_for(
        lambda: (j := Job.objects.get(pk=job.pk)).is_terminal and j, 90, f"recovery\n{second.log()}"
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2 and job.worker.startswith("rescuer@")
    assert job.result["resumed_from"] >= steps_before - 1  # resumed, not restarted
    losses = list(JobMetric.objects.filter(job=job, name="loss").values_list("step", flat=True))
    assert losses == list(range(30))  # every step once: nothing lost, nothing duplicated


def test_worker_refuses_pickle_messages(transactional_db, filesystem_broker, worker_factory):
    """Only JSON crosses the broker: a pickled message is refused, not executed."""
    from jobs.tasks import run_job_task
    from tests.factories import JobFactory

    worker = worker_factory(filesystem_broker, "strict")
    job = JobFactory(config={"steps": 1, "step_seconds": 0.0, "fail_at_step": None})
    run_job_task.apply_async(args=[job.pk], serializer="pickle", queue="default")
    wait_for(
        lambda: "Refusing to deserialize untrusted content of type pickle" in worker.log(),
        30,
        "refusal",
    )
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    run_job_task.apply_async(args=[job.pk], queue="default")  # the same call in JSON runs
    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED, 30, "json run")
