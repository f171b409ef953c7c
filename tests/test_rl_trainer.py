"""The Flow-GRPO trainer on tiny diffusers pipelines built offline: ratio exactly 1 before the
first update, one full iteration on both pipelines, learning on a programmatic reward, exact
resume from a checkpoint, and two torchrun processes (gloo) equal to one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from mlcore.checkpoints import latest_checkpoint
from rltraining.ml.policies import FluxKontextPolicy, QwenImageEditPolicy
from rltraining.ml.rewards import brightness_reward
from rltraining.ml.tiny import build_tiny_flux_kontext, build_tiny_qwen_image_edit
from rltraining.ml.trainer import Prompt, RLConfig, load_prompts, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")
REPO = Path(__file__).resolve().parents[1]
KONTEXT = dict(auto_resize=False, max_sequence_length=64, height=32, width=32)
# A short schedule and small groups: the mechanics are the paper's, the sizes are a CPU's.
SMALL = dict(num_steps=4, group_size=4, prompts_per_round=2, micro_batch=2, train_steps=2,
             eval_every=100)  # fmt: skip


@pytest.fixture(scope="module")
def kontext_dir(tmp_path_factory):
    return build_tiny_flux_kontext(tmp_path_factory.mktemp("rl") / "kontext", seed=0)


def kontext(path, seed=0, **kw):
    torch.manual_seed(seed)  # the LoRA A matrices
    return FluxKontextPolicy.from_pretrained(path, lora_r=4, **{**KONTEXT, **kw})


def prompts(n=4, size=32):
    return [
        Prompt(
            f"make picture {i} brighter",
            Image.new("RGB", (size, size), (30 * i, 80, 120)),
            str(i),
            "tone" if i % 2 else "colour",
        )  # fmt: skip
        for i in range(n)
    ]


def adapter(policy):
    return {k: v.detach().clone() for k, v in policy.adapter_state_dict().items()}


def test_paper_defaults_and_validation():
    config = RLConfig()
    assert (config.num_steps, config.noise_level, config.group_size) == (20, 0.7, 12)
    assert (config.clip_low, config.clip_high, config.beta) == (1e-4, 5e-4, 0.04)
    assert (config.learning_rate, config.adam_betas, config.weight_decay) == (
        4e-4,
        (0.9, 0.95),
        0.01,
    )
    assert (config.max_grad_norm, config.train_steps, config.updates_per_round) == (1.0, 12, 2)
    with pytest.raises(ValueError, match="train_steps must be at most num_steps - 1 = 19"):
        RLConfig(train_steps=20)
    with pytest.raises(ValueError, match="noise_level must be > 0"):
        RLConfig(noise_level=0)
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        RLConfig(group_size=1)
    with pytest.raises(ValueError, match="unknown RL option"):
        RLConfig.from_dict({"lr": 1})


def test_ratio_is_exactly_one_before_the_first_update(kontext_dir):
    policy = kontext(kontext_dir)
    seen = []
    config = RLConfig(rounds=1, updates_per_round=1, **SMALL)
    train(config, policy, brightness_reward, prompts(), on_step=lambda r, m: seen.append(m))
    [metrics] = seen
    assert metrics["ratio_min"] == 1.0 and metrics["ratio_max"] == 1.0
    assert metrics["clip_fraction"] == 0.0
    assert metrics["kl"] == 0.0  # zero-initialised LoRA: the policy is the reference
    assert metrics["grad_norm"] > 0 and metrics["updates"] == 1.0
    assert {"reward_mean/tone", "reward_mean/colour", "reward_std", "seconds"} <= set(metrics)


class _FlakyJudge:
    """A reward that cannot score every other image, and says why (like EditScoreReward)."""

    def __init__(self):
        self.last_errors = []

    def __call__(self, sources, instructions, images):
        rewards = brightness_reward(sources, instructions, images)
        self.last_errors = ["judge timed out"] * (len(images) // 2)
        return [0.0 if i % 2 else r for i, r in enumerate(rewards)]


def test_the_share_of_unscored_rewards_is_a_metric(kontext_dir):
    seen = []
    config = RLConfig(rounds=1, updates_per_round=1, **SMALL)
    train(
        config, kontext(kontext_dir), _FlakyJudge(), prompts(), on_step=lambda r, m: seen.append(m)
    )
    assert seen[0]["unscored_fraction"] == 0.5
    seen.clear()
    train(
        config,
        kontext(kontext_dir),
        brightness_reward,
        prompts(),
        on_step=lambda r, m: seen.append(m),
    )
    assert "unscored_fraction" not in seen[0]  # a reward that cannot fail has no such line


def test_the_untrained_last_transition_draws_no_noise(kontext_dir):
    """Every transition but the last is stochastic; the last (never trained) is the ODE step,
    so no reward differences come from noise the policy cannot be credited for."""
    from rltraining.ml.trainer import _sample

    policy = kontext(kontext_dir)
    prompt = prompts(1)[0]
    cond = policy.encode([prompt.instruction], [prompt.source]).repeat(2)
    sigmas = policy.sigmas(4)
    with torch.no_grad():
        final, latents, log_probs, stds = _sample(
            policy, cond, 2, sigmas, 0.7, torch.Generator().manual_seed(0)
        )
        mean_last = latents[:, -2] + (sigmas[-1] - sigmas[-2]) * policy.velocity(
            latents[:, -2], float(sigmas[-2]), cond, step_index=3, num_steps=4
        )
    assert (stds[:-1] > 0).all() and stds[-1] == 0
    assert (log_probs[:, -1] == 0).all() and (log_probs[:, :-1] != 0).all()
    torch.testing.assert_close(final, mean_last.to(final.dtype))


@pytest.mark.parametrize("which", ["kontext", "qwen"])
def test_one_iteration_through_the_real_diffusers_components(which, kontext_dir, tmp_path,
                                                             monkeypatch):  # fmt: skip
    if which == "kontext":
        policy = kontext(kontext_dir)
        size = 32
    else:
        from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit

        original = pipeline_qwenimage_edit.calculate_dimensions
        monkeypatch.setattr(pipeline_qwenimage_edit, "calculate_dimensions",
                            lambda area, ratio: original(64 * 64, ratio))  # fmt: skip
        torch.manual_seed(0)
        policy = QwenImageEditPolicy.from_pretrained(
            build_tiny_qwen_image_edit(tmp_path / "qwen"), lora_r=4, height=64, width=64,
            condition_area=64 * 64,
        )  # fmt: skip
        size = 64
    before = adapter(policy)
    evals = []
    result = train(
        RLConfig(rounds=1, **SMALL), policy, brightness_reward, prompts(size=size),
        eval_prompts=prompts(2, size), on_eval=lambda r, images, rewards: evals.append(
            (r, [i.size for i in images], rewards)),
    )  # fmt: skip
    [metrics] = [h for h in result["history"] if h["round"] == 1]
    assert metrics["updates"] == 2.0 and 0 < metrics["reward_mean"] < 1
    after = adapter(policy)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # the ODE evaluation before training (round 0) and after the last round
    assert [(r, sizes) for r, sizes, _ in evals] == [
        (0, [(size, size)] * 2),
        (1, [(size, size)] * 2),
    ]


def test_mean_reward_rises_on_a_programmatic_reward(kontext_dir):
    """A short CPU run (tiny Kontext, brightness reward): the sampled mean reward and the ODE
    evaluation reward both rise well beyond the sampling noise."""
    policy = kontext(kontext_dir)
    curve = []
    # lr 0.1 overshot with this session's packages (the reward peaked at round 5, then fell
    # back), so 0.05; and the last three rounds' mean, not one round, faces the noise
    config = RLConfig(rounds=10, num_steps=6, group_size=4, prompts_per_round=2, micro_batch=4,
                      train_steps=5, learning_rate=0.05, beta=0.0, clip_low=1.0, clip_high=1.0,
                      eval_every=10)  # fmt: skip
    result = train(config, policy, brightness_reward, prompts(), eval_prompts=prompts(2),
                   on_step=lambda r, m: curve.append((r, m)))  # fmt: skip
    history = {h["round"]: h for h in result["history"]}
    first = history[1]
    last_three = sum(history[r]["reward_mean"] for r in (8, 9, 10)) / 3
    evals = [m["eval_reward_mean"] for _, m in curve if "eval_reward_mean" in m]
    print("reward_mean per round:", [round(history[r]["reward_mean"], 5) for r in sorted(history)])
    print("eval reward (ODE) before/after:", evals)
    assert last_three > first["reward_mean"] + 3 * first["reward_std"]
    assert evals[-1] > evals[0]


def test_resume_takes_exactly_the_uninterrupted_step(kontext_dir, tmp_path):
    config = RLConfig(rounds=2, checkpoint_every=1, ema_decay=0.9, **SMALL)
    whole = kontext(kontext_dir)
    straight = train(config, whole, brightness_reward, prompts(), checkpoint_dir=tmp_path / "a")

    first = kontext(kontext_dir)
    stopped = train(config, first, brightness_reward, prompts(), checkpoint_dir=tmp_path / "b",
                    should_stop=lambda: True)  # fmt: skip
    assert stopped["final_round"] == 1 and latest_checkpoint(tmp_path / "b").name == "checkpoint-1"
    second = kontext(kontext_dir, seed=123)  # another LoRA init: the checkpoint must win
    resumed = train(config, second, brightness_reward, prompts(), checkpoint_dir=tmp_path / "b")

    def same(h):
        return {k: v for k, v in h.items() if k != "seconds"}

    assert [same(h) for h in resumed["history"]] == [same(h) for h in straight["history"]]
    a, b = adapter(whole), adapter(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="another config"):
        train(RLConfig(rounds=3, checkpoint_every=1, **SMALL), kontext(kontext_dir),
              brightness_reward, prompts(), checkpoint_dir=tmp_path / "b")  # fmt: skip


def _write_prompts(folder: Path, items) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for p in items:
        p.source.save(folder / f"{p.key}.png")
        lines.append(json.dumps({"instruction": p.instruction, "source": f"{p.key}.png",
                                 "key": p.key, "task_type": p.task_type}))  # fmt: skip
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "prompts.jsonl"


def _cli(args, nproc, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launcher = [sys.executable, "-m", "rltraining.ml.trainer"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={nproc}", "-m", "rltraining.ml.trainer"]  # fmt: skip
    done = subprocess.run([*launcher, *args, "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    return [x["metrics"] for x in lines if "round" in x]


@pytest.mark.slow
def test_two_torchrun_processes_give_the_single_process_update(kontext_dir, tmp_path):
    from safetensors.torch import load_file

    config = tmp_path / "config.json"
    config.write_text(json.dumps(RLConfig(rounds=1, updates_per_round=1, **SMALL).to_dict()))
    args = ["--config", str(config), "--policy", str(kontext_dir),
            "--policy-options", json.dumps({**KONTEXT, "lora_r": 4}),
            "--reward", json.dumps({"kind": "brightness"}),
            "--prompts", str(_write_prompts(tmp_path / "prompts", prompts()))]  # fmt: skip
    one = _cli(args, 1, tmp_path / "one")
    two = _cli(args, 2, tmp_path / "two")
    assert two[0]["reward_mean"] == pytest.approx(one[0]["reward_mean"], abs=1e-7)
    assert two[0]["kept_fraction"] == one[0]["kept_fraction"] == 1.0
    a = load_file(tmp_path / "one" / "adapter" / "pytorch_lora_weights.safetensors")
    b = load_file(tmp_path / "two" / "adapter" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    moved = [k for k in a if not torch.equal(a[k], torch.zeros_like(a[k]))]
    assert moved  # the update did something
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_prompt_files_name_the_bad_line(tmp_path):
    good = _write_prompts(tmp_path, prompts(2))
    assert [p.key for p in load_prompts(good)] == ["0", "1"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '{"instruction": "x", "source": "missing.png"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: cannot read image 'missing.png'"):
        load_prompts(bad)


def test_std_weighting_changes_the_update_but_not_the_sampling(kontext_dir):
    """v1.1: each trained transition's loss weighted by its noise std (mean 1)."""
    results = {}
    for weighted in (False, True):
        policy = kontext(kontext_dir)
        config = RLConfig(rounds=1, std_weighting=weighted, **SMALL)
        history = train(config, policy, brightness_reward, prompts())["history"]
        results[weighted] = (history[0]["reward_mean"], adapter(policy))
    assert results[True][0] == results[False][0]  # the same samples and rewards
    a, b = results[False][1], results[True][1]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_a_cancelled_run_keeps_its_last_round(kontext_dir, tmp_path):
    """should_stop raising (a job cancelled at its heartbeat) still writes the checkpoint."""

    def cancelled():
        raise RuntimeError("cancelled by request")

    config = RLConfig(rounds=3, checkpoint_every=10, **SMALL)
    with pytest.raises(RuntimeError, match="cancelled by request"):
        train(config, kontext(kontext_dir), brightness_reward, prompts(),
              checkpoint_dir=tmp_path, should_stop=cancelled)  # fmt: skip
    assert latest_checkpoint(tmp_path).name == "checkpoint-1"
    resumed = train(config, kontext(kontext_dir), brightness_reward, prompts(),
                    checkpoint_dir=tmp_path)  # fmt: skip
    assert [h["round"] for h in resumed["history"]] == [1, 2, 3]


