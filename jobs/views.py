from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from accounts.permissions import researcher_required
from jobs import registry, selectors, services
from jobs.models import Job, JobStatus


@require_GET
@researcher_required
def job_list(request):
    status = request.GET.get("status") or None
    if status not in JobStatus.values:
        status = None
    jobs = list(selectors.job_list(status=status)[:200])
    context = {
        "jobs": jobs,
        "status": status,
        "statuses": JobStatus.choices,
        # the table refreshes itself while something on it can still change
        "has_active": any(not job.is_terminal for job in jobs),
    }
    if request.htmx:
        return render(request, "jobs/job_list.html#rows", context)
    return render(request, "jobs/job_list.html", context)


@require_POST
@researcher_required
def job_selftest_create(request):
    try:
        steps = int(request.POST.get("steps", 20))
    except ValueError:
        steps = -1
    try:
        job = services.job_enqueue(
            kind="jobs.selftest", config={"steps": steps}, created_by=request.user
        )
    except registry.InvalidJobConfig as exc:
        messages.error(request, f"Self-test not started: {exc}")
        return redirect("job-list")
    return redirect("job-detail", job_id=job.pk)


@require_GET
@researcher_required
def job_detail(request, job_id: int):
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=job_id)
    context = {"job": job, "charts": selectors.job_metric_charts(job=job)}
    if request.htmx:
        response = render(request, "jobs/job_detail.html#live", context)
        # 286 tells htmx to stop polling once the job can no longer change.
        return HttpResponseStopPolling(response.content) if job.is_terminal else response
    return render(request, "jobs/job_detail.html", context)


@require_POST
@researcher_required
def job_cancel(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id)
    status = services.job_cancel(job_id=job.pk)
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        messages.info(request, f"Job already {status}; nothing to cancel.")
    # Back to the page the button was on (an RL run, a fine-tune...), never off-site.
    after = request.POST.get("next", "")
    if after and url_has_allowed_host_and_scheme(
        after, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(after)
    return redirect("job-detail", job_id=job.pk)
