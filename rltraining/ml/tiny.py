"""Tiny random editing pipelines saved like real checkpoints, for tests and the CPU demo.

No machine here reaches a model hub, so tests *build* the RL policies' architectures at toy size
(``docs/tiny-models.md``), save them with ``save_pretrained`` and load them back through the very
code path a real checkpoint takes (:func:`rltraining.ml.policies.load_policy`). Two pipelines:

* :func:`build_tiny_flux_kontext`: a ``FluxKontextPipeline`` folder (one double and one single
  FLUX block of width 32, CLIP and T5 text encoders of width 32, a one-level ``AutoencoderKL``
  with one latent channel, so an image of ``H x W`` pixels is ``H/2 * W/2`` packed tokens);
* :func:`build_tiny_qwen_image_edit`: a ``QwenImageEditPipeline`` folder (two Qwen-Image blocks of
  width 48, a 4-channel ``AutoencoderKLQwenImage`` with 4x spatial compression, and the tiny
  Qwen2.5-VL of ``rewardmodel.ml.tiny`` as its text encoder). Its ``processor/`` folder is written
  here (tokenizer + image processor + processor config, as released checkpoints ship it) because
  the stock ``Qwen2VLProcessor`` cannot be built without torchvision; the policy loader rebuilds
  it and passes it to ``from_pretrained``.

Both use the schedulers of the released checkpoints (dynamic, resolution-dependent shifting), so
the tiny sigma schedules go through the same code as the real ones. Building is deterministic for
a given ``seed`` and takes well under a second; the folders are under 1 MB. Use images of 32 px
(Kontext) or 64 px (Qwen) in tests: a fixed ``height``/``width``, or a small ``max_area``
(Kontext) / ``condition_area`` (Qwen, which needs a small ``condition_area`` anyway) when the
edits' size follows the source.

torch, transformers and diffusers are imported inside the functions: importing this module costs
nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

# The scheduler configs of the released checkpoints (scheduler/scheduler_config.json).
FLUX_KONTEXT_SCHEDULER = dict(
    base_image_seq_len=256,
    base_shift=0.5,
    max_image_seq_len=4096,
    max_shift=1.15,
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
)
QWEN_IMAGE_SCHEDULER = dict(
    base_image_seq_len=256,
    base_shift=0.5,
    invert_sigmas=False,
    max_image_seq_len=8192,
    max_shift=0.9,
    num_train_timesteps=1000,
    shift=1.0,
    shift_terminal=0.02,
    stochastic_sampling=False,
    time_shift_type="exponential",
    use_beta_sigmas=False,
    use_dynamic_shifting=True,
    use_exponential_sigmas=False,
    use_karras_sigmas=False,
)


def _clip_tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(ByteLevel.alphabet()):
        for token in (char, char + "</w>"):
            vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _t5_tokenizer():
    from transformers import T5Tokenizer

    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -5.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def build_tiny_flux_kontext(path: str | Path, *, seed: int = 0) -> Path:
    """Build a random ``FluxKontextPipeline`` sized by ``docs/tiny-models.md`` and save it in
    ``path`` (created if needed); ``FluxKontextPipeline.from_pretrained(path)`` loads it.
    Deterministic for a given ``seed``. Returns ``path``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _clip_tokenizer()
    tokenizer_2 = _t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 4, 8],
            guidance_embeds=True,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                vocab_size=len(tokenizer),
                projection_dim=32,
                max_position_embeddings=77,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
        text_encoder_2 = T5EncoderModel(
            T5Config(
                vocab_size=max(81, len(tokenizer_2)),
                d_model=32,
                d_kv=8,
                d_ff=37,
                num_layers=2,
                num_heads=4,
            )
        )
        vae = AutoencoderKL(
            sample_size=32,
            block_out_channels=(4,),
            layers_per_block=1,
            latent_channels=1,
            norm_num_groups=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        )
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_KONTEXT_SCHEDULER),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tokenizer_2,
        transformer=transformer.eval(),
        image_encoder=None,
        feature_extractor=None,
    )
    pipe.save_pretrained(path)
    return path


def build_tiny_qwen_image_edit(path: str | Path, *, seed: int = 0) -> Path:
    """Build a random ``QwenImageEditPipeline`` sized by ``docs/tiny-models.md`` and save it in
    ``path`` (created if needed), with its processor in ``path/processor`` and
    ``model_index.json`` naming it as released checkpoints do. Load it with
    :func:`rltraining.ml.policies.load_qwen_image_edit_pipeline` (or
    ``QwenImageEditPipeline.from_pretrained(path, processor=...)``). Deterministic for a given
    ``seed``. Returns ``path``."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )

    from rewardmodel.ml.tiny import (
        build_tiny_image_processor,
        build_tiny_model,
        build_tiny_tokenizer,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(seed=seed)
    text_encoder = build_tiny_model(tokenizer, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=16,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        )
        vae = AutoencoderKLQwenImage(
            base_dim=24,
            z_dim=4,
            dim_mult=[1, 2, 4],
            num_res_blocks=1,
            temperal_downsample=[False, True],
            latents_mean=[0.0] * 4,
            latents_std=[1.0] * 4,
        )
    pipe = QwenImageEditPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        processor=None,
        transformer=transformer.eval(),
    )
    pipe.save_pretrained(path)
    # What a released checkpoint's processor/ folder holds (the stock processor cannot be
    # saved without its torchvision-only video processor): tokenizer and image processor files,
    # the latter naming the processor class.
    tokenizer.save_pretrained(path / "processor")
    build_tiny_image_processor().save_pretrained(path / "processor")
    config_path = path / "processor" / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    config["processor_class"] = "Qwen2VLProcessor"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    index_path = path / "model_index.json"
    index = json.loads(index_path.read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return path
