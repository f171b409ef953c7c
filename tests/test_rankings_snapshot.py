"""The rankings snapshot: the only way rankings reach fine-tuning and RL prompts. Immutable,
content-addressed, complete (images inside), and read without Django."""

import json
import uuid
from pathlib import Path

import pytest

from annotation.exports import snapshot_rankings
from annotation.ml.rankings import BadSnapshot, read_manifest, read_rankings
from annotation.models import Adjudication, Group, Snapshot
from annotation.services import ranking_submit, rankings_snapshot
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

DIMS = ("prompt_following", "consistency", "overall")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _rank(group, user, order):
    ranking_submit(
        group=group, annotator=user, submission_id=uuid.uuid4(),
        tiers=dict.fromkeys(DIMS, [[c] for c in order]),
    )  # fmt: skip


def test_a_snapshot_holds_the_groups_votes_and_images_and_is_content_addressed(db):
    users = [UserFactory(username=f"s{i}") for i in range(2)]
    dataset = make_dataset(groups=3, candidates=2, overlap=2, annotators=users)
    g0, g1, g2 = Group.objects.filter(dataset=dataset).order_by("pk")
    Group.objects.filter(pk=g2.pk).update(is_gold=True)  # quality checks stay out
    ids = [f"{g0.external_id}-c{i}" for i in range(2)]
    _rank(g0, users[0], ids)
    _rank(g0, users[1], ids[::-1])
    first = snapshot_rankings(dataset)
    assert first.kind == Snapshot.Kind.RANKINGS and first.rows == 2
    assert first.name == f"{dataset.name}@{first.sha256[:16]}"
    groups = list(read_rankings(Path(first.path)))
    assert [g.group_id for g in groups] == [g0.external_id, g1.external_id]
    assert len(groups[0].votes) == 2 and groups[1].votes == ()
    assert groups[0].votes[1].tiers["overall"] == [[ids[1]], [ids[0]]]
    for path in [groups[0].source, *(image for _, image in groups[0].candidates)]:
        assert Path(path).is_relative_to(first.path) and Path(path).read_bytes()[:4] == b"\x89PNG"
    manifest = read_manifest(Path(first.path))
    assert manifest["sha256"] == first.sha256 and manifest["dimensions"] == list(DIMS)

    # nothing changed: the same snapshot, no second folder
    assert snapshot_rankings(dataset).pk == first.pk
    assert len(list(Path(first.path).parent.iterdir())) == 1
    # an adjudication replaces the votes: new content, new hash, the old snapshot untouched
    Adjudication.objects.create(
        group=g0, researcher=users[0], tiers=dict.fromkeys(DIMS, [ids]), unusable={}
    )
    second = snapshot_rankings(dataset)
    assert second.sha256 != first.sha256 and Path(first.path).is_dir()
    adjudicated = next(read_rankings(Path(second.path)))
    assert adjudicated.adjudicated and [v.tiers["overall"] for v in adjudicated.votes] == [[ids]]


def test_the_hash_covers_the_images(db, settings):
    dataset = make_dataset(groups=1, candidates=2)
    first = snapshot_rankings(dataset)
    candidate = Group.objects.get(dataset=dataset).candidates.first()
    stored = Path(settings.MEDIA_ROOT) / candidate.image
    stored.write_bytes(stored.read_bytes() + b"\0")  # same name, other bytes
    assert snapshot_rankings(dataset).sha256 != first.sha256


def test_a_tampered_or_foreign_folder_is_refused_with_the_file_named(db, tmp_path):
    dataset = make_dataset(groups=1, candidates=2)
    folder = Path(snapshot_rankings(dataset).path)
    with pytest.raises(BadSnapshot, match="manifest.json: missing"):
        list(read_rankings(tmp_path))
    lines = (folder / "groups.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["source"] = "../../../etc/passwd"
    (folder / "groups.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(BadSnapshot, match=r"groups.jsonl:1: image '../../../etc/passwd'"):
        list(read_rankings(folder))


def test_a_job_names_an_existing_snapshot_or_a_dataset(db):
    dataset = make_dataset(groups=1, candidates=2)
    made = rankings_snapshot(dataset_id=dataset.pk)
    assert rankings_snapshot(snapshot_id=made.pk).pk == made.pk
    with pytest.raises(ValueError, match="no rankings snapshot with id 999"):
        rankings_snapshot(snapshot_id=999)
    with pytest.raises(ValueError, match="no dataset with id 999"):
        rankings_snapshot(dataset_id=999)
    Path(made.path, "manifest.json").unlink()
    with pytest.raises(ValueError, match="is gone"):
        rankings_snapshot(snapshot_id=made.pk)


def test_a_split_is_a_function_of_group_id_and_seed_and_stable_as_data_grows():
    from annotation.ml.split import Split

    split = Split(0.25, seed=3)
    ids = [f"g{i}" for i in range(4000)]
    sides = split.sides(ids)
    assert abs(len(sides["held_out"]) / len(ids) - 0.25) < 0.03  # met in expectation
    grown = split.sides([*ids, *(f"new{i}" for i in range(500))])
    assert set(sides["held_out"]) <= set(grown["held_out"])  # old groups keep their side
    assert Split(0.25, seed=4).sides(ids) != sides  # the seed matters
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        Split(1.0)


def test_a_split_snapshot_records_its_sides_and_readers_ask_for_one(db):
    from annotation.ml.split import Split

    dataset = make_dataset(groups=12, candidates=2)
    plain = snapshot_rankings(dataset)
    split = Split(0.4, seed=1)
    made = snapshot_rankings(dataset, split=split)
    assert made.sha256 != plain.sha256 and made.split == {"held_out": 0.4, "seed": 1}
    manifest = read_manifest(Path(made.path))
    ids = [g.external_id for g in Group.objects.filter(dataset=dataset).order_by("pk")]
    assert manifest["split"]["groups"] == split.sides(ids)
    train = [g.group_id for g in read_rankings(Path(made.path), "train")]
    held = [g.group_id for g in read_rankings(Path(made.path), "held_out")]
    assert sorted(train + held) == sorted(ids) and not set(train) & set(held) and held
    assert len(list(read_rankings(Path(plain.path), "train"))) == 12  # no split: all is train
    with pytest.raises(BadSnapshot, match="no held-out split"):
        list(read_rankings(Path(plain.path), "held_out"))


def test_a_benchmark_export_with_a_split_keeps_only_held_out_groups(db, tmp_path):
    from annotation.exports import export_benchmark
    from annotation.ml.split import Split
    from annotation.stats.consensus import Policy

    users = [UserFactory(username=f"b{i}") for i in range(2)]
    dataset = make_dataset(groups=10, candidates=2, overlap=2, annotators=users)
    for group in Group.objects.filter(dataset=dataset):
        ids = [f"{group.external_id}-c{i}" for i in range(2)]
        for user in users:
            _rank(group, user, ids)
    split = Split(0.5, seed=2)
    snapshot = export_benchmark(dataset, Policy.named("majority"), tmp_path / "b", split=split)
    rows = [json.loads(line) for line in (tmp_path / "b" / "pairs.jsonl").read_text().splitlines()]
    held = {g for g in (r["group_id"] for r in rows)}
    assert held and all(split.side(g) == "held_out" for g in held)
    assert len(held) == sum(split.side(g.external_id) == "held_out" for g in Group.objects.all())
    assert snapshot.split == {"held_out": 0.5, "seed": 2, "side": "held_out"}
    assert snapshot.split_text == "50% of groups held out (seed 2): the held-out side only"
