"""The Celery app. Start workers with

celery -A config worker -Q default            # CPU jobs, any concurrency
celery -A config worker -Q gpu -c 1           # one per GPU (prefetch is 1 for all)
celery -A config beat                         # the job sweeper and other periodic tasks
"""

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_init
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("editloop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _configure(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    sender.conf.task_queues = [Queue(name) for name in settings.CELERY_TASK_QUEUES_NAMES]
    sender.conf.beat_schedule = {
        "jobs-sweep": {"task": "jobs.sweep", "schedule": settings.JOB_SWEEP_SECONDS},
        "hooks-sweep": {"task": "hooks.sweep", "schedule": settings.JOB_SWEEP_SECONDS},
        "annotation-reports": {
            "task": "annotation.refresh_reports",
            "schedule": settings.REPORT_REFRESH_SECONDS,
        },
    }
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if settings.CELERY_BROKER_URL == "filesystem://":
        # The filesystem transport needs its folders before the first message.
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@worker_init.connect
def _share_the_cores(sender, **kwargs) -> None:
    """Give each pool process its share of the cores for torch and OpenMP (before any of them
    imports torch; the children inherit the environment). Left alone, every process of a
    prefork pool starts one thread per core, and N busy processes on N cores each spinning N
    threads run many times slower than N processes of one thread. OMP_NUM_THREADS set by the
    operator wins."""
    solo = "solo" in str(getattr(sender, "pool_cls", "")).lower()
    slots = sender.concurrency if isinstance(sender.concurrency, int) and not solo else 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, slots))))
