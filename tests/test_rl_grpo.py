"""GRPO arithmetic (rltraining.ml.grpo) on hand-worked examples."""

import math

import pytest
import torch

from rltraining.ml.grpo import (
    choose_train_steps,
    clipped_policy_loss,
    group_advantages,
    kl_penalty,
    step_loss,
    step_weights,
)
from rltraining.ml.sde import sde_step_with_logprob

# ------------------------------------------------------------------ advantages


def test_advantages_are_normalised_within_each_group():
    # groups interleaved: a = [1, 2, 3] (mean 2, population std sqrt(2/3)), b = [5, 5]
    rewards = [1.0, 5.0, 2.0, 5.0, 3.0]
    groups = [("red", "s1"), ("blue", "s2"), ("red", "s1"), ("blue", "s2"), ("red", "s1")]
    adv, keep = group_advantages(rewards, groups)
    a = 1 / (math.sqrt(2 / 3) + 1e-4)  # 1.22456...
    assert adv.dtype == torch.float32 and keep.dtype == torch.bool
    assert adv.tolist() == pytest.approx([-a, 0.0, 0.0, 0.0, a], rel=1e-6)
    assert keep.tolist() == [True, False, True, False, True]  # b has no reward variance


def test_advantages_use_the_population_std_not_the_sample_std():
    adv, _ = group_advantages([0.0, 1.0], ["g", "g"], eps=1e-12)
    assert adv.tolist() == pytest.approx([-1.0, 1.0])  # sample std would give +-0.707


def test_advantages_are_clipped_at_five():
    # 36 zeros and one 1: the outlier is (36/37) / (6/37) = 6 std above the mean
    rewards = torch.zeros(37)
    rewards[10] = 1.0
    adv, keep = group_advantages(rewards, ["g"] * 37)
    assert adv[10].item() == 5.0
    assert adv[0].item() == pytest.approx(-(1 / 37) / (6 / 37 + 1e-4), rel=1e-6)
    assert keep.all()
    wider, _ = group_advantages(rewards, ["g"] * 37, clip=10.0)
    assert wider[10].item() == pytest.approx((36 / 37) / (6 / 37 + 1e-4), rel=1e-6)


def test_single_sample_and_equal_float_groups_are_dropped():
    adv, keep = group_advantages([0.3, 0.3, 0.3, 0.7], ["a", "a", "a", "b"])
    assert adv.tolist() == [0.0] * 4
    assert keep.tolist() == [False] * 4


def test_an_unscored_sample_changes_no_advantage_in_its_group():
    """None = unscored: left out of its group's mean and std (the others' advantages are those
    computed without it), advantage 0 and not kept (it enters no loss)."""
    rewards = [0.2, None, 0.9, 0.4, 0.7, 0.1]
    groups = ["a", "a", "a", "a", "b", "b"]
    adv, keep = group_advantages(rewards, groups)
    without, keep_without = group_advantages([0.2, 0.9, 0.4, 0.7, 0.1], ["a", "a", "a", "b", "b"])
    assert adv[1].item() == 0.0 and not keep[1]
    assert torch.equal(adv[[0, 2, 3, 4, 5]], without)
    assert keep[[0, 2, 3, 4, 5]].tolist() == keep_without.tolist() == [True] * 5
    # whatever a made-up reward for it would have been, the others would have moved
    zero, _ = group_advantages([0.2, 0.0, 0.9, 0.4, 0.7, 0.1], groups)
    assert not torch.allclose(zero[[0, 2, 3]], without[:3])


def test_a_group_with_fewer_than_two_scored_samples_carries_no_signal():
    adv, keep = group_advantages([None, 0.5, None, None, 0.1, 0.3], ["a"] * 3 + ["b"] * 3)
    assert adv.tolist()[:3] == [0.0] * 3 and keep.tolist()[:3] == [False] * 3
    assert keep.tolist()[3:] == [False, True, True]  # b: two scored samples do count
    assert adv[4].item() == pytest.approx(-adv[5].item()) and adv[5].item() > 0
    adv, keep = group_advantages([None, None], ["a", "a"])
    assert adv.tolist() == [0.0, 0.0] and not keep.any()


def test_advantage_inputs_are_checked():
    with pytest.raises(ValueError, match="2 rewards but 3 group keys"):
        group_advantages([1.0, 2.0], ["a", "a", "b"])
    with pytest.raises(ValueError, match="finite"):
        group_advantages([1.0, float("nan")], ["a", "a"])


# ------------------------------------------------------------------ policy loss


