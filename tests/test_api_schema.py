"""The OpenAPI 3 schema (drf-spectacular): it validates without a warning, lists every /api/
path the URL resolver has, and is served at /api/schema/ to signed-in users only."""

import re

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from accounts.models import Role
from accounts.services import user_api_token
from tests.factories import UserFactory


def _routes(patterns, prefix="") -> set[str]:
    routes = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes |= _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            routes.add(route)
    return routes


def _api_paths() -> set[str]:
    """/api/ routes of the resolver, written as OpenAPI paths: <int:job_id> -> {job_id}."""
    return {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        for route in _routes(get_resolver().url_patterns)
        if route.startswith("api/") and route != "api/docs/"  # the docs page is HTML
    }


def test_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    # --fail-on-warn turns every warning (and every view it cannot describe) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_schema_lists_every_api_path():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    expected = _api_paths()
    assert len(expected) > 15  # really walked the URL tree
    assert set(schema["paths"]) == expected
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("responses"), f"{method.upper()} {path} describes no response"


@pytest.mark.django_db
def test_schema_is_served_to_signed_in_users_only():
    assert Client().get("/api/schema/").status_code == 401
    for role in (Role.ANNOTATOR, Role.RESEARCHER):
        token = user_api_token(user=UserFactory(role=role))
        client = Client(HTTP_AUTHORIZATION=f"Token {token}")
        response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert response.status_code == 200, role
        assert "/api/datasets/{dataset_id}/next/" in response.json()["paths"]


@pytest.mark.django_db
def test_api_docs_page_is_served_from_the_app_to_signed_in_users(client):
    assert client.get("/api/docs/").status_code in (401, 403)
    client.force_login(UserFactory(role=Role.ANNOTATOR))
    response = client.get("/api/docs/")
    page = response.content.decode()
    assert response.status_code == 200 and "swagger-ui" in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page  # vendored, no CDN
    # its start-up script is a file of its own (the Content-Security-Policy allows no inline one)
    assert '<script src="/api/docs/?script="></script>' in page and "<script>" not in page
    script = client.get("/api/docs/?script=").content.decode()
    assert "cdn." not in page + script and "unpkg" not in page + script
    assert "/api/schema/" in script
    asset = page.split('src="')[1].split('"')[0].removeprefix(settings.STATIC_URL).lstrip("/")
    assert finders.find(asset), asset  # collectstatic and whitenoise serve it
    assert 'href="/api/docs/"' in client.get("/").content.decode()  # in the menu
