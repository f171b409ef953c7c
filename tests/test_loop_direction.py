"""The loop's direction, small: RL of the demo's tiny EditWorld editor with the oracle reward
raises the truth-graded reward of prompts it never trained on (held out by key with the RL
job's split), through the trainer's own evaluation and judge (what the RL run page charts).
The figures, with intervals over seeds and prompts, belong to benchmarks/editworld_loop.py."""

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # the editor's build and 150 rounds on one thread
    pytest.mark.usefixtures("torch_one_thread"),
]


def test_rl_with_the_oracle_raises_the_truth_graded_reward_of_held_out_prompts(tmp_path):
    import torch

    from annotation.ml.split import Split
    from demo.loop import EDITOR_TASKS, Scale, editor_pairs
    from editworld.dataset import prompts
    from editworld.editor import EditWorldEditorPolicy, build_cached_editor
    from editworld.oracle import OracleReward
    from rltraining.ml.trainer import Prompt, RLConfig, train
    from rltraining.prompts import split_held_out

    scale = Scale()
    editor = build_cached_editor(
        tmp_path / "editors", lambda: editor_pairs(scale), data_key="direction",
        size=scale.editor_size, steps=scale.editor_steps, seed=scale.seed,
    )  # fmt: skip
    pool = [p for p in prompts(1400, scale.editor_size, seed=207) if p.task_type in EDITOR_TASKS]
    oracle = OracleReward(pool)
    rows = [Prompt(p.instruction, p.source, p.key, p.task_type) for p in pool[:300]]
    train_prompts, held_out = split_held_out(rows, 60, seed=0, split=Split(0.25, seed=0))
    assert len(train_prompts) > 200 and len(held_out) == 60
    assert not {p.key for p in train_prompts} & {p.key for p in held_out}

    torch.manual_seed(0)
    policy = EditWorldEditorPolicy.from_pretrained(editor, lora_r=8)
    config = RLConfig(rounds=150, num_steps=8, noise_level=0.3, group_size=12,
                      prompts_per_round=6, micro_batch=12, train_steps=7, learning_rate=1e-3,
                      clip_low=1e-3, clip_high=1e-3, adv_eps=0.02, beta=0.0, eval_every=150,
                      checkpoint_every=10**6)  # fmt: skip
    graded = {}
    train(config, policy, oracle, train_prompts, eval_prompts=held_out, judge_fn=oracle,
          on_step=lambda r, m: graded.update({r: m["eval_judge_mean"]} if "eval_judge_mean" in m
                                             else {}))  # fmt: skip
    print("truth-graded held-out reward by round:", graded)
    assert sorted(graded) == [0, 150]
    assert graded[150] > graded[0]
