"""The RL policies (``rltraining.ml.policies``) on tiny random FLUX Kontext and Qwen-Image-Edit.

Both tiny pipelines are built once per session (``rltraining.ml.tiny``) and loaded through the
same ``from_pretrained`` path a real checkpoint takes. The central check: an Euler ODE loop
written here over ``policy.sigmas`` and ``policy.velocity`` reproduces the diffusers pipeline's
own latents and images for the same generator and guidance, which proves the packing, the
condition-image concatenation and slicing, the timestep scaling, the shifted schedule and the
guidance.
"""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from rltraining.ml import policies
from rltraining.ml.policies import (
    Condition,
    FluxKontextPolicy,
    Guidance,
    QwenImageEditPolicy,
    load_policy,
)
from rltraining.ml.tiny import build_tiny_flux_kontext, build_tiny_qwen_image_edit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.usefixtures("torch_one_thread")

KONTEXT_SIZE = 32
QWEN_SIZE = 64
STEPS = 3
# Kontext's T5 pads every prompt to this; the pipeline gets the same value.
KONTEXT_OPTIONS = dict(auto_resize=False, max_sequence_length=64)
QWEN_OPTIONS = dict(condition_area=QWEN_SIZE * QWEN_SIZE)


@pytest.fixture(scope="session")
def tiny_pipelines(tmp_path_factory):
    """The two tiny pipeline folders (read-only for tests)."""
    root = tmp_path_factory.mktemp("rl_policies")
    return {
        "kontext": build_tiny_flux_kontext(root / "kontext", seed=0),
        "qwen": build_tiny_qwen_image_edit(root / "qwen", seed=0),
    }


def kontext(tiny_pipelines, **kw):
    kw = {**KONTEXT_OPTIONS, "height": KONTEXT_SIZE, "width": KONTEXT_SIZE, **kw}
    return FluxKontextPolicy.from_pretrained(tiny_pipelines["kontext"], **kw)


def qwen(tiny_pipelines, **kw):
    kw = {**QWEN_OPTIONS, "height": QWEN_SIZE, "width": QWEN_SIZE, **kw}
    return QwenImageEditPolicy.from_pretrained(tiny_pipelines["qwen"], **kw)


