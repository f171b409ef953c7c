"""Flow-matching image-editing models behind one small interface, for the Flow-GRPO trainer.

The trainer steps its own SDE (``docs/method.md`` section 4); all it needs from a model is the
velocity at a noisy latent, plus what surrounds it: the prompt and source image encoded once per
group, the sigma schedule the model was made for, initial noise, decoding, LoRA parameters and a
LoRA-free reference for the KL term. :class:`Policy` is that interface; :class:`FluxKontextPolicy`
and :class:`QwenImageEditPolicy` implement it from the diffusers pipelines' own components and
helpers (``encode_prompt``, ``prepare_latents`` / ``_encode_vae_image`` / ``_pack_latents``,
``_unpack_latents``, ``calculate_shift``, ``retrieve_timesteps``), calling the transformer
directly. An ODE loop over :meth:`Policy.velocity` and :meth:`Policy.sigmas` reproduces the
pipelines' own output (``tests/test_rl_policies.py`` checks it on tiny models).

Conventions (diffusers): ``x_sigma = (1 - sigma) * x_data + sigma * noise``; sigma goes from about
1 down to exactly 0; :meth:`Policy.velocity` returns ``v = noise - x_data``, so the Euler ODE step
is ``x' = x + (sigma' - sigma) * v``. Latents are *packed*: ``(batch, tokens, channels)`` with
``tokens = (height / vae_scale / 2) * (width / vae_scale / 2)``; :meth:`Policy.decode` unpacks.

Output size: by default each edit has the size the pipeline gives that source image (its aspect
ratio at about ``1024²`` pixels, see :meth:`Policy.output_size`), so a condition carries its
size (``cond.size``, ``(height, width)``) and :meth:`Policy.sigmas`, :meth:`Policy.initial_latents`
and :meth:`Policy.decode` take it as ``size=``. ``height`` and ``width`` fix one size instead.

Guidance (:class:`Guidance`, the policy's ``guidance`` attribute; use the same in sampling and
training):

* ``"native"`` (default): what the diffusers pipeline does. FLUX.1 Kontext is guidance-distilled:
  ``scale`` (default 2.5, as BFL recommend for Kontext-dev; the pipeline's own default is 3.5) is
  fed to the transformer's guidance embedding, one forward per call. True CFG against
  ``negative_prompt`` (default ``" "``) runs only when ``true_cfg_scale > 1``; both defaults are
  1.0 (off), because both pipelines apply true CFG only when they are given a negative prompt,
  and a plain ``pipe(image=..., prompt=...)`` gives none (Qwen-Image-Edit's ``true_cfg_scale=4.0``
  argument default is then unused: ``do_true_cfg = true_cfg_scale > 1 and has_neg_prompt``).
  Qwen-Image-Edit's true CFG (e.g. ``true_cfg_scale`` 4 with ``" "``, the EditScore authors'
  setting: examples/OmniGen2-RL/evaluation/GEdit-Bench/inference_qwen_image.py lines 159-160)
  rescales the combined prediction to the conditional prediction's per-token norm, as the
  pipeline does: two forwards.
* ``"dual"``: the EditScore paper's (OmniGen2's) text and image guidance,
  ``v = v_uncond + image_scale * (v_ref - v_uncond) + text_scale * (v_full - v_ref)``, where
  ``v_full`` has instruction and source image, ``v_ref`` the negative prompt and the source image,
  ``v_uncond`` the negative prompt and no source image (no image tokens in the sequence; for Qwen
  the negative prompt is encoded with Qwen-Image's text-only template). Defaults: text 4, image 2
  (paper settings); no norm rescale. When ``image_scale == 1`` ``v_uncond`` cancels out and is
  not computed (OmniGen2's code special-cases that setting differently).
* ``"none"``: the conditional prediction only (one forward; Kontext still gets ``scale``).

True CFG (native or dual) is applied on step ``i`` of ``n`` when ``i / n <= cfg_fraction``
(OmniGen2's rule; default 1.0 for native, 0.6 for dual, as in the paper: the first 60% of steps);
other steps use the conditional prediction alone.

LoRA: ``lora_r`` adds a peft LoRA adapter (``lora_alpha`` defaults to ``2 * r``, paper r32/a64)
on the transformer's attention projections (:data:`DEFAULT_LORA_TARGETS`), zero-initialised (B =
0) so the policy starts equal to the base model; everything else is frozen.
:meth:`Policy.reference` disables the adapter: that is the KL reference. :meth:`Policy.save_adapter`
writes diffusers' LoRA format (``pytorch_lora_weights.safetensors``, keys ``transformer.*``, the
peft config in the metadata), so ``pipeline.load_lora_weights(folder)`` uses a trained adapter.

Adding a model that is not in diffusers (OmniGen2 ships its own ``OmniGen2Pipeline`` and
``OmniGen2Transformer2DModel`` in the ``omnigen2`` package): subclass :class:`Policy`, give it a
``load_pipeline`` that loads that pipeline, and implement ``_encode`` (the instruction through its
Qwen2.5-VL with its chat template, the source image through its VAE as the reference latents),
``_forward(x, timestep, cond, branch)`` (its transformer takes the reference latents as a
separate ``ref_image_hidden_states`` argument, ``None`` for the ``"uncond"`` branch, and runs in
the reversed clock ``t = 1 - sigma`` predicting ``x_data - noise``: convert both at this
boundary), ``sigmas`` (its scheduler shifts by the number of latent tokens), ``initial_latents``
and ``decode``; its native guidance is the dual one above, so map ``"native"`` to it. Decorate
the class with ``@register_policy("OmniGen2Pipeline")`` and :func:`load_policy` picks it from the
folder's ``model_index.json``.

Nothing here imports Django; torch, transformers, diffusers and peft are imported inside the
functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

# Attention projections of the FLUX and Qwen-Image blocks (image stream, text stream, outputs);
# FLUX single-stream blocks have only to_q/to_k/to_v.
DEFAULT_LORA_TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
)
ADAPTER_NAME = "default"
ADAPTER_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY
GUIDANCE_MODES = ("native", "dual", "none")
BRANCHES = ("cond", "neg", "uncond")


# --------------------------------------------------------------------------- guidance


@dataclasses.dataclass
class Guidance:
    """How :meth:`Policy.velocity` guides the model (see the module docstring).

    ``None`` fields take the policy's defaults (:meth:`Policy.default_guidance`).
    """

    mode: str = "native"
    scale: float | None = None  # distilled guidance embedding (Kontext); unused by Qwen
    true_cfg_scale: float | None = None  # native true CFG (default 1.0 = off, as the pipelines)
    negative_prompt: str = " "
    text_scale: float = 4.0  # dual
    image_scale: float = 2.0  # dual
    cfg_fraction: float | None = None  # native 1.0, dual 0.6

    def __post_init__(self):
        if self.mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance mode {self.mode!r}: expected one of {GUIDANCE_MODES}")

    @property
    def needs_negative(self) -> bool:
        return self.mode == "dual" or (self.mode == "native" and (self.true_cfg_scale or 1) > 1)

    @property
    def needs_uncond(self) -> bool:
        return self.mode == "dual" and self.image_scale != 1


def _as_guidance(value: Guidance | str | dict | None, defaults: dict[str, Any]) -> Guidance:
    if value is None:
        value = Guidance()
    elif isinstance(value, str):
        value = Guidance(mode=value)
    elif isinstance(value, dict):
        value = Guidance(**value)
    else:
        value = dataclasses.replace(value)
    if value.cfg_fraction is None:
        value.cfg_fraction = 0.6 if value.mode == "dual" else 1.0
    for key, default in defaults.items():
        if getattr(value, key) is None:
            setattr(value, key, default)
    return value


# --------------------------------------------------------------------------- condition


class Condition:
    """The encoded instructions and source images of a batch, made once per group.

    Opaque to the trainer: it passes it to :meth:`Policy.velocity` with latents of the same batch
    size. ``tensors`` are batch-first (``None`` where a branch was not encoded); ``meta`` is shared
    by all samples (position ids, image shapes, the branches encoded). ``len(cond)`` is the batch
    size; ``cond.repeat(n)`` repeats each sample ``n`` times in place (``[a, b] -> [a, a, b, b]``,
    what a group of ``n`` rollouts needs); ``cond[idx]`` selects samples (int, slice, list or index
    tensor), e.g. for micro-batches; ``cond.to(device)`` moves it.
    """

    def __init__(self, tensors: dict[str, Any], meta: dict[str, Any]):
        self.tensors = tensors
        self.meta = meta
        sizes = {t.shape[0] for t in tensors.values() if t is not None}
        if len(sizes) != 1:
            raise ValueError(f"condition tensors disagree on the batch size: {sorted(sizes)}")
        self.batch_size = sizes.pop()

    def __len__(self) -> int:
        return self.batch_size

    def __getattr__(self, name: str):
        if name in ("tensors", "meta"):
            raise AttributeError(name)
        if name in self.tensors:
            return self.tensors[name]
        if name in self.meta:
            return self.meta[name]
        raise AttributeError(name)

    def _map(self, fn) -> Condition:
        return Condition(
            {k: None if t is None else fn(t) for k, t in self.tensors.items()}, dict(self.meta)
        )

    def repeat(self, n: int) -> Condition:
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def __getitem__(self, index) -> Condition:
        import torch

        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        if isinstance(index, slice):
            return self._map(lambda t: t[index])
        index = torch.as_tensor(index, dtype=torch.long)
        return self._map(lambda t: t.index_select(0, index.to(t.device)))

    def to(self, device) -> Condition:
        moved = self._map(lambda t: t.to(device))
        moved.meta = {
            k: v.to(device) if hasattr(v, "to") and hasattr(v, "device") else v
            for k, v in moved.meta.items()
        }
        return moved

    def __repr__(self) -> str:
        shapes = {k: None if t is None else tuple(t.shape) for k, t in self.tensors.items()}
        return f"Condition(batch_size={self.batch_size}, tensors={shapes})"


# --------------------------------------------------------------------------- registry

POLICIES: dict[str, type[Policy]] = {}
# Policies defined outside the engine (rltraining.ml.plugins), imported by load_policy on first
# use: pipeline class name -> "module:Class".
LAZY_POLICIES: dict[str, str] = {}


def register_lazy_policy(pipeline_class_name: str, target: str) -> None:
    """Let :func:`load_policy` import ``target`` ("module:Class") for folders whose
    ``model_index.json`` has this ``_class_name``; the import waits for the first such folder."""
    module, sep, attr = target.partition(":")
    if not (module and sep and attr):
        raise ValueError(f"a policy target is 'module:Class', got {target!r}")
    LAZY_POLICIES[pipeline_class_name] = target


def register_policy(pipeline_class_name: str):
    """Class decorator: :func:`load_policy` picks the class for folders whose
    ``model_index.json`` has this ``_class_name``."""

    def decorate(cls):
        POLICIES[pipeline_class_name] = cls
        return cls

    return decorate


def pipeline_class_name(path: str | Path) -> str:
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{index} not found: not a diffusers pipeline folder")
    return json.loads(index.read_text())["_class_name"]


def load_policy(path: str | Path, **kwargs) -> Policy:
    """Load the policy for a pipeline folder, its class picked from ``model_index.json``'s
    ``_class_name``; ``kwargs`` go to that class's ``from_pretrained``."""
    name = pipeline_class_name(path)
    if name not in POLICIES and name not in LAZY_POLICIES:
        from rltraining.ml.plugins import load_plugins

        load_plugins()
    if name not in POLICIES and name in LAZY_POLICIES:
        module, _, attr = LAZY_POLICIES[name].partition(":")
        POLICIES[name] = getattr(importlib.import_module(module), attr)
    if name not in POLICIES:
        raise ValueError(f"no policy for pipeline {name!r} (known: {sorted(POLICIES)})")
    return POLICIES[name].from_pretrained(path, **kwargs)


