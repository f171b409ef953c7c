from django.urls import path

from jobs import health, views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/selftest/", views.job_selftest_create, name="job-selftest-create"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
]
