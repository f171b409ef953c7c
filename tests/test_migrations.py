"""Data migrations on a database that holds data written by the previous release."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("annotation", "0001_initial"), ("benchmark", None)]


@pytest.mark.django_db(transaction=True)
def test_rankings_of_the_previous_release_get_their_codes():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state([("annotation", "0001_initial")]).apps
    User = old.get_model("accounts", "User")
    Dataset = old.get_model("annotation", "Dataset")
    Group = old.get_model("annotation", "Group")
    Candidate = old.get_model("annotation", "Candidate")
    Ranking = old.get_model("annotation", "Ranking")
    user = User.objects.create(username="old-annotator")
    dims = [{"key": k, "label": k, "rubric": ""} for k in ("pf", "cons")]
    dataset = Dataset.objects.create(name="old", dimensions=dims)
    group = Group.objects.create(
        dataset=dataset,
        external_id="g",
        instruction="i",
        task_type="t",
        source="s",
        source_thumb="s",
    )
    for cid in ("b", "a", "c"):
        Candidate.objects.create(
            group=group, external_id=cid, editor="e", image="x", thumb="x", token=cid
        )
    ok = Ranking.objects.create(
        group=group, annotator=user, submission_id="00000000-0000-0000-0000-000000000001",
        tiers={"pf": [["c"], ["a", "b"]], "cons": [["a", "b"]]}, unusable={"cons": ["c"]},
    )  # fmt: skip
    other = User.objects.create(username="older-annotator")
    # Written when the dataset had other dimensions: it cannot be coded.
    stale = Ranking.objects.create(
        group=group, annotator=other, submission_id="00000000-0000-0000-0000-000000000002",
        tiers={"aesthetics": [["a", "b", "c"]]}, unusable={},
    )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    new = executor.loader.project_state(executor.loader.graph.leaf_nodes()).apps
    Ranking = new.get_model("annotation", "Ranking")
    # sorted candidates a, b, c; first shown unknown; pf: a=2 b=2 c=1; cons: a=1 b=1 c=2
    assert Ranking.objects.get(pk=ok.pk).code == "-" + "221" + "112"
    assert Ranking.objects.get(pk=stale.pk).code == ""
