from django.urls import path

from rltraining import views

app_name = "rltraining"
urlpatterns = [
    path("", views.run_list, name="list"),
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/gallery/", views.run_gallery, name="gallery"),
    path("<int:run_id>/send/", views.run_send, name="send"),
    path("<int:run_id>/best-of-n/", views.run_best_of_n, name="best-of-n"),
    path("samples/<int:sample_id>/<str:which>/", views.sample_image, name="sample-image"),
]
