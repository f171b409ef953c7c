"""GRPO's arithmetic for Flow-GRPO (``docs/method.md`` section 4): group-relative advantages,
the clipped policy loss, the KL penalty to the reference policy, v1.1's per-step re-weighting of
the policy loss and the choice of the steps trained in an update.

Pure torch, no model code: the trainer feeds it the log-probs and means that
:func:`rltraining.ml.sde.sde_step_with_logprob` returns.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch


def group_advantages(
    rewards: Sequence[float | None] | torch.Tensor,
    groups: Sequence[Hashable],
    eps: float = 1e-4,
    clip: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group normalised rewards: ``A = (r − mean) / (std + eps)`` within each group (the
    samples that share an instruction and a source image), ``std`` the population standard
    deviation, then clipped to ``[−clip, clip]``.

    A reward of ``None`` marks an unscored sample (the judge could not rate it): it is left out
    of its group's mean and std, gets advantage 0 and ``keep`` False, so it moves neither its
    own loss nor the other samples' advantages (scoring it 0 instead would push the group for a
    reason unrelated to the edit).

    Returns ``(advantages, keep)``: float32 and bool tensors of shape (n,). A group with fewer
    than two scored samples, or whose scored rewards are all equal (a reward that cannot tell
    the samples apart), carries no signal: its advantages are 0 and ``keep`` is False, so the
    trainer can skip it instead of spending compute on zero gradients. Equality is tested
    exactly (max == min), not with a small-std threshold, because ``std`` of equal floats can
    come out as 1e-17 and not 0. Statistics are computed in float64.
    """
    if isinstance(rewards, torch.Tensor):
        r = rewards.detach().to("cpu", torch.float64).reshape(-1)
        scored = torch.ones(r.numel(), dtype=torch.bool)
    else:
        values = list(rewards)
        scored = torch.tensor([v is not None for v in values], dtype=torch.bool)
        r = torch.tensor([0.0 if v is None else float(v) for v in values], dtype=torch.float64)
    groups = list(groups)
    if len(groups) != r.numel():
        raise ValueError(f"{r.numel()} rewards but {len(groups)} group keys")
    if not bool(torch.isfinite(r).all()):
        raise ValueError("rewards must be finite (give an unscored sample the reward None)")
    if eps <= 0 or clip <= 0:
        raise ValueError(f"eps and clip must be > 0, got eps={eps!r}, clip={clip!r}")
    members: dict[Hashable, list[int]] = {}
    for n, key in enumerate(groups):
        if scored[n]:
            members.setdefault(key, []).append(n)
    advantages = torch.zeros_like(r)
    keep = torch.zeros(r.numel(), dtype=torch.bool)
    for indices in members.values():
        idx = torch.tensor(indices)
        values = r[idx]
        if len(indices) < 2 or values.max() == values.min():
            continue
        advantages[idx] = (values - values.mean()) / (values.std(unbiased=False) + eps)
        keep[idx] = True
    return advantages.clamp(-clip, clip).float(), keep


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    w = torch.as_tensor(weights, dtype=values.dtype, device=values.device).detach()
    if w.shape != values.shape:
        raise ValueError(f"weights {tuple(w.shape)} do not match the batch {tuple(values.shape)}")
    if bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    return (values * w).sum() / w.sum()


def clipped_policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 1e-4,
    clip_high: float = 5e-4,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The PPO-style clipped surrogate, to be minimised::

        ρ = exp(log_prob − old_log_prob)
        loss = mean(max(−A·ρ, −A·clip(ρ, 1 − clip_low, 1 + clip_high)))

    All arguments have shape (batch,); ``old_log_prob`` and ``advantages`` are treated as
    constants (detached). ``weights`` (>= 0, e.g. 0 for the samples masked out of the loss)
    turn the mean into ``Σ w·l / Σ w``. The arithmetic is float32.

    Returns ``(loss, stats)``; ``stats`` holds floats for the logs: ``clip_fraction`` (share of
    samples whose ratio lies outside ``[1 − clip_low, 1 + clip_high]``, i.e. where the clip is
    active), ``ratio_min``, ``ratio_max``, ``ratio_mean`` (unweighted, over the samples whose
    weight is > 0). A ratio range far from 1 or a large clip fraction right after sampling
    means sampling and training disagree.
    """
    if not log_prob.shape == old_log_prob.shape == torch.as_tensor(advantages).shape:
        raise ValueError(
            f"log_prob {tuple(log_prob.shape)}, old_log_prob {tuple(old_log_prob.shape)} and "
            f"advantages {tuple(torch.as_tensor(advantages).shape)} must have the same shape"
        )
    if clip_low < 0 or clip_high < 0:
        raise ValueError("clip_low and clip_high must be >= 0")
    lp = log_prob.float()
    old = old_log_prob.detach().to(lp)
    adv = torch.as_tensor(advantages).detach().to(lp)
    ratio = torch.exp(lp - old)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = _weighted_mean(torch.maximum(unclipped, clipped), weights)
    r = ratio.detach()
    if weights is not None:  # the statistics, too, of the samples that count
        r = r[torch.as_tensor(weights, device=r.device) > 0]
    outside = (r < 1.0 - clip_low) | (r > 1.0 + clip_high)
    stats = {
        "clip_fraction": float(outside.float().mean()),
        "ratio_min": float(r.min()),
        "ratio_max": float(r.max()),
        "ratio_mean": float(r.mean()),
    }
    return loss, stats


def kl_penalty(
    mean: torch.Tensor,
    ref_mean: torch.Tensor,
    std_dev_t: torch.Tensor | float,
    beta: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The KL term to the reference policy (the same network with LoRA disabled)::

        kl_i = mean over non-batch dims of (μ_θ − μ_ref)² / (2·std_dev_t²)
        kl = mean_i kl_i            loss = β·kl

    ``mean`` / ``ref_mean`` are the step means from :func:`~rltraining.ml.sde.sde_step_with_logprob`
    (batch first); ``std_dev_t`` its 4th value (shape (batch, 1, ..., 1), (batch,) or a scalar).
    ``ref_mean`` is detached. ``weights`` as in :func:`clipped_policy_loss`. Samples whose
    ``std_dev_t`` is 0 (deterministic steps, never trained) contribute 0 instead of inf.

    Returns ``(loss, kl)``: float32 scalars, ``loss = beta * kl``, both with gradient (log
    ``kl.item()``; a KL that climbs steadily is the early sign of reward hacking).
    """
    if mean.shape != ref_mean.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and ref_mean {tuple(ref_mean.shape)} differ")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    mu = mean.float()
    std = torch.as_tensor(std_dev_t, dtype=torch.float32, device=mu.device)
    if std.ndim == 1 and mu.ndim > 1 and std.shape[0] == mu.shape[0]:
        std = std.reshape(-1, *(1,) * (mu.ndim - 1))
    var = (std**2).expand_as(mu)
    safe_var = torch.where(var > 0, var, torch.ones_like(var))
    per_element = (mu - ref_mean.detach().float()) ** 2 / (2 * safe_var)
    per_element = torch.where(var > 0, per_element, torch.zeros_like(per_element))
    per_sample = per_element.reshape(mu.shape[0], -1).mean(dim=1)
    kl = _weighted_mean(per_sample, weights)
    return beta * kl, kl


