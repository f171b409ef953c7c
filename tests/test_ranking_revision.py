"""An annotator revises a submitted ranking: a new version replaces it, the old one is kept;
revising is possible within the dataset's window from the first submission and never once the
group is adjudicated. Researchers set the window on the dataset's settings page, which also
shows them (and only them) the quality-control settings."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from annotation import services
from annotation.models import Dataset, DatasetReport, Group, Ranking, RankingVersion, Review
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(client):
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    dataset = make_dataset("rev", groups=2, candidates=3, overlap=2, annotators=[ann, bob],
                           adjudication_threshold=0.6, adjudication_extra_overlap=1)  # fmt: skip
    group = Group.objects.filter(dataset=dataset).order_by("pk").first()
    tokens = list(group.candidates.order_by("pk").values_list("token", flat=True))
    client.force_login(ann)
    assert client.post(f"/api/datasets/{dataset.pk}/next/").json()["group"]["id"] == group.pk
    best_first = _tiers(dataset, tokens)
    reply = client.post(f"/api/groups/{group.pk}/rankings/",
                        {"submission_id": str(uuid.uuid4()), **best_first},
                        content_type="application/json")  # fmt: skip
    assert reply.status_code == 201 and reply.json()["version"] == 1
    return dataset, group, tokens, Ranking.objects.get(pk=reply.json()["id"]), ann, bob


def _tiers(dataset, order):
    return {"tiers": {d: [[t] for t in order] for d in dataset.dimension_keys}}


def _revise(client, ranking, body, submission_id=None):
    return client.post(f"/api/rankings/{ranking.pk}/revisions/",
                       {"submission_id": str(submission_id or uuid.uuid4()), **body},
                       content_type="application/json")  # fmt: skip


def test_a_revision_becomes_the_next_version_and_keeps_the_old_one(world, client):
    dataset, group, tokens, ranking, *_ = world
    submission = uuid.uuid4()
    reversed_ = _tiers(dataset, tokens[::-1])
    reply = _revise(client, ranking, reversed_, submission)
    assert reply.status_code == 201
    assert reply.json()["version"] == 2 and reply.json()["tiers"] == reversed_["tiers"]
    ranking.refresh_from_db()
    externals = dict(group.candidates.values_list("token", "external_id"))
    assert ranking.tiers["prompt_following"] == [[externals[t]] for t in tokens[::-1]]
    assert ranking.version == 2 and ranking.revised_at is not None
    (old,) = RankingVersion.objects.filter(ranking=ranking)
    assert old.version == 1 and old.tiers["prompt_following"] == [[externals[t]] for t in tokens]
    assert ranking.code != old.code  # the statistics read the current version
    # the same request again is a retry: no third version
    again = _revise(client, ranking, reversed_, submission)
    assert again.status_code == 200 and RankingVersion.objects.count() == 1
    # the annotator's names only: an import id is an unknown candidate, not a way to map ids
    blind = _revise(client, ranking, _tiers(dataset, [externals[tokens[0]], *tokens[1:]]))
    assert blind.status_code == 400 and "unknown candidate(s)" in blind.json()["detail"]
    assert tokens[0] not in blind.json()["detail"]
    assert Ranking.objects.get(pk=ranking.pk).version == 2  # refused: nothing changed


def test_the_window_runs_from_the_first_submission_and_adjudication_closes_it(world, client):
    dataset, group, tokens, ranking, *_ = world
    Dataset.objects.filter(pk=dataset.pk).update(revision_window_seconds=3600)
    assert _revise(client, ranking, _tiers(dataset, tokens[::-1])).status_code == 201
    # 61 minutes after the first submission the window is closed, though revised since
    Ranking.objects.filter(pk=ranking.pk).update(created_at=timezone.now() - timedelta(minutes=61))
    closed = _revise(client, ranking, _tiers(dataset, tokens))
    assert closed.status_code == 409
    assert "the revision window (1 h) closed at" in closed.json()["detail"]
    Dataset.objects.filter(pk=dataset.pk).update(revision_window_seconds=0)
    off = _revise(client, ranking, _tiers(dataset, tokens))
    assert off.json()["detail"] == "this dataset does not allow revising rankings"
    Dataset.objects.filter(pk=dataset.pk).update(revision_window_seconds=86400 * 7)
    Group.objects.filter(pk=group.pk).update(review=Review.ADJUDICATED)
    final = _revise(client, ranking, _tiers(dataset, tokens))
    assert final.status_code == 409 and "adjudicated" in final.json()["detail"]
    assert Ranking.objects.get(pk=ranking.pk).version == 2
    # the page says why, and does not open the board
    page = client.get(f"/annotate/rankings/{ranking.pk}/revise/", follow=True)
    assert "Not revisable: this group was adjudicated" in page.content.decode()
    assert 'title="this group was adjudicated: its rankings are final">final' in (
        client.get("/annotate/mine/").content.decode()
    )


def test_nobody_else_may_revise_it(world, client):
    dataset, group, tokens, ranking, ann, bob = world
    for other in (bob, UserFactory(role=Role.RESEARCHER)):
        client.force_login(other)
        assert _revise(client, ranking, _tiers(dataset, tokens)).status_code == 404
        assert client.get(f"/annotate/rankings/{ranking.pk}/revise/").status_code == 404
    client.force_login(ann)
    dataset.annotators.remove(ann)  # no longer an annotator of the dataset: no revisions
    assert _revise(client, ranking, _tiers(dataset, tokens)).status_code == 404
    assert RankingVersion.objects.count() == 0


def test_a_revision_recomputes_the_groups_agreement_and_stales_the_report(world, client):
    dataset, group, tokens, ranking, ann, bob = world
    externals = dict(group.candidates.values_list("token", "external_id"))
    services.ranking_submit(group=group, annotator=bob, submission_id=uuid.uuid4(),
                            tiers=_tiers(dataset, [externals[t] for t in tokens])["tiers"])  # fmt: skip
    group.refresh_from_db()
    assert group.agreement == 1.0 and group.review == Review.NONE
    DatasetReport.objects.create(dataset=dataset, computed_at=timezone.now(), last_ranking_id=99)
    assert _revise(client, ranking, _tiers(dataset, tokens[::-1])).status_code == 201
    group.refresh_from_db()
    # every pair now disagrees: the group asks for one more ranking, as after a first ranking
    assert group.agreement == 0.0 and group.review == Review.EXTRA and group.extra_overlap == 1
    assert DatasetReport.objects.get(dataset=dataset).last_ranking_id == -1


def test_my_work_links_the_revision_page_which_starts_from_the_ranking(world, client):
    dataset, group, tokens, ranking, *_ = world
    mine = client.get("/annotate/mine/").content.decode()
    assert f'href="/annotate/rankings/{ranking.pk}/revise/">Revise</a>' in mine
    page = client.get(f"/annotate/rankings/{ranking.pk}/revise/")
    board = page.context["board_data"]
    assert board["mode"] == "revision"
    assert board["group"]["submit_url"] == f"/api/rankings/{ranking.pk}/revisions/"
    assert board["group"]["initial"]["prompt_following"] == {
        "tiers": [[t] for t in tokens],
        "floor": [],
    }
    html = page.content.decode()
    assert "what you submit becomes version 2" in html and 'id="skip-button"' not in html
    assert "rev-g0-c0" not in html and "editor-0" not in html  # still blind


def test_researchers_set_the_window_and_only_they_see_quality_control(client):
    ann, rita = UserFactory(username="ann"), UserFactory(username="rita", role=Role.RESEARCHER)
    dataset = make_dataset("qc", groups=1, annotators=[ann], gold_rate=0.1)
    client.force_login(ann)
    assert "gold" not in client.get("/annotate/").content.decode().lower()
    assert client.get(f"/annotate/{dataset.pk}/settings/").status_code == 403
    client.force_login(rita)
    assert (
        "gold rate 0.1 · repeat-free · revisions for 24 h"
        in client.get("/annotate/").content.decode()
    )
    form = {"revision_window_hours": "2.5", "lease_ttl_seconds": "900", "gold_rate": "0",
            "repeat_rate": "0.05", "repeat_gap": "5", "adjudication_threshold": "0.6",
            "adjudication_extra_overlap": "1"}  # fmt: skip
    saved = client.post(f"/annotate/{dataset.pk}/settings/", form)
    assert saved.status_code == 302
    dataset.refresh_from_db()
    assert (dataset.revision_window_seconds, dataset.lease_ttl_seconds, dataset.gold_rate) == (
        9000,
        900,
        0,
    )
    bad = client.post(f"/annotate/{dataset.pk}/settings/", {**form, "gold_rate": "2",
                                                             "revision_window_hours": "1"})  # fmt: skip
    assert bad.status_code == 400
    assert "Ensure this value is less than or equal to 1" in bad.content.decode()
    dataset.refresh_from_db()
    assert dataset.revision_window_seconds == 9000  # refused whole: nothing changed
    assert "gold-free · repeat rate 0.05" in client.get("/annotate/").content.decode()


def test_the_browser_shows_earlier_versions_to_researchers(world, client):
    dataset, group, tokens, ranking, *_ = world
    assert _revise(client, ranking, _tiers(dataset, tokens[::-1])).status_code == 201
    client.force_login(UserFactory(role=Role.RESEARCHER))
    page = client.get(f"/annotate/{dataset.pk}/groups/{group.pk}/").content.decode()
    assert "version 2, revised" in page and "↳ version 1" in page
    assert "<s>A &gt; B &gt; C</s>" in page and "C &gt; B &gt; A" in page


def test_what_an_annotator_sees_of_progress_moves_alike_for_gold_groups(client):
    """Ranking a gold group changes an annotator's numbers exactly as ranking any group: their
    count +1, left for them -1; the dataset's ranking count (which gold does not move) is not
    shown to them (with every other group complete, it would single out the gold ones); and the
    gold groups they have not seen come before "nothing left"."""
    ann = UserFactory(username="ann")
    dataset = make_dataset("gold", groups=3, candidates=2, overlap=1, annotators=[ann],
                           gold_rate=0.5)  # fmt: skip
    gold = Group.objects.filter(dataset=dataset).order_by("pk").last()
    Group.objects.filter(pk=gold.pk).update(is_gold=True)
    client.force_login(ann)

    def progress():
        return client.get("/api/datasets/").json()[0]["progress"]

    before = progress()
    assert "rankings" not in before and before["left_for_me"] == 3
    served = []
    while (reply := client.post(f"/api/datasets/{dataset.pk}/next/")).status_code == 200:
        group = reply.json()["group"]
        served.append(group["id"])
        tokens = [c["id"] for c in group["candidates"]]
        client.post(f"/api/groups/{group['id']}/rankings/",
                    {"submission_id": str(uuid.uuid4()), **_tiers(dataset, tokens)},
                    content_type="application/json")  # fmt: skip
        after = progress()
        assert (after["my_rankings"], after["left_for_me"]) == (
            before["my_rankings"] + 1,
            before["left_for_me"] - 1,
        )
        before = after
    assert gold.pk in served and len(served) == 3 and before["left_for_me"] == 0
    page = client.get(f"/annotate/{dataset.pk}/").content.decode()
    assert "Nothing left for you here" in page and "groups complete" not in page
    assert "Dataset:" not in client.get("/annotate/").content.decode()


def test_gold_accuracy_judges_the_first_answer(client):
    """A revision changes the consensus, never the quality control: gold accuracy (and
    self-consistency) read each ranking's first version."""
    from annotation.quality import compute_report

    ann = UserFactory(username="ann")
    dataset = make_dataset("goldrev", groups=1, candidates=2, overlap=1, annotators=[ann])
    group = Group.objects.get(dataset=dataset)
    first, second = group.candidates.order_by("pk").values_list("external_id", flat=True)
    Group.objects.filter(pk=group.pk).update(
        is_gold=True, gold={d: [[first, ">", second]] for d in dataset.dimension_keys}
    )
    ranking, _ = services.ranking_submit(group=group, annotator=ann, submission_id=uuid.uuid4(),
                                         tiers=_tiers(dataset, [second, first])["tiers"])  # fmt: skip
    services.ranking_revise(ranking=ranking, annotator=ann, submission_id=uuid.uuid4(),
                            tiers=_tiers(dataset, [first, second])["tiers"])  # fmt: skip
    (row,) = compute_report(dataset)["annotators"]
    assert row["gold_accuracy"] == 0.0 and row["gold_relations"] == 3  # the first answer


def test_a_reused_submission_id_is_a_conflict_not_an_error(world, client):
    dataset, group, tokens, ranking, ann, bob = world
    submission = uuid.uuid4()
    assert _revise(client, ranking, _tiers(dataset, tokens[::-1]), submission).status_code == 201
    # the same id with other placements: refused, nothing changed
    other = _revise(client, ranking, _tiers(dataset, tokens), submission)
    assert other.status_code == 409 and "used for another version" in other.json()["detail"]
    # an id used by someone else's ranking
    externals = list(group.candidates.order_by("pk").values_list("external_id", flat=True))
    taken = uuid.uuid4()
    services.ranking_submit(group=group, annotator=bob, submission_id=taken,
                            tiers=_tiers(dataset, externals)["tiers"])  # fmt: skip
    clash = _revise(client, ranking, _tiers(dataset, tokens), taken)
    assert clash.status_code == 409 and "used before" in clash.json()["detail"]
    assert Ranking.objects.get(pk=ranking.pk).version == 2
