"""People without the Django admin: a researcher creates a user and hands them a one-time
invitation link, assigns datasets, changes the role, deactivates; annotators cannot."""

import re

import pytest
from django.test import Client

from accounts.models import Role, User
from accounts.services import user_api_token
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _link(response) -> str:
    return re.search(r"http://testserver(/invite/[^/]+/[^/]+/)", response.content.decode())[1]


def test_create_invite_assign_and_deactivate(client):
    rita = UserFactory(username="rita", role=Role.RESEARCHER)
    client.force_login(rita)
    dataset = make_dataset("cars", groups=1)
    created = client.post("/users/", {"username": "alice", "role": Role.ANNOTATOR}, follow=True)
    alice = User.objects.get(username="alice")
    assert alice.role == Role.ANNOTATOR and not alice.has_usable_password()
    link = _link(created)
    # the invitee chooses a password through the link, once
    guest = Client()
    form = guest.get(link, follow=True)
    assert "Choose your password" in form.content.decode()
    done = guest.post(form.redirect_chain[-1][0],
                      {"new_password1": "a long passphrase", "new_password2": "a long passphrase"},
                      follow=True)  # fmt: skip
    assert done.redirect_chain[-1][0] == "/login/"
    assert guest.login(username="alice", password="a long passphrase")
    again = Client().get(link, follow=True).content.decode()
    assert 'id="invite-invalid"' in again  # used once, dead
    # datasets
    client.post(f"/users/{alice.pk}/", {"action": "datasets", "datasets": [dataset.pk]})
    assert list(dataset.annotators.all()) == [alice]
    assert "cars" in client.get("/users/").content.decode()
    assert "cars" in guest.get("/annotate/").content.decode()
    refused = client.post(f"/users/{alice.pk}/", {"action": "datasets", "datasets": [999]},
                          follow=True)  # fmt: skip
    assert "no such dataset" in refused.content.decode() and dataset.annotators.count() == 1
    # deactivated: no session sign-in, no API token
    token = user_api_token(user=alice)
    client.post(f"/users/{alice.pk}/", {"action": "deactivate"})
    alice.refresh_from_db()
    assert not alice.is_active
    assert not Client().login(username="alice", password="a long passphrase")
    assert Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/datasets/").status_code == 401
    # one cannot lock oneself out
    me = client.post(f"/users/{rita.pk}/", {"action": "deactivate"}, follow=True)
    assert "you cannot deactivate yourself" in me.content.decode()
    rita.refresh_from_db()
    assert rita.is_active


def test_bad_input_and_annotators_are_refused(client):
    client.force_login(UserFactory(username="rita", role=Role.RESEARCHER))
    UserFactory(username="bob")
    assert client.post("/users/", {"username": "bob"}).status_code == 400
    assert client.post("/users/", {"username": "x", "role": "king"}).status_code == 400
    assert client.post("/users/", {"username": ""}).status_code == 400
    annotator = Client()
    annotator.force_login(UserFactory(username="ann"))
    assert annotator.get("/users/").status_code == 403
    assert (
        annotator.post("/users/", {"username": "mallory", "role": "researcher"}).status_code == 403
    )
    assert not User.objects.filter(username="mallory").exists()
