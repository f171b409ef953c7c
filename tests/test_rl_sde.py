"""The Flow-GRPO SDE step (rltraining.ml.sde): hand-derived values and a Gaussian toy whose exact
velocity field is known."""

import math

import pytest
import torch

from rltraining.ml.sde import ode_step, sde_step_with_logprob


def test_one_step_matches_the_hand_derived_mean_and_std():
    # sigma 0.5 -> 0.25, a = 0.7: std_t = 0.7*sqrt(0.5/0.5) = 0.7, dt = -0.25
    # mean = 1*(1 + 0.49*(-0.25)/1) + 2*(1 + 0.49*0.5/1)*(-0.25) = 0.8775 - 0.6225 = 0.255
    # noise std = 0.7*sqrt(0.25) = 0.35
    x = torch.ones(1, 1)
    v = torch.full((1, 1), 2.0)
    prev, log_prob, mean, std_t = sde_step_with_logprob(
        v, 0.5, 0.25, x, 0.7, prev_sample=torch.full((1, 1), 0.605)
    )
    assert mean.item() == pytest.approx(0.255, abs=1e-6)
    assert std_t.shape == (1, 1)
    assert std_t.item() == pytest.approx(0.7, abs=1e-6)
    # x' = mean + one noise std: log N = -1/2 - log(0.35) - log(sqrt(2 pi))
    expected = -0.5 - math.log(0.35) - 0.5 * math.log(2 * math.pi)
    assert log_prob.item() == pytest.approx(expected, abs=1e-5)
    assert prev.item() == pytest.approx(0.605)


def test_sigma_one_uses_sigma_max_in_the_fraction():
    x = torch.zeros(2, 3)
    v = torch.ones(2, 3)
    with pytest.raises(ValueError, match="sigma_max"):
        sde_step_with_logprob(v, 1.0, 0.95, x, 0.7)
    with pytest.raises(ValueError, match="sigma_max"):
        sde_step_with_logprob(v, 1.0, 0.95, x, 0.7, sigma_max=1.0)
    _, _, mean, std_t = sde_step_with_logprob(v, 1.0, 0.95, x, 0.7, sigma_max=0.95)
    # std_t = 0.7*sqrt(1/(1-0.95)); mean = 0 + 1*(1 + std_t^2*0/2)*(-0.05) = -0.05
    assert std_t.flatten().tolist() == pytest.approx([0.7 * math.sqrt(20)] * 2, rel=1e-5)
    assert torch.allclose(mean, torch.full((2, 3), -0.05))
    # below sigma = 1 sigma_max plays no part
    _, _, _, std_half = sde_step_with_logprob(v, 0.5, 0.45, x, 0.7, sigma_max=0.1)
    assert std_half.flatten().tolist() == pytest.approx([0.7, 0.7])


def test_float_round_off_above_one_counts_as_sigma_one():
    x, v = torch.zeros(1, 2), torch.ones(1, 2)
    sigma = torch.tensor([1.0000001])
    _, log_prob, _, std_t = sde_step_with_logprob(v, sigma, 0.9, x, 0.7, sigma_max=0.9)
    assert std_t.item() == pytest.approx(0.7 * math.sqrt(10), rel=1e-5)
    assert torch.isfinite(log_prob).all()
    with pytest.raises(ValueError, match=r"sigma must be in \(0, 1\]"):
        sde_step_with_logprob(v, 1.01, 0.9, x, 0.7, sigma_max=0.9)


def test_bad_sigmas_are_refused():
    x, v = torch.zeros(2, 2), torch.ones(2, 2)
    with pytest.raises(ValueError, match="sigma must be"):
        sde_step_with_logprob(v, 0.0, 0.0, x, 0.7)
    with pytest.raises(ValueError, match="sigma_next must be"):
        sde_step_with_logprob(v, 0.5, 0.6, x, 0.7)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        sde_step_with_logprob(v, torch.tensor([0.5, 0.5, 0.5]), 0.4, x, 0.7)
    with pytest.raises(ValueError, match="noise_level"):
        sde_step_with_logprob(v, 0.5, 0.4, x, -0.1)


def test_noise_level_zero_is_the_euler_step_exactly():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 5, generator=gen)
    v = torch.randn(3, 4, 5, 5, generator=gen)
    x.requires_grad_(True)
    prev, log_prob, mean, std_t = sde_step_with_logprob(
        v, 0.7, 0.65, x, 0.0, generator=torch.Generator().manual_seed(1)
    )
    euler = x.detach() + (0.65 - 0.7) * v
    assert torch.equal(prev, ode_step(v, 0.7, 0.65, x.detach()))
    assert torch.equal(mean.detach(), prev)
    assert torch.allclose(prev, euler, atol=1e-6, rtol=0)  # float32 vs float64 dt
    assert torch.equal(std_t, torch.zeros(3, 1, 1, 1))
    # no density for a deterministic step: log_prob is defined as 0, and never NaN
    assert torch.equal(log_prob, torch.zeros(3))
    (log_prob.sum() + mean.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_log_prob_is_the_gaussian_density_averaged_over_elements():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, generator=gen)
    v = torch.randn(2, 3, 4, generator=gen)
    target = torch.randn(2, 3, 4, generator=gen)
    sigma, sigma_next = 0.6, 0.5
    _, log_prob, mean, std_t = sde_step_with_logprob(v, sigma, sigma_next, x, 0.7, target)
    scale = 0.7 * math.sqrt(sigma / (1 - sigma)) * math.sqrt(sigma - sigma_next)
    dist = torch.distributions.Normal(mean.detach(), scale)
    expected = dist.log_prob(target).mean(dim=(1, 2))  # averaged, not summed
    assert log_prob.shape == (2,)
    assert log_prob.dtype == torch.float32
    assert torch.allclose(log_prob, expected, atol=1e-5)
    assert not torch.allclose(log_prob, dist.log_prob(target).sum(dim=(1, 2)))


