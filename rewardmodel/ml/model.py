"""The EditScore reward model: a Qwen2.5-VL (or Qwen3-VL) that writes a short reasoning and
integer scores for an edit, run with Hugging Face transformers (``docs/method.md`` section 3).

Loading::

    scorer = EditScore.from_pretrained("Qwen/Qwen2.5-VL-7B-Instruct",          # or a local folder
                                       adapter="/models/EditScore-7B",        # peft LoRA folder
                                       device="cuda", dtype="bfloat16")
    scorer = EditScore.from_pretrained("/models/editscore-7b-merged")        # merged checkpoint

``base`` is anything ``AutoModelForImageTextToText.from_pretrained`` accepts (a Qwen2.5-VL or
Qwen3-VL checkpoint folder, a hub id when the machine is online, a merged EditScore checkpoint,
or a :func:`rewardmodel.ml.tiny.build_tiny_editscore` folder of either family); the processor is
loaded from the same place by :func:`rewardmodel.ml.tiny.load_processor` (``AutoProcessor``, or
the family's processor class made torchvision-free). The family (the config's ``model_type``)
decides the chat layout and image sizing the reference uses for it (what else differs is tabled
in :data:`rewardmodel.ml.tiny.FAMILIES`). ``adapter`` is a peft LoRA folder (the released
EditScore adapters, or one written by :mod:`rewardmodel.ml.finetune`): it is loaded with ``PeftModel.from_pretrained`` and merged
into the base once (``merge_adapter=False`` keeps it separate).

Scoring (:meth:`EditScore.score`) follows the authors' code by default (``docs/method.md``
section 3 lists every difference), for every item and pass:

* the SC prompt with images [source, edited] and the PQ prompt with [edited], in the model's
  prompt set (``prompt_set``: ``reference``, the authors' text and chat layout from the
  installed ``editscore`` package, or ``editloop``, EditLoop's wording);
* images made RGB and, for Qwen2.5-VL, sized by ``qwen_vl_utils.process_vision_info`` as the
  reference sizes them (``max_pixels`` adds an optional cap first; default none);
* decoding: sampling on every pass, K = 1 included (temperature 0.7, top-p 0.9, top-k 20, 512 new
  tokens), ``torch.manual_seed(seed + i)`` before each ``generate`` call of pass i;
  ``decoding="greedy"`` is the explicit alternative;
* batched generation: left padding, the SC requests of up to ``batch_size`` items in one
  ``generate`` call, their PQ requests in another. The random stream is shared by a batch, so
  sampled answers equal the reference's one-request-at-a-time answers only with
  ``batch_size=1`` (tests/test_reference_parity.py checks that case token for token);
* what an unreadable answer becomes is the ``parse_policy`` (:mod:`rewardmodel.ml.answers`):
  ``unscored`` (default: retried, then the item is unscored with its raw answers kept),
  ``reference`` (the package's benchmark path: the same seed once more, then its seeded
  random guess) or ``reference_batch`` (its RL reward-server path: an unreadable answer counts
  R/2);
* a pass's dimensions come from :func:`rewardmodel.ml.answers.combine`; an item is scored when
  every one of its K passes is, and its dimensions are the Avg@K means
  (:func:`rewardmodel.ml.scoring.average_passes`). Otherwise its four dimensions are None and
  ``error`` says "n of K passes failed: ...".

Each result is a dict: ``prompt_following``, ``consistency``, ``perceptual_quality``, ``overall``
(0-10 floats, or None when unscored), ``raw`` (every generated answer of the item, in generation
order: per pass the SC answer and its retries, then the PQ answer and its retries), ``error``
(None, or why the item is unscored) and ``passes`` (how many passes produced scores).

Backends: transformers, and ``backend="vllm"``, the reference's own vLLM backbone (adapter
merged once and cached, tensor parallelism for 32B/72B) where ``vllm`` is installed
(:mod:`rewardmodel.ml.vllm_backend`). For throughput with transformers, run one server
(:mod:`rewardmodel.ml.server`) per GPU and spread requests with :mod:`rewardmodel.ml.client`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from rewardmodel.ml import answers, prompts, reference
from rewardmodel.ml.images import cap_pixels, open_image
from rewardmodel.ml.tiny import load_processor

# None: images sized as the reference sizes them (qwen_vl_utils' defaults), no extra cap.
DEFAULT_MAX_PIXELS: int | None = None
BACKENDS = ("transformers", "vllm")
DECODINGS = ("sample", "greedy")
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


@dataclass
class ScoreItem:
    """One candidate: the instruction, the source image and the edited image (encoded bytes in
    any format Pillow reads, or a PIL image)."""

    instruction: str
    source: bytes | Image.Image
    edited: bytes | Image.Image


def chat_text(processor, prompt: str, n_images: int, *, prompt_set: str, family: str) -> str:
    """The text handed to the processor for ``prompt`` and ``n_images`` images (scoring and
    fine-tuning alike). Reference set: the reference's own layout for the family (Qwen2.5-VL:
    the package's ``apply_chat_template``; Qwen3-VL: the package's conversation, images then
    text, rendered by the processor's template). EditLoop set: the system turn and labelled
    images (:func:`rewardmodel.ml.prompts.qwen_messages`), rendered by the processor's template."""
    if prompts.check_prompt_set(prompt_set) == "reference":
        if family == "qwen2_5_vl":
            return reference.chat_text(prompt, n_images)
        messages = reference.reference_messages([None] * n_images, prompt)
    else:
        messages = prompts.qwen_messages(prompt, n_images)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def sized_as_reference(images: list[Image.Image], family: str) -> list[Image.Image]:
    """RGB images as the reference hands them to the processor: for Qwen2.5-VL through
    ``qwen_vl_utils.process_vision_info`` (multiples of 28 px, 4 to 16384 tokens); Qwen3-VL's
    reference gives them to the processor as they are."""
    if family == "qwen2_5_vl":
        return reference.vision_inputs(images)
    return images


