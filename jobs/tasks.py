"""Celery tasks: they take ids and call one service. The job row is the truth."""

from __future__ import annotations

import logging
import os
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.db import connection

from jobs import runner, services

log = logging.getLogger(__name__)


@shared_task(name="jobs.run", ignore_result=True, acks_late=True)
def run_job_task(job_id: int) -> str:
    outcome = runner.run_job(job_id, worker=run_job_task.request.hostname or f"pid-{os.getpid()}")
    log.info("job %s: %s", job_id, outcome)
    return outcome


@shared_task(name="jobs.sweep", ignore_result=True)
def sweep_jobs_task() -> dict:
    report = services.jobs_sweep().as_dict()
    if any(report.values()):
        log.info("sweep: %s", report)
    return report


# --- Worker liveness for /healthz: each worker writes a row every few seconds.
WORKER_BEAT_SECONDS = 5.0
_worker_beat_stop = threading.Event()


@worker_ready.connect
def _start_worker_beat(sender, **kwargs) -> None:
    hostname = sender.hostname
    queues = sorted(q.name for q in sender.task_consumer.queues)

    def beat() -> None:
        try:
            while True:
                try:
                    services.worker_heartbeat_record(
                        hostname=hostname, queues=queues, pid=os.getpid()
                    )
                except Exception:
                    log.exception("could not record the worker heartbeat")
                if _worker_beat_stop.wait(WORKER_BEAT_SECONDS):
                    return
        finally:
            connection.close()

    threading.Thread(target=beat, name="worker-beat", daemon=True).start()


@worker_shutdown.connect
def _stop_worker_beat(**kwargs) -> None:
    _worker_beat_stop.set()