def test_v1_1_reweighting_is_on_by_default_and_weights_the_policy_loss_only(
    kontext_dir, monkeypatch
):
    """The released RL configs set policy_loss_reweighting: true (examples/OmniGen2-RL/options/
    omnigen2_edit_rl_*.yml, line 108), so it is our default. Each chunk (the reference's
    forward micro-batch) normalises the weights over its trained steps, std_t*sqrt(-dt) over
    their mean (train.py lines 752-763), and every trained step's policy loss gets S*w while
    the KL term goes in unweighted (line 901 and lines 905-915; grpo.step_loss)."""
    from rltraining.ml import grpo

    assert RLConfig().std_weighting is True
    calls = {"weights": [], "steps": []}
    real_weights, real_loss = grpo.step_weights, grpo.step_loss

    def weights_spy(std_devs):
        out = real_weights(std_devs)
        calls["weights"].append((std_devs.clone(), out))
        return out

    def loss_spy(pg, kl_loss, num_trained, weight=None):
        calls["steps"].append((num_trained, weight))
        return real_loss(pg, kl_loss, num_trained, weight)

    monkeypatch.setattr(grpo, "step_weights", weights_spy)
    monkeypatch.setattr(grpo, "step_loss", loss_spy)
    train(RLConfig(rounds=1, updates_per_round=1, **SMALL), kontext(kontext_dir),
          brightness_reward, prompts())  # fmt: skip
    chunks = SMALL["prompts_per_round"] * SMALL["group_size"] // SMALL["micro_batch"]
    trained = SMALL["train_steps"]
    assert len(calls["weights"]) == chunks and len(calls["steps"]) == chunks * trained
    for c, (std_devs, weights) in enumerate(calls["weights"]):
        assert std_devs.shape == (trained,) and bool((std_devs > 0).all())
        torch.testing.assert_close(weights, std_devs / std_devs.mean())
        got = calls["steps"][c * trained : (c + 1) * trained]
        assert got == [(trained, float(w)) for w in weights]

    calls["weights"].clear(), calls["steps"].clear()
    train(RLConfig(rounds=1, updates_per_round=1, std_weighting=False, **SMALL),
          kontext(kontext_dir), brightness_reward, prompts())  # fmt: skip
    assert calls["weights"] == []
    assert calls["steps"] == [(trained, None)] * (chunks * trained)


