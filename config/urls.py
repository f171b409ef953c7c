from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotation import people_views
from config.views import home

urlpatterns = [
    path("", home, name="home"),
    # what browsers ask for on pages that do not name their icon (an image, the API's JSON)
    path(
        "favicon.ico",
        login_not_required(RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
        name="favicon",
    ),
    path("", include("accounts.urls")),
    path("", include("jobs.urls")),
    path("annotate/", include("annotation.urls")),
    path("benchmark/", include("benchmark.urls")),
    path("reward-models/", include("rewardmodel.urls")),
    path("rl/", include("rltraining.urls")),
    path("lineage/", include("lineage.urls")),
    path("webhooks/", include("hooks.urls")),
    path("users/", people_views.people, name="people"),
    path("users/<int:user_id>/", people_views.person, name="person"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # the split view serves Swagger UI's start-up script as a file: no inline script (CSP)
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("jobs.api_urls")),
    path("api/", include("accounts.api_urls")),
    path("api/", include("annotation.api_urls")),
    path("api/", include("benchmark.api_urls")),
    path("api/", include("lineage.api_urls")),
    path("admin/", admin.site.urls),
]

handler500 = "config.errors.server_error"
