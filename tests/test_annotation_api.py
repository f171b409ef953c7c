"""Distribution, skip, rankings and export through the API."""

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from accounts.models import Role
from annotation.models import Assignment, Candidate, Group, Ranking
from annotation.selectors import ranking_pairs
from annotation.services import group_next_for_annotator
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def dataset(annotator):
    return make_dataset(annotators=[annotator])


def _external(tokens: list[str]) -> list[str]:
    mapping = dict(Candidate.objects.values_list("token", "external_id"))
    return [mapping[t] for t in tokens]


def _next(client, dataset):
    return client.post(f"/api/datasets/{dataset.pk}/next/")


def _tiers(group_payload, order=None):
    ids = order or [c["id"] for c in group_payload["candidates"]]
    return {
        "prompt_following": [[i] for i in ids],
        "consistency": [ids],
        "overall": [ids[:1], ids[1:]],
    }


def _submit(client, group_id, tiers, submission_id=None, **extra):
    body = {"submission_id": str(submission_id or uuid.uuid4()), "tiers": tiers, **extra}
    return client.post(f"/api/groups/{group_id}/rankings/", body, content_type="application/json")


def test_next_leases_least_annotated_and_repeats_the_live_lease(annotator_client, dataset):
    first = _next(annotator_client, dataset)
    assert first.status_code == 200
    body = first.json()
    group = body["group"]
    assert Group.objects.get(pk=group["id"]).external_id == "ds-g0"
    assert group["instruction"] == "instruction 0" and "external_id" not in group
    tokens = dict(
        Candidate.objects.filter(group__external_id="ds-g0").values_list("token", "external_id")
    )
    assert {c["id"] for c in group["candidates"]} == set(tokens)
    # editors are hidden from annotators, and so are candidate ids and database ids,
    # which can name the editor or give away the manifest order
    text = json.dumps(body)
    assert "editor" not in text and "ds-g0" not in text  # no import id of group or candidate
    assert all(c["image_url"].endswith(c["id"]) for c in group["candidates"])
    assert _next(annotator_client, dataset).json() == body  # same lease, same order


def test_candidate_order_is_shuffled_per_annotator_but_stable(client, dataset):
    orders = set()
    for n in range(6):
        user = UserFactory(username=f"ann{n}")
        dataset.annotators.add(user)
        client.force_login(user)
        ids = tuple(c["id"] for c in _next(client, dataset).json()["group"]["candidates"])
        orders.add(ids)
    assert len(orders) > 1


def test_overlap_k_and_live_leases_limit_who_gets_a_group(client, annotator):
    dataset = make_dataset("one", groups=1, overlap=2, annotators=[annotator])
    users = [annotator, UserFactory(username="b"), UserFactory(username="c")]
    dataset.annotators.add(*users)
    got = []
    for user in users:
        client.force_login(user)
        response = _next(client, dataset)
        got.append(response.status_code)
    assert got == [200, 200, 204]  # K = 2 live leases, the third waits


def test_submit_ranking_then_next_group_and_nothing_left(annotator_client, dataset):
    seen = []
    while (response := _next(annotator_client, dataset)).status_code == 200:
        group = response.json()["group"]
        seen.append(Group.objects.get(pk=group["id"]).external_id)
        created = _submit(annotator_client, group["id"], _tiers(group), seconds_spent=12.5)
        assert created.status_code == 201, created.json()
    assert response.status_code == 204
    assert seen == ["ds-g0", "ds-g1", "ds-g2"]
    ranking = Ranking.objects.get(group__external_id="ds-g1")
    assert ranking.seconds_spent == 12.5 and not ranking.surplus and not ranking.lease_expired
    assert Group.objects.get(external_id="ds-g1").ranking_count == 1


def test_same_submission_id_is_idempotent(annotator_client, dataset):
    group = _next(annotator_client, dataset).json()["group"]
    sid = uuid.uuid4()
    first = _submit(annotator_client, group["id"], _tiers(group), sid)
    again = _submit(annotator_client, group["id"], _tiers(group), sid)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert Ranking.objects.count() == 1 and Group.objects.get(pk=group["id"]).ranking_count == 1
    other = _submit(annotator_client, group["id"], _tiers(group))  # a new id for the same group
    assert other.status_code == 409 and "already ranked" in other.json()["detail"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t, ids: t.pop("consistency"), "dimension 'consistency' is missing"),
        (lambda t, ids: t.__setitem__("overall", [ids[:1], ids[1:2]]), "not placed"),
        (lambda t, ids: t.__setitem__("overall", [ids, ids[:1]]), "placed twice"),
        (lambda t, ids: t.__setitem__("overall", [ids + ["nope"]]), "unknown candidate(s): nope"),
        (lambda t, ids: t.__setitem__("overall", [ids, []]), "a tier is empty"),
        (lambda t, ids: t.__setitem__("beauty", [ids]), "unknown dimension(s): beauty"),
        (lambda t, ids: t.__setitem__("overall", "abc"), "tiers must be a list of lists"),
    ],
)
def test_bad_rankings_get_400_and_store_nothing(annotator_client, dataset, mutate, message):
    group = _next(annotator_client, dataset).json()["group"]
    tiers = _tiers(group)
    mutate(tiers, [c["id"] for c in group["candidates"]])
    response = _submit(annotator_client, group["id"], tiers)
    assert response.status_code == 400 and message in response.json()["detail"]
    assert Ranking.objects.count() == 0


