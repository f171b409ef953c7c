"""Tiny random Qwen-VL reward models saved like real checkpoints, for tests, benchmarks and the
CPU demo.

No machine here reaches a model hub, so tests *build* the reward model's architecture at toy size
(``docs/tiny-models.md``), save it with ``save_pretrained`` and load it back through the very code
path a real checkpoint takes (:func:`load_processor`, ``from_pretrained(folder)``). Two model
families are built, ``build_tiny_editscore(out_dir, family=...)``: ``"qwen2_5_vl"`` (the default,
EditScore's base) and ``"qwen3_vl"``. The folder holds what a released ``-Instruct`` checkpoint
of that family holds:

* ``config.json``, ``generation_config.json``, ``model.safetensors``: a
  ``Qwen2_5_VLForConditionalGeneration`` (44k parameters) or ``Qwen3VLForConditionalGeneration``
  (56k), each with 2 text layers of width 16 and a 2-block vision tower;
* ``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``: a byte-level BPE
  ``Qwen2Tokenizer`` (about 400 tokens, trained in well under a second on a built-in corpus)
  with the Qwen special tokens registered as special, ``<|im_end|>`` as EOS and
  ``<|endoftext|>`` as padding (both families use this tokenizer), and the family's chat
  template;
* ``preprocessor_config.json``: the ``Qwen2VLImageProcessor`` (PIL backend) both families use,
  with the family's patching and a small pixel budget (4 to 64 merged patches, so at most 64
  image tokens an image), and the family's ``processor_class``.

What differs between the families lives in one table, :data:`FAMILIES` (keyed by the config's
``model_type``); everything else (tokenizer, image placeholders, scoring, fine-tuning) is shared:

===================  ===================================  ===================================
                     ``qwen2_5_vl``                       ``qwen3_vl``
===================  ===================================  ===================================
processor            ``Qwen2_5_VLProcessor``              ``Qwen3VLProcessor`` (also wants a
                                                          ``Qwen3VLVideoProcessor``)
chat template        adds the default system turn "You    no default system turn: only a
                     are a helpful assistant." when the   leading system message is rendered;
                     conversation has none                a later one is dropped
vision patches       14 px, 2x2 merged: 28 px a token     16 px, 2x2 merged: 32 px a token
image mean / std     CLIP's                               0.5 / 0.5
vision tower         RMSNorm, gated MLP, windowed         LayerNorm, plain MLP, learned
                     attention; merger ``merger.mlp``     position grid (interpolated);
                                                          ``merger`` plus ``deepstack_merger_list``
                                                          feeding early text layers (DeepStack)
text rotary          M-RoPE in sections [t, h, w]         interleaved M-RoPE
                     (``rope_scaling``)                   (``mrope_interleaved``), q/k norms,
                                                          explicit ``head_dim``
===================  ===================================  ===================================

Both templates lay an image out as ``<|vision_start|><|image_pad|><|vision_end|>`` and the
processor expands ``<|image_pad|>`` to one token per merged patch. Module names are alike where
LoRA looks (``model.language_model.layers.N.{self_attn,mlp}.*_proj``; the vision tower under
``model.visual``), so :mod:`rewardmodel.ml.finetune` treats both the same way.

torch and transformers are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_pad|>",
)
TINY_VOCAB_SIZE = 400
# Qwen2.5-VL's tiny pixel budget (28 px a token); each family's: build_tiny_image_processor.
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 64

# The Qwen2.5-VL-Instruct chat template (as shipped with the released checkpoints): a default
# system turn, <|im_start|>role ... <|im_end|>, each image as <|vision_start|><|image_pad|>
# <|vision_end|> (the processor expands <|image_pad|> to one token per merged patch).
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The Qwen3-VL-Instruct chat template, restated: the same turns and image placeholders as above,
# but no default system turn (a system message is rendered only when it comes first, and its
# content may be a string or a list of text parts); image parts count in user turns only. The
# released template's tool calls and tool turns are left out: the judge uses none.
QWEN3VL_CHAT_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}<|im_start|>system\n"
    "{% if messages[0]['content'] is string %}{{ messages[0]['content'] }}"
    "{% else %}{% for part in messages[0]['content'] %}"
    "{% if 'text' in part %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endif %}"
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if message['role'] in ('user', 'assistant') %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if message['role'] == 'user' and (content['type'] == 'image' or 'image' in content "
    "or 'image_url' in content) %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif message['role'] == 'user' and (content['type'] == 'video' or 'video' in content) %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """What one Qwen-VL generation does its own way (see the module docstring's table).

    ``text_config`` / ``vision_config`` hold the family's own entries of the tiny config (the
    shared sizes are added by :func:`build_tiny_model`); ``image_processor`` the family's
    entries of its ``Qwen2VLImageProcessor``."""

    model_type: str
    model_class: str
    processor_class: str
    chat_template: str
    patch_size: int
    merge_size: int = 2
    text_config: dict = field(default_factory=dict)
    vision_config: dict = field(default_factory=dict)
    image_processor: dict = field(default_factory=dict)

    @property
    def token_side(self) -> int:
        """Pixels along one side of the square that becomes one image token."""
        return self.patch_size * self.merge_size


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family(
            model_type="qwen2_5_vl",
            model_class="Qwen2_5_VLForConditionalGeneration",
            processor_class="Qwen2_5_VLProcessor",
            chat_template=QWEN25VL_CHAT_TEMPLATE,
            patch_size=14,
            text_config=dict(
                rope_scaling={
                    "mrope_section": [1, 1, 2],
                    "rope_type": "default",
                    "type": "default",
                },
                rope_theta=1e6,
            ),
        ),
        Family(
            model_type="qwen3_vl",
            model_class="Qwen3VLForConditionalGeneration",
            processor_class="Qwen3VLProcessor",
            chat_template=QWEN3VL_CHAT_TEMPLATE,
            patch_size=16,
            # head_dim 8 = 2 + 1 + 1 rotary frequency pairs for t, h, w, interleaved (the
            # released models: head_dim 128, sections [24, 20, 20], rope_theta 5e6).
            text_config=dict(
                head_dim=8,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 5e6,
                    "mrope_section": [2, 1, 1],
                    "mrope_interleaved": True,
                },
            ),
            # A learned 8x8 position grid (resampled to each image's patch grid) and one
            # DeepStack merger, whose features join after the first text layer (the released
            # models: 48x48 and [8, 16, 24] of 27 blocks).
            vision_config=dict(num_position_embeddings=64, deepstack_visual_indexes=[0]),
            image_processor=dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
        ),
    )
}
DEFAULT_FAMILY = "qwen2_5_vl"


def model_family(name: str) -> Family:
    """The :data:`FAMILIES` entry of a ``model_type``; ValueError for any other."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(FAMILIES))
        raise ValueError(f"unknown model family {name!r} (known: {known})") from None


