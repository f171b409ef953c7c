from django.contrib import admin

from jobs.models import Job, JobMetric, WorkerHeartbeat


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "attempts", "progress", "worker", "created_at")
    list_filter = ("status", "kind")
    readonly_fields = ("claim_token", "claimed_at", "heartbeat_at", "dispatched_at", "finished_at")


admin.site.register(JobMetric)
admin.site.register(WorkerHeartbeat)