def test_missing_submission_id_is_400(annotator_client, dataset):
    group = _next(annotator_client, dataset).json()["group"]
    response = annotator_client.post(
        f"/api/groups/{group['id']}/rankings/", {"tiers": {}}, content_type="application/json"
    )
    assert response.status_code == 400 and "submission_id" in response.json()


def test_unusable_floor_is_below_every_tier(annotator_client, dataset):
    group = _next(annotator_client, dataset).json()["group"]
    a, b, c = [x["id"] for x in group["candidates"]]
    tiers = {"prompt_following": [[a]], "consistency": [[a, b, c]], "overall": [[a, b, c]]}
    response = _submit(annotator_client, group["id"], tiers, unusable={"prompt_following": [b, c]})
    assert response.status_code == 201
    ranking = Ranking.objects.get()
    a, b, c = _external([a, b, c])  # stored with the import's candidate ids
    assert ranking.full_tiers("prompt_following") == [[a], [b, c]]
    assert list(ranking_pairs(ranking.full_tiers("prompt_following"))) == [(a, b, 1), (a, c, 1)]


def test_skip_is_never_served_again(annotator_client, dataset):
    first = _next(annotator_client, dataset).json()["group"]
    assert annotator_client.post(f"/api/groups/{first['id']}/skip/").status_code == 200
    nxt = _next(annotator_client, dataset).json()["group"]
    assert nxt["id"] != first["id"]
    annotator_client.post(f"/api/groups/{nxt['id']}/skip/")
    third = _next(annotator_client, dataset).json()["group"]
    annotator_client.post(f"/api/groups/{third['id']}/skip/")
    assert _next(annotator_client, dataset).status_code == 204


def test_late_ranking_after_lease_expiry_is_kept_and_flagged_surplus(client, annotator):
    dataset = make_dataset("late", groups=1, overlap=1, annotators=[annotator])
    slow = annotator
    fast = UserFactory(username="fast")
    dataset.annotators.add(fast)
    client.force_login(slow)
    group = _next(client, dataset).json()["group"]
    Assignment.objects.filter(annotator=slow).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    client.force_login(fast)
    assert _next(client, dataset).status_code == 200  # the expired lease freed the slot
    assert _submit(client, group["id"], _tiers(group)).status_code == 201
    client.force_login(slow)
    late = _submit(client, group["id"], _tiers(group))
    assert late.status_code == 201  # human work is never dropped
    assert late.json()["surplus"] is True and late.json()["lease_expired"] is True
    assert Group.objects.get(pk=group["id"]).ranking_count == 1


def test_annotator_of_another_dataset_gets_403(client, dataset):
    outsider = UserFactory(username="outsider")
    make_dataset("other", annotators=[outsider])
    client.force_login(outsider)
    group = Group.objects.filter(dataset=dataset).first()
    refused = _next(client, dataset)
    assert (
        refused.status_code == 403
        and refused.json()["detail"] == "You are not an annotator of this dataset."
    )
    assert client.post(f"/api/groups/{group.pk}/skip/").status_code == 403
    assert _submit(client, group.pk, {}).status_code == 403
    candidate = group.candidates.first()
    assert client.get(f"/api/images/candidate/{candidate.token}").status_code == 403
    assert client.get(f"/api/images/candidate/{candidate.pk}").status_code == 404  # no pk URLs
    assert [d["name"] for d in client.get("/api/datasets/").json()] == ["other"]
    assert client.get(f"/api/datasets/{dataset.pk}/export/").status_code == 403


def test_images_are_served_to_members(annotator_client, dataset):
    group = _next(annotator_client, dataset).json()["group"]
    response = annotator_client.get(group["candidates"][0]["thumb_url"])
    assert response.status_code == 200 and b"".join(response.streaming_content)[:4] == b"\x89PNG"
    assert "immutable" in response["Cache-Control"]
    assert annotator_client.get(group["source_url"]).status_code == 200


def test_dataset_list_shows_progress(annotator_client, dataset):
    group = _next(annotator_client, dataset).json()["group"]
    _submit(annotator_client, group["id"], _tiers(group))
    [listed] = annotator_client.get("/api/datasets/").json()
    assert listed["progress"] == {  # their own numbers: the dataset's would tell gold groups
        "groups": 3,
        "my_rankings": 1,
        "left_for_me": 2,  # three groups, one ranked
    }
    page = annotator_client.get("/annotate/").content.decode()
    assert "<strong>2</strong> groups left for you" in page
    skipped = _next(annotator_client, dataset).json()["group"]
    assert annotator_client.post(f"/api/groups/{skipped['id']}/skip/").status_code in (200, 204)
    assert annotator_client.get("/api/datasets/").json()[0]["progress"]["left_for_me"] == 1


