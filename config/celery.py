"""The Celery app. Start workers with

celery -A config worker -Q default            # CPU jobs, any concurrency
celery -A config worker -Q gpu -c 1           # one per GPU (prefetch is 1 for all)
celery -A config beat                         # the job sweeper and other periodic tasks
"""

import os
from pathlib import Path

from celery import Celery
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
