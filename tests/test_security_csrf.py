"""CSRF: every POST form carries the token, and a POST without it is refused."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client

from tests.factories import PASSWORD, JobFactory

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.I | re.S)
POST = re.compile(r"""method\s*=\s*["']?post""", re.I)


def test_every_post_form_in_the_templates_has_a_csrf_token():
    post_forms = 0
    for template in TEMPLATES.rglob("*.html"):
        for attributes, body in FORM.findall(template.read_text()):
            if POST.search(attributes):
                post_forms += 1
                assert "{% csrf_token %}" in body, (
                    f"{template.relative_to(TEMPLATES)}: <form{attributes}>"
                )
    assert post_forms >= 10  # the walk found the forms (login, logout, jobs, imports, ...)


class _Forms(HTMLParser):
    """POST forms of a page, each with the names of its inputs."""

    def __init__(self):
        super().__init__()
        self.forms: list[tuple[str, set[str]]] = []
        self._open: set[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "").lower() == "post":
            self._open = set()
            self.forms.append((attrs.get("action") or attrs.get("id") or "", self._open))
        elif tag == "input" and self._open is not None:
            self._open.add(attrs.get("name"))

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def _post_forms(html: str) -> list[tuple[str, set[str]]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


@pytest.mark.parametrize(
    "url",
    ["/", "/jobs/", "/jobs/{job}/", "/annotate/", "/annotate/import/", "/benchmark/",
     "/reward-models/", "/rl/", "/account/token/", "/admin/", "/admin/accounts/user/add/"],
)  # fmt: skip
def test_rendered_post_forms_carry_the_token(researcher_client, researcher, url):
    response = researcher_client.get(url.format(job=JobFactory(created_by=researcher).pk))
    assert response.status_code == 200
    forms = _post_forms(response.content.decode())
    assert forms, url  # at least the sign-out form
    for action, inputs in forms:
        assert "csrfmiddlewaretoken" in inputs, f"{url}: form {action!r}"


def test_login_form_carries_the_token(client, db):
    forms = _post_forms(client.get("/login/").content.decode())
    assert len(forms) == 1 and "csrfmiddlewaretoken" in forms[0][1]


def _token(client: Client, url: str) -> str:
    page = client.get(url).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_login_without_the_token_is_refused(researcher):
    strict = Client(enforce_csrf_checks=True)
    credentials = {"username": "rita", "password": PASSWORD}
    assert strict.post("/login/", credentials).status_code == 403
    token = _token(strict, "/login/")
    assert strict.post("/login/", {**credentials, "csrfmiddlewaretoken": token}).status_code == 302


@pytest.mark.parametrize(
    ("page", "url", "data"),
    [("/jobs/", "/jobs/selftest/", {"steps": 2}),
     ("/account/token/", "/account/token/", {"action": "regenerate"}),
     ("/", "/logout/", {})],
)  # fmt: skip
def test_app_forms_without_the_token_are_refused(researcher, page, url, data):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(researcher)
    assert strict.post(url, data).status_code == 403
    token = _token(strict, page)
    assert strict.post(url, {**data, "csrfmiddlewaretoken": token}).status_code == 302
