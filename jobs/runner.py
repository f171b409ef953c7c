"""Runs one job inside a worker: claim, call the kind's handler, record the end.

A handler is a plain function `handler(ctx: JobContext) -> dict | None`. It
reads `ctx.config`, reports through `ctx.progress`, `ctx.log_metrics` and
`ctx.heartbeat` (which raises JobCancelled when a user asked it to stop), and
returns a JSON-able result. A background "pulse" keeps the heartbeat fresh
while a long step runs, so only a dead worker goes stale.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils.module_loading import import_string

from config.errors import EditLoopError
from jobs import registry, services
from jobs.models import FailureKind, Job, JobMetric
from jobs.services import Claim, JobCancelled, JobLost

log = logging.getLogger(__name__)


class _Pulse(threading.Thread):
    """Heartbeats the job every JOB_HEARTBEAT_SECONDS from a thread of its own."""

    def __init__(self, claim: Claim):
        super().__init__(name=f"job-{claim.job_id}-pulse", daemon=True)
        self.claim = claim
        self.stopped = threading.Event()
        self.cancel_requested = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    if services.job_heartbeat(claim=self.claim):
                        self.cancel_requested.set()
                except JobLost:
                    self.lost.set()
                    return
                except Exception:  # a database blip: try again at the next beat
                    log.exception("heartbeat of job %s failed", self.claim.job_id)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


class JobContext:
    """What a handler sees of its job."""

    def __init__(self, job: Job, claim: Claim, pulse: _Pulse):
        self.job_id = job.pk
        self.kind = job.kind
        self.config: dict = dict(job.config)
        self.attempt = claim.attempt
        self._claim = claim
        self._pulse = pulse
        self._last_check = 0.0

    def heartbeat(self) -> None:
        """Call between steps: raises JobCancelled or JobLost when the job must stop.
        Checks the database at most once a second; cheap enough to call per step."""
        if self._pulse.lost.is_set():
            raise JobLost(f"job {self.job_id} is no longer held by this worker")
        if time.monotonic() - self._last_check >= 1.0:
            self._last_check = time.monotonic()
            if services.job_heartbeat(claim=self._claim):
                self._pulse.cancel_requested.set()
        if self._pulse.cancel_requested.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def progress(self, fraction: float, message: str = "") -> None:
        services.job_set_progress(claim=self._claim, fraction=fraction, message=message)

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        services.job_log_metrics(job_id=self.job_id, step=step, values=values)

    def last_logged_step(self) -> int | None:
        """The last step with metrics: where a redelivered job can resume from."""
        return JobMetric.objects.filter(job_id=self.job_id).aggregate(m=Max("step"))["m"]


def run_job(job_id: int, *, worker: str) -> str:
    """Claim and run a job; returns what happened, for the worker's log."""
    claim = services.job_claim(job_id=job_id, worker=worker)
    if claim is None:
        return "not claimed (already taken, finished or cancelled)"
    job = Job.objects.get(pk=job_id)
    pulse = _Pulse(claim)
    pulse.start()
    try:
        handler = import_string(registry.get(job.kind).handler)
        result = handler(JobContext(job, claim, pulse))
    except JobCancelled:
        services.job_mark_cancelled(claim=claim)
        return "cancelled"
    except JobLost:
        return "lost its claim; another worker owns the job now"
    except Exception as exc:
        log.exception("job %s failed", job_id)
        services.job_fail(claim=claim, **describe_failure(exc))
        return "failed"
    finally:
        pulse.stop()
    services.job_finish(claim=claim, result=result)
    return "succeeded"


def describe_failure(exc: BaseException) -> dict:
    """What a failed job shows. Refused input (an EditLoopError, or a ValueError: what configs,
    parsers and validators raise with a message for the user) is its message alone: the user
    fixes the input, and a retry would fail the same way. Anything else is an internal error:
    its type and message, with the traceback kept as detail for whoever debugs it."""
    if isinstance(exc, EditLoopError | ValueError):
        return {"error": str(exc) or type(exc).__name__, "kind": FailureKind.INVALID}
    return {"error": f"{type(exc).__name__}: {exc}", "kind": FailureKind.INTERNAL,
            "detail": "".join(traceback.format_exception(exc, limit=20))}  # fmt: skip
