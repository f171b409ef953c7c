"""Flow-GRPO of the tiny EditWorld editor (``editworld/editor.py``) on a CPU: the editor's
oracle reward before and after RL.

The editor is the demo's (``demo.loop``: EDITOR_TASKS, 384 pairs, 32 px, 800 steps), trained
once into ``--cache`` by ``build_cached_editor``. Prompts are EditWorld prompts of those task
types: ``--train-prompts`` for RL and ``--eval-prompts`` held out (another seed). The
evaluation is the deterministic ODE sampler (``--eval-per`` fixed initial noises per prompt,
the same before and after) scored by the exact EditWorld truth (``overall``), on the held-out
prompts (``eval_before`` / ``eval_after``) and on the training prompts (``train_eval_*``).

The RL reward is the oracle (``--reward oracle``, default) or a tiny EditScore
(``--reward editscore --editscore-base DIR [--adapter DIR]``); the evaluation is the oracle
either way. Per round the trainer's metrics are kept: mean reward, mean within-group reward
std, clip fraction, KL, gradient norm.

Prints one JSON object: the reward, rounds, the evaluations, the per-round training reward and
diagnostics, seconds and peak RSS (VmHWM).

    .venv/bin/python benchmarks/editworld_rl.py [--reward oracle|editscore]
        [--editscore-base DIR] [--adapter DIR] [--cache DIR] [--rounds 24] [--seed 0]
        [--train-prompts 12] [--eval-prompts 12] [--eval-per 4] [--num-steps 8]
        [--noise 0.3] [--group 12] [--prompts-per-round 6] [--lr 3e-3] [--threads 1]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from harness import REPO, proc_kib  # benchmarks/harness.py

sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZE = 32
TRAIN_SEED, EVAL_SEED, EVAL_NOISE_SEED = 207, 1207, 12345


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reward", choices=["oracle", "editscore"], default="oracle")
    parser.add_argument("--editscore-base", default=None, help="tiny EditScore folder")
    parser.add_argument("--adapter", default=None, help="its fine-tuned LoRA adapter")
    parser.add_argument("--cache", default=None, help="editor cache (default: under VAR_DIR)")
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-prompts", type=int, default=12)
    parser.add_argument("--eval-prompts", type=int, default=12)
    parser.add_argument("--eval-per", type=int, default=4, help="ODE noises per prompt")
    parser.add_argument("--num-steps", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.3, help="SDE noise level")
    parser.add_argument("--group", type=int, default=12)
    parser.add_argument("--prompts-per-round", type=int, default=6)
    parser.add_argument("--train-steps", type=int, default=None, help="default num_steps - 1")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--clip", type=float, default=1e-3, help="clip_low = clip_high")
    parser.add_argument("--adv-eps", type=float, default=0.02)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--updates", type=int, default=2, help="optimizer steps per round")
    parser.add_argument("--ema", type=float, default=None, help="EMA decay of the weights")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="the EditScore reward's device")
    args = parser.parse_args()
    if args.reward == "editscore" and not args.editscore_base:
        parser.error("--reward editscore needs --editscore-base")
    return args


def cache_dir(args) -> Path:
    if args.cache:
        return Path(args.cache)
    var = os.environ.get("EDITLOOP_VAR_DIR") or str(REPO / "var")
    return Path(var) / "editworld-rl" / "editors"


def editor_folder(args) -> Path:
    """The demo's tiny editor, trained once into the cache."""
    from demo.loop import EDITOR_TASKS, Scale, editor_pairs
    from editworld.editor import build_cached_editor

    scale = Scale()
    return build_cached_editor(
        cache_dir(args), lambda: editor_pairs(scale),
        data_key=f"{EDITOR_TASKS}-{scale.editor_pairs}-{scale.editor_size}-{scale.seed}",
        size=scale.editor_size, steps=scale.editor_steps, seed=scale.seed,
    )  # fmt: skip


def prompt_pool(n: int, seed: int) -> tuple[dict, list]:
    """(the oracle spec of the pool, its first ``n`` prompts of the editor's task types)."""
    from demo.loop import EDITOR_TASKS
    from editworld.dataset import prompts
    from rltraining.ml.trainer import Prompt

    spec = {"kind": "editworld_oracle", "n": 4 * n, "size": SIZE, "seed": seed}
    chosen = [p for p in prompts(4 * n, SIZE, seed) if p.task_type in EDITOR_TASKS][:n]
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} prompts of the editor's task types")
    return spec, [Prompt(p.instruction, p.source, p.key, p.task_type) for p in chosen]


def training_reward(args, oracle_spec: dict):
    from rltraining.ml.rewards import build_reward

    if args.reward == "oracle":
        return build_reward(oracle_spec)
    spec = {"kind": "editscore", "base": args.editscore_base, "k": 1}
    if args.device != "cpu":
        spec["device"] = args.device
    if args.adapter:
        spec["adapter"] = args.adapter
    return build_reward(spec)


