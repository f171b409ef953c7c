"""The Flow-GRPO SDE step for flow-matching samplers, with the log-probability of each transition
(``docs/method.md`` section 4).

Convention (diffusers): ``x_σ = (1 − σ)·x_data + σ·ε``, σ goes from 1 to 0, and the network
predicts the velocity ``v = ε − x_data``. A step goes from σ to σ' < σ (``dt = σ' − σ < 0``)::

    std_t = a · sqrt(σ / (1 − σ))          # at σ = 1 the fraction uses sigma_max instead
    mean  = x · (1 + std_t²·dt / (2σ)) + v · (1 + std_t²·(1 − σ) / (2σ)) · dt
    x'    = mean + std_t · sqrt(−dt) · ε

This reverse-time SDE has the same marginals as the probability-flow ODE ``dx = v·dσ`` (a = 0
gives exactly the Euler step), so sampling with it explores around the ODE's outputs while every
transition has a tractable Gaussian density, which is what the policy-gradient ratio needs.

Why the scheduler's ``step()`` is not used: it keeps an internal step counter and its stochastic
mode is a different process without a log-probability; RL needs explicit sigmas per call.

Everything is computed in float32 whatever the inputs' dtype (bf16 densities are too coarse for
ratios that are clipped at 1 ± 1e-4).
"""

from __future__ import annotations

import math

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SIGMA_SLACK = 1e-6  # float32 round-off tolerated above sigma = 1


def _randn_like(
    sample: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None
) -> torch.Tensor:
    """Standard normal noise shaped like ``sample`` (float32, on its device).

    Like diffusers' ``randn_tensor``: a generator living on another device than ``sample`` (a CPU
    generator for CUDA latents, the usual way to get device-independent draws) draws on its own
    device and the noise is moved. A list of generators draws one sample of the batch each.
    """
    shape, device = sample.shape, sample.device
    if isinstance(generator, list | tuple):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        return torch.cat([_randn_like(sample[i : i + 1], g) for i, g in enumerate(generator)])
    draw_device = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=draw_device, dtype=torch.float32)
    return noise.to(device)


