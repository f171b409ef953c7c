from django.urls import path

from lineage import views

urlpatterns = [
    path("lineage/<str:kind>/<int:object_id>/", views.LineageApi.as_view(), name="api-lineage"),
]
