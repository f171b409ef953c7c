from django.urls import path

from annotation import views

urlpatterns = [
    path("", views.annotate_home, name="annotate-home"),
    path("import/", views.import_page, name="annotation-import"),
    path("<int:dataset_id>/", views.annotate_dataset, name="annotate-dataset"),
    path("<int:dataset_id>/workspace/", views.annotate_workspace, name="annotate-workspace"),
]
