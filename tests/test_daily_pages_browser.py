"""The daily-use pages in a real browser (Debian's chromium), at 1280x720: a researcher browses
a dataset's groups and opens one, adds a person, subscribes a webhook and reads the API docs;
an annotator skips a group and reopens it from My work, and revises a ranking from there. No
console error anywhere."""

import os
import uuid

import pytest

from accounts.models import Role
from annotation import services
from annotation.models import Group, Ranking
from tests.annotation_fixtures import make_dataset
from tests.factories import PASSWORD, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SIZE = {"width": 1280, "height": 720}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _sign_in(page, live_server, username, next_url):
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size(SIZE)
    page.goto(f"{live_server.url}/login/?next={next_url}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return errors


def test_a_researcher_walks_the_new_pages(page, live_server, transactional_db):
    UserFactory(username="rita", role=Role.RESEARCHER)
    ann = UserFactory(username="ann")
    dataset = make_dataset("walk", groups=3, candidates=3, overlap=1, annotators=[ann])
    group = Group.objects.filter(dataset=dataset).order_by("pk").first()
    ids = list(group.candidates.values_list("external_id", flat=True))
    services.ranking_submit(group=group, annotator=ann, submission_id=uuid.uuid4(),
                            tiers=dict.fromkeys(dataset.dimension_keys, [[ids[0]], ids[1:]]))  # fmt: skip
    errors = _sign_in(page, live_server, "rita", f"/annotate/{dataset.pk}/quality/")
    page.click("text=browse groups")
    page.select_option("select[name=state]", "complete")
    page.click("#browse-filters button[type=submit]")
    page.wait_for_selector('#groups tr[data-state="complete"]')
    assert page.locator("#groups tbody tr").count() == 1
    page.click("#groups tbody tr th a")
    page.wait_for_selector("#consensus")
    assert page.inner_text("#group-state") == "complete"
    assert "A > B = C" in page.inner_text("#rankings") and "editor-0" in page.content()
    # people: create someone and get the invitation link
    page.click("nav >> text=People")
    page.fill("#add-person input[name=username]", "newbie")
    page.click("#add-person button[type=submit]")
    assert "/invite/" in page.content() and "newbie" in page.inner_text("h1")
    # webhooks
    page.click("nav >> text=Webhooks")
    page.fill("#webhook-form input[name=url]", "http://127.0.0.1:9/hook")
    page.click("#webhook-form button[type=submit]")
    assert "signing secret" in page.content() and "127.0.0.1:9/hook" in page.inner_text("#webhooks")
    # the API docs render from the app's own assets
    page.click("nav >> text=API")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15000)
    assert page.locator(".opblock").count() > 20
    assert errors == []


def test_an_annotator_skips_then_reopens_a_group(page, live_server, transactional_db):
    ann = UserFactory(username="ann")
    dataset = make_dataset("redo", groups=2, candidates=2, overlap=1, annotators=[ann])
    errors = _sign_in(page, live_server, "ann", f"/annotate/{dataset.pk}/")
    page.wait_for_selector("#board .cand")
    skipped = page.eval_on_selector("#board", "b => b.dataset.group")
    page.keyboard.press("s")
    page.wait_for_function("g => document.getElementById('board').dataset.group !== g", arg=skipped)
    page.goto(f"{live_server.url}/annotate/mine/")
    page.click("#skipped button[type=submit]")
    page.wait_for_selector("#board .cand")
    assert page.eval_on_selector("#board", "b => b.dataset.group") == skipped
    assert errors == []


def test_an_annotator_revises_a_ranking_from_my_work(page, live_server, transactional_db):
    ann = UserFactory(username="ann")
    dataset = make_dataset("fix", groups=1, candidates=3, overlap=1, annotators=[ann])
    group = Group.objects.get(dataset=dataset)
    ids = list(group.candidates.order_by("pk").values_list("external_id", flat=True))
    first = dict.fromkeys(dataset.dimension_keys, [[i] for i in ids])  # A > B > C everywhere
    services.ranking_submit(group=group, annotator=ann, submission_id=uuid.uuid4(), tiers=first)
    errors = _sign_in(page, live_server, "ann", "/annotate/mine/")
    page.click("#rankings a:text('Revise')")
    page.wait_for_selector("#board .cand")
    assert "what you submit becomes version 2" in page.inner_text("#revising")
    assert page.is_enabled("#submit-button")  # it starts from the ranking: all placed
    page.keyboard.press("0")  # the focused candidate drops to the unusable floor, in this dimension
    page.keyboard.press("Enter")
    page.wait_for_url("**/annotate/mine/#rankings")
    assert "2 revised" in page.inner_text("#rankings")
    ranking = Ranking.objects.get(group=group, annotator=ann)
    first_dim, *others = dataset.dimension_keys
    assert ranking.version == 2
    assert len(ranking.tiers[first_dim]) == 2 and len(ranking.unusable[first_dim]) == 1
    assert all(ranking.tiers[d] == first[d] for d in others)
    assert errors == []
