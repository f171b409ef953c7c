"""Point the in-process Celery app at a chosen broker, and start real workers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.db import connection
from kombu import pools as kombu_pools

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def use_broker(app, url: str, transport_options: dict):
    """Swap the broker of `app` (and drop its cached connection pools)."""
    saved = (app.conf.broker_url, app.conf.broker_transport_options)

    def switch(u, o):
        # Celery copies CELERY_BROKER_URL from the environment into the read and
        # write URLs too, and those win over broker_url. Its pools live in kombu's
        # global registry, keyed by URL: clear that too, or the next use of the
        # same URL gets back the pool closed here.
        kombu_pools.reset()
        app._pool = None
        app.amqp._producer_pool = None
        app.conf.broker_url = app.conf.broker_read_url = app.conf.broker_write_url = u
        app.conf.broker_transport_options = o

    switch(url, transport_options)
    try:
        yield
    finally:
        switch(*saved)


def test_database_url() -> str:
    """The DATABASE_URL of the test database this process is using."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


# Fast job timings so tests see sweeps and stale heartbeats within seconds.
FAST_JOB_ENV = {
    "JOB_HEARTBEAT_SECONDS": "0.5",
    "JOB_STALE_SECONDS": "3",
    "JOB_SWEEP_SECONDS": "1",
    "JOB_REDISPATCH_SECONDS": "2",
}


class Worker:
    """A real `celery worker` subprocess on the test database; with ``beat``, a `celery beat`
    process beside it, as production runs them (an embedded ``--beat`` is a process forked
    from the threaded worker, which can hang on a lock held at the fork)."""

    def __init__(self, *, broker_url: str, var_dir: Path, name: str, beat: bool = False):
        self.name = name
        self.log_path = var_dir / f"{name}.log"
        self._logs = [open(self.log_path, "wb")]
        env = {
            **os.environ,
            **FAST_JOB_ENV,
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "EDITLOOP_VAR_DIR": str(var_dir),
        }
        worker = [str(BIN / "celery"), "-A", "config", "worker", "-Q", "default,gpu",
                  "--pool", "solo", "--hostname", f"{name}@%h", "--loglevel", "INFO",
                  "--without-mingle", "--without-gossip"]  # fmt: skip
        self.procs = [self._start(worker, env, self._logs[0])]
        self.proc = self.procs[0]
        if beat:
            self.beat_log_path = var_dir / f"{name}-beat.log"
            self._logs.append(open(self.beat_log_path, "wb"))
            schedule = var_dir / f"{name}-beat-schedule"  # its own: no state from other tests
            beat_cmd = [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO",
                        "--schedule", str(schedule)]  # fmt: skip
            self.procs.append(self._start(beat_cmd, env, self._logs[1]))

    @staticmethod
    def _start(cmd, env, log) -> subprocess.Popen:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 60) -> None:
        from jobs.models import WorkerHeartbeat

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if WorkerHeartbeat.objects.filter(hostname__startswith=f"{self.name}@").exists():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the whole process group(s), like a machine that loses power."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for log in self._logs:
            log.close()

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace")[-6000:]
        if len(self._logs) > 1:
            text += "\n--- beat ---\n" + self.beat_log_path.read_text(errors="replace")[-3000:]
        return text


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def api_call(live_server, token, method, path, body=None):
    request = urllib.request.Request(
        f"{live_server.url}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())
