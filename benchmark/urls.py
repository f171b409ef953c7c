from django.urls import path

from benchmark import views

app_name = "benchmark"
urlpatterns = [
    path("", views.leaderboard, name="leaderboard"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("compare/", views.compare, name="compare"),
]