def test_clipped_loss_on_hand_examples():
    # band [0.9, 1.2]: per sample max(-A*rho, -A*clip(rho))
    #   A=+1 rho=1.5 -> max(-1.5, -1.2) = -1.2 (clipped)
    #   A=+1 rho=0.5 -> max(-0.5, -0.9) = -0.5
    #   A=-1 rho=1.5 -> max( 1.5,  1.2) =  1.5
    #   A=-1 rho=0.5 -> max( 0.5,  0.9) =  0.9 (clipped)
    #   A=+2 rho=1.1 -> -2.2 (inside the band)
    ratios = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1])
    log_prob = torch.log(ratios).requires_grad_(True)
    old = torch.zeros(5)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 2.0])
    loss, stats = clipped_policy_loss(log_prob, old, adv, clip_low=0.1, clip_high=0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.5 + 0.9 - 2.2) / 5)
    assert stats == pytest.approx(
        {"clip_fraction": 0.8, "ratio_min": 0.5, "ratio_max": 1.5, "ratio_mean": 1.02}
    )
    loss.backward()
    # d/dlogp of -A*rho is -A*rho; clipped samples have no gradient
    assert log_prob.grad.tolist() == pytest.approx([0.0, -0.1, 0.3, 0.0, -0.44])


def test_weights_make_a_weighted_mean():
    log_prob = torch.log(torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1]))
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 2.0])
    weights = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0])
    loss, _ = clipped_policy_loss(log_prob, torch.zeros(5), adv, 0.1, 0.2, weights=weights)
    assert loss.item() == pytest.approx((-1.2 * 1 - 2.2 * 3) / 4)
    with pytest.raises(ValueError, match="weights"):
        clipped_policy_loss(log_prob, torch.zeros(5), adv, weights=torch.ones(4))


def test_ratio_exactly_one_gives_minus_mean_advantage():
    log_prob = torch.tensor([-1.3, 0.2, 4.0], requires_grad=True)
    adv = torch.tensor([0.5, -2.0, 1.0])
    loss, stats = clipped_policy_loss(log_prob, log_prob.detach().clone(), adv)
    assert loss.item() == pytest.approx(-(0.5 - 2.0 + 1.0) / 3)
    assert stats == {"clip_fraction": 0.0, "ratio_min": 1.0, "ratio_max": 1.0, "ratio_mean": 1.0}
    loss.backward()
    assert log_prob.grad.tolist() == pytest.approx([-0.5 / 3, 2.0 / 3, -1.0 / 3])


def test_default_band_is_the_papers():
    old = torch.zeros(2)
    log_prob = torch.log(torch.tensor([1 - 2e-4, 1 + 4e-4]))  # below 1-1e-4, inside 1+5e-4
    _, stats = clipped_policy_loss(log_prob, old, torch.ones(2))
    assert stats["clip_fraction"] == 0.5


# ------------------------------------------------------------------ KL


def test_kl_on_a_hand_example():
    # sample 0: mean((1, 4)) / (2 * 1^2) = 1.25; sample 1: mean((9, 16)) / (2 * 2^2) = 1.5625
    mean = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    ref = torch.zeros(2, 2)
    loss, kl = kl_penalty(mean, ref, torch.tensor([[1.0], [2.0]]), beta=0.04)
    assert kl.item() == pytest.approx((1.25 + 1.5625) / 2)
    assert loss.item() == pytest.approx(0.04 * 1.40625)
    loss.backward()
    # loss = beta * (1/2 over the batch) * (1/2 over elements) * mu^2 / (2 std^2):
    # d/dmu = beta * mu / (4 std^2)
    assert mean.grad.flatten().tolist() == pytest.approx(
        [0.04 * 1 / 4, 0.04 * 2 / 4, 0.04 * 3 / 16, 0.04 * 4 / 16]
    )
    # a (batch,) std and a scalar std are accepted
    _, kl_flat = kl_penalty(mean, ref, torch.tensor([1.0, 2.0]), beta=0.04)
    assert kl_flat.item() == pytest.approx(1.40625)
    _, kl_scalar = kl_penalty(mean, ref, 2.0, beta=0.04)
    assert kl_scalar.item() == pytest.approx((2.5 / 8 + 12.5 / 8) / 2)


def test_kl_of_a_deterministic_step_is_zero_not_inf():
    mean = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    _, kl = kl_penalty(mean, torch.zeros(2, 2), torch.tensor([0.0, 2.0]), beta=1.0)
    assert kl.item() == pytest.approx(1.5625 / 2)


# ------------------------------------------------------------------ steps


def test_step_weights_are_proportional_with_mean_one():
    weights = step_weights(torch.tensor([0.1, 0.2, 0.3]))
    assert weights.tolist() == pytest.approx([0.5, 1.0, 1.5])
    assert weights.mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all 0"):
        step_weights([0.0, 0.0])
    with pytest.raises(ValueError, match=">= 0"):
        step_weights([0.1, -0.2])


