from django.urls import path

from accounts import people, views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("account/token/", views.api_token, name="api-token"),
    path("invite/<uidb64>/<token>/", people.InviteView.as_view(), name="invite"),
]