def step_weights(std_devs: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """v1.1's per-step weights of the policy loss: each trained step's noise scale
    ``std_t·sqrt(−dt)`` (pass those of the S steps trained together, shape (S,)) over their
    mean, so the weights have mean 1; float32. The reference computes exactly this
    (``examples/OmniGen2-RL/train.py`` of the ``editscore`` package, lines 752-763:
    ``sigma_ts = sigma_t * sqrt(dt)`` of the ``train_timesteps``, ``normalize_factor =
    sigma_ts.mean()``); :func:`step_loss` applies them.

    Why: steps with little noise have sharp densities whose log-prob ratios are noisy;
    weighting by the noise scale keeps them from dominating.
    """
    s = torch.as_tensor(std_devs, dtype=torch.float32).detach().reshape(-1)
    if s.numel() == 0 or not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("std_devs must be a non-empty sequence of finite values >= 0")
    total = s.mean()
    if not float(total) > 0:
        raise ValueError("std_devs are all 0: no step has noise to weight by")
    return s / total


def step_loss(
    policy_loss: torch.Tensor,
    kl_loss: torch.Tensor | float,
    num_trained: int,
    weight: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """One trained step's share of an update's loss, as the reference accumulates it::

        weight None (no re-weighting):  (policy_loss + kl_loss) / S
        weight w (v1.1):                (S·w·policy_loss + kl_loss) / S = w·policy_loss + kl_loss/S

    with ``S = num_trained`` the number of steps trained together and ``w`` that step's
    :func:`step_weights` entry; ``kl_loss`` is β·KL (:func:`kl_penalty`'s first value).

    The reference (``examples/OmniGen2-RL/train.py``): line 901 multiplies only the policy
    loss, ``policy_loss * sample_steps * (sigma_ts[idx] / normalize_factor)``; lines 905-915
    add ``kl_loss_weight * kl_loss`` unweighted; ``accelerator.backward`` divides every step's
    loss by the accumulation count, which lines 234-239 set to ``gradient_accumulation_steps *
    ceil(num_inference_step * train_timesteps_fraction)`` = micro-batches × S. Summed over the S
    steps, re-weighting thus turns the policy term from the mean over steps into the weighted
    *sum* (S times larger on average) while the KL term stays the mean over steps. The
    division over micro-batches is the trainer's (each chunk's share of the kept samples).
    """
    if isinstance(num_trained, bool) or not isinstance(num_trained, int) or num_trained < 1:
        raise ValueError(f"num_trained must be a positive integer, got {num_trained!r}")
    if weight is not None:
        policy_loss = policy_loss * (num_trained * weight)
    return (policy_loss + kl_loss) / num_trained


def choose_train_steps(
    num_steps: int, fraction: float, generator: torch.Generator | int | None = None
) -> list[int]:
    """The sampling steps (transition indices) trained in one update: a random subset, sorted, of
    ``max(1, round(fraction·(num_steps − 1)))`` indices among ``0 .. num_steps − 2`` (halves
    round up).

    The last transition (index ``num_steps − 1``, down to σ = 0) is never trained: its noise is
    nearly zero, so its density is extremely sharp and its log-prob overflows. ``generator``: a
    torch CPU generator, an int seed, or None (torch's global stream). The paper trains 12 of 20
    steps; with this rule ``fraction = 0.6`` and 20 steps gives round(11.4) = 11 of the 19
    trainable ones (``fraction = 12/19`` gives 12).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    trainable = num_steps - 1
    count = min(trainable, max(1, math.floor(fraction * trainable + 0.5)))
    chosen = torch.randperm(trainable, generator=generator)[:count]
    return sorted(int(i) for i in chosen)