def test_train_steps_are_a_seeded_subset_without_the_last_transition():
    chosen = choose_train_steps(20, 0.6, 7)
    assert len(chosen) == 11  # round(0.6 * 19)
    assert chosen == sorted(set(chosen))
    assert all(0 <= i <= 18 for i in chosen)
    assert chosen == choose_train_steps(20, 0.6, torch.Generator().manual_seed(7))
    assert len(choose_train_steps(20, 12 / 19, 0)) == 12
    seen = set()
    for seed in range(200):
        seen.update(choose_train_steps(20, 0.6, seed))
    assert seen == set(range(19))  # every trainable step gets its turn, 19 never
    assert len({tuple(choose_train_steps(20, 0.6, s)) for s in range(20)}) > 1


def test_train_steps_edge_cases():
    assert choose_train_steps(20, 1.0, 0) == list(range(19))
    assert len(choose_train_steps(20, 0.01, 0)) == 1  # at least one
    assert choose_train_steps(2, 0.5, 0) == [0]
    with pytest.raises(ValueError, match="num_steps"):
        choose_train_steps(1, 0.5, 0)
    with pytest.raises(ValueError, match="fraction"):
        choose_train_steps(20, 0.0, 0)


# ------------------------------------------------------------------ v1.1 re-weighting


def _reference_update_loss(log_probs, old, adv, means, ref_means, sigma_t, sigma_ts, clip, beta,
                           reweight, accumulation=1):  # fmt: skip
    """One micro-batch's loss over its S trained steps, written from the reference's formulas
    (``examples/OmniGen2-RL/train.py`` in the ``editscore`` package, and the helpers it
    imports from ``omnigen2/grpo/utils.py``):

    * policy loss, ``compute_single_step_ppo_loss`` (utils.py lines 156-190):
      ``max(-A*ratio, -A*clamp(ratio, 1-clip[0], 1+clip[1])).mean()``;
    * train.py lines 752-763: ``sigma_ts = sigma_t * sqrt(dt)`` of the trained steps,
      ``normalize_factor = sigma_ts.mean()``; line 901: ``policy_loss = policy_loss *
      sample_steps * (sigma_ts[idx] / normalize_factor)``;
    * lines 905-915: ``kl_loss = mean(((mean_t - mean_t_ref)**2).flatten(1).mean(1) /
      (2 * sigma_t))`` where ``forward_logprob`` returns ``sigma_t**2`` (utils.py line 153),
      ``loss += kl_loss_weight * kl_loss``, not re-weighted;
    * ``accelerator.backward`` divides each loss by the accumulation count (accelerate's
      Accelerator.backward), set at lines 234-239 to ``gradient_accumulation_steps * S``.
    """
    steps = len(log_probs)
    normalize_factor = sigma_ts.mean()
    total = 0.0
    for idx in range(steps):
        ratio = torch.exp(log_probs[idx] - old[idx])
        unclipped = -adv * ratio
        clipped = -adv * torch.clamp(ratio, 1.0 - clip[0], 1.0 + clip[1])
        policy_loss = torch.max(unclipped, clipped).mean()
        if reweight:
            policy_loss = policy_loss * steps * (sigma_ts[idx] / normalize_factor)
        variance = sigma_t[idx] ** 2  # what forward_logprob returns as "sigma_t"
        kl_loss = torch.mean(
            ((means[idx] - ref_means[idx]) ** 2).flatten(start_dim=1).mean(dim=1) / (2 * variance)
        )
        loss = policy_loss + beta * kl_loss
        total = total + loss / (accumulation * steps)
    return total


def _a_batch(steps=4, batch=3, seed=0):
    """S trained steps of a batch: log-probs, means and noise levels from the real SDE step on a
    shifted schedule (the first step at sigma = 1), as the trainer gets them."""
    g = torch.Generator().manual_seed(seed)
    sigmas = torch.tensor([1.0, 0.93, 0.8, 0.6, 0.3, 0.0])
    log_probs, old, means, ref_means, sigma_t, sigma_ts = [], [], [], [], [], []
    for j in range(steps):
        x = torch.randn(batch, 5, 2, generator=g)
        v = torch.randn(batch, 5, 2, generator=g, requires_grad=True)
        v_ref = v.detach() + 0.1 * torch.randn(batch, 5, 2, generator=g)
        x_next = torch.randn(batch, 5, 2, generator=g)
        s, s_next = float(sigmas[j]), float(sigmas[j + 1])
        _, logp, mean, std_t = sde_step_with_logprob(v, s, s_next, x, 0.7, prev_sample=x_next,
                                                     sigma_max=float(sigmas[1]))  # fmt: skip
        _, _, ref_mean, _ = sde_step_with_logprob(v_ref, s, s_next, x, 0.7, prev_sample=x_next,
                                                  sigma_max=float(sigmas[1]))  # fmt: skip
        log_probs.append(logp)
        old.append(logp.detach() + 1e-4 * torch.randn(batch, generator=g))
        means.append(mean)
        ref_means.append(ref_mean)
        sigma_t.append(std_t)
        sigma_ts.append(float(std_t.flatten()[0]) * math.sqrt(s - s_next))  # as the trainer
    adv = torch.tensor([1.3, -0.4, -0.9])[:batch]
    return log_probs, old, adv, means, ref_means, sigma_t, torch.tensor(sigma_ts)


