"""Webhooks: signed JSON POSTs on job end, dataset complete and model promoted, retried with
backoff and logged, to a real HTTP server on loopback; managed by researchers only."""

import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from django.utils import timezone

from accounts.models import Role
from annotation import services as annotation_services
from annotation.models import Group
from hooks import services
from hooks.models import Delivery, Webhook
from jobs.runner import run_job
from rewardmodel.models import RewardModel
from tests.annotation_fixtures import make_dataset
from tests.factories import JobFactory, UserFactory
from tests.local_http import serve, stop

pytestmark = pytest.mark.django_db


class Receiver(BaseHTTPRequestHandler):
    received: list = []
    answer = 204

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers, body))  # case-insensitive
        self.send_response(type(self).answer)
        if type(self).answer == 302:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received, Receiver.answer = [], 204
    server, url = serve(Receiver)
    yield url
    stop(server)


def _due(delivery_id):
    Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())


def test_a_delivery_is_signed_json_and_delivered_once(receiver):
    hook = Webhook.objects.create(url=receiver + "/hook", events=["job.succeeded"])
    [pk] = services.emit("job.succeeded", {"job": 7})
    assert services.emit("model.promoted", {"model": 1}) == []  # not subscribed
    assert services.deliver(pk) == "delivered"
    assert services.deliver(pk) == "delivered"  # done: not sent again
    [(headers, body)] = Receiver.received
    expected = "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-EditLoop-Signature"] == expected
    assert headers["X-EditLoop-Event"] == "job.succeeded" and headers["X-EditLoop-Delivery"] == str(
        pk
    )
    message = json.loads(body)
    assert message["event"] == "job.succeeded" and message["data"] == {"job": 7}
    assert message["delivery"] == pk and headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError, match="unknown event"):
        services.emit("job.exploded", {})


@pytest.mark.parametrize("answer", [500, 302])
def test_a_failing_receiver_is_retried_with_backoff_then_given_up(receiver, answer):
    Receiver.answer = answer  # an error, or a redirect (not followed: not a delivery)
    Webhook.objects.create(url=receiver, events=["job.failed"])
    [pk] = services.emit("job.failed", {"job": 1})
    assert services.deliver(pk) == "pending"
    delivery = Delivery.objects.get(pk=pk)
    assert delivery.attempts == 1 and delivery.last_status_code == answer
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 8 < wait <= 10
    assert (
        services.deliver(pk) == "pending" and Delivery.objects.get(pk=pk).attempts == 1
    )  # not due
    assert services.sweep() == []  # nothing due
    for _ in range(services.MAX_ATTEMPTS - 1):
        _due(pk)
        status = services.deliver(pk)
    assert status == "failed" and Delivery.objects.get(pk=pk).attempts == services.MAX_ATTEMPTS
    assert len(Receiver.received) == services.MAX_ATTEMPTS


def test_an_unreachable_receiver_is_an_error_not_a_crash():
    Webhook.objects.create(url="http://127.0.0.1:9/nothing-listens", events=["job.failed"])
    [pk] = services.emit("job.failed", {"job": 1})
    assert services.deliver(pk) == "pending"
    delivery = Delivery.objects.get(pk=pk)
    assert delivery.last_status_code is None and delivery.last_error


def test_events_are_emitted_where_they_happen(receiver):
    Webhook.objects.create(url=receiver, events=["job.succeeded", "job.failed",
                                                 "dataset.complete", "model.promoted"])  # fmt: skip
    Webhook.objects.create(url=receiver, events=["job.failed"], active=False)  # paused: nothing
    ok = JobFactory(config={"steps": 2, "step_seconds": 0.0})
    bad = JobFactory(config={"steps": 5, "step_seconds": 0.0, "fail_at_step": 1})
    run_job(ok.pk, worker="inline")
    run_job(bad.pk, worker="inline")
    ann = UserFactory()
    dataset = make_dataset("done", groups=2, candidates=2, overlap=1, annotators=[ann])
    for group in Group.objects.filter(dataset=dataset):
        ids = list(group.candidates.values_list("external_id", flat=True))
        annotation_services.ranking_submit(group=group, annotator=ann, submission_id=uuid.uuid4(),
                                           tiers=dict.fromkeys(dataset.dimension_keys, [ids]))  # fmt: skip
    RewardModel.objects.create(name="m", base="/m", origin="imported").promote()
    log = [(d.event, d.payload) for d in Delivery.objects.order_by("pk")]
    assert [e for e, _ in log] == ["job.succeeded", "job.failed", "dataset.complete",
                                   "model.promoted"]  # fmt: skip
    assert log[1][1]["job"] == bad.pk and log[1][1]["error_kind"] == "internal"
    assert log[2][1]["name"] == "done" and log[2][1]["groups"] == 2
    assert log[3][1]["name"] == "m"


def test_researchers_manage_webhooks_on_their_page(client, receiver):
    client.force_login(UserFactory(username="ann"))
    assert client.get("/webhooks/").status_code == 403
    assert client.post("/webhooks/", {"action": "create", "url": receiver,
                                      "events": ["job.failed"]}).status_code == 403  # fmt: skip
    client.force_login(UserFactory(username="rita", role=Role.RESEARCHER))
    bad = client.post("/webhooks/", {"action": "create", "url": "ftp://x", "events": ["job.failed"]},
                      follow=True)  # fmt: skip
    assert "Not created: the URL must be an http:// or https:// address" in bad.content.decode()
    assert not Webhook.objects.exists()
    made = client.post("/webhooks/", {"action": "create", "url": receiver,
                                      "events": ["job.failed", "nope"]}, follow=True)  # fmt: skip
    assert "choose events among" in made.content.decode()
    made = client.post("/webhooks/", {"action": "create", "url": receiver,
                                      "events": ["job.failed"]}, follow=True)  # fmt: skip
    hook = Webhook.objects.get()
    assert hook.secret in made.content.decode()  # shown once, at creation
    client.post("/webhooks/", {"action": "ping", "webhook": hook.pk})
    ping = Delivery.objects.get(event="ping")
    assert services.deliver(ping.pk) == "delivered"
    page = client.get("/webhooks/").content.decode()
    assert hook.secret not in page and "delivered" in page and "ping" in page
    client.post("/webhooks/", {"action": "delete", "webhook": hook.pk})
    assert not Webhook.objects.exists()


def test_the_sweep_finds_what_is_due(monkeypatch):
    rung = []
    monkeypatch.setattr(services, "_ring", rung.extend)
    hook = Webhook.objects.create(url="http://127.0.0.1:9/", events=["job.failed"])
    now = timezone.now()
    due = Delivery.objects.create(webhook=hook, event="job.failed", payload={}, next_attempt_at=now)
    Delivery.objects.create(webhook=hook, event="job.failed", payload={},
                            next_attempt_at=now + timedelta(minutes=5))  # fmt: skip
    assert services.sweep() == [due.pk] and rung == [due.pk]
