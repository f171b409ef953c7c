from django.urls import path

from annotation import api, quality_api

urlpatterns = [
    path("datasets/", api.DatasetListApi.as_view(), name="api-dataset-list"),
    path("datasets/import/", api.DatasetImportApi.as_view(), name="api-dataset-import"),
    path("datasets/<int:dataset_id>/next/", api.DatasetNextApi.as_view(), name="api-dataset-next"),
    path(
        "datasets/<int:dataset_id>/export/",
        api.DatasetExportApi.as_view(),
        name="api-dataset-export",
    ),
    path("groups/<int:group_id>/skip/", api.GroupSkipApi.as_view(), name="api-group-skip"),
    path(
        "groups/<int:group_id>/rankings/", api.GroupRankingsApi.as_view(), name="api-group-rankings"
    ),
    path(
        "rankings/<int:ranking_id>/revisions/",
        api.RankingRevisionsApi.as_view(),
        name="api-ranking-revisions",
    ),
    path("images/<str:kind>/<str:key>", api.ImageApi.as_view(), name="api-image"),
    path(
        "datasets/<int:dataset_id>/report/",
        quality_api.DatasetReportApi.as_view(),
        name="api-dataset-report",
    ),
    path(
        "datasets/<int:dataset_id>/adjudication/",
        quality_api.AdjudicationQueueApi.as_view(),
        name="api-dataset-adjudication",
    ),
    path(
        "datasets/<int:dataset_id>/snapshots/",
        quality_api.DatasetSnapshotApi.as_view(),
        name="api-dataset-snapshots",
    ),
    path(
        "groups/<int:group_id>/adjudication/",
        quality_api.GroupAdjudicationApi.as_view(),
        name="api-group-adjudication",
    ),
]
