"""The Flow-GRPO trainer (``docs/method.md`` section 4): online RL of a flow-matching editing
policy against a reward function.

One *round* has named phases:

``sample``
    ``prompts_per_round`` prompts (instruction + source image) are drawn; for each, the policy
    encodes the condition once and samples ``group_size`` edits with the SDE sampler
    (:func:`rltraining.ml.sde.sde_step_with_logprob`, ``num_steps`` steps, ``noise_level``),
    in chunks of ``micro_batch`` samples, keeping every latent and every transition's log-prob.
``score``
    the decoded images go to ``reward_fn(sources, instructions, images)``; a reward of
    ``None`` means the image could not be scored.
``advantages``
    per group (one prompt): ``(r − mean)/(std + eps)`` over the group's *scored* samples,
    population std, clipped to ``±adv_clip``; groups with fewer than two scored samples or
    zero reward variance are dropped (no signal); unscored samples are masked out of the loss.
``update``
    the kept chunks are shuffled and split into ``updates_per_round`` optimizer steps. Each step
    trains a random ``train_steps`` of the ``num_steps − 1`` transitions (the last one never):
    for every chunk and chosen transition the policy re-scores the stored transition, giving
    the ratio ρ = exp(logp_new − logp_old), the clipped loss
    ``max(−A·ρ, −A·clip(ρ, 1−clip_low, 1+clip_high))`` and the KL to the reference policy (the
    same network with LoRA disabled) ``β·mean((μ_θ − μ_ref)²)/(2·std_t²)``; with
    ``std_weighting`` (v1.1, on by default) only the *policy* loss of each trained transition
    is multiplied by ``S·w`` (``S`` transitions trained, ``w`` its noise scale
    ``std_t·sqrt(−dt)`` over their mean), the KL term stays unweighted, as in the reference
    (:func:`rltraining.ml.grpo.step_loss`). AdamW, gradient clipping, optional EMA of the
    trainable weights.
``evaluate`` / ``checkpoint``
    every ``eval_every`` rounds (and before the first and after the last) the deterministic ODE
    sampler (noise 0, fixed noise per held-out prompt) runs on the held-out prompts;
    every ``checkpoint_every`` rounds the adapter, optimizer, EMA and round go to
    ``checkpoint_dir/checkpoint-N`` (safetensors and JSON, nothing pickled).

Exactness. Every random draw is a function of (seed, round, prompt, chunk) or (seed, round,
update) through its own generator, never of a global RNG stream; sampling and re-scoring run the
same chunks through the same code, so ρ is exactly 1 before the first update, and a run resumed
from a checkpoint takes exactly the step the uninterrupted run takes.

Several processes (``torchrun``, gloo or nccl): the prompts of a round are dealt round-robin to
the ranks (a group never spans ranks, so advantages are local); rewards are gathered for the
logged statistics; the loss of an optimizer step is normalised by the *global* number of kept
samples and the gradients are summed over the ranks, so the update equals the single-process one.
Only rank 0 reports, evaluates and writes checkpoints. FSDP (sharding a policy that does not fit
one GPU) is not implemented; each rank holds a full copy of the policy.

No Django here: the job in :mod:`rltraining.jobs` wraps :func:`train`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from mlcore.checkpoints import latest_checkpoint, write_checkpoint
from mlcore.options import check_options, option

RewardFn = Callable[[list, list, list], list]


@dataclass
class Prompt:
    """One editing request: the instruction, the source image and, for the logs, its id and task
    type (rewards are also reported per task type)."""

    instruction: str
    source: Image.Image
    key: str = ""
    task_type: str = ""


@dataclass
class RLConfig:
    """Hyperparameters; the defaults are the paper's (OmniGen2 run, docs/method.md §4) except the
    number of prompts per round (48 on 32 GPUs there). Each field declares its help and bounds
    (mlcore.options): the form, the docs table (docs/configs.md) and the checks come from them."""

    rounds: int = option(100, help="training rounds (sample, score, update)", min=1, max=100_000)
    num_steps: int = option(20, help="sampler steps per edit", min=2, max=1000)
    noise_level: float = option(
        0.7, help="SDE noise level a (0 would be the ODE: nothing to train)", min=0,
        min_exclusive=True, max=10,
    )  # fmt: skip
    group_size: int = option(
        12, help="edits per prompt whose rewards are compared (GRPO group)", min=2, max=1024
    )
    prompts_per_round: int = option(4, help="prompts sampled per round", min=1, max=100_000)
    micro_batch: int = option(
        4, help="samples per forward pass, in sampling and training alike", min=1, max=1024
    )
    train_steps: int = option(
        12, help="transitions trained per update (of num_steps - 1)", min=1, max=1000
    )
    updates_per_round: int = option(2, help="optimizer passes over a round's samples", min=1,
                                    max=1000)  # fmt: skip
    clip_low: float = option(1e-4, help="PPO ratio clip below 1", min=0, max=1)
    clip_high: float = option(5e-4, help="PPO ratio clip above 1", min=0, max=1)
    adv_clip: float = option(5.0, help="advantages clipped to ±this", min=0, min_exclusive=True)
    adv_eps: float = option(1e-4, help="added to a group's reward std", min=0, min_exclusive=True)
    beta: float = option(0.04, help="KL penalty to the base policy", min=0)
    # v1.1's re-weighting of the policy loss (rltraining.ml.grpo.step_loss): the reference's
    # `policy_loss_reweighting`, true in all its released RL configs
    # (examples/OmniGen2-RL/options/omnigen2_edit_rl_*.yml, line 108). False: plain mean.
    std_weighting: bool = option(True, help="v1.1 re-weighting of the policy loss by step std")
    learning_rate: float = option(4e-4, help="AdamW learning rate", min=0, min_exclusive=True,
                                  max=1)  # fmt: skip
    adam_betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = option(0.01, help="AdamW weight decay", min=0)
    max_grad_norm: float = option(1.0, help="gradients clipped to this norm", min=0,
                                  min_exclusive=True)  # fmt: skip
    ema_decay: float | None = option(None, help="EMA of the trained weights (none: off)", min=0,
                                     min_exclusive=True, max=0.999999)  # fmt: skip
    seed: int = option(42, help="every random draw is a function of it", min=0)
    eval_every: int = option(10, help="rounds between evaluations on held-out prompts", min=1)
    checkpoint_every: int = option(10, help="rounds between checkpoints", min=1)
    keep_checkpoints: int = option(2, help="checkpoints kept (the newest)", min=1)

    def __post_init__(self):
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        check_options(self)
        if self.train_steps > self.num_steps - 1:
            raise ValueError(f"train_steps must be at most num_steps - 1 = {self.num_steps - 1}")

    @classmethod
    def paper(cls) -> RLConfig:
        """The paper's run (the defaults)."""
        return cls()

    @classmethod
    def cpu_smoke(cls) -> RLConfig:
        """Two tiny rounds that exercise every step on a CPU in seconds (tests, a first try)."""
        return cls(rounds=2, num_steps=4, group_size=2, prompts_per_round=2, micro_batch=2,
                   train_steps=2, updates_per_round=1, eval_every=1, checkpoint_every=1,
                   learning_rate=1e-3)  # fmt: skip

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RLConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown RL option(s): {', '.join(unknown)}")
        return cls(**data)


