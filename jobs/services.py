"""Writes to jobs. Every state change is a conditional UPDATE, so two workers, a
sweeper and a user clicking "cancel" can race without corrupting a row: each
write says which state it expects, and the loser sees zero rows updated."""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from jobs import registry
from jobs.models import FailureKind, Job, JobMetric, JobStatus, WorkerHeartbeat

log = logging.getLogger(__name__)

# How long one dispatch may try to reach the broker before leaving the job to the sweeper.
DISPATCH_CONNECT_SECONDS = 2


class JobLost(Exception):
    """The worker's claim is gone (the sweeper requeued the job, or it was finished elsewhere)."""


class JobCancelled(Exception):
    """Raised inside a handler when a user asked the job to stop."""


@dataclass(frozen=True)
class Claim:
    job_id: int
    token: uuid.UUID
    attempt: int


def job_enqueue(*, kind: str, config: dict | None = None, created_by=None) -> Job:
    """Create a queued job and ring the bell once the row is committed.

    Raises UnknownJobKind or InvalidJobConfig (both with a message for the user).
    """
    job_kind = registry.get(kind)
    clean = registry.validate_config(job_kind, config)
    job = Job.objects.create(
        kind=job_kind.name,
        queue=job_kind.queue,
        config=clean,
        max_attempts=settings.JOB_MAX_ATTEMPTS,
        created_by=created_by,
    )
    transaction.on_commit(lambda: job_dispatch(job_id=job.pk))
    return job


def job_enqueue_for(*, kind: str, config, created_by=None, make):
    """The one way a job with an owner (a reward model, an RL run) is queued: the config is
    validated once (the kind's dataclass), then in one transaction the job is queued and
    `make(job)` creates the owning row from `job.config`; `make` may refuse with
    InvalidJobConfig (a name taken...), and then nothing is kept and nothing is sent."""
    if not isinstance(config, dict):
        raise registry.InvalidJobConfig("send an object")
    with transaction.atomic():
        job = job_enqueue(kind=kind, config=config, created_by=created_by)
        return make(job)


def send_task(name: str, args: list, *, queue: str | None = None) -> None:
    """Send the Celery task `name` after one quick attempt to reach the broker; raises when it
    is down. Left to itself, kombu retries a refused connect for broker_connection_timeout
    (~6 s) on every send, holding up the request that sent it (and the sweeper, for each job).
    Sent by name: the services never import the tasks that call them."""
    from config.celery import app

    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=DISPATCH_CONNECT_SECONDS
        )
        app.send_task(name, args=args, queue=queue, retry=False, producer=producer)


def job_dispatch(*, job_id: int) -> bool:
    """Send the job's message. A broker that is down is not an error here: the
    row stays queued and the sweeper sends it again later."""
    job = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).only("queue").first()
    if job is None:
        return False
    try:
        send_task("jobs.run", [job_id], queue=job.queue)
    except Exception as exc:  # kombu raises many types for a broker that is down
        log.warning("could not dispatch job %s (%s); the sweeper will retry", job_id, exc)
        return False
    Job.objects.filter(pk=job_id).update(dispatched_at=timezone.now())
    return True


def job_claim(*, job_id: int, worker: str) -> Claim | None:
    """Take a queued job. Exactly one caller wins: the UPDATE matches only while
    the row is still queued, and the database serialises the two UPDATEs."""
    now = timezone.now()
    token = uuid.uuid4()
    won = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED, cancel_requested=False).update(
        status=JobStatus.RUNNING,
        claim_token=token,
        worker=worker[:255],
        claimed_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        error="",
    )
    if not won:
        return None
    attempt = Job.objects.values_list("attempts", flat=True).get(pk=job_id)
    return Claim(job_id=job_id, token=token, attempt=attempt)


def _owned(claim: Claim):
    return Job.objects.filter(pk=claim.job_id, claim_token=claim.token, status=JobStatus.RUNNING)


def job_heartbeat(*, claim: Claim) -> bool:
    """Mark the job alive. Returns True when a cancel was requested; raises JobLost
    when the claim was taken away."""
    if not _owned(claim).update(heartbeat_at=timezone.now()):
        raise JobLost(f"job {claim.job_id} is no longer held by this worker")
    return Job.objects.values_list("cancel_requested", flat=True).get(pk=claim.job_id)


def job_set_progress(*, claim: Claim, fraction: float, message: str = "") -> None:
    fraction = min(max(float(fraction), 0.0), 1.0)
    if not _owned(claim).update(
        progress=fraction, progress_message=message[:500], heartbeat_at=timezone.now()
    ):
        raise JobLost(f"job {claim.job_id} is no longer held by this worker")


