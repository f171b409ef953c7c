"""Celery tasks of the annotation app: they take ids and call one service."""

from __future__ import annotations

import logging

from celery import shared_task

from annotation.models import Dataset
from annotation.quality import report_refresh

log = logging.getLogger(__name__)


@shared_task(name="annotation.refresh_reports", ignore_result=True)
def refresh_reports_task(dataset_id: int | None = None, force: bool = False) -> list[int]:
    """Recompute the quality report of every dataset with new rankings (beat), or
    of one dataset (the dashboard's "Recompute now")."""
    datasets = (
        Dataset.objects.all() if dataset_id is None else Dataset.objects.filter(pk=dataset_id)
    )
    refreshed = []
    for dataset in datasets:
        report = report_refresh(dataset, force=force)
        if report is not None:
            log.info(
                "report of %s: %s rankings in %.1f s", dataset, report.rankings, report.seconds
            )
            refreshed.append(dataset.pk)
    return refreshed