# ------------------------------------------------------------------ seeding


def _seed(*parts) -> int:
    """A 63-bit seed from the parts: independent streams per (seed, round, ...)."""
    digest = hashlib.sha256(json.dumps(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _generator(*parts):
    import torch

    return torch.Generator().manual_seed(_seed(*parts))


# ------------------------------------------------------------------ rollouts


@dataclass
class Chunk:
    """``micro_batch`` (or fewer) samples of one group: the stored trajectory."""

    group: int  # index of the prompt in the round
    cond: Any  # the policy's condition, repeated per sample
    latents: Any  # (n, num_steps + 1, ...) x_0 (noise) .. x_T (final)
    log_probs: Any  # (n, num_steps) of each transition at sampling time
    std_devs: Any  # (num_steps,) std_t * sqrt(-dt) of each transition
    sigmas: Any = None  # (num_steps + 1,) the group's schedule (it depends on the image size)
    rewards: Any = None  # (n,) float, NaN where unscored
    advantages: Any = None
    keep: Any = None  # (n,) bool: False for unscored samples and groups without signal


def _sized(cond) -> dict:
    """The keyword that tells a policy's ``sigmas``/``initial_latents``/``decode`` the output
    size this condition was encoded for (``{}`` for policies of one fixed size, whose
    conditions carry none): the diffusers policies size each edit from its source image."""
    size = getattr(cond, "meta", {}).get("size")
    return {} if size is None else {"size": size}


def _sample(policy, cond, n, sigmas, noise_level, generator):
    """One chunk through the SDE: (final latents, all latents, log-probs, noise stds)."""
    import torch

    from rltraining.ml.sde import sde_step_with_logprob

    steps = len(sigmas) - 1
    x = policy.initial_latents(n, generator, **_sized(cond))
    latents, log_probs, stds = [x], [], []
    sigma_max = float(sigmas[1])
    for j in range(steps):
        v = policy.velocity(x, float(sigmas[j]), cond, step_index=j, num_steps=steps)
        # The last transition is never trained (docs/method.md): noise drawn there could not be
        # credited to anything the policy does, and would only scatter the rewards of a group.
        level = noise_level if j < steps - 1 else 0.0
        x, logp, _, std_t = sde_step_with_logprob(
            v, float(sigmas[j]), float(sigmas[j + 1]), x, level,
            generator=generator, sigma_max=sigma_max,
        )  # fmt: skip
        latents.append(x)
        log_probs.append(logp)
        stds.append(float(std_t.reshape(-1)[0]) * math.sqrt(float(sigmas[j] - sigmas[j + 1])))
    return x, torch.stack(latents, 1), torch.stack(log_probs, 1), torch.tensor(stds)


def sample_images(policy, prompts: Sequence[Prompt], *, num_steps: int, noise_level: float,
                  seed: int, per_prompt: int = 1) -> list[list[Image.Image]]:  # fmt: skip
    """``per_prompt`` edits of each prompt (noise ``noise_level``; 0 = the deterministic ODE
    sampler), the initial noise a function of (seed, prompt index): used for evaluation and
    Best-of-N."""
    import torch

    out = []
    with torch.no_grad():
        for index, prompt in enumerate(prompts):
            cond = policy.encode([prompt.instruction], [prompt.source])
            sigmas = policy.sigmas(num_steps, **_sized(cond))
            generator = _generator(seed, "eval", index)
            final, *_ = _sample(policy, cond.repeat(per_prompt), per_prompt, sigmas,
                                noise_level, generator)  # fmt: skip
            out.append(policy.decode(final, **_sized(cond)))
    return out


# ------------------------------------------------------------------ the trainer


class _Ema:
    def __init__(self, params, decay):
        self.params, self.decay = list(params), decay
        self.shadow = [p.detach().clone() for p in self.params]

    def update(self):
        for s, p in zip(self.shadow, self.params, strict=True):
            s.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    def swap(self):
        """Exchange the live weights and the EMA weights (call twice to undo)."""
        for s, p in zip(self.shadow, self.params, strict=True):
            tmp = p.detach().clone()
            p.data.copy_(s)
            s.copy_(tmp)


def _round_prompts(prompts, config, round_index):
    """The round's prompts, drawn without replacement from a per-round permutation."""
    import torch

    order = torch.randperm(len(prompts), generator=_generator(config.seed, "prompts", round_index))
    picks = [int(i) for i in order[: config.prompts_per_round]]
    while len(picks) < config.prompts_per_round:  # fewer prompts than a round needs: repeat
        picks.append(picks[len(picks) % len(prompts)])
    return picks


def train(
    config: RLConfig,
    policy,
    reward_fn: RewardFn,
    prompts: Sequence[Prompt],
    on_step: Callable[[int, dict], None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    *,
    eval_prompts: Sequence[Prompt] = (),
    on_eval: Callable[[int, list[Image.Image], list[float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    judge_fn: RewardFn | None = None,
) -> dict:
    """Run ``config.rounds`` rounds (resuming from ``checkpoint_dir``'s newest checkpoint when
    there is one) and return ``{"rounds", "final_round", "resumed_from", "history"}``
    (``resumed_from``: the round of the checkpoint this call started from, 0 for a fresh run;
    ``history`` holds every round, those of earlier, resumed calls included).

    ``on_step(round, metrics)`` gets floats after each round: reward_mean, reward_std,
    reward_mean/<task type> (over the scored samples; absent when none was scored),
    kept_fraction, policy_loss, kl, clip_fraction, ratio_min, ratio_max, grad_norm, lr, seconds
    (per round), unscored_fraction (rewards that record ``last_errors``), and eval_reward_mean
    on evaluation rounds. ``on_eval(round, images, rewards)`` gets the ODE samples of
    ``eval_prompts`` (round 0 is the policy before training) and their rewards (None where
    unscored). ``should_stop()`` is asked after each round (single-process runs): when it
    returns true, or raises (a cancelled job), a checkpoint is written and training stops; a
    later call with the same ``checkpoint_dir`` resumes. With ``ema_decay``, a finished run
    leaves the EMA weights in the policy (those its evaluations used, and what a job saves)."""
    import torch

    from mlcore.distributed import Dist, load_optimizer

    if not prompts:
        raise ValueError("no training prompts")
    dist = Dist()
    params = list(policy.trainable_parameters())
    if not params:
        raise ValueError("the policy has no trainable parameters (load it with LoRA)")
    optimizer = torch.optim.AdamW(
        params, lr=config.learning_rate, betas=config.adam_betas,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    ema = _Ema(params, config.ema_decay) if config.ema_decay else None
    root = Path(checkpoint_dir) if checkpoint_dir else None
    start, history = 0, []
    if root is not None:
        latest = latest_checkpoint(root)
        if latest is not None:
            state = json.loads((latest / "state.json").read_text())
            if state["config"] != json.loads(json.dumps(config.to_dict())):
                raise ValueError(f"{latest} was written with another config; use a new folder")
            policy.load_adapter(latest / "adapter")
            load_optimizer(optimizer, latest, dist.device)
            if ema is not None:
                from safetensors.torch import load_file

                shadow = load_file(latest / "ema.safetensors")
                for i, s in enumerate(ema.shadow):
                    s.copy_(shadow[str(i)])
            start, history = state["round"], state["history"]

    def evaluate(round_index):
        if not eval_prompts or not dist.main:
            return None
        if ema is not None:
            ema.swap()
        try:
            images = [imgs[0] for imgs in sample_images(
                policy, eval_prompts, num_steps=config.num_steps, noise_level=0.0,
                seed=config.seed,
            )]  # fmt: skip
        finally:
            if ema is not None:
                ema.swap()
        sources, instructions = (
            [p.source for p in eval_prompts],
            [p.instruction for p in eval_prompts],
        )
        rewards = [_reward(r) for r in reward_fn(sources, instructions, images)]
        if on_eval is not None:
            on_eval(round_index, images, rewards)
        out = {"eval_reward_mean": _mean(rewards)}
        if judge_fn is not None:  # a second grader of the same images, never trained on
            out["eval_judge_mean"] = _mean(
                [_reward(r) for r in judge_fn(sources, instructions, images)]
            )
        return {k: v for k, v in out.items() if v is not None}

    if start == 0:
        baseline = evaluate(0)
        if baseline and on_step is not None:
            on_step(0, baseline)

    round_index = start
    try:
        for round_index in range(start + 1, config.rounds + 1):
            metrics = _round(config, policy, reward_fn, prompts, round_index, dist, optimizer,
                             params, ema)  # fmt: skip
            last = round_index == config.rounds
            if round_index % config.eval_every == 0 or last:
                metrics.update(evaluate(round_index) or {})
            history.append({"round": round_index, **metrics})
            if on_step is not None and dist.main:
                on_step(round_index, metrics)
            try:
                asked = bool(should_stop and dist.main and should_stop())
            except BaseException:  # a cancelled job: keep this round for a later resume
                if root is not None:
                    _save(root, round_index, config, policy, optimizer, ema, history, dist)
                raise
            stop = dist.decide(asked)
            if root is not None and (round_index % config.checkpoint_every == 0 or last or stop):
                _save(root, round_index, config, policy, optimizer, ema, history, dist)
            if stop:
                break
    finally:
        dist.close()
    if ema is not None and round_index == config.rounds:
        ema.swap()  # a finished run ends on the weights its evaluations used
    return {"rounds": config.rounds, "final_round": round_index, "resumed_from": start,
            "history": history}  # fmt: skip


def _round(config, policy, reward_fn, prompts, round_index, dist, optimizer, params, ema):
    """One round's sample -> score -> advantages -> update; its metrics."""
    began = time.perf_counter()
    chunks, metrics = _rollout(config, policy, reward_fn, prompts, round_index, dist)
    metrics.update(_update(config, policy, optimizer, params, chunks, round_index, dist))
    if ema is not None:
        ema.update()
    metrics["lr"] = config.learning_rate
    metrics["seconds"] = time.perf_counter() - began
    return metrics


def _mean(values: list) -> float | None:
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else None


def _reward(value) -> float | None:
    """A reward as a float, or None for an image the reward function could not score."""
    return None if value is None else float(value)


def _rollout(config, policy, reward_fn, prompts, round_index, dist):
    """sample -> score -> advantages for this rank's prompts of the round."""
    import torch

    from rltraining.ml.grpo import group_advantages

    picks = _round_prompts(prompts, config, round_index)
    mine = [(g, prompts[i]) for g, i in enumerate(picks) if g % dist.world == dist.rank]
    chunks, images = [], []
    with torch.no_grad():
        for g, prompt in mine:
            cond = policy.encode([prompt.instruction], [prompt.source])
            sigmas = policy.sigmas(config.num_steps, **_sized(cond))
            for start in range(0, config.group_size, config.micro_batch):
                n = min(config.micro_batch, config.group_size - start)
                generator = _generator(config.seed, "sample", round_index, g, start)
                repeated = cond.repeat(n)
                final, latents, log_probs, stds = _sample(
                    policy, repeated, n, sigmas, config.noise_level, generator
                )
                chunks.append(Chunk(g, repeated, latents, log_probs, stds, sigmas))
                images.append(policy.decode(final, **_sized(cond)))
    flat = [img for imgs in images for img in imgs]
    owners = [(c.group, picks[c.group]) for c in chunks for _ in range(c.latents.shape[0])]
    rewards = [_reward(r) for r in reward_fn(
        [prompts[i].source for _, i in owners], [prompts[i].instruction for _, i in owners], flat
    )]  # fmt: skip
    if len(rewards) != len(flat):
        raise ValueError(f"the reward function gave {len(rewards)} rewards for {len(flat)} images")
    # An unscored sample (None) is left out of its group's statistics and masked out of the
    # loss: a made-up reward would move the group's advantages for a reason unrelated to the edit.
    advantages, keep = group_advantages(
        rewards, [g for g, _ in owners], eps=config.adv_eps, clip=config.adv_clip
    )
    offset = 0
    for chunk in chunks:
        n = chunk.latents.shape[0]
        part = rewards[offset : offset + n]
        chunk.rewards = torch.tensor([math.nan if r is None else r for r in part])
        chunk.advantages = advantages[offset : offset + n]
        chunk.keep = keep[offset : offset + n]
        offset += n
    # statistics over every rank's samples; reward statistics over the scored ones
    scored = [(i, r) for (_, i), r in zip(owners, rewards, strict=True) if r is not None]
    by_task: dict[str, list[float]] = {}
    for i, r in scored:
        by_task.setdefault(prompts[i].task_type or "", []).append(r)
    tasks = sorted({p.task_type or "" for p in prompts})
    # Rewards that can fail (a judge, a reward server) say why in `last_errors`, one per
    # unscored image of their latest call: the run shows how much of its signal is missing.
    unscored = len(getattr(reward_fn, "last_errors", None) or ())
    values = [r for _, r in scored]
    sums = [len(rewards), len(values), sum(values), sum(r * r for r in values),
            float(keep.sum()), unscored]  # fmt: skip
    for task in tasks:
        got = by_task.get(task, [])
        sums += [len(got), sum(got)]
    sums = dist.sum(sums)
    count, n_scored, total, squares, kept, unscored = sums[:6]
    metrics = {"kept_fraction": kept / count}
    if n_scored:
        mean = total / n_scored
        metrics["reward_mean"] = mean
        metrics["reward_std"] = math.sqrt(max(0.0, squares / n_scored - mean * mean))
    if hasattr(reward_fn, "last_errors"):
        metrics["unscored_fraction"] = unscored / count
    for k, task in enumerate(tasks):
        n, s = sums[6 + 2 * k : 8 + 2 * k]
        if task and n:
            metrics[f"reward_mean/{task}"] = s / n
    return [c for c in chunks if bool(c.keep.any())], metrics


def _update(config, policy, optimizer, params, chunks, round_index, dist):
    """``updates_per_round`` optimizer steps over the kept chunks."""
    import torch

    from rltraining.ml.grpo import (
        choose_train_steps,
        clipped_policy_loss,
        kl_penalty,
        step_loss,
        step_weights,
    )
    from rltraining.ml.sde import sde_step_with_logprob

    steps = config.num_steps
    order = torch.randperm(len(chunks), generator=_generator(config.seed, "order", round_index))
    parts = [[chunks[int(i)] for i in order[u :: config.updates_per_round]]
             for u in range(config.updates_per_round)]  # fmt: skip
    totals = {"policy_loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "grad_norm": 0.0}
    ratio_min, ratio_max, terms, updates = math.inf, -math.inf, 0, 0
    fraction = config.train_steps / (steps - 1)
    for u, part in enumerate(parts):
        kept = dist.sum([float(sum(int(c.keep.sum()) for c in part))])[0]
        if kept == 0:
            continue  # no rank has a sample with signal for this step
        trained = choose_train_steps(steps, fraction, _generator(config.seed, "steps",
                                                                 round_index, u))  # fmt: skip
        num_trained = len(trained)
        optimizer.zero_grad(set_to_none=True)
        for chunk in part:
            n = int(chunk.keep.sum())  # the samples of the chunk that enter the loss
            # Unscored samples stay in the batch (so the forward passes match sampling's and
            # the ratio is exactly 1 before the first update) with weight 0 in both terms.
            mask = None if n == chunk.latents.shape[0] else chunk.keep.float()
            sigmas = chunk.sigmas
            sigma_max = float(sigmas[1])
            # v1.1: the weights are normalised over the steps trained on this micro-batch, as
            # the reference does per forward micro-batch (train.py lines 752-763).
            weights = step_weights(chunk.std_devs[trained]) if config.std_weighting else None
            for k, j in enumerate(trained):
                x, x_next = chunk.latents[:, j], chunk.latents[:, j + 1]
                sigma, sigma_next = float(sigmas[j]), float(sigmas[j + 1])
                v = policy.velocity(x, sigma, chunk.cond, step_index=j, num_steps=steps)
                _, logp, mean, std_t = sde_step_with_logprob(
                    v, sigma, sigma_next, x, config.noise_level, prev_sample=x_next,
                    sigma_max=sigma_max,
                )  # fmt: skip
                with torch.no_grad(), policy.reference():
                    v_ref = policy.velocity(x, sigma, chunk.cond, step_index=j, num_steps=steps)
                    _, _, ref_mean, _ = sde_step_with_logprob(
                        v_ref, sigma, sigma_next, x, config.noise_level, prev_sample=x_next,
                        sigma_max=sigma_max,
                    )  # fmt: skip
                pg, stats = clipped_policy_loss(
                    logp, chunk.log_probs[:, j], chunk.advantages, config.clip_low,
                    config.clip_high, weights=mask,
                )  # fmt: skip
                kl_loss, kl = kl_penalty(mean, ref_mean, std_t, config.beta, weights=mask)
                loss = step_loss(pg, kl_loss, num_trained,
                                 None if weights is None else float(weights[k]))  # fmt: skip
                # every kept sample of every rank counts once (step_loss divides by the steps)
                (loss * (n / kept)).backward()
                totals["policy_loss"] += float(pg.detach()) * n / num_trained
                totals["kl"] += float(kl.detach()) * n / num_trained
                totals["clip_fraction"] += stats["clip_fraction"] * n / num_trained
                ratio_min = min(ratio_min, stats["ratio_min"])
                ratio_max = max(ratio_max, stats["ratio_max"])
                terms += n / num_trained
        dist.sum_grads(params)
        norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        totals["grad_norm"] += float(norm)
        updates += 1
    summed = dist.sum([totals["policy_loss"], totals["kl"], totals["clip_fraction"], terms])
    terms_all = summed[3]
    metrics = {"updates": float(updates)}
    if terms_all:
        metrics["policy_loss"] = summed[0] / terms_all
        metrics["kl"] = summed[1] / terms_all
        metrics["clip_fraction"] = summed[2] / terms_all
    if updates:
        metrics["grad_norm"] = totals["grad_norm"] / updates
    if ratio_min <= ratio_max:
        metrics["ratio_min"], metrics["ratio_max"] = ratio_min, ratio_max
    return metrics


# ------------------------------------------------------------------ checkpoints


def _save(root, round_index, config, policy, optimizer, ema, history, dist):
    """The adapter, optimizer, EMA and round, on rank 0 (every rank calls it)."""
    from mlcore.distributed import save_optimizer

    def write(folder: Path) -> None:
        policy.save_adapter(folder / "adapter")
        save_optimizer(optimizer, folder)
        if ema is not None:
            from safetensors.torch import save_file

            save_file({str(i): s.contiguous() for i, s in enumerate(ema.shadow)},
                      folder / "ema.safetensors")  # fmt: skip
        state = {"round": round_index, "config": config.to_dict(), "history": history}
        (folder / "state.json").write_text(json.dumps(state, indent=1))

    write_checkpoint(root, round_index, write, dist=dist, keep=config.keep_checkpoints)


# ------------------------------------------------------------------ prompts on disk, torchrun


def load_prompts(path: str | os.PathLike) -> list[Prompt]:
    """Prompts from a JSONL file: one object per line with ``instruction``, ``source`` (an image
    path, relative ones resolved against the file's folder) and optional ``key`` and
    ``task_type``. Errors name the file and line; nothing is returned unless every line is
    good."""
    path = Path(path)
    prompts = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected an object")
            instruction, source = row.get("instruction"), row.get("source")
            if not isinstance(instruction, str) or not instruction.strip():
                raise ValueError(f"{where}: 'instruction' must be a non-empty string")
            if not isinstance(source, str) or not source:
                raise ValueError(f"{where}: 'source' must be an image path")
            image_path = (path.parent / source) if not os.path.isabs(source) else Path(source)
            try:
                with Image.open(image_path) as img:
                    image = img.convert("RGB")
            except (OSError, Image.DecompressionBombError) as exc:
                raise ValueError(f"{where}: cannot read image {source!r}: {exc}") from None
            prompts.append(Prompt(instruction, image, str(row.get("key", number)),
                                  str(row.get("task_type", ""))))  # fmt: skip
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun --nproc_per_node N -m rltraining.ml.trainer --config cfg.json --policy DIR
    --reward '{"kind": "brightness"}' --prompts train.jsonl [--eval-prompts eval.jsonl]
    --out DIR``: the same training, one process per GPU (or CPU, gloo). Rank 0 prints one JSON
    line per round ({"round": r, "metrics": {...}}), writes evaluation samples to
    ``OUT/eval/round-R/`` and prints {"eval": r, "rewards": [...]}; the final adapter goes to
    ``OUT/adapter``."""
    import argparse

    from rltraining.ml.policies import load_policy
    from rltraining.ml.rewards import build_reward

    parser = argparse.ArgumentParser(prog="python -m rltraining.ml.trainer")
    parser.add_argument("--config", required=True, help="RLConfig as JSON (file)")
    parser.add_argument("--policy", required=True, help="diffusers pipeline folder")
    parser.add_argument("--policy-options", default="{}", help="JSON keyword arguments")
    parser.add_argument("--reward", required=True, help="reward spec as JSON")
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--eval-prompts", default=None)
    parser.add_argument("--judge", default=None, help="a reward spec (JSON) that only grades")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    config = RLConfig.from_dict(json.loads(Path(args.config).read_text()))
    out = Path(args.out)
    import torch

    torch.manual_seed(config.seed)  # the new LoRA's initial weights: the same on every rank
    policy = load_policy(args.policy, **json.loads(args.policy_options))
    reward = build_reward(json.loads(args.reward))
    judge = build_reward(json.loads(args.judge)) if args.judge else None
    prompts = load_prompts(args.prompts)
    eval_prompts = load_prompts(args.eval_prompts) if args.eval_prompts else []

    def on_step(round_index, metrics):
        print(json.dumps({"round": round_index, "metrics": metrics}), flush=True)

    def on_eval(round_index, images, rewards):
        folder = out / "eval" / f"round-{round_index}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            image.save(folder / f"p{i}.png")
        print(json.dumps({"eval": round_index, "rewards": rewards}), flush=True)

    result = train(config, policy, reward, prompts, on_step, out / "checkpoints",
                   eval_prompts=eval_prompts, on_eval=on_eval, judge_fn=judge)  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        policy.save_adapter(out / "adapter")
        print(json.dumps({"result": {k: v for k, v in result.items() if k != "history"}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
