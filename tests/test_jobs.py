"""The job framework without a worker: services, runner, sweeper, cancel, pages, API."""

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import registry, services
from jobs.models import Job, JobMetric, JobStatus
from jobs.runner import run_job
from tests.factories import JobFactory


@pytest.fixture
def fast_heartbeat(settings):
    """Only for transactional tests: the pulse thread writes from its own connection,
    which would wait on the row lock held by a test wrapped in a transaction."""
    settings.JOB_HEARTBEAT_SECONDS = 0.05


def test_enqueue_validates_config_and_dispatches_after_commit(
    db, researcher, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = services.job_enqueue(kind="jobs.selftest", config={"steps": 4}, created_by=researcher)
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.queue == "default"
    assert job.config == {"steps": 4, "step_seconds": 0.25, "fail_at_step": None}
    assert job.dispatched_at is not None  # sent to the (in-memory) broker


@pytest.mark.parametrize(
    ("kind", "config", "error", "match"),
    [
        (
            "nope",
            {},
            registry.UnknownJobKind,
            "unknown job kind 'nope'; known kinds: annotation.export_snapshot, annotation.import, benchmark.run, benchmark.run_gpu, demo.pretrain_judge, jobs.selftest, rewardmodel.finetune",
        ),
        (
            "jobs.selftest",
            {"steps": 0},
            registry.InvalidJobConfig,
            "steps must be >= 1",
        ),
        ("jobs.selftest", {"stpes": 3}, registry.InvalidJobConfig, "unknown config field"),
    ],
)
def test_enqueue_refuses_bad_input_and_writes_nothing(db, kind, config, error, match):
    with pytest.raises(error, match=match):
        services.job_enqueue(kind=kind, config=config)
    assert Job.objects.count() == 0


def test_claim_once_then_nobody_else(db):
    job = JobFactory()
    first = services.job_claim(job_id=job.pk, worker="w1")
    assert first is not None and first.attempt == 1
    assert services.job_claim(job_id=job.pk, worker="w2") is None
    job.refresh_from_db()
    assert (job.status, job.worker, job.attempts) == (JobStatus.RUNNING, "w1", 1)


def test_run_job_succeeds_with_metrics_and_progress(db):
    job = JobFactory(config={"steps": 5, "step_seconds": 0.0, "fail_at_step": None})
    assert run_job(job.pk, worker="inline") == "succeeded"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0
    assert job.result == {"steps": 5, "resumed_from": 0, "attempt": 1}
    assert job.progress_message == "step 5/5"
    losses = list(JobMetric.objects.filter(job=job, name="loss").values_list("step", "value"))
    assert [s for s, _ in losses] == [0, 1, 2, 3, 4]
    assert losses[0][1] == pytest.approx(1.0) and losses[4][1] == pytest.approx(0.67032, abs=1e-5)
    # a finished job's redelivered message is a no-op
    assert run_job(job.pk, worker="late") == "not claimed (already taken, finished or cancelled)"


def test_failing_handler_records_the_error_and_keeps_the_traceback_apart(db):
    job = JobFactory(config={"steps": 5, "step_seconds": 0.0, "fail_at_step": 2})
    assert run_job(job.pk, worker="inline") == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    # an internal error: its type and message, the traceback kept apart for debugging
    assert job.error == "RuntimeError: self-test failure requested at step 2"
    assert job.error_kind == "internal" and "Traceback" in job.error_detail
    assert JobMetric.objects.filter(job=job, name="loss").count() == 2


def test_metrics_upsert_so_a_resumed_step_is_not_duplicated(db):
    job = JobFactory()
    services.job_log_metrics(job_id=job.pk, step=3, values={"loss": 1.0, "kl": 0.1})
    services.job_log_metrics(job_id=job.pk, step=3, values={"loss": 0.5})
    assert sorted(JobMetric.objects.filter(job=job).values_list("name", "value")) == [
        ("kl", 0.1),
        ("loss", 0.5),
    ]


def test_cancel_queued_job_is_immediate(db):
    job = JobFactory()
    assert services.job_cancel(job_id=job.pk) == JobStatus.CANCELLED
    assert run_job(job.pk, worker="w") == "not claimed (already taken, finished or cancelled)"


def test_cancel_running_job_stops_it_cleanly_at_next_heartbeat(transactional_db, fast_heartbeat):
    job = JobFactory(config={"steps": 200, "step_seconds": 0.02, "fail_at_step": None})
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("r", run_job(job.pk, worker="t")))
    worker.start()
    deadline = time.monotonic() + 10
    while Job.objects.get(pk=job.pk).progress < 0.05 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert services.job_cancel(job_id=job.pk) == JobStatus.RUNNING  # asked, not yet stopped
    worker.join(timeout=10)
    assert outcome["r"] == "cancelled"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and 0.05 <= job.progress < 1.0
    assert job.claim_token is None and job.finished_at is not None


