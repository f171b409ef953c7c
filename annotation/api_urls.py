from django.urls import path

from annotation import api

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
    path("images/<str:kind>/<str:key>", api.ImageApi.as_view(), name="api-image"),
]