def check_decoding(decoding: str) -> str:
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
    return decoding


def _resolve_device(device: str):
    import torch

    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' asked for, but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device type {dev.type!r} (cpu, cuda or mps)")
    return dev


def _resolve_dtype(dtype: str | None, device):
    import torch

    if dtype is None:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if not isinstance(dtype, str) or dtype.lower() not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(set(_DTYPES))} or None, got {dtype!r}")
    return getattr(torch, _DTYPES[dtype.lower()])


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class EditScore:
    """A loaded EditScore model; build it with :meth:`from_pretrained`."""

    def __init__(
        self,
        model,
        processor,
        *,
        device,
        score_range: int = prompts.SCORE_RANGE,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        prompt_set: str = prompts.DEFAULT_PROMPT_SET,
    ):
        self.model = model
        self.processor = processor
        self.device = device
        self.score_range = _positive_int("score_range", score_range)
        self.max_pixels = (
            None if max_pixels is None else _positive_int("max_pixels", max_pixels, 28 * 28)
        )
        self.prompt_set = prompts.check_prompt_set(prompt_set)
        self.family = getattr(getattr(model, "config", None), "model_type", "qwen2_5_vl")
        self.processor.tokenizer.padding_side = "left"
        self._pq_text = self._chat_text(prompts.pq_prompt(self.score_range, self.prompt_set), 1)

    @classmethod
    def from_pretrained(
        cls,
        base: str | Path,
        adapter: str | Path | None = None,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        score_range: int = prompts.SCORE_RANGE,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        prompt_set: str = prompts.DEFAULT_PROMPT_SET,
        backend: str = "transformers",
        merge_adapter: bool = True,
    ) -> EditScore:
        """Load the base VLM (``dtype`` None: bfloat16 on CUDA, float16 where bf16 is missing,
        float32 on CPU) and, if given, the LoRA ``adapter`` on top; the processor comes from
        ``base``. Arguments are checked before anything heavy is loaded. ``backend="vllm"``
        returns the reference's vLLM backbone behind the same interface
        (:class:`rewardmodel.ml.vllm_backend.VLLMEditScore`)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        _positive_int("score_range", score_range)
        if max_pixels is not None:
            _positive_int("max_pixels", max_pixels, 28 * 28)
        prompts.check_prompt_set(prompt_set)
        if backend == "vllm":
            from rewardmodel.ml.vllm_backend import VLLMEditScore

            return VLLMEditScore.from_pretrained(
                base, adapter, device=device, dtype=dtype, score_range=score_range,
                max_pixels=max_pixels, prompt_set=prompt_set,
            )  # fmt: skip
        dev = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype, dev)

        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(
            str(base),
            dtype=torch_dtype,
            device_map=str(dev) if dev.type == "cuda" else None,
        )
        if dev.type != "cuda":
            model = model.to(dev)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
            if merge_adapter:
                model = model.merge_and_unload()
        model.eval()
        processor = load_processor(base)
        return cls(
            model, processor, device=dev, score_range=score_range, max_pixels=max_pixels,
            prompt_set=prompt_set,
        )  # fmt: skip

    # ------------------------------------------------------------------ inputs

    def _chat_text(self, prompt: str, n_images: int) -> str:
        return chat_text(
            self.processor, prompt, n_images, prompt_set=self.prompt_set, family=self.family
        )

    def prepare_images(self, images: Sequence[bytes | Image.Image]) -> list[Image.Image]:
        """The images as the processor receives them: RGB, shrunk to ``max_pixels`` when a cap
        is set, then, for Qwen2.5-VL, sized by ``qwen_vl_utils.process_vision_info`` as the
        reference does (Qwen3-VL: the reference hands them to the processor as they are)."""
        opened = [open_image(image) for image in images]
        if self.max_pixels is not None:
            opened = [cap_pixels(image, self.max_pixels) for image in opened]
        return sized_as_reference(opened, self.family)

    def _requests(self, item: ScoreItem) -> tuple[tuple[str, list], tuple[str, list]]:
        """((SC text, [source, edited]), (PQ text, [edited])) for one item. The edit is used as
        given (the benchmark resizes it to the source first, as the reference's evaluation
        does; the RL reward server of the reference does not)."""
        if not isinstance(item.instruction, str):
            raise ValueError("the instruction must be a string")
        source, edited = self.prepare_images([item.source, item.edited])
        sc_prompt = prompts.sc_prompt(item.instruction, self.score_range, self.prompt_set)
        sc_text = self._chat_text(sc_prompt, 2)
        return (sc_text, [source, edited]), (self._pq_text, [edited])

    # ------------------------------------------------------------------ generation

    def _generate(
        self,
        requests: Sequence[tuple[str, list]],
        *,
        sample: bool,
        seed: int | None,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
    ) -> list[str]:
        """One batched ``generate`` call (left padding) for (chat text, images) requests;
        ``torch.manual_seed(seed)`` right before it when a seed is given. Returns the answers."""
        import torch

        inputs = self.processor(
            text=[text for text, _ in requests],
            images=[image for _, images in requests for image in images],
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        tokenizer = self.processor.tokenizer
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": sample}
        if sample:
            options.update(temperature=temperature, top_p=top_p, top_k=top_k)
        else:  # silence the checkpoint's sampling defaults (e.g. Qwen's temperature 0.1)
            options.update(temperature=None, top_p=None, top_k=None)
        if getattr(self.model.generation_config, "pad_token_id", None) is None:
            options["pad_token_id"] = tokenizer.pad_token_id
        if seed is not None:
            torch.manual_seed(seed)
        out = self.model.generate(**inputs, **options)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(
            new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return [t.strip() for t in texts]

    def score(
        self,
        items: Sequence[ScoreItem],
        *,
        k: int = 1,
        temperature: float = 0.7,
        top_p: float = 0.9,
        top_k: int = 20,
        max_new_tokens: int = 512,
        seed: int = 42,
        batch_size: int = 16,
        retries: int = 2,
        decoding: str = "sample",
        parse_policy: str = answers.DEFAULT_PARSE_POLICY,
    ) -> list[dict]:
        """Score each item (see the module docstring); one result dict per item, in order."""
        import torch

        _positive_int("k", k)
        _positive_int("max_new_tokens", max_new_tokens)
        _positive_int("batch_size", batch_size)
        _positive_int("retries", retries, 0)
        _positive_int("top_k", top_k)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not (isinstance(temperature, int | float) and temperature > 0):
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not (isinstance(top_p, int | float) and 0 < top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        check_decoding(decoding)
        answers.check_parse_policy(parse_policy)
        gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k)
        policy = dict(
            k=k, seed=seed, retries=retries, greedy=decoding == "greedy", parse_policy=parse_policy
        )
        results: list[dict] = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                results += self._score_batch(items[start : start + batch_size], gen=gen, **policy)
        return results

    def _score_batch(
        self,
        items: Sequence[ScoreItem],
        *,
        k: int,
        seed: int,
        retries: int,
        greedy: bool,
        parse_policy: str,
        gen: dict,
    ) -> list[dict]:
        results: list[dict | None] = [None] * len(items)
        prepared: list[tuple[int, tuple, tuple]] = []
        for n, item in enumerate(items):
            try:
                sc_request, pq_request = self._requests(item)
            except ValueError as exc:
                results[n] = answers.unscored([], f"bad input: {exc}", 0)
            else:
                prepared.append((n, sc_request, pq_request))
        if prepared:

            def generate(part: str, todo: list[int], attempt: answers.Attempt) -> list[str]:
                column = 1 if part == "SC" else 2
                requests = [prepared[j][column] for j in todo]
                return self._generate(requests, sample=attempt.sample, seed=attempt.seed, **gen)

            scored = answers.run_passes(
                len(prepared), generate, k=k, seed=seed, retries=retries, greedy=greedy,
                policy=parse_policy, score_range=self.score_range,
            )  # fmt: skip
            for (n, _, _), result in zip(prepared, scored, strict=True):
                results[n] = result
        return results  # type: ignore[return-value]