_WORDS = (
    "the image edit instruction score reasoning success over editing naturalness artifacts "
    "original edited version scene object person background colour color red blue green white "
    "black sky car dog cat tree house add remove replace change make turn into style photo "
    "painting light shadow lighting distance blur noise watermark face hand hands looks natural "
    "unnatural perfectly completely minimal effective follows does not follow judge rules give "
    "two scores from to means is are a an of and or in on with as it its this that first second "
    "professional digital artist AI-generated images privacy concern answer single JSON object "
    "nothing else write keep short sentence list integers editing perceptual quality"
).split()


def tiny_corpus(seed: int = 0) -> list[str]:
    """About 100 short sentences and JSON answers, enough for a compact byte-level BPE that
    encodes the judge's prompts and answers in few tokens."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14))) for _ in range(70)]
    for _ in range(30):
        reasoning = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 9)))
        a, b = rng.randint(0, 25), rng.randint(0, 25)
        lines.append(json.dumps({"reasoning": reasoning.capitalize() + ".", "score": [a, b]}))
    lines += [f"<img{i}>: " for i in (1, 2)]
    lines += ["You are a helpful assistant.", "system user assistant", "0 1 2 3 4 5 6 7 8 9 10 25"]
    return lines


def build_tiny_tokenizer(
    corpus: Iterable[str] | None = None,
    *,
    seed: int = 0,
    family: str = DEFAULT_FAMILY,
    vocab_size: int = TINY_VOCAB_SIZE,
):
    """A ``Qwen2Tokenizer`` (byte-level BPE) trained offline, Qwen special tokens registered,
    with the chat template of ``family``."""
    chat_template = model_family(family).chat_template
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus) if corpus is not None else tiny_corpus(seed), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    # Without this, "<|image_pad|>" is split into bytes and the VLM finds no image tokens.
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        special_tokens=True,
    )
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.padding_side = "left"
    tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_image_processor(family: str = DEFAULT_FAMILY):
    """The ``Qwen2VLImageProcessorPil`` of ``family`` with the tiny pixel budget: 4 to 64 merged
    patches (so 4 to 64 image tokens an image)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    spec = model_family(family)
    token_area = spec.token_side**2
    return Qwen2VLImageProcessorPil(
        min_pixels=token_area * 4,
        max_pixels=token_area * 64,
        patch_size=spec.patch_size,
        merge_size=spec.merge_size,
        **spec.image_processor,
    )