def test_cancel_finished_job_changes_nothing(db):
    job = JobFactory(status=JobStatus.SUCCEEDED)
    assert services.job_cancel(job_id=job.pk) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and not job.cancel_requested


def test_sweeper_redispatches_jobs_stuck_in_queued(db, settings):
    now = timezone.now()
    never_sent = JobFactory()
    lost = JobFactory(dispatched_at=now - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS + 5))
    fresh = JobFactory(dispatched_at=now)
    report = services.jobs_sweep(now=now)
    assert sorted(report.redispatched) == sorted([never_sent.pk, lost.pk])
    assert fresh.pk not in report.redispatched
    lost.refresh_from_db()
    assert lost.dispatched_at > now - timedelta(seconds=1)


def _running(heartbeat_age: float, **fields):
    job = JobFactory()
    claim = services.job_claim(job_id=job.pk, worker="dead-worker")
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age), **fields
    )
    return job, claim


def test_sweeper_requeues_stale_running_job_and_fences_the_old_worker(db, settings):
    stale, old_claim = _running(settings.JOB_STALE_SECONDS + 10)
    alive, _ = _running(1)
    report = services.jobs_sweep()
    assert report.requeued == [stale.pk]
    assert report.redispatched == [stale.pk]  # back in the queue and sent again
    stale.refresh_from_db()
    assert stale.status == JobStatus.QUEUED and stale.claim_token is None
    assert "stopped sending heartbeats" in stale.progress_message
    assert Job.objects.get(pk=alive.pk).status == JobStatus.RUNNING
    # the worker that lost the job can no longer write to it
    with pytest.raises(services.JobLost):
        services.job_heartbeat(claim=old_claim)
    assert services.job_finish(claim=old_claim) is False
    new_claim = services.job_claim(job_id=stale.pk, worker="w2")
    assert new_claim.attempt == 2


def test_sweeper_fails_a_job_out_of_attempts_and_cancels_a_stale_cancelled_one(db, settings):
    exhausted, _ = _running(settings.JOB_STALE_SECONDS + 10, attempts=3, max_attempts=3)
    cancelling, _ = _running(settings.JOB_STALE_SECONDS + 10, cancel_requested=True)
    report = services.jobs_sweep()
    assert (report.failed, report.cancelled, report.requeued) == (
        [exhausted.pk],
        [cancelling.pk],
        [],
    )
    exhausted.refresh_from_db()
    assert exhausted.status == JobStatus.FAILED
    assert (
        exhausted.error
        == "worker dead-worker stopped sending heartbeats; gave up after 3 attempt(s)"
    )


def test_pulse_keeps_a_slow_step_alive(transactional_db, settings):
    settings.JOB_HEARTBEAT_SECONDS = 0.1
    job = JobFactory(config={"steps": 1, "step_seconds": 1.0, "fail_at_step": None})
    beats = []
    runner = threading.Thread(target=run_job, args=(job.pk,), kwargs={"worker": "slow"})
    runner.start()
    while runner.is_alive():
        beats.append(Job.objects.values_list("heartbeat_at", flat=True).get(pk=job.pk))
        time.sleep(0.15)
    runner.join()
    distinct = {b for b in beats if b is not None}
    assert len(distinct) >= 4  # the heartbeat moved during a single 1-second step


# --- pages


