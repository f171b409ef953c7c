"""Faults: Redis (the broker) stops while annotators work, then comes back.

A private redis-server on a free port (the shared one on 6379 is never touched) is the
broker of this process and of the worker. With it stopped, everything that only needs the
database keeps working, a launched job is accepted and stays queued, and /healthz names the
broker; once Redis is back, the sweeper (beat) sends the job and a worker runs it.
"""

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
import redis

from accounts.models import Role
from accounts.services import user_api_token
from annotation.models import Ranking
from config.celery import app as celery_app
from jobs.models import Job, JobStatus
from jobs.services import job_enqueue
from tests.annotation_fixtures import make_dataset
from tests.brokers import use_broker, wait_for
from tests.factories import UserFactory

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server"),
]


class PrivateRedis:
    """A redis-server of this test only: no persistence, on a port nobody else uses."""

    def __init__(self, log_path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_path
        self.proc = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._pong, 20, f"redis-server on port {self.port}")

    def _pong(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
        except redis.ConnectionError:
            if self.proc.poll() is not None:
                raise AssertionError(self.log_path.read_text()) from None
            return False

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted (by the kernel), nothing is answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused one cannot act on SIGTERM
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self._log.close()
        self.proc = None


@pytest.fixture
def private_redis(tmp_path, settings):
    server = PrivateRedis(tmp_path / "redis.log")
    server.start()
    options = {"visibility_timeout": 3600, "socket_connect_timeout": 1, "socket_timeout": 2}
    # /healthz reads the settings (production's timeouts: it must cap them itself);
    # job_dispatch sends through the in-process Celery app.
    settings.CELERY_BROKER_URL = server.url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 6 * 3600, "socket_connect_timeout": 5, "socket_timeout": 10,
    }  # fmt: skip
    try:
        with use_broker(celery_app, server.url, options):
            yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _call(live_server, token, method, path, body=None):
    request = urllib.request.Request(
        f"{live_server.url}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _healthz(live_server) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, raw = _call(live_server, "", "GET", "/healthz")
    return status, json.loads(raw), time.monotonic() - started


def test_annotators_keep_working_while_redis_is_down_and_jobs_run_once_it_is_back(
    transactional_db, live_server, private_redis, worker_factory
):
    annotator = UserFactory(username="ann", role=Role.ANNOTATOR)
    researcher = UserFactory(username="rita", role=Role.RESEARCHER)
    ann, rita = user_api_token(user=annotator), user_api_token(user=researcher)
    dataset = make_dataset("live", groups=3, candidates=3, overlap=1, annotators=[annotator])

    status, health, _ = _healthz(live_server)
    assert "broker" not in health["down"], health  # up (no worker yet: that one is down)
    # Sent while Redis is up: its message dies with Redis (no persistence), and this
    # process's pooled broker connection goes stale.
    before = job_enqueue(kind="jobs.selftest", config={"steps": 2, "step_seconds": 0.05})
    assert Job.objects.get(pk=before.pk).dispatched_at is not None

    private_redis.stop()

    # /healthz names the broker, and answers quickly (a load balancer polls it).
    status, health, seconds = _healthz(live_server)
    assert status == 503 and "broker" in health["down"], health
    assert seconds < 5, f"/healthz took {seconds:.1f}s with the broker down"

    # Annotation needs only the database: next, submit and export all work.
    status, raw = _call(live_server, ann, "POST", f"/api/datasets/{dataset.pk}/next/")
    assert status == 200, raw
    group = json.loads(raw)["group"]
    ids = [c["id"] for c in group["candidates"]]
    tiers = {"prompt_following": [ids], "consistency": [ids], "overall": [ids]}
    body = {"submission_id": str(uuid.uuid4()), "tiers": tiers}
    status, raw = _call(live_server, ann, "POST", f"/api/groups/{group['id']}/rankings/", body)
    assert status == 201, raw
    status, raw = _call(live_server, rita, "GET", f"/api/datasets/{dataset.pk}/export/")
    assert status == 200 and len(raw.decode().strip().splitlines()) == 1, raw
    assert Ranking.objects.count() == 1

    # Launching a job: accepted and queued; the message waits for the sweeper.
    started = time.monotonic()
    status, raw = _call(live_server, rita, "POST", "/api/jobs/",
                        {"kind": "jobs.selftest", "config": {"steps": 3, "step_seconds": 0.05}})  # fmt: skip
    assert status == 201, raw
    # One quick connect attempt, not kombu's ~6 s of retries per job (the sweeper retries).
    assert time.monotonic() - started < 4, "launching a job hung on the stopped broker"
    from_api = Job.objects.get(pk=json.loads(raw)["id"])
    assert from_api.status == JobStatus.QUEUED and from_api.dispatched_at is None
    started = time.monotonic()
    in_process = job_enqueue(kind="jobs.selftest", config={"steps": 2, "step_seconds": 0.05})
    assert time.monotonic() - started < 4, "job_enqueue hung on the stopped broker"
    in_process.refresh_from_db()
    assert in_process.status == JobStatus.QUEUED and in_process.dispatched_at is None

    # Redis comes back on the same port; a worker and beat start; the sweeper sends both.
    private_redis.start()
    worker = worker_factory(private_redis.url, "after-outage", beat=True)
    for job in (before, from_api, in_process):
        done = wait_for(
            lambda job=job: (j := Job.objects.get(pk=job.pk)).is_terminal and j,
            90, f"job {job.pk} to run after the outage\n{worker.log()}",
        )  # fmt: skip
        assert done.status == JobStatus.SUCCEEDED, done.error
        assert done.attempts == 1 and done.worker.startswith("after-outage@")
    status, health, _ = _healthz(live_server)
    assert "broker" not in health["down"], health


def test_a_hung_redis_does_not_hang_healthz_or_job_launches(
    transactional_db, live_server, private_redis, worker_factory
):
    """Redis that accepts connections but answers nothing (stopped by SIGSTOP, a full
    network buffer, a frozen VM): the calls must give up after their short timeouts."""
    rita = user_api_token(user=UserFactory(username="rita", role=Role.RESEARCHER))
    private_redis.pause()

    status, health, seconds = _healthz(live_server)
    assert status == 503 and "broker" in health["down"], health
    assert seconds < 6, f"/healthz took {seconds:.1f}s with a hung broker"

    started = time.monotonic()
    status, raw = _call(live_server, rita, "POST", "/api/jobs/",
                        {"kind": "jobs.selftest", "config": {"steps": 2, "step_seconds": 0.05}})  # fmt: skip
    assert status == 201, raw
    assert time.monotonic() - started < 10, "launching a job hung on the hung broker"
    job = Job.objects.get(pk=json.loads(raw)["id"])
    assert job.status == JobStatus.QUEUED

    private_redis.resume()  # a timed-out send may still be delivered now: claims dedupe it
    worker = worker_factory(private_redis.url, "after-hang", beat=True)
    done = wait_for(
        lambda: (j := Job.objects.get(pk=job.pk)).is_terminal and j,
        90, f"job {job.pk} to run after the hang\n{worker.log()}",
    )  # fmt: skip
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 1, done.error
