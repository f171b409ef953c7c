from django.urls import path

from jobs import api

urlpatterns = [
    path("jobs/", api.JobListApi.as_view(), name="api-job-list"),
    path("jobs/kinds/", api.JobKindListApi.as_view(), name="api-job-kinds"),
    path("jobs/<int:job_id>/", api.JobDetailApi.as_view(), name="api-job-detail"),
    path("jobs/<int:job_id>/metrics/", api.JobMetricsApi.as_view(), name="api-job-metrics"),
    path("jobs/<int:job_id>/cancel/", api.JobCancelApi.as_view(), name="api-job-cancel"),
]