def test_per_sample_sigmas_broadcast_like_separate_calls():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 4, generator=gen)
    v = torch.randn(3, 2, 4, 4, generator=gen)
    target = torch.randn(3, 2, 4, 4, generator=gen)
    sigmas = torch.tensor([1.0, 0.6, 0.3])
    nexts = torch.tensor([0.9, 0.5, 0.0])
    _, log_prob, mean, std_t = sde_step_with_logprob(
        v, sigmas, nexts, x, 0.7, target, sigma_max=0.9
    )
    assert std_t.shape == (3, 1, 1, 1)
    for i in range(3):
        _, lp_i, mean_i, std_i = sde_step_with_logprob(
            v[i : i + 1],
            float(sigmas[i]),
            float(nexts[i]),
            x[i : i + 1],
            0.7,
            target[i : i + 1],
            sigma_max=0.9,
        )
        assert torch.allclose(mean[i : i + 1], mean_i, atol=1e-6)
        assert torch.allclose(log_prob[i : i + 1], lp_i, atol=1e-5)
        assert torch.allclose(std_t[i], std_i[0])


def test_noise_comes_from_the_generator_and_rescoring_gives_the_same_log_prob():
    x = torch.zeros(2, 8, dtype=torch.bfloat16)
    v = torch.ones(2, 8, dtype=torch.bfloat16)
    a = sde_step_with_logprob(v, 0.8, 0.7, x, 0.7, generator=torch.Generator().manual_seed(5))
    b = sde_step_with_logprob(v, 0.8, 0.7, x, 0.7, generator=torch.Generator().manual_seed(5))
    c = sde_step_with_logprob(v, 0.8, 0.7, x, 0.7, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert a[0].dtype == torch.bfloat16
    # the stored (bf16) sample re-scored with the same model output: ratio exactly 1
    _, rescored, _, _ = sde_step_with_logprob(v, 0.8, 0.7, x, 0.7, prev_sample=a[0])
    assert torch.equal(rescored, a[1])
    assert torch.equal(torch.exp(rescored - a[1]), torch.ones(2))
    # one generator per sample: each row is the draw its generator makes alone
    gens = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(9)]
    rows = sde_step_with_logprob(v, 0.8, 0.7, x, 0.7, generator=gens)[0]
    alone = [
        sde_step_with_logprob(
            v[:1], 0.8, 0.7, x[:1], 0.7, generator=torch.Generator().manual_seed(s)
        )
        for s in (5, 9)
    ]
    assert torch.equal(rows, torch.cat([alone[0][0], alone[1][0]]))
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        sde_step_with_logprob(v[:1].expand(3, 8), 0.8, 0.7, x[:1].expand(3, 8), 0.7, generator=gens)


def test_gradients_flow_through_the_mean_only():
    x = torch.zeros(1, 4)
    v = torch.ones(1, 4, requires_grad=True)
    prev, log_prob, _, _ = sde_step_with_logprob(
        v, 0.5, 0.4, x, 0.7, generator=torch.Generator().manual_seed(0)
    )
    log_prob.sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


# ------------------------------------------------------------ the Gaussian toy

M, S = 2.0, 0.5  # data x0 ~ N(M, S^2)


def gaussian_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[eps - x0 | x_sigma] for x_sigma = (1-sigma) x0 + sigma eps, x0 ~ N(M, S^2).

    (v, x_sigma) are jointly Gaussian: E[v] = -M, E[x_sigma] = (1-sigma) M,
    Var x_sigma = (1-sigma)^2 S^2 + sigma^2, Cov(v, x_sigma) = sigma - (1-sigma) S^2, so
    E[v | x] = -M + Cov / Var * (x - (1-sigma) M).
    """
    var = (1 - sigma) ** 2 * S**2 + sigma**2
    return -M + (sigma - (1 - sigma) * S**2) / var * (x - (1 - sigma) * M)


def simulate(steps: int, mode: str, n: int = 20000, seed: int = 0) -> torch.Tensor:
    sigmas = torch.linspace(1, 0, steps + 1).tolist()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=gen)
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        v = gaussian_velocity(x, sigma)
        if mode == "ode":
            x = ode_step(v, sigma, sigma_next, x)
            continue
        step = sde_step_with_logprob(v, sigma, sigma_next, x, 0.7, None, gen, sigmas[1])
        if mode == "sde":
            x = step[0]
        else:  # "naive": the same noise added to the Euler step, without the drift correction
            noise = step[3] * math.sqrt(sigma - sigma_next) * torch.randn(x.shape, generator=gen)
            x = ode_step(v, sigma, sigma_next, x) + noise
    return x


def test_sde_keeps_the_marginals_with_the_paper_settings():
    x = simulate(20, "sde")  # 20 steps, noise level 0.7
    assert x.mean().item() == pytest.approx(M, abs=0.02)
    assert x.std().item() == pytest.approx(S, rel=0.03)  # 20 Euler-Maruyama steps: ~2% bias


def test_sde_and_ode_converge_to_the_same_marginal():
    sde, ode = simulate(200, "sde"), simulate(200, "ode")
    assert sde.std().item() == pytest.approx(ode.std().item(), rel=0.02)
    assert sde.std().item() == pytest.approx(S, rel=0.02)
    assert ode.std().item() == pytest.approx(S, rel=0.02)
    assert sde.mean().item() == pytest.approx(ode.mean().item(), abs=0.02)


def test_noise_without_the_drift_correction_breaks_the_marginal():
    # the control that shows the toy can tell a right SDE from a wrong one
    assert simulate(20, "naive").std().item() > 1.5 * S