def job_log_metrics(*, job_id: int, step: int, values: dict[str, float]) -> None:
    """Upsert one step's metrics: logging a step twice (after a resume) overwrites it."""
    rows = [JobMetric(job_id=job_id, step=step, name=n, value=float(v)) for n, v in values.items()]
    JobMetric.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["job", "step", "name"], update_fields=["value"]
    )


def job_finish(*, claim: Claim, result: dict | None = None) -> bool:
    with transaction.atomic():
        done = bool(
            _owned(claim).update(
                status=JobStatus.SUCCEEDED,
                result=result,
                progress=1.0,
                finished_at=timezone.now(),
                claim_token=None,
            )
        )
        if done:
            _announce(claim.job_id, "job.succeeded")
    return done


def _announce(job_id: int, event: str) -> None:
    """Tell the webhooks (hooks.services.emit) that a job ended."""
    from hooks.services import emit

    job = Job.objects.filter(pk=job_id).values("kind", "status", "error", "error_kind").first()
    if job is not None:
        emit(event, {"job": job_id, "url": f"/jobs/{job_id}/", **job})


def job_fail(
    *, claim: Claim, error: str, kind: str = FailureKind.INTERNAL, detail: str = ""
) -> bool:
    """The job failed for good (no retry: an exception would raise again the same way)."""
    with transaction.atomic():
        failed = bool(
            _owned(claim).update(
                status=JobStatus.FAILED,
                error=error,
                error_kind=kind,
                error_detail=detail,
                finished_at=timezone.now(),
                claim_token=None,
            )
        )
        if failed:
            _announce(claim.job_id, "job.failed")
    return failed


def job_mark_cancelled(*, claim: Claim) -> bool:
    return bool(
        _owned(claim).update(
            status=JobStatus.CANCELLED,
            progress_message="cancelled by request",
            finished_at=timezone.now(),
            claim_token=None,
        )
    )


def job_cancel(*, job_id: int) -> str:
    """Ask a job to stop. A queued job is cancelled at once; a running one sees the
    flag at its next heartbeat and stops cleanly. Returns the status after the call."""
    now = timezone.now()
    if Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now
    ):
        return JobStatus.CANCELLED
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(cancel_requested=True)
    return Job.objects.values_list("status", flat=True).get(pk=job_id)


@dataclass
class SweepReport:
    redispatched: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def jobs_sweep(*, now: datetime | None = None) -> SweepReport:
    """Repair what a lost message or a dead worker left behind.

    - queued jobs whose message was sent long ago (or never) are sent again;
    - running jobs whose heartbeat is stale go back to the queue, or fail once
      they have used all their attempts, or end cancelled if a cancel was asked.
    Duplicate messages are harmless: only one claim can win.
    """
    now = now or timezone.now()
    report = SweepReport()

    stale_running = Job.objects.filter(
        status=JobStatus.RUNNING,
        heartbeat_at__lt=now - timedelta(seconds=settings.JOB_STALE_SECONDS),
    ).values_list("pk", "claim_token", "attempts", "max_attempts", "cancel_requested", "worker")
    for pk, token, attempts, max_attempts, cancel_requested, worker in stale_running:
        held = Job.objects.filter(pk=pk, status=JobStatus.RUNNING, claim_token=token)
        lost = f"worker {worker or '?'} stopped sending heartbeats"
        if cancel_requested:
            if held.update(status=JobStatus.CANCELLED, finished_at=now, claim_token=None):
                report.cancelled.append(pk)
        elif attempts >= max_attempts:
            if held.update(
                status=JobStatus.FAILED,
                finished_at=now,
                claim_token=None,
                error=f"{lost}; gave up after {attempts} attempt(s)",
                error_kind=FailureKind.LOST,
            ):
                report.failed.append(pk)
                _announce(pk, "job.failed")
        elif held.update(
            status=JobStatus.QUEUED,
            claim_token=None,
            worker="",
            dispatched_at=None,
            progress_message=f"requeued: {lost} (attempt {attempts} of {max_attempts})",
        ):
            report.requeued.append(pk)

    due = Job.objects.filter(status=JobStatus.QUEUED).filter(
        Q(dispatched_at__isnull=True)
        | Q(dispatched_at__lt=now - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS))
    )
    for pk in due.values_list("pk", flat=True):
        if job_dispatch(job_id=pk):
            report.redispatched.append(pk)
    return report


def worker_heartbeat_record(*, hostname: str, queues: list[str], pid: int) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"queues": queues, "pid": pid, "seen_at": timezone.now()}
    )
