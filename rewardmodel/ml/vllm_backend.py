"""EditScore on vLLM through the authors' own backbone (``backend="vllm"``).

The ``editscore`` package ships vLLM backbones (``editscore.mllm_tools.qwen25vl_vllm.Qwen25VL``
and ``qwen3vl_vllm.Qwen3VL``): the adapter merged into the base once and cached, the reference
chat template, ``process_vision_info`` sizing, ``SamplingParams(temperature, top_p=0.9,
top_k=20, max_tokens=512, seed=seed + pass)``, and tensor parallelism for the 32B/72B models.
:class:`VLLMEditScore` drives one of them behind :class:`rewardmodel.ml.model.EditScore`'s
``score`` interface, with the same prompt sets and parse policies (:mod:`rewardmodel.ml.answers`).

vLLM's per-request seeds make a sampled answer independent of the batch it ran in. The
backbone's sampling parameters are fixed by the package (its ``max_tokens`` is 512, its top-p and
top-k are the paper's); options that would change them are refused rather than ignored.

Needs a GPU machine with ``vllm`` (and torchvision, which ``qwen_vl_utils`` imports); elsewhere
loading raises ImportError naming what is missing. It has not been run in EditLoop's CI, which
has no GPU: the README says so.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from rewardmodel.ml import answers, prompts

_BACKBONES = {
    "qwen2_5_vl": ("editscore.mllm_tools.qwen25vl_vllm", "Qwen25VL"),
    "qwen3_vl": ("editscore.mllm_tools.qwen3vl_vllm", "Qwen3VL"),
}
_FIXED = {"top_p": 0.9, "top_k": 20, "max_new_tokens": 512}


def require_vllm() -> None:
    missing = [m for m in ("vllm", "torchvision") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"backend='vllm' needs the {' and '.join(missing)} package(s), which are not "
            "installed here (a GPU machine with `pip install vllm`); use backend='transformers'"
        )


class VLLMEditScore:
    """The reference's vLLM backbone scoring EditLoop's :class:`ScoreItem` s."""

    def __init__(self, backbone, *, score_range: int, max_pixels: int | None, prompt_set: str):
        self.backbone = backbone
        self.score_range = score_range
        self.max_pixels = max_pixels
        self.prompt_set = prompts.check_prompt_set(prompt_set)

    @classmethod
    def from_pretrained(
        cls,
        base: str | Path,
        adapter: str | Path | None = None,
        *,
        device: str = "cuda",
        dtype: str | None = None,
        score_range: int = prompts.SCORE_RANGE,
        max_pixels: int | None = None,
        prompt_set: str = prompts.DEFAULT_PROMPT_SET,
        tensor_parallel_size: int = 1,
        max_model_len: int = 4096,
        temperature: float = 0.7,
        seed: int = 42,
    ) -> VLLMEditScore:
        require_vllm()
        if dtype not in (None, "bfloat16", "bf16"):
            raise ValueError("the reference's vLLM backbone runs in bfloat16 only")
        from rewardmodel.ml.reference import package
        from rewardmodel.ml.tiny import checkpoint_family

        package()
        module, name = _BACKBONES[checkpoint_family(base).model_type]
        backbone_class = getattr(importlib.import_module(module), name)
        backbone = backbone_class(
            vlm_model=str(base),
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            max_num_batched_tokens=max_model_len,
            temperature=temperature,
            seed=seed,
            lora_path=str(adapter) if adapter else None,
        )
        return cls(backbone, score_range=score_range, max_pixels=max_pixels, prompt_set=prompt_set)

    def _inputs(self, item) -> tuple[object, object]:
        from rewardmodel.ml.images import cap_pixels, open_image

        images = [open_image(item.source), open_image(item.edited)]
        if self.max_pixels is not None:
            images = [cap_pixels(image, self.max_pixels) for image in images]
        sc_prompt = prompts.sc_prompt(item.instruction, self.score_range, self.prompt_set)
        pq_prompt = prompts.pq_prompt(self.score_range, self.prompt_set)
        return (
            self.backbone.prepare_input(images, sc_prompt),
            self.backbone.prepare_input(images[-1], pq_prompt),
        )

    def score(
        self,
        items: Sequence,
        *,
        k: int = 1,
        seed: int = 42,
        retries: int = 2,
        decoding: str = "sample",
        parse_policy: str = answers.DEFAULT_PARSE_POLICY,
        batch_size: int | None = None,  # vLLM schedules its own batches
        temperature: float | None = None,
        **fixed,
    ) -> list[dict]:
        if decoding != "sample":
            raise ValueError("the reference's vLLM backbone samples; decoding='greedy' needs "
                             "backend='transformers'")  # fmt: skip
        changed = {key: v for key, v in fixed.items() if _FIXED.get(key, object()) != v}
        if changed:
            raise ValueError(f"the reference's vLLM backbone fixes {sorted(changed)}: "
                             f"{ {key: _FIXED.get(key) for key in changed} }")  # fmt: skip
        if temperature is not None and temperature != self.backbone.temperature:
            raise ValueError(f"this backbone samples at temperature {self.backbone.temperature}: "
                             "set it when loading")  # fmt: skip
        answers.check_parse_policy(parse_policy)
        inputs = [self._inputs(item) for item in items]

        def generate(part: str, todo: list[int], attempt: answers.Attempt) -> list[str]:
            column = answers.PARTS.index(part)
            return self.backbone.batch_inference(
                [inputs[j][column] for j in todo], seed=attempt.seed
            )

        return answers.run_passes(
            len(items), generate, k=k, seed=seed, retries=retries, greedy=False,
            policy=parse_policy, score_range=self.score_range,
        )  # fmt: skip
