"""RL prompts held out by group: the held-out side of a split is never trained on, the
evaluation draws from it, and the same split holds out the same groups as a reward model's
fine-tune and benchmark (annotation/ml/split.py)."""

import pytest

from annotation.ml.split import Split
from rltraining.prompts import BadPrompts, PromptRow, split_held_out


def rows(n: int) -> list[PromptRow]:
    return [PromptRow(f"edit {i}", b"", f"g{i}", "color_alter") for i in range(n)]


def test_held_out_groups_are_never_trained_on_and_the_evaluation_draws_from_them():
    split = Split(0.25, seed=3)
    train, evaluated = split_held_out(rows(200), 10, seed=0, split=split)
    held = {r.key for r in rows(200) if split.side(r.key) == "held_out"}
    assert 30 < len(held) < 70  # about a quarter
    assert {r.key for r in train} == {r.key for r in rows(200)} - held
    assert len(evaluated) == 10 and {r.key for r in evaluated} <= held
    # the same sides as the fine-tune's snapshot and the benchmark made with that split
    assert all(split.side(r.key) == "train" for r in train)
    # deterministic, and another seed evaluates other held-out prompts of the same pool
    assert split_held_out(rows(200), 10, seed=0, split=split) == (train, evaluated)
    _, other = split_held_out(rows(200), 10, seed=1, split=split)
    assert {r.key for r in other} <= held and other != evaluated


def test_a_growing_prompt_set_keeps_every_prompt_on_its_side():
    split = Split(0.3, seed=0)
    small_train, _ = split_held_out(rows(50), 0, seed=0, split=split)
    big_train, _ = split_held_out(rows(120), 0, seed=0, split=split)
    assert {r.key for r in small_train} == {r.key for r in big_train if int(r.key[1:]) < 50}


def test_fewer_held_out_prompts_than_asked_are_all_evaluated():
    split = Split(0.2, seed=0)
    held = [r for r in rows(20) if split.side(r.key) == "held_out"]
    _, evaluated = split_held_out(rows(20), 1000, seed=0, split=split)
    assert evaluated == held and held


def test_nothing_left_to_train_on_is_refused():
    only_held = [r for r in rows(40) if Split(0.5, seed=0).side(r.key) == "held_out"]
    with pytest.raises(BadPrompts, match="none left to train on after 50% of groups held out"):
        split_held_out(only_held, 1, seed=0, split=Split(0.5, seed=0))


def test_keys_alone_can_be_checked_up_front():
    keys = [f"g{i}" for i in range(30)]
    train, evaluated = split_held_out(keys, 2, seed=0, split=Split(0.5, seed=1), key=str)
    assert len(evaluated) == 2 and set(train).isdisjoint(evaluated)


@pytest.mark.django_db
def test_an_rl_run_trains_only_on_the_train_side_of_its_dataset(settings, tmp_path):
    from rltraining.jobs import RLJobConfig, rl_enqueue, run_prompt_rows
    from tests.annotation_fixtures import make_dataset

    settings.MEDIA_ROOT = tmp_path / "media"
    dataset = make_dataset("prompts", groups=24, candidates=2)
    config = {"run_name": "split-run", "policy": "/models/tiny", "reward": {"kind": "brightness"},
              "dataset_id": dataset.pk, "eval_prompts": 3, "held_out": 0.25, "split_seed": 2}  # fmt: skip
    run = rl_enqueue(config=config)
    train, evaluated = run_prompt_rows(run, RLJobConfig(**config), seed=0)
    split = Split(0.25, seed=2)
    assert train and all(split.side(r.key) == "train" for r in train)
    assert len(evaluated) == 3 and all(split.side(r.key) == "held_out" for r in evaluated)
    groups = set(dataset.groups.values_list("external_id", flat=True))
    assert {r.key for r in train} | {r.key for r in evaluated} <= groups