def test_job_list_and_detail_pages(researcher_client):
    job = JobFactory(status=JobStatus.RUNNING, progress=0.4, progress_message="step 2/5")
    services.job_log_metrics(job_id=job.pk, step=0, values={"loss": 2.0})
    services.job_log_metrics(job_id=job.pk, step=10, values={"loss": 1.0})
    listing = researcher_client.get("/jobs/")
    assert listing.status_code == 200 and f'href="/jobs/{job.pk}/"'.encode() in listing.content
    assert b'value="40"' in listing.content and b'hx-trigger="every 2s"' in listing.content
    rows = researcher_client.get("/jobs/", headers={"HX-Request": "true"})
    assert rows.content.lstrip().startswith(b'<tbody id="job-rows"')
    detail = researcher_client.get(f"/jobs/{job.pk}/")
    html = detail.content.decode()
    assert 'hx-trigger="every 1s"' in html and "step 2/5" in html
    # loss 2.0 at step 0 -> top-left of the plot box; 1.0 at step 10 -> bottom-right
    assert 'points="46.0,10.0 348.0,144.0"' in html  # the axis runs from tick 1.0 to tick 2.0


def test_htmx_poll_returns_fragment_and_stops_when_terminal(researcher_client):
    job = JobFactory(status=JobStatus.RUNNING)
    live = researcher_client.get(f"/jobs/{job.pk}/", headers={"HX-Request": "true"})
    assert live.status_code == 200 and b"<html" not in live.content
    assert b'id="job-live"' in live.content and b"every 1s" in live.content
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error="Boom: it broke")
    done = researcher_client.get(f"/jobs/{job.pk}/", headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx: stop polling
    assert b"every 1s" not in done.content and b"Boom: it broke" in done.content
    assert b"every 2s" not in researcher_client.get("/jobs/").content  # nothing left to watch


def test_selftest_form_creates_a_job_and_rejects_bad_steps(researcher_client):
    response = researcher_client.post("/jobs/selftest/", {"steps": "3"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    bad = researcher_client.post("/jobs/selftest/", {"steps": "0"}, follow=True)
    assert b"Self-test not started: steps must be &gt;= 1" in bad.content
    assert Job.objects.count() == 1


def test_cancel_button(researcher_client):
    job = JobFactory()
    response = researcher_client.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert researcher_client.get("/jobs/999999/").status_code == 404
    # back to the page the button was on, but never to another site
    back = researcher_client.post(f"/jobs/{job.pk}/cancel/", {"next": "/rl/1/"})
    assert back.url == "/rl/1/"
    away = researcher_client.post(f"/jobs/{job.pk}/cancel/", {"next": "https://evil.example/"})
    assert away.url == f"/jobs/{job.pk}/"


# --- API


def test_api_create_list_detail_metrics_cancel(researcher_client):
    bad = researcher_client.post(
        "/api/jobs/",
        {"kind": "jobs.selftest", "config": {"steps": -1}},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "steps must be" in bad.json()["detail"]
    unknown = researcher_client.post("/api/jobs/", {"kind": "x"}, content_type="application/json")
    assert unknown.status_code == 400 and "unknown job kind" in unknown.json()["detail"]
    # kinds whose jobs need objects made with them (a run's row, an upload) are refused, with
    # where to make them; nothing is queued
    for kind in ("rltraining.train", "rltraining.best_of_n", "rewardmodel.finetune",
                 "benchmark.run", "benchmark.run_gpu", "annotation.import"):  # fmt: skip
        refused = researcher_client.post("/api/jobs/", {"kind": kind, "config": {}},
                                         content_type="application/json")  # fmt: skip
        assert refused.status_code == 400 and "are created through" in refused.json()["detail"]
    assert not Job.objects.exists()
    kinds = {k["kind"]: k for k in researcher_client.get("/api/jobs/kinds/").json()}
    assert kinds["rltraining.train"]["created_through"] == "the RL page (POST /rl/)"
    assert kinds["jobs.selftest"]["created_through"] == "POST /api/jobs/"
    created = researcher_client.post(
        "/api/jobs/",
        {"kind": "jobs.selftest", "config": {"steps": 2}},
        content_type="application/json",
    )
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "queued" and body["created_by"] == "rita"
    job_id = body["id"]
    services.job_log_metrics(job_id=job_id, step=1, values={"loss": 0.5})
    assert researcher_client.get("/api/jobs/?status=queued").json()["count"] == 1
    assert researcher_client.get(f"/api/jobs/{job_id}/").json()["config"]["steps"] == 2
    assert researcher_client.get(f"/api/jobs/{job_id}/metrics/").json() == {
        "loss": [{"step": 1, "value": 0.5}]
    }
    assert researcher_client.post(f"/api/jobs/{job_id}/cancel/").json() == {
        "id": job_id,
        "status": "cancelled",
    }
    assert researcher_client.get("/api/jobs/424242/").status_code == 404
