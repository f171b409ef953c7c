"""Faults: an annotator's connection drops during submit, over real HTTP (live_server).

The ranking's POST reaches the server, which stores it, but the answer never reaches the
client; the client sends the same body again (same submission_id). The retry must be
answered 200 with the stored ranking and nothing be stored twice, also when the copies
arrive at the same moment, and also from the ranking page in a real browser.
"""

import http.client
import json
import os
import socket
import struct
import threading
import uuid
from urllib.parse import urlsplit

import pytest

from accounts.models import Role
from accounts.services import user_api_token
from annotation.models import Candidate, Group, Ranking
from tests.annotation_fixtures import make_dataset
from tests.brokers import wait_for
from tests.factories import PASSWORD, UserFactory

# Playwright's sync API runs an event loop in this thread (see test_annotation_page.py).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def setup(transactional_db, live_server):
    user = UserFactory(username="ann", role=Role.ANNOTATOR)
    dataset = make_dataset("net", groups=3, candidates=3, overlap=2, annotators=[user])
    host, port = urlsplit(live_server.url).hostname, urlsplit(live_server.url).port
    return {"dataset": dataset, "token": user_api_token(user=user), "address": (host, port)}


def _request(address, token, method, path, body=None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)  # fmt: skip
        response = conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {})
    finally:
        conn.close()


def _ranking_body(group_payload) -> dict:
    ids = [c["id"] for c in group_payload["candidates"]]
    return {
        "submission_id": str(uuid.uuid4()),
        "tiers": {
            "prompt_following": [[i] for i in ids],
            "consistency": [ids],
            "overall": [ids[:1], ids[1:]],
        },
        "seconds_spent": 12.5,
    }


def _post_then_lose_the_answer(address, token, path, body, delivered) -> None:
    """Send the whole request, wait until the server has acted on it, then drop the
    connection without reading a byte of the answer (RST, like a dead Wi-Fi)."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n"
        f"Authorization: Token {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(address, timeout=10)
    try:
        sock.sendall(head + payload)
        wait_for(delivered, 30, "the first POST to be stored")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def test_retry_after_a_lost_answer_is_stored_once_and_answered_200(setup):
    address, token, dataset = setup["address"], setup["token"], setup["dataset"]
    status, leased = _request(address, token, "POST", f"/api/datasets/{dataset.pk}/next/")
    assert status == 200
    group = leased["group"]
    body = _ranking_body(group)
    path = f"/api/groups/{group['id']}/rankings/"

    _post_then_lose_the_answer(
        address, token, path, body, lambda: Ranking.objects.filter(group_id=group["id"]).exists()
    )
    status, retried = _request(address, token, "POST", path, body)  # the client's retry
    assert status == 200, retried
    assert retried["submission_id"] == body["submission_id"]

    stored = Ranking.objects.get(group_id=group["id"])  # exactly one
    assert retried["id"] == stored.pk and stored.seconds_spent == 12.5
    assert Group.objects.get(pk=group["id"]).ranking_count == 1
    # The annotator goes on: the ranked group is done, the next one is another group.
    status, following = _request(address, token, "POST", f"/api/datasets/{dataset.pk}/next/")
    assert status == 200 and following["group"]["id"] != group["id"]


def test_copies_of_one_submission_arriving_together_store_one_row(setup):
    address, token, dataset = setup["address"], setup["token"], setup["dataset"]
    group = _request(address, token, "POST", f"/api/datasets/{dataset.pk}/next/")[1]["group"]
    body = _ranking_body(group)
    path = f"/api/groups/{group['id']}/rankings/"
    copies = 6
    barrier = threading.Barrier(copies)
    answers: list[tuple[int, dict]] = []

    def send():
        barrier.wait(timeout=20)
        answers.append(_request(address, token, "POST", path, body))

    threads = [threading.Thread(target=send) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == copies, answers
    assert sorted(s for s, _ in answers) == [200] * (copies - 1) + [201], answers
    assert len({a["id"] for _, a in answers}) == 1
    assert Ranking.objects.filter(group_id=group["id"]).count() == 1
    assert Group.objects.get(pk=group["id"]).ranking_count == 1


def test_two_different_submissions_of_one_group_at_once_store_one(setup):
    """Two tabs submitting the same group: one is stored, the other told 409."""
    address, token, dataset = setup["address"], setup["token"], setup["dataset"]
    group = _request(address, token, "POST", f"/api/datasets/{dataset.pk}/next/")[1]["group"]
    path = f"/api/groups/{group['id']}/rankings/"
    barrier = threading.Barrier(2)
    answers = []

    def send():
        body = _ranking_body(group)
        barrier.wait(timeout=20)
        answers.append(_request(address, token, "POST", path, body)[0])

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(answers) == [201, 409]
    assert Ranking.objects.filter(group_id=group["id"]).count() == 1


# --- the ranking page in a real browser: the first submit's answer is lost


def test_page_retries_a_submit_whose_answer_was_lost_and_it_is_stored_once(
    page, live_server, transactional_db
):
    user = UserFactory(username="ann", role=Role.ANNOTATOR)
    dataset = make_dataset("shapes", groups=2, candidates=3, overlap=1, annotators=[user])
    posts: list[dict] = []

    def lose_first_answer(route):
        posts.append(json.loads(route.request.post_data))
        if len(posts) == 1:
            route.fetch()  # the request reaches the server, which stores the ranking...
            route.abort("connectionreset")  # ...and the page never hears back
        else:
            route.continue_()

    page.route("**/api/groups/*/rankings/", lose_first_answer)
    page.goto(f"{live_server.url}/login/?next=/annotate/{dataset.pk}/")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#board .cand")
    group_id = page.eval_on_selector("#board-data", "el => JSON.parse(el.textContent).group.id")
    first = Group.objects.get(pk=group_id).external_id

    for _ in range(3):  # every card in tier 1 on every dimension, by keyboard
        for _ in range(3):
            page.keyboard.press("1")
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "prev => { const b = document.getElementById('board'); return b && b.dataset.group && b.dataset.group !== prev; }",
        arg=str(group_id),
        timeout=30000,
    )

    assert len(posts) == 2  # the lost one and the retry
    assert posts[0] == posts[1]  # the same body: the same submission_id
    rankings = Ranking.objects.filter(group__external_id=first)
    assert rankings.count() == 1
    assert str(rankings.get().submission_id) == posts[0]["submission_id"]
    assert Candidate.objects.filter(group__external_id=first).count() == 3