def evaluate_each(policy, prompts, oracle, args) -> list[float]:
    """Per prompt, the mean oracle reward of its ODE edits (fixed initial noises)."""
    from rltraining.ml.trainer import sample_images

    edits = sample_images(policy, prompts, num_steps=args.num_steps, noise_level=0.0,
                          seed=EVAL_NOISE_SEED, per_prompt=args.eval_per)  # fmt: skip
    means = []
    for prompt, images in zip(prompts, edits, strict=True):
        n = len(images)
        rewards = oracle([prompt.source] * n, [prompt.instruction] * n, images)
        means.append(sum(rewards) / n)
    return means


def evaluate(policy, prompts, oracle, args) -> float:
    """Mean oracle reward of the ODE edits of ``prompts`` (fixed initial noises)."""
    means = evaluate_each(policy, prompts, oracle, args)
    return sum(means) / len(means)


def rl_config(args):
    from rltraining.ml.trainer import RLConfig

    return RLConfig(
        rounds=args.rounds, num_steps=args.num_steps, noise_level=args.noise,
        group_size=args.group, prompts_per_round=args.prompts_per_round,
        micro_batch=args.group, train_steps=args.train_steps or args.num_steps - 1,
        learning_rate=args.lr, beta=args.beta, clip_low=args.clip, clip_high=args.clip,
        adv_eps=args.adv_eps, seed=args.seed, eval_every=10**6, checkpoint_every=10**6,
        updates_per_round=args.updates, ema_decay=args.ema,
    )  # fmt: skip


def group_stds(rewards: list, group: int) -> float:
    stds = [statistics.pstdev(rewards[i : i + group]) for i in range(0, len(rewards), group)]
    return sum(stds) / len(stds)


def run_rl(args, policy, reward_fn, prompts) -> list[dict]:
    """Train; per round {reward, group_std, clip_fraction, kl, grad_norm}."""
    from rltraining.ml.trainer import train

    config = rl_config(args)
    stds: list[float] = []

    def recording(sources, instructions, images):
        rewards = reward_fn(sources, instructions, images)
        stds.append(group_stds(list(rewards), config.group_size))
        return rewards

    rounds = []

    def on_step(round_index, metrics):
        if round_index:
            row = {"reward": metrics["reward_mean"], "group_std": stds[-1]}
            for key in ("clip_fraction", "kl", "grad_norm"):
                row[key] = metrics.get(key)
            rounds.append({k: None if v is None else round(v, 5) for k, v in row.items()})

    train(config, policy, recording, prompts, on_step)
    return rounds


def main() -> None:
    args = parse_args()

    import torch

    from editworld.dataset import prompt_oracle
    from editworld.editor import EditWorldEditorPolicy

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    folder = editor_folder(args)
    train_spec, train_prompts = prompt_pool(args.train_prompts, TRAIN_SEED)
    eval_spec, eval_prompts = prompt_pool(args.eval_prompts, EVAL_SEED)
    oracle = prompt_oracle(eval_spec["n"], SIZE, EVAL_SEED)
    train_oracle = prompt_oracle(train_spec["n"], SIZE, TRAIN_SEED)
    reward_fn = training_reward(args, train_spec)
    torch.manual_seed(args.seed)
    policy = EditWorldEditorPolicy.from_pretrained(folder, lora_r=args.lora_r)
    before = evaluate(policy, eval_prompts, oracle, args)
    train_before = evaluate(policy, train_prompts, train_oracle, args)
    rl_began = time.perf_counter()
    rounds = run_rl(args, policy, reward_fn, train_prompts)
    rl_seconds = time.perf_counter() - rl_began
    result = {
        "reward": args.reward,
        "rounds": args.rounds,
        "seed": args.seed,
        "eval_before": round(before, 4),
        "eval_after": round(evaluate(policy, eval_prompts, oracle, args), 4),
        "train_eval_before": round(train_before, 4),
        "train_eval_after": round(evaluate(policy, train_prompts, train_oracle, args), 4),
        "eval_prompts": len(eval_prompts) * args.eval_per,
        "train_reward_per_round": [r["reward"] for r in rounds],
        "group_std_per_round": [r["group_std"] for r in rounds],
        "clip_fraction_per_round": [r["clip_fraction"] for r in rounds],
        "kl_per_round": [r["kl"] for r in rounds],
        "grad_norm_per_round": [r["grad_norm"] for r in rounds],
        "config": {k: v for k, v in rl_config(args).to_dict().items()
                   if k not in ("eval_every", "checkpoint_every", "keep_checkpoints")},
        "lora_r": args.lora_r,
        "editor": folder.name,
        "rl_seconds": round(rl_seconds, 1),
        "seconds": round(time.perf_counter() - began, 1),
        "peak_rss_mib": round(proc_kib(os.getpid(), "VmHWM") / 1024, 1),
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
