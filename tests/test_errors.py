"""One error hierarchy, one handler for the API and one for the pages."""

import ast
from pathlib import Path

import pytest
from django.test import override_settings
from django.urls import path

from config.errors import Conflict, Invalid, NotFound, refusal_status
from config.urls import urlpatterns as project_urls
from tests.brokers import api_call

REPO = Path(__file__).resolve().parent.parent


def _refuse_page(request):
    raise Conflict("that group was adjudicated meanwhile")


urlpatterns = [path("refuse/", _refuse_page), *project_urls]


def test_errors_carry_status_and_code_and_stay_what_callers_caught():
    assert (Invalid("x").status, NotFound("x").status, Conflict("x").status) == (400, 404, 409)
    assert isinstance(Invalid("x"), ValueError) and isinstance(NotFound("x"), LookupError)
    assert refusal_status(Conflict("x")) == 409 and refusal_status(ValueError("engine")) == 400


@pytest.mark.django_db
def test_the_api_answers_detail_and_code_over_http(live_server, researcher):
    from accounts.services import user_api_token

    token = user_api_token(user=researcher)
    with pytest.raises(Exception) as refused:
        api_call(live_server, token, "POST", "/api/jobs/", {"kind": "no.such", "config": {}})
    body = refused.value.read().decode()
    assert refused.value.code == 400 and '"code":"unknown_job_kind"' in body.replace(" ", "")
    with pytest.raises(Exception) as missing:
        api_call(live_server, token, "GET", "/api/lineage/rl_run/999/")
    assert missing.value.code == 404 and "no rl run with id 999" in missing.value.read().decode()


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_an_uncaught_refusal_on_a_page_is_an_error_page_with_its_status(researcher_client):
    response = researcher_client.get("/refuse/")
    assert response.status_code == 409
    assert b"that group was adjudicated meanwhile" in response.content


def test_no_view_maps_an_error_to_a_status_by_hand():
    """API views raise EditLoop's errors; config.errors answers them."""
    offenders = []
    for module in sorted(REPO.glob("*/api.py")) + sorted(REPO.glob("*/*_api.py")):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Response":
                status = next((k.value for k in node.keywords if k.arg == "status"), None)
                if isinstance(status, ast.Constant) and status.value >= 400:
                    offenders.append(f"{module.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, reason",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # was a 500 (RecursionError)
        (b'{"kind": "jobs.selftest", "config": {"steps": NaN}}', "NaN is not a JSON number"),
        (b'{"kind": "jobs.selftest\\u0000"}', "a NUL character"),
        (b'{"kind": "\\ud800"}', "a lone UTF-16 surrogate"),
        (b"\xff{}", "not valid UTF-8"),
    ],
)
def test_hostile_json_is_a_400_with_the_reason_on_every_endpoint(researcher_client, body, reason):
    response = researcher_client.post("/api/jobs/", body, content_type="application/json")
    assert response.status_code == 400 and reason in response.json()["detail"]


@pytest.mark.django_db
def test_list_endpoints_bound_limit_and_offset(researcher_client):
    from jobs.models import Job
    from tests.factories import JobFactory

    JobFactory.create_batch(3)
    page = researcher_client.get(
        "/api/jobs/?limit=99999999999999999999&offset=99999999999999999999"
    )
    assert page.status_code == 200 and page.json()["results"] == []  # was a 500
    page = researcher_client.get("/api/jobs/?limit=99999999999999999999")
    assert page.status_code == 200 and len(page.json()["results"]) == Job.objects.count() == 3
