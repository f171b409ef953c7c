"""Blind means blind: annotators name candidates only by the tokens they were served, no message
maps an import id to a token, no import id reaches them, and they rank only what they were
served."""

import re
import uuid

import pytest

from annotation.models import Candidate, Group, Ranking
from tests.annotation_fixtures import make_dataset

pytestmark = pytest.mark.django_db
DIMS = ("prompt_following", "consistency", "overall")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _next(client, dataset):
    return client.post(f"/api/datasets/{dataset.pk}/next/", content_type="application/json")


def _rank(client, group_id, tiers):
    body = {"submission_id": str(uuid.uuid4()), "tiers": dict.fromkeys(DIMS, tiers)}
    return client.post(f"/api/groups/{group_id}/rankings/", body, content_type="application/json")


def test_import_ids_are_unknown_candidates_and_no_message_names_a_token(
    annotator_client, annotator
):
    dataset = make_dataset(groups=1, candidates=4, annotators=[annotator])
    group = _next(annotator_client, dataset).json()["group"]
    tokens = [c["id"] for c in group["candidates"]]
    imports = list(Candidate.objects.values_list("external_id", flat=True))
    # the old bypass: an import id beside every token made the reply name its token
    response = _rank(annotator_client, group["id"], [[imports[0]], tokens])
    detail = response.json()["detail"]
    assert response.status_code == 400 and f"unknown candidate(s): {imports[0]}" in detail
    assert not any(token in detail for token in tokens)
    response = _rank(annotator_client, group["id"], [imports])  # import ids alone: refused
    assert response.status_code == 400 and not Ranking.objects.exists()
    assert _rank(annotator_client, group["id"], [tokens]).status_code == 201


def test_a_group_never_served_cannot_be_ranked(annotator_client, annotator):
    dataset = make_dataset(groups=2, candidates=2, annotators=[annotator])
    served = _next(annotator_client, dataset).json()["group"]
    other = Group.objects.exclude(pk=served["id"]).get()
    tokens = list(other.candidates.values_list("token", flat=True))
    response = _rank(annotator_client, other.pk, [tokens])
    assert response.status_code == 409 and "not served to you" in response.json()["detail"]
    assert not Ranking.objects.exists() and Group.objects.get(pk=other.pk).ranking_count == 0


def test_no_import_id_reaches_an_annotator(annotator_client, annotator):
    dataset = make_dataset("secretname", groups=1, candidates=2, annotators=[annotator])
    text = _next(annotator_client, dataset).content.decode()
    assert "secretname-g0" not in text and "external_id" not in text


def test_samples_sent_to_annotation_get_opaque_ids_in_a_random_order():
    from media.storage import store_image
    from rltraining.models import RLRun, RLSample
    from rltraining.services import send_to_annotation
    from tests.benchmark_fixtures import png
    from tests.factories import JobFactory

    run = RLRun.objects.create(name="r", job=JobFactory(), policy="/p", reward={"kind": "x"})
    orders = set()
    for prompt in range(20):  # one order in every group: probability 2 ** -19
        for round_ in (0, 2):
            source, image = store_image(png(30), "s"), store_image(png(60 + round_ + prompt), "i")
            RLSample.objects.create(
                run=run, kind="eval", round=round_, prompt_index=prompt, prompt_key=f"k{prompt}",
                instruction="x", source=source.name, source_thumb=source.thumb, image=image.name,
                thumb=image.thumb, reward=0.5,
            )  # fmt: skip
    dataset = send_to_annotation(run=run, overlap=1)
    for group in Group.objects.filter(dataset=dataset):
        candidates = list(group.candidates.order_by("pk"))
        assert all(re.fullmatch(rf"{re.escape(group.external_id)}-[0-9a-f]{{8}}", c.external_id)
                   for c in candidates)  # fmt: skip
        orders.add(tuple(c.editor for c in candidates))
    assert len(orders) == 2  # base first in some groups, trained first in others