def _as_batch_sigma(value: float | torch.Tensor, sample: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` as a float32 tensor of shape (batch, 1, ..., 1) on the sample's device."""
    batch, rest = sample.shape[0], (1,) * (sample.ndim - 1)
    t = torch.as_tensor(value, dtype=torch.float32, device=sample.device)
    if t.ndim == 0 or t.shape == (1,):
        return t.reshape(()).expand(batch).reshape(batch, *rest)
    if t.shape != (batch,):
        raise ValueError(f"{name} must be a float or a tensor of shape ({batch},), got {t.shape}")
    return t.reshape(batch, *rest)


def _span(t: torch.Tensor) -> str:
    lo, hi = float(t.min()), float(t.max())
    return f"{lo!r}" if lo == hi else f"values from {lo!r} to {hi!r}"


def _check_sigmas(
    sigma: torch.Tensor, sigma_next: torch.Tensor, sigma_max: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sigmas, checked, with float32 round-off above 1 (a shifted schedule's first sigma can
    come out as 1.0000001) clamped to 1."""
    if not bool(((sigma > 0) & (sigma <= 1 + _SIGMA_SLACK)).all()):
        raise ValueError(f"sigma must be in (0, 1], got {_span(sigma)}")
    sigma = sigma.clamp(max=1.0)
    sigma_next = sigma_next.clamp(max=1.0)
    if not bool(((sigma_next >= 0) & (sigma_next <= sigma)).all()):
        raise ValueError(
            f"sigma_next must be in [0, sigma]: sigma {_span(sigma)}, sigma_next {_span(sigma_next)}"
        )
    if bool((sigma == 1).any()) and (sigma_max is None or not 0 <= float(sigma_max) < 1):
        raise ValueError(
            "sigma == 1 makes std_t = a*sqrt(sigma/(1-sigma)) infinite: pass sigma_max, the "
            f"schedule's second sigma (sigmas[1], in [0, 1)), got sigma_max={sigma_max!r}"
        )
    return sigma, sigma_next


def ode_step(
    model_output: torch.Tensor,
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
    sample: torch.Tensor,
) -> torch.Tensor:
    """The Euler step of the probability-flow ODE, ``sample + (σ' − σ)·v``, computed in float32
    and returned in ``sample``'s dtype; identical to :func:`sde_step_with_logprob` with
    ``noise_level=0``."""
    s = _as_batch_sigma(sigma, sample, "sigma")
    s_next = _as_batch_sigma(sigma_next, sample, "sigma_next")
    out = sample.float() + (s_next - s) * model_output.float()
    return out.to(sample.dtype)


def sde_step_with_logprob(
    model_output: torch.Tensor,
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
    sample: torch.Tensor,
    noise_level: float,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    sigma_max: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SDE step from σ to σ' and the log-density of the transition.

    Arguments: ``model_output`` is the velocity prediction at ``sample`` (same shape, batch
    first); ``sigma`` / ``sigma_next`` are Python floats or per-sample tensors of shape (batch,);
    ``noise_level`` is ``a`` above; ``prev_sample``, when given, is *scored* instead of drawn
    (the training pass re-scores the stored trajectory); ``generator`` (a torch generator, on any
    device, or one per sample) draws the noise otherwise; ``sigma_max`` is the schedule's second
    sigma, used in place of σ in ``1 − σ`` when σ = 1 (required whenever some σ is 1:
    ValueError otherwise, even with ``noise_level=0``, so that turning noise on later cannot
    fail).

    Returns ``(prev_sample, log_prob, prev_sample_mean, std_dev_t)``:

    * ``prev_sample``: x' in ``sample``'s dtype (the given one, when scoring);
    * ``log_prob``: float32, shape (batch,): log N(x'; mean, (std_t·sqrt(−dt))²) per element,
      **averaged** over the non-batch elements (so its scale does not depend on the latent size).
      It is evaluated on the returned x' *after* the cast to ``sample``'s dtype, so re-scoring
      the returned sample with the same model output gives exactly the same value (the ratio is
      exactly 1 before the first update), and x' is detached: gradients flow through the mean
      only. Where a sample's step is deterministic (std 0: ``noise_level=0`` or σ' = σ) the
      density does not exist; log_prob is then defined as 0 for that sample, without gradient,
      so it never produces inf/NaN; such steps carry no policy gradient and must not be trained;
    * ``prev_sample_mean``: the float32 mean (with gradient), for the KL term;
    * ``std_dev_t``: float32 ``std_t`` (without the ``sqrt(−dt)`` factor), shape
      (batch, 1, ..., 1), broadcastable to the sample: the KL term divides by its square.
    """
    if model_output.shape != sample.shape:
        raise ValueError(f"model_output {model_output.shape} and sample {sample.shape} differ")
    if prev_sample is not None and prev_sample.shape != sample.shape:
        raise ValueError(f"prev_sample {prev_sample.shape} and sample {sample.shape} differ")
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level!r}")
    s = _as_batch_sigma(sigma, sample, "sigma")
    s_next = _as_batch_sigma(sigma_next, sample, "sigma_next")
    s, s_next = _check_sigmas(s, s_next, sigma_max)

    x, v = sample.float(), model_output.float()
    dt = s_next - s
    one_minus = 1 - torch.where(s == 1, torch.full_like(s, float(sigma_max or 0.0)), s)
    std_dev_t = noise_level * torch.sqrt(s / one_minus)
    var_t = std_dev_t**2
    mean = x * (1 + var_t * dt / (2 * s)) + v * (1 + var_t * (1 - s) / (2 * s)) * dt
    std_dev = std_dev_t * torch.sqrt(-dt)

    if prev_sample is None:
        prev_sample = (mean + std_dev * _randn_like(sample, generator)).to(sample.dtype)
    x_next = prev_sample.detach().float()

    noisy = std_dev > 0
    safe_std = torch.where(noisy, std_dev, torch.ones_like(std_dev))  # no 0/0, no NaN gradients
    log_density = -((x_next - mean) ** 2) / (2 * safe_std**2) - torch.log(safe_std) - _LOG_SQRT_2PI
    log_prob = log_density.reshape(sample.shape[0], -1).mean(dim=1)
    log_prob = torch.where(noisy.reshape(-1), log_prob, torch.zeros_like(log_prob))
    return prev_sample, log_prob, mean, std_dev_t
