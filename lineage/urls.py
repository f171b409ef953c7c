from django.urls import path

from lineage import views

urlpatterns = [
    path("<str:kind>/<int:object_id>/", views.lineage_page, name="lineage"),
]
