"""The researcher's dataset browser: groups filtered by task type, state and annotator; one
group with its candidates (editors named), every ranking and the consensus. Annotators may not
open it."""

import uuid

import pytest

from accounts.models import Role
from annotation import services
from annotation.browse import browse_groups
from annotation.models import Group, Review
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _rank(group, user, tiers):
    """Rank on every dimension with the same order (tiers of candidate indexes)."""
    ids = [f"{group.external_id}-c{i}" for i in range(group.candidates.count())]
    placed = [[ids[i] for i in tier] for tier in tiers]
    services.ranking_submit(group=group, annotator=user, submission_id=uuid.uuid4(),
                            tiers={d: placed for d in group.dataset.dimension_keys})  # fmt: skip


@pytest.fixture
def world():
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    dataset = make_dataset("br", groups=5, candidates=3, overlap=2, annotators=[ann, bob])
    g0, g1, g2, g3, g4 = Group.objects.filter(dataset=dataset).order_by("pk")
    _rank(g0, ann, [[0], [1], [2]])  # complete, agreeing
    _rank(g0, bob, [[0], [1, 2]])
    _rank(g1, ann, [[2], [1], [0]])  # partial
    Group.objects.filter(pk=g2.pk).update(review=Review.QUEUED, ranking_count=2)  # disputed
    Group.objects.filter(pk=g3.pk).update(task_type="extract")
    Group.objects.filter(pk=g4.pk).update(is_gold=True)
    return dataset, (g0, g1, g2, g3, g4)


def _ids(dataset, **filters):
    return [row["external_id"] for row in browse_groups(dataset, **filters)]


def test_filters_by_state_task_type_and_annotator(world):
    dataset, _ = world
    assert _ids(dataset, state="complete") == ["br-g0"]
    assert _ids(dataset, state="partial") == ["br-g1"]
    assert _ids(dataset, state="disputed") == ["br-g2"]
    assert _ids(dataset, state="unranked") == ["br-g3"]
    assert _ids(dataset, state="gold") == ["br-g4"]
    assert _ids(dataset, task_type="extract") == ["br-g3"]
    assert _ids(dataset, annotator="bob") == ["br-g0"]
    assert _ids(dataset, annotator="ann", state="partial") == ["br-g1"]
    with pytest.raises(ValueError, match="unknown state 'nope'"):
        browse_groups(dataset, state="nope")


def test_pages_list_and_open_a_group_for_researchers_only(world, client):
    dataset, (g0, *_) = world
    client.force_login(UserFactory(role=Role.ANNOTATOR))
    assert client.get(f"/annotate/{dataset.pk}/groups/").status_code == 403
    assert client.get(f"/annotate/{dataset.pk}/groups/{g0.pk}/").status_code == 403
    client.force_login(UserFactory(role=Role.RESEARCHER))
    listing = client.get(f"/annotate/{dataset.pk}/groups/?state=complete").content.decode()
    assert "br-g0" in listing and "br-g1" not in listing and "1 group" in listing
    assert client.get(f"/annotate/{dataset.pk}/groups/?state=nope").status_code == 400
    page = client.get(f"/annotate/{dataset.pk}/groups/{g0.pk}/").content.decode()
    assert "editor-0" in page and "br-g0-c2" in page  # researchers see who made each edit
    assert "A &gt; B &gt; C" in page and "A &gt; B = C" in page  # ann's and bob's rankings
    # consensus (majority): A over B and C by both votes; B-C split 1-0-1: unsettled
    assert 'title="votes 2-0-0 (first, second, tie)">A &gt; B</span>' in page
    assert 'title="votes 1-0-1 (first, second, tie)">B ? C</span>' in page
    other = make_dataset("other", groups=1)
    stranger = Group.objects.get(dataset=other)
    assert client.get(f"/annotate/{dataset.pk}/groups/{stranger.pk}/").status_code == 404


def test_an_annotator_sees_their_work_and_reopens_a_skipped_group(client):
    ann = UserFactory(username="ann")
    dataset = make_dataset("mine", groups=3, candidates=2, overlap=1, annotators=[ann])
    client.force_login(ann)
    first = client.post(f"/api/datasets/{dataset.pk}/next/").json()["group"]
    assert client.post(f"/api/groups/{first['id']}/skip/").status_code in (200, 204)
    second = client.post(f"/api/datasets/{dataset.pk}/next/").json()["group"]
    assert second["id"] != first["id"]
    page = client.get("/annotate/mine/").content.decode()
    assert "instruction 0" in page and "Reopen and rank" in page
    response = client.post(f"/annotate/groups/{first['id']}/reopen/")
    assert response.status_code == 302 and response["Location"] == f"/annotate/{dataset.pk}/"
    # the reopened group comes next (the lease held on the other one is released)
    assert client.post(f"/api/datasets/{dataset.pk}/next/").json()["group"]["id"] == first["id"]
    assert "Reopen and rank" not in client.get("/annotate/mine/").content.decode()
    # a group not skipped, or one of a dataset they may not annotate, cannot be reopened
    refused = client.post(f"/annotate/groups/{second['id']}/reopen/", follow=True)
    assert "Not reopened: you have not skipped this group" in refused.content.decode()
    other = Group.objects.get(dataset=make_dataset("theirs", groups=1))
    assert client.post(f"/annotate/groups/{other.pk}/reopen/").status_code == 403


def test_a_skipped_group_that_filled_up_meanwhile_is_not_reopened(client):
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    dataset = make_dataset("full", groups=1, candidates=2, overlap=1, annotators=[ann, bob])
    group = Group.objects.get(dataset=dataset)
    client.force_login(ann)
    client.post(f"/api/datasets/{dataset.pk}/next/")
    client.post(f"/api/groups/{group.pk}/skip/")
    _rank(group, bob, [[0], [1]])  # bob's ranking fills it
    refused = client.post(f"/annotate/groups/{group.pk}/reopen/", follow=True)
    assert "has all the rankings it needs" in refused.content.decode()