class _OneUnscored:
    """Brightness, except that the second image of each call cannot be scored (None)."""

    def __init__(self):
        self.last_errors, self.last = [], None

    def __call__(self, sources, instructions, images):
        rewards = brightness_reward(sources, instructions, images)
        rewards[1] = None
        self.last_errors, self.last = ["item 1: unreadable"], rewards
        return rewards


def test_an_unscored_sample_is_masked_out_of_advantages_and_loss(kontext_dir, monkeypatch):
    """Its group's advantages are those of the scored samples alone, and it contributes nothing
    to the loss: weight 0 in the policy and KL terms, so no gradient reaches its log-prob or
    mean, while its chunk's other sample trains as usual."""
    from rltraining.ml import grpo

    seen = []
    real_pg, real_kl = grpo.clipped_policy_loss, grpo.kl_penalty

    def pg_spy(log_prob, old, adv, *args, weights=None, **kw):
        loss, stats = real_pg(log_prob, old, adv, *args, weights=weights, **kw)
        (grad,) = torch.autograd.grad(loss, log_prob, retain_graph=True)
        seen.append(("pg", weights, adv.clone(), grad))
        return loss, stats

    def kl_spy(mean, ref_mean, std_t, beta, weights=None):
        loss, kl = real_kl(mean, ref_mean, std_t, beta, weights=weights)
        (grad,) = torch.autograd.grad(kl, mean, retain_graph=True)
        seen.append(("kl", weights, None, grad))
        return loss, kl

    monkeypatch.setattr(grpo, "clipped_policy_loss", pg_spy)
    monkeypatch.setattr(grpo, "kl_penalty", kl_spy)
    reward = _OneUnscored()
    history = []
    policy = kontext(kontext_dir)
    with torch.no_grad():  # a LoRA away from the reference, so that the KL has a gradient
        for p in policy.trainable_parameters():
            p.add_(0.05)
    train(RLConfig(rounds=1, updates_per_round=1, **SMALL), policy, reward, prompts(),
          on_step=lambda r, m: history.append(m))  # fmt: skip
    assert history[0]["unscored_fraction"] == 1 / 8
    assert history[0]["ratio_min"] == history[0]["ratio_max"] == 1.0  # masked, not dropped
    # sample 1 is the second of group 0 (chunk 0: samples 0 and 1, chunk 1: samples 2 and 3)
    scored = [reward.last[i] for i in (0, 2, 3)]
    expected, _ = grpo.group_advantages(scored, ["g"] * 3)
    masked = [s for s in seen if s[1] is not None]
    assert masked and len(masked) == 2 * SMALL["train_steps"]  # pg and KL of chunk 0's steps
    for kind, weights, adv, grad in masked:
        assert weights.tolist() == [1.0, 0.0]
        assert bool((grad[1] == 0).all()) and bool((grad[0] != 0).any())
        if kind == "pg":
            assert adv[1].item() == 0.0 and adv[0].item() == pytest.approx(expected[0].item())
    unmasked_adv = [s[2] for s in seen if s[0] == "pg" and s[1] is None]
    assert any(a.tolist() == pytest.approx(expected[1:].tolist()) for a in unmasked_adv)
    # the mean reward is over the 7 scored samples of the round's 8
    scored_all = [r for r in reward.last if r is not None]
    assert len(reward.last) == 8 and len(scored_all) == 7
    assert history[0]["reward_mean"] == pytest.approx(sum(scored_all) / 7)


def test_edits_follow_each_source_aspect_ratio(kontext_dir):
    """A policy without a fixed size samples, trains and evaluates each group at its source's
    size (schedule, noise and decoding per group)."""
    policy = kontext(kontext_dir, height=None, width=None, max_area=32 * 32)
    shapes = [(48, 24), (24, 48), (32, 32), (40, 30)]
    items = [Prompt(f"make picture {i} brighter", Image.new("RGB", wh, (30 * i, 80, 120)), str(i),
                    "tone") for i, wh in enumerate(shapes)]  # fmt: skip
    evals = []

    def on_eval(round_index, images, rewards):
        evals.append([image.size for image in images])

    result = train(RLConfig(rounds=1, **SMALL), policy, brightness_reward, items,
                   eval_prompts=items[:2], on_eval=on_eval)  # fmt: skip
    assert result["history"][-1]["updates"] == 2.0
    assert evals == [[(44, 22), (22, 44)]] * 2  # 2:1 at about 32*32 pixels, both ways