# --------------------------------------------------------------------------- base class


def _rgb(image):
    return image if image.mode == "RGB" else image.convert("RGB")


class Policy:
    """A flow-matching editing model as the RL trainer sees it (see the module docstring).

    Attributes: ``name``; ``pipe`` (the diffusers pipeline whose components it uses),
    ``transformer``, ``device``, ``dtype`` (of the transformer), ``height`` and ``width`` (of the
    generated images, pixels; both None when each edit's size follows its source, the
    default), ``guidance`` (:class:`Guidance`, may be replaced between groups; :meth:`encode`
    encodes the negative branches the current one needs), ``image_seq_len`` (packed tokens of
    a generated image of the fixed size), ``lora_config`` (peft ``LoraConfig`` or ``None``).
    """

    name = "policy"
    pipeline_class = ""  # the diffusers pipeline class name (model_index.json _class_name)
    #: Guidance fields a ``None`` resolves to, per model (see :class:`Guidance`).
    default_guidance: dict[str, Any] = {}
    #: Whether native true CFG rescales to the conditional prediction's norm.
    cfg_renorm = False

    def __init__(
        self,
        pipe,
        *,
        height: int | None = None,
        width: int | None = None,
        guidance: Guidance | str | dict | None = None,
        lora_r: int | None = None,
        lora_alpha: float | None = None,
        lora_targets: Sequence[str] | None = None,
        adapter: str | Path | None = None,
        gradient_checkpointing: bool = False,
    ):
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.scheduler = pipe.scheduler
        if (height is None) != (width is None):
            raise ValueError("give both height and width, or neither (the size of each source)")
        self.height = self.width = None
        if height is not None:
            self.height, self.width = self._multiple(height), self._multiple(width)
            if not self.height or not self.width:
                raise ValueError(f"height and width must be at least {self._multiple_of} pixels")
        self.guidance = guidance
        self.lora_config = None
        for module in (pipe.transformer, pipe.vae, *self._text_encoders()):
            module.requires_grad_(False)
            module.eval()
        if lora_r is not None:
            self.add_lora(lora_r, lora_alpha, lora_targets)
        if adapter is not None:
            self.load_adapter(adapter)
        if gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()

    # --- loading

    @classmethod
    def load_pipeline(cls, path: str | Path, *, dtype=None):
        raise NotImplementedError

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype=None,
        lora_r: int | None = None,
        lora_alpha: float | None = None,
        lora_targets: Sequence[str] | None = None,
        adapter: str | Path | None = None,
        height: int | None = None,
        width: int | None = None,
        guidance: Guidance | str | dict | None = None,
        gradient_checkpointing: bool = False,
        **options,
    ) -> Policy:
        """Load the pipeline folder (or hub id, online) at ``path`` in ``dtype`` (``None``: as
        saved) onto ``device``. ``lora_r`` adds a fresh LoRA adapter; ``adapter`` loads a saved
        one (:meth:`save_adapter`). ``height``/``width``: one size for all generated images
        (rounded down to the model's multiple); ``None`` (default): each edit gets the size the
        pipeline gives its source (:meth:`output_size`). ``options``: model-specific (see the
        subclasses)."""
        pipe = cls.load_pipeline(path, dtype=dtype)
        pipe.to(device)
        return cls(
            pipe,
            height=height,
            width=width,
            guidance=guidance,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_targets=lora_targets,
            adapter=adapter,
            gradient_checkpointing=gradient_checkpointing,
            **options,
        )

    def _text_encoders(self) -> list:
        return []

    @property
    def guidance(self) -> Guidance:
        return self._guidance

    @guidance.setter
    def guidance(self, value: Guidance | str | dict | None):
        """A :class:`Guidance`, a mode name or a dict of its fields; ``None`` fields take this
        model's defaults."""
        self._guidance = _as_guidance(value, self.default_guidance)

    @property
    def device(self):
        return self.transformer.device

    @property
    def dtype(self):
        return self.transformer.dtype

    # --- the output size

    @property
    def _multiple_of(self) -> int:
        """What the generated sides must be a multiple of: the VAE's downscaling times the 2x2
        packing of latents (both pipelines' ``multiple_of = self.vae_scale_factor * 2``)."""
        return self.pipe.vae_scale_factor * 2

    def _multiple(self, side) -> int:
        return int(side) // self._multiple_of * self._multiple_of

    def output_size(self, source: Image.Image) -> tuple[int, int]:
        """``(height, width)`` of the edit of ``source``: the fixed ``height x width`` when the
        policy has one, else the size the diffusers pipeline gives this source
        (:meth:`_source_size`)."""
        if self.height is not None:
            return self.height, self.width
        return self._source_size(source)

    def _source_size(self, source: Image.Image) -> tuple[int, int]:
        raise NotImplementedError

    def _size(self, size) -> tuple[int, int]:
        if size is not None:
            return int(size[0]), int(size[1])
        if self.height is None:
            raise ValueError(
                "this policy sizes each edit from its source image: pass size=cond.size "
                "(or load it with a fixed height and width)"
            )
        return self.height, self.width

    def seq_len(self, size: tuple[int, int] | None = None) -> int:
        """Packed tokens of a generated image of ``size`` (default: the fixed size)."""
        height, width = self._size(size)
        scale = self._multiple_of
        return (height // scale) * (width // scale)

    @property
    def image_seq_len(self) -> int:
        return self.seq_len()

    # --- the schedule

    def _pipeline_module(self):
        raise NotImplementedError

    def sigmas(self, num_steps: int, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The ``num_steps + 1`` sigmas (float32, on the policy's device) the pipeline would step
        through for an image of ``size`` (``cond.size``; default the fixed size):
        ``linspace(1, 1/num_steps, num_steps)`` shifted by the scheduler (dynamic shifting with
        ``mu = calculate_shift(image_seq_len, ...)`` as the pipeline computes it, or the static
        ``shift``; then ``shift_terminal``), with the terminal 0 appended. Step ``i`` goes from
        ``sigmas[i]`` to ``sigmas[i + 1]``."""
        import numpy as np
        import torch

        module = self._pipeline_module()
        config = self.scheduler.config
        mu = module.calculate_shift(
            self.seq_len(size),
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        module.retrieve_timesteps(
            self.scheduler,
            num_steps,
            self.device,
            sigmas=np.linspace(1.0, 1 / num_steps, num_steps),
            mu=mu,
        )
        return self.scheduler.sigmas.to(device=self.device, dtype=torch.float32).clone()

    # --- encoding, noise, decoding

    def encode(
        self, instructions: str | Sequence[str], sources: Image.Image | Sequence[Image.Image]
    ) -> Condition:
        """Encode instructions and their source images (one each; or one source for all) once,
        without gradients: prompt embeddings for the branches the current :attr:`guidance`
        needs, and the sources' VAE latents, packed. All sources are resized to the size the
        pipeline picks for the first one, and all edits get the first one's output size
        (``cond.size``). Expand to a group with ``cond.repeat(n)``."""
        import torch

        instructions = [instructions] if isinstance(instructions, str) else list(instructions)
        sources = [sources] if not isinstance(sources, list | tuple) else list(sources)
        if len(sources) == 1 and len(instructions) > 1:
            sources = sources * len(instructions)
        if len(sources) != len(instructions) or not instructions:
            raise ValueError(
                f"{len(instructions)} instructions for {len(sources)} source images: give one each"
            )
        with torch.no_grad():
            return self._encode(instructions, [_rgb(s) for s in sources])

    def _encode(self, instructions: list[str], sources: list) -> Condition:
        raise NotImplementedError

    def initial_latents(self, n: int, generator=None, size=None) -> torch.Tensor:
        """``n`` packed noise latents of an image of ``size`` (``cond.size``; default the fixed
        size), float32, drawn as the pipeline draws them (the same ``generator`` gives the
        pipeline's own initial latents)."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor, size=None) -> list[Image.Image]:
        """Packed latents (at sigma 0) of images of ``size`` (``cond.size``; default the fixed
        size) to RGB images, without gradients."""
        raise NotImplementedError

    # --- the velocity

    def _forward(self, x, timestep, cond: Condition, branch: str) -> torch.Tensor:
        """One transformer call for ``branch`` ("cond": instruction + source image; "neg":
        negative prompt + source image; "uncond": negative prompt, no source image), sliced to the
        noisy tokens."""
        raise NotImplementedError

    def velocity(
        self,
        latents: torch.Tensor,
        sigma,
        cond: Condition,
        *,
        step_index,
        num_steps: int,
    ) -> torch.Tensor:
        """The guided model output ``v = noise - x_data`` (float32, shape of ``latents``) at
        packed ``latents`` and noise level ``sigma`` (a float or a ``(B,)`` tensor: a value of
        :meth:`sigmas`; the transformer gets ``sigma * 1000 / 1000`` as the pipelines feed it).
        ``step_index`` (int, or a ``(B,)`` tensor when samples are at different steps) and
        ``num_steps`` decide whether true CFG applies (``step_index / num_steps <=
        guidance.cfg_fraction``). Gradients flow to the LoRA parameters unless the caller
        disables them; batch = ``len(cond)``."""
        import torch

        batch = latents.shape[0]
        if len(cond) != batch:
            raise ValueError(f"{batch} latents for a condition of batch size {len(cond)}")
        x = latents.to(device=self.device, dtype=self.dtype)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=self.device)
        sigma = sigma.expand(batch) if sigma.ndim == 0 else sigma
        timestep = (sigma * 1000).to(self.dtype) / 1000
        full = self._forward(x, timestep, cond, "cond").float()
        g = self.guidance
        if g.mode == "none" or (g.mode == "native" and g.true_cfg_scale <= 1):
            return full
        if isinstance(step_index, int):
            in_window = torch.full((batch,), step_index / num_steps <= g.cfg_fraction)
        else:
            step = torch.as_tensor(step_index, dtype=torch.float64).expand(batch)
            in_window = step / num_steps <= g.cfg_fraction
        in_window = in_window.to(self.device)
        if not bool(in_window.any()):
            return full
        ref = self._forward(x, timestep, cond, "neg").float()
        if g.mode == "native":
            guided = ref + g.true_cfg_scale * (full - ref)
            if self.cfg_renorm:
                cond_norm = torch.norm(full, dim=-1, keepdim=True)
                guided = guided * (cond_norm / torch.norm(guided, dim=-1, keepdim=True))
        elif g.image_scale != 1:
            uncond = self._forward(x, timestep, cond, "uncond").float()
            guided = uncond + g.image_scale * (ref - uncond) + g.text_scale * (full - ref)
        else:
            guided = ref + g.text_scale * (full - ref)
        if bool(in_window.all()):
            return guided
        return torch.where(in_window[:, None, None], guided, full)

    def sample(
        self, cond: Condition, num_steps: int, *, generator=None, latents=None
    ) -> torch.Tensor:
        """Plain Euler ODE sampling without gradients (evaluation, demos): from
        ``latents`` (default :meth:`initial_latents` with ``generator``) to packed latents at
        sigma 0, what the pipeline makes; :meth:`decode` them."""
        import torch

        sized = {"size": cond.meta["size"]} if cond.meta.get("size") else {}
        x = self.initial_latents(len(cond), generator, **sized) if latents is None else latents
        x = x.float()
        sigmas = self.sigmas(num_steps, **sized)
        with torch.no_grad():
            for i in range(num_steps):
                v = self.velocity(x, sigmas[i], cond, step_index=i, num_steps=num_steps)
                x = x + (sigmas[i + 1] - sigmas[i]) * v
        return x

    def _needs(self, cond: Condition, branch: str):
        if branch not in cond.meta["branches"]:
            raise ValueError(
                f"guidance {self.guidance.mode!r} needs the {branch!r} branch, which this "
                f"condition lacks: encode after setting the guidance"
            )

    def _branches(self) -> tuple[str, ...]:
        g = self.guidance
        return (
            ("cond",)
            + (("neg",) if g.needs_negative else ())
            + (("uncond",) if g.needs_uncond else ())
        )

    # --- LoRA

    def add_lora(
        self, r: int, alpha: float | None = None, targets: Sequence[str] | None = None, **extra
    ):
        """Add a fresh zero-initialised LoRA adapter (the policy then equals the base model)."""
        from peft import LoraConfig

        if self.lora_config is not None:
            raise ValueError("this policy already has a LoRA adapter")
        config = LoraConfig(
            r=int(r),
            lora_alpha=float(alpha) if alpha is not None else 2.0 * int(r),
            target_modules=list(targets or DEFAULT_LORA_TARGETS),
            lora_dropout=0.0,
            init_lora_weights=True,
            **extra,
        )
        self._add_adapter(config)

    def _add_adapter(self, config):
        import torch

        self.transformer.add_adapter(config, adapter_name=ADAPTER_NAME)
        self.lora_config = self.transformer.peft_config[ADAPTER_NAME]
        for param in self.trainable_parameters():
            param.data = param.data.to(torch.float32)  # train LoRA in fp32 on a bf16 model

    def _lora_named_parameters(self) -> Iterator[tuple[str, Any]]:
        for name, param in self.transformer.named_parameters():
            if "lora_" in name:
                yield name, param

    def trainable_parameters(self) -> list:
        """The LoRA parameters (``[]`` without LoRA); they require grad, nothing else does."""
        if self.lora_config is None:
            return []
        return [p for _, p in self._lora_named_parameters()]

    @contextlib.contextmanager
    def reference(self):
        """Within it the policy is the base model (LoRA disabled): the KL reference. Without
        LoRA the policy is its own reference."""
        if self.lora_config is None:
            yield self
            return
        self.transformer.disable_adapters()
        try:
            yield self
        finally:
            self.transformer.enable_adapters()
            for param in self.trainable_parameters():
                param.requires_grad_(True)

    def adapter_state_dict(self) -> dict:
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.transformer, adapter_name=ADAPTER_NAME)

    def save_adapter(self, path: str | Path) -> Path:
        """Write the LoRA adapter to the folder ``path`` in diffusers' format
        (``pytorch_lora_weights.safetensors``), which ``load_adapter`` and the pipeline's
        ``load_lora_weights`` read. Returns ``path``."""
        if self.lora_config is None:
            raise ValueError("this policy has no LoRA adapter to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.adapter_state_dict().items()}
        metadata = self.lora_config.to_dict()
        type(self.pipe).save_lora_weights(
            save_directory=str(path),
            transformer_lora_layers=state,
            transformer_lora_adapter_metadata=metadata,
            safe_serialization=True,
        )
        return path

    def load_adapter(self, path: str | Path):
        """Load an adapter written by :meth:`save_adapter` (a folder or its ``.safetensors``),
        adding the adapter from the saved config if the policy has none yet."""
        from peft import LoraConfig
        from peft.utils import set_peft_model_state_dict
        from safetensors import safe_open

        path = Path(path)
        file = path / ADAPTER_WEIGHTS if path.is_dir() else path
        prefix = "transformer."
        with safe_open(str(file), framework="pt", device="cpu") as f:
            metadata = json.loads((f.metadata() or {}).get(ADAPTER_METADATA_KEY, "{}"))
            state = {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        if not state:
            raise ValueError(f"{file} holds no transformer LoRA weights")
        if self.lora_config is None:
            config = {k[len(prefix) :]: v for k, v in metadata.items() if k.startswith(prefix)}
            if not config:
                raise ValueError(f"{file} has no LoRA config in its metadata: add_lora first")
            config.pop("base_model_name_or_path", None)
            self._add_adapter(LoraConfig(**config))
        result = set_peft_model_state_dict(self.transformer, state, adapter_name=ADAPTER_NAME)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ValueError(f"adapter keys match no LoRA layer: {unexpected[:5]}")


# --------------------------------------------------------------------------- FLUX.1 Kontext


@register_policy("FluxKontextPipeline")
class FluxKontextPolicy(Policy):
    """FLUX.1 Kontext (``FluxKontextPipeline``): guidance-distilled, so native guidance is one
    forward with the guidance embedding at ``guidance.scale`` (2.5).

    Options: ``auto_resize`` (default True): resize the source to the Kontext resolution closest
    to its aspect ratio, like the pipeline's default; False keeps the source's size (rounded
    down to a multiple of 16 px), like ``_auto_resize=False``. ``max_sequence_length`` (512) for
    T5. ``max_area`` (default ``1024**2``, the pipeline's): the pixel area of the edits when
    their size follows the source (:meth:`output_size`). A fixed ``height x width`` is what the
    pipeline makes for ``max_area=height*width`` and that aspect ratio.
    """

    name = "flux-kontext"
    pipeline_class = "FluxKontextPipeline"
    default_guidance = {"scale": 2.5, "true_cfg_scale": 1.0}
    cfg_renorm = False

    def __init__(self, pipe, *, auto_resize: bool = True, max_sequence_length: int = 512,
                 max_area: int = 1024**2, **kw):  # fmt: skip
        self.auto_resize = auto_resize
        self.max_sequence_length = max_sequence_length
        self.max_area = int(max_area)
        super().__init__(pipe, **kw)

    @classmethod
    def load_pipeline(cls, path, *, dtype=None):
        from diffusers import FluxKontextPipeline

        return FluxKontextPipeline.from_pretrained(str(path), dtype=dtype)

    def _pipeline_module(self):
        from diffusers.pipelines.flux import pipeline_flux_kontext

        return pipeline_flux_kontext

    def _text_encoders(self):
        return [m for m in (self.pipe.text_encoder, self.pipe.text_encoder_2) if m is not None]

    @property
    def _num_channels_latents(self) -> int:
        return self.transformer.config.in_channels // 4

    def _source_size(self, source) -> tuple[int, int]:
        """The size ``FluxKontextPipeline.__call__`` gives the edit when called with the source's
        ``height`` and ``width`` (diffusers 0.42, pipeline_flux_kontext.py lines 841-851, inline
        in ``__call__``, hence re-typed here): the source's aspect ratio at ``max_area`` pixels,
        each side rounded down to a multiple of ``vae_scale_factor * 2``. Without a height and
        width the pipeline would make a 1024² square whatever the source; the EditScore authors'
        Kontext inference passes the source's size (examples/OmniGen2-RL/evaluation/GEdit-Bench/
        inference_flux_kontext_dev.py lines 154-158), which keeps its aspect ratio.
        (``PREFERRED_KONTEXT_RESOLUTIONS`` / ``_auto_resize`` size the *condition* image only:
        :meth:`_condition_size`.)"""
        aspect = source.width / source.height
        width = round((self.max_area * aspect) ** 0.5)
        height = round((self.max_area / aspect) ** 0.5)
        return self._multiple(height), self._multiple(width)

    def _condition_size(self, image) -> tuple[int, int]:
        pipe = self.pipe
        multiple = pipe.vae_scale_factor * 2
        height, width = pipe.image_processor.get_default_height_width(image)
        if self.auto_resize:
            resolutions = self._pipeline_module().PREFERRED_KONTEXT_RESOLUTIONS
            aspect = width / height
            _, width, height = min((abs(aspect - w / h), w, h) for w, h in resolutions)
        return height // multiple * multiple, width // multiple * multiple

    def _encode(self, instructions, sources):
        import torch

        pipe = self.pipe
        batch = len(instructions)
        height, width = self._condition_size(sources[0])
        out_height, out_width = self.output_size(sources[0])
        images = [pipe.image_processor.resize(s, height, width) for s in sources]
        image = pipe.image_processor.preprocess(images, height, width)
        tensors, branches = {}, self._branches()
        for key, prompts in (
            ("", instructions),
            ("negative_", [self.guidance.negative_prompt] * batch if len(branches) > 1 else None),
        ):
            if prompts is None:
                tensors[f"{key}prompt_embeds"] = tensors[f"{key}pooled_prompt_embeds"] = None
                continue
            embeds, pooled, text_ids = pipe.encode_prompt(
                prompt=prompts,
                prompt_2=None,
                device=self.device,
                num_images_per_prompt=1,
                max_sequence_length=self.max_sequence_length,
            )
            tensors[f"{key}prompt_embeds"], tensors[f"{key}pooled_prompt_embeds"] = embeds, pooled
        _, image_latents, latent_ids, image_ids = pipe.prepare_latents(
            image,
            batch,
            self._num_channels_latents,
            out_height,
            out_width,
            tensors["prompt_embeds"].dtype,
            self.device,
            None,
            torch.empty(0),  # no noise drawn here
        )
        tensors["image_latents"] = image_latents
        meta = {
            "branches": branches,
            "text_ids": text_ids,
            "latent_ids": latent_ids,
            "latent_image_ids": torch.cat([latent_ids, image_ids], dim=0),
            "condition_size": (height, width),
            "size": (out_height, out_width),
        }
        return Condition(tensors, meta)

    def initial_latents(self, n, generator=None, size=None):
        import torch

        height, width = self._size(size)
        latents, _, _, _ = self.pipe.prepare_latents(
            None,
            n,
            self._num_channels_latents,
            height,
            width,
            torch.float32,
            self.device,
            generator,
        )
        return latents

    def _forward(self, x, timestep, cond, branch):
        import torch

        self._needs(cond, branch)
        prefix = "" if branch == "cond" else "negative_"
        if branch == "uncond":
            hidden, img_ids = x, cond.latent_ids
        else:
            hidden = torch.cat([x, cond.image_latents.to(x.dtype)], dim=1)
            img_ids = cond.latent_image_ids
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full(
                (x.shape[0],), self.guidance.scale, device=x.device, dtype=torch.float32
            )
        out = self.transformer(
            hidden_states=hidden,
            timestep=timestep,
            guidance=guidance,
            pooled_projections=cond.tensors[f"{prefix}pooled_prompt_embeds"],
            encoder_hidden_states=cond.tensors[f"{prefix}prompt_embeds"],
            txt_ids=cond.text_ids,
            img_ids=img_ids,
            joint_attention_kwargs={},
            return_dict=False,
        )[0]
        return out[:, : x.shape[1]]

    def decode(self, latents, size=None):
        import torch

        pipe = self.pipe
        height, width = self._size(size)
        with torch.no_grad():
            latents = pipe._unpack_latents(
                latents.to(self.device), height, width, pipe.vae_scale_factor
            )
            latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            image = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
            return pipe.image_processor.postprocess(image, output_type="pil")


# --------------------------------------------------------------------------- Qwen-Image-Edit

# Qwen-Image's text-to-image prompt template (QwenImagePipeline): how the "uncond" branch of dual
# guidance encodes the negative prompt without a source image.
QWEN_IMAGE_T2I_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
QWEN_IMAGE_T2I_TEMPLATE_START = 34


@functools.cache
def torchvision_free_qwen2vl_processor_class():
    """``Qwen2VLProcessor`` that builds without a video processor (the stock class resolves its
    unused video processor, which needs torchvision, and checks every argument's class)."""
    from transformers import Qwen2VLProcessor

    class TorchvisionFreeQwen2VLProcessor(Qwen2VLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

    return TorchvisionFreeQwen2VLProcessor


def load_qwen2vl_processor(path: str | Path):
    """The ``processor`` of a Qwen-Image-Edit folder: ``Qwen2VLProcessor.from_pretrained`` when
    it builds (torchvision installed), else the torchvision-free class from the saved tokenizer
    and image processor."""
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLProcessor

    try:
        return Qwen2VLProcessor.from_pretrained(str(path))
    except (ImportError, ValueError, TypeError):
        return torchvision_free_qwen2vl_processor_class()(
            image_processor=AutoImageProcessor.from_pretrained(str(path)),
            tokenizer=AutoTokenizer.from_pretrained(str(path)),
        )


def load_qwen_image_edit_pipeline(path: str | Path, *, dtype=None):
    """``QwenImageEditPipeline.from_pretrained(path)`` with its processor built by
    :func:`load_qwen2vl_processor` from ``path/processor`` (local folders)."""
    from diffusers import QwenImageEditPipeline

    kwargs = {}
    processor_dir = Path(path) / "processor"
    if processor_dir.is_dir():
        kwargs["processor"] = load_qwen2vl_processor(processor_dir)
    return QwenImageEditPipeline.from_pretrained(str(path), dtype=dtype, **kwargs)


@register_policy("QwenImageEditPipeline")
class QwenImageEditPolicy(Policy):
    """Qwen-Image-Edit (``QwenImageEditPipeline``): native guidance is what
    ``pipe(image=..., prompt=...)`` does, one forward without true CFG (the pipeline applies
    ``true_cfg_scale`` only with a negative prompt); ``true_cfg_scale > 1`` turns on true CFG
    against ``negative_prompt`` with the pipeline's norm rescale, two forwards a call.

    Options: ``condition_area`` (default ``1024 * 1024``): the pixel area the source image is
    resized to (keeping its aspect ratio, by the pipeline's ``calculate_dimensions``) for both
    the VAE and the Qwen2.5-VL text encoder, and the area of the edits when their size follows
    the source; the pipeline hard-codes 1024² for both.
    """

    name = "qwen-image-edit"
    pipeline_class = "QwenImageEditPipeline"
    # true_cfg_scale 1.0: QwenImageEditPipeline.__call__ sets do_true_cfg = true_cfg_scale > 1
    # and has_neg_prompt (pipeline_qwenimage_edit.py line 678), and a call without a negative
    # prompt has none, so its own default (4.0) only applies when a negative prompt is given.
    default_guidance = {"scale": 1.0, "true_cfg_scale": 1.0}
    cfg_renorm = True

    def __init__(self, pipe, *, condition_area: int = 1024 * 1024, **kw):
        self.condition_area = int(condition_area)
        super().__init__(pipe, **kw)

    @classmethod
    def load_pipeline(cls, path, *, dtype=None):
        return load_qwen_image_edit_pipeline(path, dtype=dtype)

    def _pipeline_module(self):
        from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit

        return pipeline_qwenimage_edit

    def _text_encoders(self):
        return [self.pipe.text_encoder] if self.pipe.text_encoder is not None else []

    @property
    def _num_channels_latents(self) -> int:
        return self.transformer.config.in_channels // 4

    def _calculated(self, source) -> tuple[int, int]:
        """(height, width) of diffusers' own module-level ``calculate_dimensions(area, ratio)``
        for ``source``: what the pipeline resizes the condition image to."""
        width, height, _ = self._pipeline_module().calculate_dimensions(
            self.condition_area, source.width / source.height
        )
        return height, width

    def _source_size(self, source) -> tuple[int, int]:
        """The size ``QwenImageEditPipeline.__call__`` gives the edit of ``source`` without a
        height and width (pipeline_qwenimage_edit.py lines 623-630): ``calculate_dimensions``
        of the source's aspect ratio at the area, each side rounded down to a multiple of
        ``vae_scale_factor * 2``."""
        height, width = self._calculated(source)
        return self._multiple(height), self._multiple(width)

    def _shape(self, height: int, width: int) -> tuple[int, int, int]:
        scale = self.pipe.vae_scale_factor
        return (1, height // scale // 2, width // scale // 2)

    def _encode(self, instructions, sources):
        import torch

        pipe = self.pipe
        batch = len(instructions)
        height, width = self._calculated(sources[0])
        out_height, out_width = self.output_size(sources[0])
        images = [pipe.image_processor.resize(s, height, width) for s in sources]
        image = pipe.image_processor.preprocess(images, height, width).unsqueeze(2)
        prompt_image = images[0] if batch == 1 else images
        branches = self._branches()
        tensors = {}
        embeds, mask = pipe.encode_prompt(
            prompt=instructions, image=prompt_image, device=self.device
        )
        tensors["prompt_embeds"], tensors["prompt_embeds_mask"] = embeds, mask
        negative = [self.guidance.negative_prompt] * batch
        tensors["negative_prompt_embeds"] = tensors["negative_prompt_embeds_mask"] = None
        if "neg" in branches:
            neg, neg_mask = pipe.encode_prompt(
                prompt=negative, image=prompt_image, device=self.device
            )
            tensors["negative_prompt_embeds"], tensors["negative_prompt_embeds_mask"] = (
                neg,
                neg_mask,
            )
        tensors["uncond_prompt_embeds"] = tensors["uncond_prompt_embeds_mask"] = None
        if "uncond" in branches:
            saved = pipe.prompt_template_encode, pipe.prompt_template_encode_start_idx
            pipe.prompt_template_encode = QWEN_IMAGE_T2I_TEMPLATE
            pipe.prompt_template_encode_start_idx = QWEN_IMAGE_T2I_TEMPLATE_START
            try:
                unc, unc_mask = pipe.encode_prompt(prompt=negative, image=None, device=self.device)
            finally:
                pipe.prompt_template_encode, pipe.prompt_template_encode_start_idx = saved
            tensors["uncond_prompt_embeds"], tensors["uncond_prompt_embeds_mask"] = unc, unc_mask
        _, image_latents = pipe.prepare_latents(
            image,
            batch,
            self._num_channels_latents,
            out_height,
            out_width,
            embeds.dtype,
            self.device,
            None,
            torch.empty(0),  # no noise drawn here
        )
        tensors["image_latents"] = image_latents
        meta = {
            "branches": branches,
            "img_shapes": [self._shape(out_height, out_width), self._shape(height, width)],
            "img_shapes_noimage": [self._shape(out_height, out_width)],
            "condition_size": (height, width),
            "size": (out_height, out_width),
        }
        return Condition(tensors, meta)

    def initial_latents(self, n, generator=None, size=None):
        import torch

        height, width = self._size(size)
        latents, _ = self.pipe.prepare_latents(
            None,
            n,
            self._num_channels_latents,
            height,
            width,
            torch.float32,
            self.device,
            generator,
        )
        return latents

    def _forward(self, x, timestep, cond, branch):
        import torch

        self._needs(cond, branch)
        prefix = {"cond": "", "neg": "negative_", "uncond": "uncond_"}[branch]
        if branch == "uncond":
            hidden, shapes = x, cond.img_shapes_noimage
        else:
            hidden = torch.cat([x, cond.image_latents.to(x.dtype)], dim=1)
            shapes = cond.img_shapes
        with self.transformer.cache_context("uncond" if branch != "cond" else "cond"):
            out = self.transformer(
                hidden_states=hidden,
                timestep=timestep,
                guidance=None,
                encoder_hidden_states_mask=cond.tensors[f"{prefix}prompt_embeds_mask"],
                encoder_hidden_states=cond.tensors[f"{prefix}prompt_embeds"],
                img_shapes=[shapes] * x.shape[0],
                attention_kwargs={},
                return_dict=False,
            )[0]
        return out[:, : x.shape[1]]

    def decode(self, latents, size=None):
        import torch

        pipe = self.pipe
        vae = pipe.vae
        height, width = self._size(size)
        with torch.no_grad():
            latents = pipe._unpack_latents(
                latents.to(self.device), height, width, pipe.vae_scale_factor
            ).to(vae.dtype)
            shape = (1, vae.config.z_dim, 1, 1, 1)
            mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents)
            inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents)
            latents = latents / inv_std + mean
            image = vae.decode(latents, return_dict=False)[0][:, :, 0]
            return pipe.image_processor.postprocess(image, output_type="pil")