def build_tiny_model(tokenizer, *, seed: int = 0, family: str = DEFAULT_FAMILY, width: int = 16):
    """A random ``Qwen2_5_VLForConditionalGeneration`` or ``Qwen3VLForConditionalGeneration``
    sized by ``docs/tiny-models.md``: 2 text layers of width 16 (2 heads), a 2-block vision
    tower of width 16, the family's own settings from :data:`FAMILIES`. ``width`` (a multiple of
    8) widens both; heads stay 8 wide, so the rotary sections fit every width."""
    import torch
    import transformers
    from transformers import GenerationConfig

    if isinstance(width, bool) or not isinstance(width, int) or width < 16 or width % 8:
        raise ValueError(f"width must be a multiple of 8, at least 16, not {width!r}")
    heads = width // 8
    spec = model_family(family)
    model_class = getattr(transformers, spec.model_class)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    pad, eos = ids["<|endoftext|>"], ids["<|im_end|>"]
    config = model_class.config_class(
        text_config=dict(
            hidden_size=width,
            intermediate_size=width,
            num_hidden_layers=2,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            vocab_size=len(tokenizer),
            bos_token_id=pad,
            eos_token_id=eos,
            pad_token_id=pad,
            **spec.text_config,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=width,
            intermediate_size=width,
            num_heads=heads,
            out_hidden_size=width,
            patch_size=spec.patch_size,
            spatial_merge_size=spec.merge_size,
            **spec.vision_config,
        ),
        vocab_size=len(tokenizer),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.generation_config = GenerationConfig(
        bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad
    )
    return model.eval()


@functools.cache
def torchvision_free_processor_class(name: str = "Qwen2_5_VLProcessor"):
    """The processor class ``name`` (``Qwen2_5_VLProcessor``, ``Qwen3VLProcessor``...) made to
    build without a video processor.

    The stock classes cannot be built without torchvision: they resolve their (unused here)
    video processor class and check every argument's class. This subclass skips the check and
    accepts ``video_processor=None``; images and text work unchanged.
    """
    import transformers

    base = getattr(transformers, name)

    def check_argument_for_proper_class(self, argument_name, argument):
        return type(argument)

    return type(
        f"TorchvisionFree{name}",
        (base,),
        {
            "check_argument_for_proper_class": check_argument_for_proper_class,
            "__module__": __name__,
            "__doc__": f"``{name}`` without the video processor (torchvision not installed).",
        },
    )


def _saved_chat_template(path: Path) -> str | None:
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    as_json = path / "chat_template.json"
    if as_json.is_file():
        return json.loads(as_json.read_text()).get("chat_template")
    return None


def checkpoint_family(path: str | Path) -> Family:
    """The :data:`FAMILIES` entry of a checkpoint (folder, or hub id when online), from the
    ``model_type`` of its config; ValueError for a model type of no known family."""
    from transformers import AutoConfig

    return model_family(AutoConfig.from_pretrained(str(path)).model_type)


def load_processor(path: str | Path):
    """The processor of a Qwen2.5-VL or Qwen3-VL checkpoint folder (or hub id, when online).

    ``AutoProcessor`` when it works (torchvision installed); else the family's processor class
    (:func:`checkpoint_family`: ``Qwen2_5_VLProcessor`` or ``Qwen3VLProcessor``) made
    torchvision-free by :func:`torchvision_free_processor_class`, built from the saved
    tokenizer, image processor (PIL backend) and chat template. The same loader serves real
    checkpoints and :func:`build_tiny_editscore` folders. Left padding is set for batched
    generation.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(str(path))
    except ImportError as missing:  # torchvision missing: the video processor cannot be built
        try:
            spec = checkpoint_family(path)
        except ValueError as unknown:
            raise ImportError(f"{missing} (and no torchvision-free fallback: {unknown})") from None
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        image_processor = AutoImageProcessor.from_pretrained(str(path))
        template = tokenizer.chat_template
        if template is None and Path(path).is_dir():
            template = _saved_chat_template(Path(path))
        processor = torchvision_free_processor_class(spec.processor_class)(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=template
        )
    if getattr(processor, "chat_template", None) is None:
        template = getattr(processor.tokenizer, "chat_template", None)
        if template is None and Path(path).is_dir():
            template = _saved_chat_template(Path(path))
        processor.chat_template = template
    processor.tokenizer.padding_side = "left"
    return processor


def judge_corpus(instructions: Iterable[str], score_range: int = 25) -> list[str]:
    """What a tiny judge reads and writes, as a tokenizer corpus: the judge's prompts (both
    prompt sets) for ``instructions``, its answers in the reference format with every score,
    and the chat scaffolding. A tokenizer trained on it encodes a prompt in a fraction of the
    tokens the built-in corpus's does (long sequences are most of a tiny model's cost)."""
    from rewardmodel.ml.prompts import (
        NEUTRAL_REASONING_PQ,
        NEUTRAL_REASONING_SC,
        PROMPT_SETS,
        pq_prompt,
        sc_prompt,
        target_json,
    )

    lines = []
    for prompt_set in PROMPT_SETS:
        lines.append(pq_prompt(score_range, prompt_set))
        lines += [sc_prompt(text, score_range, prompt_set) for text in instructions]
    for a in range(score_range + 1):
        for b in range(score_range + 1):
            reasoning = NEUTRAL_REASONING_SC if (a + b) % 2 else NEUTRAL_REASONING_PQ
            lines.append(target_json(reasoning, [a, b]))
    return lines + ["You are a helpful assistant.", "system user assistant"]


def build_tiny_editscore(
    out_dir: Path,
    *,
    seed: int = 0,
    family: str = DEFAULT_FAMILY,
    width: int = 16,
    corpus: Iterable[str] | None = None,
    vocab_size: int = TINY_VOCAB_SIZE,
) -> Path:
    """Build the tiny tokenizer, image processor and model of ``family`` (``"qwen2_5_vl"`` or
    ``"qwen3_vl"``, see :data:`FAMILIES`) and save them in ``out_dir`` (created if needed) as a
    checkpoint folder that ``EditScore.from_pretrained(out_dir)``, :func:`load_processor` and
    ``AutoModelForImageTextToText.from_pretrained`` load. Deterministic for given arguments.
    ``width`` sizes the model (:func:`build_tiny_model`); ``corpus`` and ``vocab_size`` the
    tokenizer (default: the built-in corpus; :func:`judge_corpus` fits the judge's prompts).
    Returns ``out_dir``."""
    spec = model_family(family)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(corpus, seed=seed, family=family, vocab_size=vocab_size)
    image_processor = build_tiny_image_processor(family)
    model = build_tiny_model(tokenizer, seed=seed, family=family, width=width)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # also writes chat_template.jinja
    image_processor.save_pretrained(out_dir)
    # What a released checkpoint's preprocessor_config.json says; AutoProcessor reads it.
    config_path = out_dir / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    config["processor_class"] = spec.processor_class
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out_dir
