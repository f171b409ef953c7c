"""Researcher pages in a real browser: the adjudication board (the ranking board
fed with disputed groups) and the quality dashboard."""

import os
import uuid

import pytest

from accounts.models import Role
from annotation.models import Adjudication, Group, Review
from annotation.quality import report_refresh
from annotation.services import ranking_submit
from tests.annotation_fixtures import make_dataset
from tests.factories import PASSWORD, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
DIMS = ["prompt_following", "consistency", "overall"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def disputed(transactional_db):
    """Two annotators rank one group in opposite orders: with K = 2 and no extra
    overlap allowed, it goes straight to the adjudication queue."""
    users = [UserFactory(username=f"ann{i}") for i in (1, 2)]
    dataset = make_dataset(
        "disputed", groups=2, candidates=3, overlap=2, annotators=users,
        adjudication_extra_overlap=0,
    )  # fmt: skip
    group = Group.objects.filter(dataset=dataset).order_by("pk").first()
    ids = [f"{group.external_id}-c{i}" for i in range(3)]
    for user, order in zip(users, (ids, ids[::-1]), strict=True):
        ranking_submit(
            group=group, annotator=user, submission_id=uuid.uuid4(),
            tiers=dict.fromkeys(DIMS, [[c] for c in order]),
        )  # fmt: skip
    group.refresh_from_db()
    assert group.review == Review.QUEUED
    return dataset, group


def _login(page, live_server, username, next_url):
    page.goto(f"{live_server.url}/login/?next={next_url}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_researcher_adjudicates_a_disputed_group_by_keyboard(page, live_server, disputed):
    dataset, group = disputed
    UserFactory(username="rita", role=Role.RESEARCHER)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, live_server, "rita", f"/annotate/{dataset.pk}/review/")
    page.wait_for_selector("#board .cand")
    # The votes are shown: one row per annotator, thumbnails per tier.
    assert page.locator(".votes-table tr").count() == 2
    assert page.locator("#skip-button").count() == 0
    for dim in DIMS:  # 1 1 2: two tied on top, the third below
        page.keyboard.press("1")
        page.keyboard.press("1")
        page.keyboard.press("2")
        if dim != DIMS[-1]:
            page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#all-done")
    assert "No group is waiting for adjudication" in page.inner_text("#all-done")
    adjudication = Adjudication.objects.get(group=group)
    assert adjudication.researcher.username == "rita"
    assert [len(t) for t in adjudication.tiers["overall"]] == [2, 1]
    group.refresh_from_db()
    assert group.review == Review.ADJUDICATED and not errors


def test_quality_dashboard_renders_the_report(page, live_server, disputed):
    dataset, _ = disputed
    UserFactory(username="rita", role=Role.RESEARCHER)
    report_refresh(dataset)
    _login(page, live_server, "rita", f"/annotate/{dataset.pk}/quality/")
    page.wait_for_selector("#annotators")
    assert page.locator("#annotators tbody tr").count() == 2
    # Opposite orders of 3 candidates: no pair agrees.
    row = page.locator("#agreement-overall tbody tr").first.inner_text()
    assert row.startswith("all task types") and "0.000" in row
    assert page.locator(".interval-chart svg").count() >= 3
    assert "1 awaiting adjudication" in page.inner_text("body")
