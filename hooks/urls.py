from django.urls import path

from hooks import views

urlpatterns = [path("", views.webhooks, name="webhooks")]
