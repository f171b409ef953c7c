from django.urls import path

from lineage import views

urlpatterns = [
    path("<str:kind>/<int:pk>/", views.lineage_page, name="lineage"),
]
