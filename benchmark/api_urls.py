from django.urls import path

from benchmark import api

urlpatterns = [
    path("benchmark/leaderboard/", api.LeaderboardApi.as_view(), name="api-benchmark-leaderboard"),
    path(
        "benchmark/datasets/", api.BenchmarkDatasetListApi.as_view(), name="api-benchmark-datasets"
    ),
    path("benchmark/runs/", api.RunListApi.as_view(), name="api-benchmark-runs"),
    path("benchmark/runs/<int:run_id>/", api.RunDetailApi.as_view(), name="api-benchmark-run"),
]
