from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from jobs.charts import Chart, line_chart
from jobs.models import Job, JobMetric


def job_list(*, status: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.select_related("created_by")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs


def job_metric_series(*, job: Job) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for name, step, value in JobMetric.objects.filter(job=job).values_list("name", "step", "value"):
        series[name].append((step, value))
    return dict(series)


def job_metric_charts(*, job: Job) -> list[Chart]:
    return [line_chart(name, points) for name, points in sorted(job_metric_series(job=job).items())]


def job_status(job_id: int) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job_id)
