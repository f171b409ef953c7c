from django.urls import path

from annotation import quality_views, settings_views, views

urlpatterns = [
    path("", views.annotate_home, name="annotate-home"),
    path("import/", views.import_page, name="annotation-import"),
    path("mine/", views.my_work, name="annotate-mine"),
    path("groups/<int:group_id>/reopen/", views.reopen_group, name="annotate-reopen"),
    path("rankings/<int:ranking_id>/revise/", views.revise_ranking, name="annotate-revise"),
    path("<int:dataset_id>/", views.annotate_dataset, name="annotate-dataset"),
    path("<int:dataset_id>/workspace/", views.annotate_workspace, name="annotate-workspace"),
    path("<int:dataset_id>/quality/", quality_views.quality_dashboard, name="annotate-quality"),
    path(
        "<int:dataset_id>/quality/refresh/",
        quality_views.quality_refresh,
        name="annotate-quality-refresh",
    ),
    path(
        "<int:dataset_id>/snapshots/",
        quality_views.snapshot_export,
        name="annotate-snapshot-export",
    ),
    path("<int:dataset_id>/review/", quality_views.review_dataset, name="annotate-review"),
    path("<int:dataset_id>/settings/", settings_views.dataset_settings, name="annotate-settings"),
    path("<int:dataset_id>/groups/", quality_views.browse_dataset, name="annotate-browse"),
    path(
        "<int:dataset_id>/groups/<int:group_id>/",
        quality_views.browse_group,
        name="annotate-browse-group",
    ),
    path(
        "<int:dataset_id>/review/workspace/",
        quality_views.review_workspace,
        name="annotate-review-workspace",
    ),
]