@pytest.mark.parametrize("reweight", [False, True])
def test_step_loss_matches_the_reference_formulas(reweight):
    """Our per-step terms (clipped_policy_loss, kl_penalty, step_weights, step_loss) summed over
    the trained steps give the reference's accumulated loss and gradients, both ways; see
    ``_reference_update_loss`` for the lines of ``examples/OmniGen2-RL/train.py`` (752-763,
    901, 905-915, 234-239) and ``omnigen2/grpo/utils.py`` matched."""
    log_probs, old, adv, means, ref_means, sigma_t, sigma_ts = _a_batch()
    clip, beta, steps = (1e-4, 5e-4), 0.04, len(log_probs)
    # the reference's sigma_t of a step is scheduler.get_sigma_t (omnigen2/schedulers/
    # scheduling_flow_match_euler_maruyama_discrete.py lines 192-200) in its clock t = 1 - sigma:
    # sigma_coef * sqrt((1 - t) / t), with t_next for the first step; our std_t is the same
    sigmas = [1.0, 0.93, 0.8, 0.6, 0.3]
    for j in range(steps):
        t, t_next = 1 - sigmas[j], 1 - sigmas[j + 1]
        expected = 0.7 * math.sqrt((1 - t) / (t_next if j == 0 else t))
        assert sigma_t[j].flatten()[0].item() == pytest.approx(expected, rel=1e-5)
        assert sigma_ts[j].item() == pytest.approx(expected * math.sqrt(t_next - t), rel=1e-5)

    weights = step_weights(sigma_ts) if reweight else None
    ours = 0.0
    for k in range(steps):
        pg, _ = clipped_policy_loss(log_probs[k], old[k], adv, *clip)
        kl_loss, _ = kl_penalty(means[k], ref_means[k], sigma_t[k], beta)
        ours = ours + step_loss(pg, kl_loss, steps, None if weights is None else weights[k])
    reference = _reference_update_loss(log_probs, old, adv, means, ref_means, sigma_t, sigma_ts,
                                       clip, beta, reweight)  # fmt: skip
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    inputs = [*log_probs, *means]
    for a, b in zip(torch.autograd.grad(ours, inputs, retain_graph=True),
                    torch.autograd.grad(reference, inputs), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


def test_reweighting_scales_the_policy_term_only():
    """v1.1 multiplies step k's policy loss by S*w_k (w: sigma_t*sqrt(dt) over its mean) and
    leaves the KL term as it was: the gradients through the means that the KL term alone sees
    are equal with and without it; those through the log-probs scale by S*w_k."""
    log_probs, old, adv, means, ref_means, sigma_t, sigma_ts = _a_batch(seed=1)
    steps = len(log_probs)
    weights = step_weights(sigma_ts)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights.tolist() == pytest.approx((sigma_ts / sigma_ts.mean()).tolist())

    # independent leaves, so that a mean's gradient can only come through the KL term
    log_probs = [lp.detach().requires_grad_(True) for lp in log_probs]
    means = [m.detach().requires_grad_(True) for m in means]

    def grads(reweight):
        total = 0.0
        for k in range(steps):
            pg, _ = clipped_policy_loss(log_probs[k], old[k], adv)
            kl_loss, _ = kl_penalty(means[k], ref_means[k], sigma_t[k], 0.04)
            total = total + step_loss(pg, kl_loss, steps, weights[k] if reweight else None)
        return torch.autograd.grad(total, [*log_probs, *means])

    plain, weighted = grads(False), grads(True)
    for k in range(steps):
        torch.testing.assert_close(weighted[k], plain[k] * steps * weights[k])  # policy
        torch.testing.assert_close(weighted[steps + k], plain[steps + k])  # KL: unweighted
        assert plain[steps + k].abs().sum() > 0
    # and the loss's own KL part, per step: (S*w*pg + kl)/S - w*pg = kl/S, whatever w is
    pg, kl = torch.tensor(0.3), torch.tensor(0.05)
    for w in (0.2, 1.0, 3.0):
        assert (step_loss(pg, kl, 4, w) - w * pg).item() == pytest.approx(0.05 / 4)
    assert step_loss(pg, kl, 4).item() == pytest.approx(0.35 / 4)
    with pytest.raises(ValueError, match="num_trained"):
        step_loss(pg, kl, 0)
