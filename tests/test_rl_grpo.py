"""GRPO arithmetic (rltraining.ml.grpo) on hand-worked examples."""

import math

import pytest
import torch

from rltraining.ml.grpo import (
    choose_train_steps,
    clipped_policy_loss,
    group_advantages,
    kl_penalty,
    step_weights,
)

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