def test_export_rankings_and_pairs(client, annotator, researcher):
    dataset = make_dataset("exp", groups=1, candidates=3, overlap=2, annotators=[annotator])
    client.force_login(annotator)
    group = _next(client, dataset).json()["group"]
    a, b, c = "exp-g0-c0", "exp-g0-c1", "exp-g0-c2"
    tiers = {
        "prompt_following": [[a], [b, c]],
        "consistency": [[a, b, c]],
        "overall": [[c], [a], [b]],
    }
    token = dict(Candidate.objects.values_list("external_id", "token"))  # annotators send tokens
    sent = {dim: [[token[c] for c in tier] for tier in placed] for dim, placed in tiers.items()}
    assert _submit(client, group["id"], sent, seconds_spent=3).status_code == 201
    client.force_login(researcher)
    rankings = client.get(f"/api/datasets/{dataset.pk}/export/?format=rankings")
    assert rankings["Content-Type"] == "application/x-ndjson"
    [line] = [json.loads(x) for x in b"".join(rankings.streaming_content).splitlines()]
    assert line["tiers"] == tiers and line["annotator"] == "anna" and line["group_id"] == "exp-g0"
    pairs = [
        json.loads(x)
        for x in b"".join(
            client.get(f"/api/datasets/{dataset.pk}/export/?format=pairs").streaming_content
        ).splitlines()
    ]
    assert [(p["dimension"], p["chosen"], p["rejected"], p["tier_gap"]) for p in pairs] == [
        ("prompt_following", a, b, 1), ("prompt_following", a, c, 1),
        ("overall", c, a, 1), ("overall", c, b, 2), ("overall", a, b, 1),
    ]  # fmt: skip
    assert pairs[0]["instruction"] == "instruction 0" and pairs[0]["task_type"] == "color_alter"
    with_ties = [
        json.loads(x)
        for x in b"".join(
            client.get(f"/api/datasets/{dataset.pk}/export/?format=pairs&ties=1").streaming_content
        ).splitlines()
    ]
    assert len(with_ties) == 5 + 1 + 3  # + (b, c) tie on PF, 3 ties on consistency
    assert all(p["tie"] for p in with_ties if p["tier_gap"] == 0)
    assert client.get(f"/api/datasets/{dataset.pk}/export/?format=xml").status_code == 400


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs concurrent writers on PostgreSQL"
)
def test_concurrent_next_never_overfills_a_group(transactional_db):
    users = [UserFactory(username=f"r{i}", role=Role.ANNOTATOR) for i in range(12)]
    for round_ in range(6):  # the race is timing-dependent: give it several chances
        dataset = make_dataset(f"race{round_}", groups=5, overlap=2)
        dataset.annotators.add(*users)
        barrier = threading.Barrier(len(users))
        got = {}

        def take(user, dataset=dataset, barrier=barrier, got=got):
            try:
                barrier.wait(timeout=10)
                assignment = group_next_for_annotator(dataset=dataset, annotator=user)
                got[user.pk] = assignment.group_id if assignment else None
            finally:
                connections.close_all()

        threads = [threading.Thread(target=take, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        leased = [g for g in got.values() if g is not None]
        assert len(got) == 12 and len(leased) == 10  # 5 groups x K=2, two annotators wait
        assert all(leased.count(g) == 2 for g in set(leased))


def test_done_is_final_skip_after_ranking_changes_nothing(annotator_client, dataset):
    group = _next(annotator_client, dataset).json()["group"]
    assert _submit(annotator_client, group["id"], _tiers(group)).status_code == 201
    assert annotator_client.post(f"/api/groups/{group['id']}/skip/").status_code == 200
    assert Assignment.objects.get(group_id=group["id"]).status == Assignment.Status.DONE
    assert _next(annotator_client, dataset).json()["group"]["id"] != group["id"]


def test_huge_ranking_body_is_cheap_to_refuse(annotator_client, dataset):
    group = _next(annotator_client, dataset).json()["group"]
    bogus = {
        dim: [[f"x{i}" for i in range(50_000)]]
        for dim in ("prompt_following", "consistency", "overall")
    }
    response = _submit(annotator_client, group["id"], bogus)
    assert (
        response.status_code == 400 and "unknown candidate(s): x0, x1" in response.json()["detail"]
    )
    too_big = {"prompt_following": [["y" * 6_000_000]]}  # over DATA_UPLOAD_MAX_MEMORY_SIZE
    assert _submit(annotator_client, group["id"], too_big).status_code in (400, 413)
    assert Ranking.objects.count() == 0
