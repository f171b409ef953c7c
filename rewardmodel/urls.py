from django.urls import path

from rewardmodel import views

app_name = "rewardmodel"
urlpatterns = [
    path("", views.model_list, name="list"),
    path("<int:model_id>/", views.model_detail, name="detail"),
    path("<int:model_id>/promote/", views.model_promote, name="promote"),
]