@pytest.fixture
def small_qwen_condition(monkeypatch):
    """The Qwen-Image-Edit pipeline resizes the source to a 1024² area (17 s on the tiny model):
    make it use the policies' small ``condition_area`` instead."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit

    original = pipeline_qwenimage_edit.calculate_dimensions
    monkeypatch.setattr(
        pipeline_qwenimage_edit,
        "calculate_dimensions",
        lambda area, ratio: original(QWEN_SIZE * QWEN_SIZE, ratio),
    )


def source(size, seed=0):
    return wide_source(size, size, seed)


def wide_source(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def euler(policy, cond, generator, steps=STEPS):
    """The plain ODE sampler, written out: x' = x + (sigma' - sigma) * v."""
    x = policy.initial_latents(len(cond), generator, size=cond.size)
    sigmas = policy.sigmas(steps, size=cond.size)
    with torch.no_grad():
        for i in range(steps):
            v = policy.velocity(x, sigmas[i], cond, step_index=i, num_steps=steps)
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x


def kontext_pipeline_call(policy, image, prompt, output_type, **kw):
    return policy.pipe(
        image=image,
        prompt=prompt,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(0),
        output_type=output_type,
        _auto_resize=False,
        max_area=KONTEXT_SIZE * KONTEXT_SIZE,
        height=KONTEXT_SIZE,
        width=KONTEXT_SIZE,
        max_sequence_length=KONTEXT_OPTIONS["max_sequence_length"],
        **kw,
    ).images


def qwen_pipeline_call(policy, image, prompt, output_type, **kw):
    return policy.pipe(
        image=image,
        prompt=prompt,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(0),
        output_type=output_type,
        height=QWEN_SIZE,
        width=QWEN_SIZE,
        **kw,
    ).images


def assert_same_images(ours, theirs):
    assert [im.size for im in ours] == [im.size for im in theirs]
    for a, b in zip(ours, theirs, strict=True):
        diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int))
        assert diff.max() <= 1


# --- loading and the schedule


def test_the_tiny_folders_load_like_checkpoints(tiny_pipelines):
    for key, name in (("kontext", "FluxKontextPipeline"), ("qwen", "QwenImageEditPipeline")):
        index = json.loads((tiny_pipelines[key] / "model_index.json").read_text())
        assert index["_class_name"] == name
    assert json.loads((tiny_pipelines["qwen"] / "model_index.json").read_text())["processor"] == [
        "transformers",
        "Qwen2VLProcessor",
    ]
    k = kontext(tiny_pipelines)
    q = qwen(tiny_pipelines)
    assert type(k.pipe).__name__ == "FluxKontextPipeline" and k.name == "flux-kontext"
    assert type(q.pipe).__name__ == "QwenImageEditPipeline" and q.name == "qwen-image-edit"
    assert q.pipe.processor is not None
    assert (k.height, k.width, k.image_seq_len) == (32, 32, 256)
    assert (q.height, q.width, q.image_seq_len) == (64, 64, 64)
    assert k.trainable_parameters() == [] and k.lora_config is None
    assert not any(p.requires_grad for p in k.transformer.parameters())


def test_the_tiny_builds_are_deterministic(tmp_path, tiny_pipelines):
    again = build_tiny_flux_kontext(tmp_path / "kontext", seed=0)
    for part in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        (saved,) = (tiny_pipelines["kontext"] / part).glob("*.safetensors")
        assert (again / part / saved.name).read_bytes() == saved.read_bytes()


def test_load_policy_picks_the_class_from_model_index(tiny_pipelines, tmp_path):
    k = load_policy(tiny_pipelines["kontext"], height=32, width=32, **KONTEXT_OPTIONS)
    q = load_policy(tiny_pipelines["qwen"], height=64, width=64, **QWEN_OPTIONS)
    assert type(k) is FluxKontextPolicy and type(q) is QwenImageEditPolicy
    assert policies.POLICIES["FluxKontextPipeline"] is FluxKontextPolicy
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "OmniGen2Pipeline"}))
    with pytest.raises(ValueError, match="no policy for pipeline 'OmniGen2Pipeline'"):
        load_policy(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "missing")


def test_sigmas_follow_the_shifted_scheduler(tiny_pipelines):
    for policy in (kontext(tiny_pipelines), qwen(tiny_pipelines)):
        sigmas = policy.sigmas(20)
        assert sigmas.dtype == torch.float32 and sigmas.shape == (21,)
        assert sigmas[0] == pytest.approx(1.0) and sigmas[-1] == 0
        assert bool((sigmas[1:] < sigmas[:-1]).all())
    # Qwen-Image's scheduler stretches the schedule to end at shift_terminal before the final 0.
    assert qwen(tiny_pipelines).sigmas(4)[-2].item() == pytest.approx(0.02)


# --- the ODE loop reproduces the pipelines


def test_kontext_ode_loop_reproduces_the_pipeline(tiny_pipelines):
    policy = kontext(tiny_pipelines)  # native guidance: distilled scale 2.5, one forward
    image, prompt = source(KONTEXT_SIZE), "make the sky red"
    cond = policy.encode([prompt], [image])
    ours = euler(policy, cond, torch.Generator().manual_seed(0))
    theirs = kontext_pipeline_call(policy, image, prompt, "latent", guidance_scale=2.5)
    assert ours.shape == theirs.shape == (1, 256, 4)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert_same_images(
        policy.decode(ours), kontext_pipeline_call(policy, image, prompt, "pil", guidance_scale=2.5)
    )
    assert policy.pipe.scheduler.sigmas.tolist() == policy.sigmas(STEPS).tolist()
    sampled = policy.sample(cond, STEPS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, ours)


@pytest.mark.parametrize(
    "guidance",
    [
        Guidance(mode="native", scale=3.0, true_cfg_scale=2.0),
        # the paper's dual guidance with image scale 1 is true CFG against (negative, image)
        Guidance(mode="dual", scale=3.0, text_scale=2.0, image_scale=1.0, cfg_fraction=1.0),
    ],
    ids=["native-true-cfg", "dual-image-1"],
)
def test_kontext_true_cfg_reproduces_the_pipeline(tiny_pipelines, guidance):
    policy = kontext(tiny_pipelines, guidance=guidance)
    image, prompt = source(KONTEXT_SIZE, seed=1), "add a dog"
    cond = policy.encode(prompt, image)
    ours = euler(policy, cond, torch.Generator().manual_seed(0))
    theirs = kontext_pipeline_call(
        policy, image, prompt, "latent", guidance_scale=3.0, true_cfg_scale=2.0, negative_prompt=" "
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_qwen_default_guidance_is_the_pipelines_default_call(tiny_pipelines, small_qwen_condition):
    """``pipe(image=..., prompt=...)`` runs no true CFG: diffusers applies ``true_cfg_scale``
    (4.0 by default) only with a negative prompt (``do_true_cfg = true_cfg_scale > 1 and
    has_neg_prompt``, pipeline_qwenimage_edit.py line 678). Our native default matches it:
    ``true_cfg_scale`` 1.0, one forward, no negative branch encoded."""
    policy = qwen(tiny_pipelines)
    assert policy.guidance.true_cfg_scale == 1.0 and not policy.guidance.needs_negative
    image, prompt = source(QWEN_SIZE, seed=3), "make the sky red"
    cond = policy.encode([prompt], [image])
    assert cond.negative_prompt_embeds is None
    ours = euler(policy, cond, torch.Generator().manual_seed(0))
    theirs = qwen_pipeline_call(policy, image, prompt, "latent")  # the pipeline's defaults
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_qwen_true_cfg_reproduces_the_pipeline(tiny_pipelines, small_qwen_condition):
    # true CFG 4.0 with the negative prompt " " and the norm rescale: the model card's call
    policy = qwen(tiny_pipelines, guidance={"true_cfg_scale": 4.0})
    image, prompt = source(QWEN_SIZE), "make the sky red"
    cond = policy.encode([prompt], [image])
    ours = euler(policy, cond, torch.Generator().manual_seed(0))
    kw = dict(negative_prompt=" ", true_cfg_scale=4.0)
    theirs = qwen_pipeline_call(policy, image, prompt, "latent", **kw)
    assert ours.shape == theirs.shape == (1, 64, 16)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert_same_images(policy.decode(ours), qwen_pipeline_call(policy, image, prompt, "pil", **kw))
    plain = qwen_pipeline_call(policy, image, prompt, "latent")
    assert not torch.allclose(theirs, plain)  # the guidance really does something


def test_qwen_without_guidance_reproduces_the_pipeline(tiny_pipelines, small_qwen_condition):
    policy = qwen(tiny_pipelines, guidance="none")
    image, prompt = source(QWEN_SIZE, seed=2), "remove the car"
    cond = policy.encode(prompt, image)
    assert cond.negative_prompt_embeds is None  # not needed, not encoded
    ours = euler(policy, cond, torch.Generator().manual_seed(0))
    theirs = qwen_pipeline_call(policy, image, prompt, "latent", true_cfg_scale=1.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# --- the output size follows the source, as the pipelines size it


def test_qwen_edits_get_the_pipelines_size_for_a_non_square_source(
    tiny_pipelines, small_qwen_condition
):
    """No height/width: the edit of a 2:1 source is what ``QwenImageEditPipeline`` makes for it
    (diffusers' own ``calculate_dimensions`` of the aspect ratio at the area, then multiples of
    vae_scale_factor * 2), not a square."""
    policy = qwen(tiny_pipelines, height=None, width=None)
    assert policy.height is None and policy.width is None
    image, prompt = wide_source(96, 48), "make the sky red"
    cond = policy.encode(prompt, image)
    # calculate_dimensions(64*64, 2): width round(90.5 / 32) * 32 = 96, height round(45.3 / 32)
    # * 32 = 32; multiples of 8 (tiny VAE scale 4, 2x2 patches)
    assert cond.size == policy.output_size(image) == (32, 96)
    ours = euler(policy, cond, torch.Generator().manual_seed(0))
    theirs = policy.pipe(image=image, prompt=prompt, num_inference_steps=STEPS,
                         output_type="latent", generator=torch.Generator().manual_seed(0),
                         ).images  # fmt: skip
    assert ours.shape == theirs.shape == (1, (32 // 8) * (96 // 8), 16)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    [edit] = policy.decode(ours, size=cond.size)
    [pipeline_edit] = policy.pipe(image=image, prompt=prompt, num_inference_steps=STEPS,
                                  generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert edit.size == pipeline_edit.size == (96, 32)
    # a tall source the other way round; a fixed height and width still win
    assert policy.output_size(wide_source(48, 96)) == (96, 32)
    assert qwen(tiny_pipelines).output_size(image) == (QWEN_SIZE, QWEN_SIZE)


def test_kontext_edits_keep_the_aspect_ratio_of_a_non_square_source(tiny_pipelines):
    """No height/width: the edit is what ``FluxKontextPipeline`` makes when given the source's
    height and width (as the EditScore authors call it): that aspect ratio at ``max_area``,
    sides rounded down to multiples of vae_scale_factor * 2 (2 for the tiny VAE)."""
    policy = kontext(tiny_pipelines, height=None, width=None, max_area=KONTEXT_SIZE**2)
    image, prompt = wide_source(48, 24), "make the sky red"
    cond = policy.encode(prompt, image)
    # width round(sqrt(1024 * 2)) = 45 -> 44, height round(sqrt(1024 / 2)) = 23 -> 22
    assert cond.size == (22, 44)
    ours = euler(policy, cond, torch.Generator().manual_seed(0))
    kw = dict(image=image, prompt=prompt, num_inference_steps=STEPS, guidance_scale=2.5,
              _auto_resize=False, max_area=KONTEXT_SIZE**2, height=24, width=48,
              max_sequence_length=KONTEXT_OPTIONS["max_sequence_length"])  # fmt: skip
    theirs = policy.pipe(**kw, output_type="latent",
                         generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert ours.shape == theirs.shape == (1, 11 * 22, 4)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    [edit] = policy.decode(ours, size=cond.size)
    [pipeline_edit] = policy.pipe(**kw, generator=torch.Generator().manual_seed(0)).images
    assert edit.size == pipeline_edit.size == (44, 22)
    # the default area is the pipeline's 1024^2 (the tiny VAE: multiples of 2)
    big = kontext(tiny_pipelines, height=None, width=None)
    assert big.max_area == 1024**2
    assert big.output_size(wide_source(1000, 500)) == (724, 1448)  # 1448x724 = 1.05 MP
    with pytest.raises(ValueError, match="pass size=cond.size"):
        big.initial_latents(1)
    with pytest.raises(ValueError, match="both height and width"):
        kontext(tiny_pipelines, height=32, width=None)


# --- dual guidance, the CFG window, batching


def test_dual_guidance_combines_three_branches_on_early_steps(tiny_pipelines):
    guidance = Guidance(mode="dual", text_scale=4.0, image_scale=2.0)  # paper settings
    for policy in (
        kontext(tiny_pipelines, guidance=guidance),
        qwen(tiny_pipelines, guidance=guidance),
    ):
        size = policy.height
        assert policy.guidance.cfg_fraction == 0.6
        cond = policy.encode("make it blue", source(size)).repeat(2)
        x = policy.initial_latents(2, torch.Generator().manual_seed(3))
        sigma = policy.sigmas(10)[6]
        t = (sigma * 1000) / 1000
        with torch.no_grad():
            full, ref, uncond = (
                policy._forward(x, t.expand(2), cond, b).float() for b in ("cond", "neg", "uncond")
            )
            expected = uncond + 2.0 * (ref - uncond) + 4.0 * (full - ref)
            inside = policy.velocity(x, sigma, cond, step_index=6, num_steps=10)  # 0.6: inside
            outside = policy.velocity(x, sigma, cond, step_index=7, num_steps=10)
            mixed = policy.velocity(x, sigma, cond, step_index=torch.tensor([6, 7]), num_steps=10)
        torch.testing.assert_close(inside, expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(outside, full)
        assert torch.equal(mixed[0], inside[0]) and torch.equal(mixed[1], outside[1])
        assert not torch.allclose(uncond, ref)  # the no-image branch really differs


def test_a_condition_without_the_needed_branch_is_refused(tiny_pipelines):
    policy = kontext(tiny_pipelines)
    cond = policy.encode("make it blue", source(KONTEXT_SIZE))
    policy.guidance = Guidance(mode="dual", scale=2.5)
    x = policy.initial_latents(1)
    with pytest.raises(ValueError, match="needs the 'neg' branch"):
        policy.velocity(x, 0.5, cond, step_index=0, num_steps=4)


def test_batched_groups_match_groups_alone(tiny_pipelines):
    for policy in (kontext(tiny_pipelines), qwen(tiny_pipelines)):
        size = policy.height
        prompts = ["make it blue", "add a small red hat to the dog"]  # Qwen: different lengths
        images = [source(size, seed=4), source(size, seed=5)]
        both = policy.encode(prompts, images)
        assert isinstance(both, Condition) and len(both) == 2
        group = both.repeat(3)
        assert len(group) == 6 and len(group[2:4]) == 2 and len(group[[0, 5]]) == 2
        x = policy.initial_latents(6, torch.Generator().manual_seed(6))
        sigma = policy.sigmas(4)[1]
        with torch.no_grad():
            v = policy.velocity(x, sigma, group, step_index=1, num_steps=4)
            alone = [
                policy.velocity(
                    x[3 * g : 3 * g + 3],
                    sigma,
                    policy.encode(prompts[g], images[g]).repeat(3),
                    step_index=1,
                    num_steps=4,
                )
                for g in (0, 1)
            ]
            picked = policy.velocity(x[[0, 5]], sigma, group[[0, 5]], step_index=1, num_steps=4)
        torch.testing.assert_close(v, torch.cat(alone), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(picked, v[[0, 5]], rtol=1e-4, atol=1e-5)


def test_initial_latents_and_decode(tiny_pipelines):
    for policy in (kontext(tiny_pipelines), qwen(tiny_pipelines)):
        x = policy.initial_latents(3, torch.Generator().manual_seed(7))
        assert x.dtype == torch.float32 and x.shape[:2] == (3, policy.image_seq_len)
        assert torch.equal(x, policy.initial_latents(3, torch.Generator().manual_seed(7)))
        images = policy.decode(x)
        assert len(images) == 3
        assert all(isinstance(im, Image.Image) for im in images)
        assert {im.size for im in images} == {(policy.width, policy.height)}
    wide = kontext(tiny_pipelines, height=16, width=48)
    assert wide.decode(wide.initial_latents(1))[0].size == (48, 16)


# --- LoRA


@pytest.mark.parametrize("which", ["kontext", "qwen"])
def test_lora_reference_and_adapter_round_trip(tiny_pipelines, tmp_path, which):
    build = kontext if which == "kontext" else qwen
    policy = build(tiny_pipelines, lora_r=4)
    params = policy.trainable_parameters()
    assert params and all(p.requires_grad and p.dtype == torch.float32 for p in params)
    trainable = {n for n, p in policy.transformer.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == len(params)
    modules = {n.split(".lora_")[0].rsplit("attn.", 1)[-1] for n in trainable}
    assert {"to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "to_add_out"} <= modules
    assert policy.lora_config.r == 4 and policy.lora_config.lora_alpha == 8
    for module in (policy.pipe.vae, *policy._text_encoders()):
        assert not any(p.requires_grad for p in module.parameters())

    cond = policy.encode("make it green", source(policy.height)).repeat(2)
    x = policy.initial_latents(2, torch.Generator().manual_seed(8))

    def v():
        with torch.no_grad():
            return policy.velocity(x, 0.7, cond, step_index=0, num_steps=4)

    base = v()
    with policy.reference():
        assert torch.equal(v(), base)  # zero-initialised LoRA: the policy is the reference

    with torch.no_grad():
        for p in params:
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(9)))
    tuned = v()
    assert not torch.allclose(tuned, base)
    with policy.reference():
        assert torch.equal(v(), base)
    assert torch.equal(v(), tuned)  # adapter back on after the block
    assert all(p.requires_grad for p in params)

    out = policy.velocity(x, 0.7, cond, step_index=0, num_steps=4)  # gradients reach LoRA
    out.square().mean().backward()
    assert sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params) > 0

    folder = policy.save_adapter(tmp_path / "adapter")
    assert (folder / "pytorch_lora_weights.safetensors").is_file()
    reloaded = build(tiny_pipelines, adapter=folder)  # config from the saved metadata
    assert reloaded.lora_config.r == 4
    assert [p.shape for p in reloaded.trainable_parameters()] == [p.shape for p in params]
    with torch.no_grad():
        assert torch.equal(reloaded.velocity(x, 0.7, cond, step_index=0, num_steps=4), tuned)
    fresh = build(tiny_pipelines, lora_r=4)
    fresh.load_adapter(folder / "pytorch_lora_weights.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh.velocity(x, 0.7, cond, step_index=0, num_steps=4), tuned)


def test_saved_adapter_loads_into_the_diffusers_pipeline(tiny_pipelines, tmp_path):
    policy = kontext(tiny_pipelines, lora_r=2, lora_alpha=2)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.3)
    folder = policy.save_adapter(tmp_path / "adapter")
    image, prompt = source(KONTEXT_SIZE, seed=10), "make it red"
    ours = euler(policy, policy.encode(prompt, image), torch.Generator().manual_seed(0))
    plain = kontext(tiny_pipelines)
    plain.pipe.load_lora_weights(str(folder))
    theirs = kontext_pipeline_call(plain, image, prompt, "latent", guidance_scale=2.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    untuned = kontext_pipeline_call(
        kontext(tiny_pipelines), image, prompt, "latent", guidance_scale=2.5
    )
    assert not torch.allclose(untuned, theirs)


def test_bf16_with_gradient_checkpointing(tiny_pipelines):
    """The GPU configuration: a bf16 model with fp32 LoRA weights; the trainer's latents,
    sigmas and velocities stay fp32."""
    for build in (kontext, qwen):
        policy = build(
            tiny_pipelines,
            dtype=torch.bfloat16,
            lora_r=4,
            guidance="dual",
            gradient_checkpointing=True,
        )
        assert policy.dtype == torch.bfloat16 and policy.transformer.gradient_checkpointing
        params = policy.trainable_parameters()
        assert {p.dtype for p in params} == {torch.float32}
        cond = policy.encode("make it red", source(policy.height)).repeat(2)
        x = policy.initial_latents(2, torch.Generator().manual_seed(11))
        sigmas = policy.sigmas(4)
        v = policy.velocity(x, sigmas[1], cond, step_index=1, num_steps=4)
        assert v.dtype == torch.float32 and v.shape == x.shape and bool(v.isfinite().all())
        v.square().mean().backward()
        assert any(p.grad is not None for p in params)
        assert len(policy.decode(x.detach())) == 2
