"""The two EditScore model families, Qwen2.5-VL and Qwen3-VL (rewardmodel.ml.tiny FAMILIES).

Prompt construction for both: the chat text of the SC and PQ conversations through each
family's own processor chat template (the system turn as that family renders it, the labelled
images before the prompt, the generation prompt) and the processor's image-pad expansion for
each family's patching. Then the tiny Qwen3-VL end to end: build -> load -> batched scoring ->
LoRA fine-tuning -> ``EditScore.from_pretrained(base, adapter=...)`` returns the taught scores.
No database.
"""

import io
import re
import time

import numpy as np
import pytest
import torch
from PIL import Image

from rewardmodel.ml import finetune as ft
from rewardmodel.ml import prompts, tiny
from rewardmodel.ml.finetune import FinetuneConfig, examples_for_candidate
from rewardmodel.ml.model import EditScore, ScoreItem
from rewardmodel.ml.scoring import aggregate
from rewardmodel.ml.tiny import FAMILIES, build_tiny_editscore, load_processor

# torch on one thread and the tiny Qwen2.5-VL (tiny_dir): shared fixtures in tests/conftest.py
pytestmark = pytest.mark.usefixtures("torch_one_thread")

FAMILY_NAMES = ["qwen2_5_vl", "qwen3_vl"]
IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    """An offline tiny Qwen3-VL saved like a real checkpoint (read-only for tests)."""
    return build_tiny_editscore(tmp_path_factory.mktemp("tiny3") / "editscore", family="qwen3_vl")


@pytest.fixture(params=FAMILY_NAMES)
def family_dir(request):
    """(family name, tiny checkpoint folder) for each family."""
    folder = "tiny_dir" if request.param == "qwen2_5_vl" else "qwen3_dir"
    return request.param, request.getfixturevalue(folder)


def png(seed: int, size=(64, 64)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------- the folders


def test_each_family_folder_holds_its_model_processor_and_template(family_dir):
    import transformers
    from transformers import AutoModelForImageTextToText

    name, folder = family_dir
    spec = FAMILIES[name]
    processor = load_processor(folder)
    assert isinstance(processor, getattr(transformers, spec.processor_class))
    assert processor.image_processor.patch_size == spec.patch_size
    assert processor.image_processor.merge_size == 2
    assert processor.tokenizer.padding_side == "left"
    assert (folder / "chat_template.jinja").read_text() == spec.chat_template
    model = AutoModelForImageTextToText.from_pretrained(str(folder))
    assert type(model).__name__ == spec.model_class and model.config.model_type == name
    assert model.config.vision_config.patch_size == spec.patch_size
    assert sum(p.numel() for p in model.parameters()) < 60_000
    assert tiny.checkpoint_family(folder) is spec


def test_qwen3_vl_is_configured_like_the_released_models_at_toy_size(qwen3_dir, tmp_path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(qwen3_dir))
    text, vision = config.text_config, config.vision_config
    assert text.head_dim == 8 and text.hidden_size == 16 and text.num_hidden_layers == 2
    rope = text.rope_parameters
    assert rope["mrope_interleaved"] and sum(rope["mrope_section"]) == text.head_dim // 2
    assert (vision.patch_size, vision.spatial_merge_size, vision.depth) == (16, 2, 2)
    assert list(vision.deepstack_visual_indexes) == [0]  # one DeepStack merger, < depth
    again = build_tiny_editscore(tmp_path / "again", family="qwen3_vl")
    for name in ("model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (again / name).read_bytes() == (qwen3_dir / name).read_bytes()


def test_unknown_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'llava'.*qwen2_5_vl, qwen3_vl"):
        build_tiny_editscore(tmp_path / "x", family="llava")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- prompt construction


@pytest.mark.parametrize("conversation", ["sc", "pq"])
def test_editloop_chat_text_lays_out_the_labelled_images_before_the_prompt(
    family_dir, conversation
):
    """The EditLoop prompt set's layout, for both families (the reference set's own layouts are
    pinned against the package in test_reference_parity.py)."""
    name, folder = family_dir
    processor = load_processor(folder)
    if conversation == "sc":
        prompt, n_images = prompts.sc_conversation("make the sky red", prompt_set="editloop")
    else:
        prompt, n_images = prompts.pq_conversation(prompt_set="editloop")
    text = processor.apply_chat_template(
        prompts.qwen_messages(prompt, n_images), tokenize=False, add_generation_prompt=True
    )
    labelled = "".join(f"<img{i}>: {IMAGE}" for i in range(1, n_images + 1))
    assert text == (
        f"{SYSTEM_TURN}<|im_start|>user\n{labelled}{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )
    # One system turn, the labels in order, each right before its placeholder, all before the
    # prompt text; the prompt ends the user turn (the SC one with the instruction).
    assert text.count("<|im_start|>system") == 1 and text.count(IMAGE) == n_images
    positions = [text.index(f"<img{i}>: {IMAGE}") for i in range(1, n_images + 1)]
    assert positions == sorted(positions) and positions[-1] < text.index(prompt)
    if conversation == "sc":
        ending = "Editing instruction: make the sky red<|im_end|>\n<|im_start|>assistant\n"
        assert text.endswith(ending)
    # EditScore builds exactly this text (the processor's template, the family's own).
    scorer = EditScore.from_pretrained(folder, prompt_set="editloop")
    assert scorer._chat_text(prompt, n_images) == text


def test_the_system_turn_is_the_familys_own(family_dir):
    """Qwen2.5-VL's template adds the default system turn to a conversation without one;
    Qwen3-VL's adds none, renders a leading system message given as text parts, and drops a
    later one. EditScore always sends the system turn, so both families see it."""
    name, folder = family_dir
    processor = load_processor(folder)

    def chat(messages):
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    user = {"role": "user", "content": [{"type": "text", "text": "<img1>: "}, {"type": "image"}]}
    bare = chat([user])
    body = f"<|im_start|>user\n<img1>: {IMAGE}<|im_end|>\n<|im_start|>assistant\n"
    if name == "qwen2_5_vl":
        assert bare == SYSTEM_TURN + body
    else:
        assert bare == body
        parts = {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
        assert chat([parts, user]) == "<|im_start|>system\nBe brief.<|im_end|>\n" + body
        late = {"role": "system", "content": "ignored"}
        assert chat([user, late]) == body
    assert chat(prompts.qwen_messages("", 1)) == SYSTEM_TURN + body


# Expected image tokens (merged patches): each side rounded to the family's token side (28 px
# for Qwen2.5-VL's 14 px patches, 32 px for Qwen3-VL's 16 px ones, 2x2 merged) within the tiny
# budget of 4 to 64 tokens; 1000x1000 is shrunk to the 64-token cap.
PATCHING = {
    # family: (patch, [(width, height) -> (grid_h, grid_w) in patches])
    "qwen2_5_vl": (14, {(224, 224): (16, 16), (100, 60): (4, 8), (1000, 1000): (16, 16)}),
    "qwen3_vl": (16, {(224, 224): (14, 14), (100, 60): (4, 6), (1000, 1000): (16, 16)}),
}


def test_processor_expands_image_pads_to_the_familys_patch_count(family_dir):
    name, folder = family_dir
    processor = load_processor(folder)
    patch, grids = PATCHING[name]
    sizes = list(grids)
    text = processor.apply_chat_template(
        prompts.qwen_messages("Judge.", len(sizes)), tokenize=False, add_generation_prompt=True
    )
    images = [Image.new("RGB", size, (i * 60, 30, 200)) for i, size in enumerate(sizes)]
    encoded = processor(text=[text], images=images, return_tensors="pt")
    expected_grids = [[1, *grids[size]] for size in sizes]
    assert encoded["image_grid_thw"].tolist() == expected_grids
    tokens = [h * w // 4 for _, h, w in expected_grids]
    assert max(tokens) <= 64
    # One row per patch, each a 2-frame patch x patch RGB block.
    assert encoded["pixel_values"].shape == (sum(4 * t for t in tokens), 3 * 2 * patch * patch)
    # Each placeholder became its image's run of pads, in image order, between the labels.
    decoded = processor.tokenizer.decode(encoded["input_ids"][0])
    runs = re.findall(r"<\|vision_start\|>((?:<\|image_pad\|>)*)<\|vision_end\|>", decoded)
    assert [run.count("<|image_pad|>") for run in runs] == tokens
    assert decoded.index("<img1>: ") < decoded.index("<img2>: ") < decoded.index("<img3>: ")
    # mm_token_type_ids mark exactly the pads (the model places 3-D rotary positions by them).
    pads = encoded["input_ids"][0] == processor.image_token_id
    assert torch.equal(encoded["mm_token_type_ids"][0].bool(), pads)


def test_all_linear_adapts_the_qwen3_language_model_only(qwen3_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(str(qwen3_dir))
    vision_linears = [
        n for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and ".visual." in n
    ]
    assert any(".deepstack_merger_list." in n for n in vision_linears)
    targets = ft.resolve_target_modules("all-linear", base)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=targets))
    adapted = {name for name, module in model.named_modules() if hasattr(module, "lora_A")}
    assert len(adapted) == 7 * base.config.text_config.num_hidden_layers
    assert all(".language_model.layers." in name for name in adapted)
    assert not any("visual" in name or "merger" in name for name in adapted)


# ---------------------------------------------------------------- Qwen3-VL end to end


def test_qwen3_batched_and_one_at_a_time_greedy_answers_are_identical(qwen3_dir):
    """Left padding with Qwen3-VL's 3-D rotary positions and DeepStack features: a batch
    answers as its items do alone (the weights jolted, so the answers depend on the inputs)."""
    scorer = EditScore.from_pretrained(qwen3_dir)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in scorer.model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.3)
    items = [
        ScoreItem("make the sky red", png(1), png(2)),
        ScoreItem("add a small dog on the left of the road", png(3, (120, 90)), png(4, (60, 80))),
        ScoreItem("remove the car", png(5, (300, 300)), png(6, (33, 200))),
    ]
    greedy = dict(retries=0, max_new_tokens=16, decoding="greedy")
    batched = scorer.score(items, **greedy)
    alone = [scorer.score([item], **greedy)[0] for item in items]
    assert [r["raw"] for r in batched] == [r["raw"] for r in alone]
    assert len({r["raw"][0] for r in batched}) == 3
    assert all(r["error"] and r["prompt_following"] is None for r in batched)  # never made up


def test_fine_tuned_tiny_qwen3_scores_the_taught_candidate(qwen3_dir, tmp_path):
    """Teach the tiny Qwen3-VL one candidate's SC and PQ answers until greedy generation
    reproduces them, then score the candidate through EditScore with the saved adapter."""
    instruction, source, edited = "make the sky red", png(1), png(2)
    examples = examples_for_candidate(
        instruction,
        source,
        edited,
        sc_scores=(20, 18),
        pq_scores=(22, 19),
        reasoning_sc="Ok.",
        reasoning_pq="Ok.",
    )
    expected_raw = [e.target for e in examples]  # SC answer, then PQ answer
    # As for Qwen2.5-VL (test_rewardmodel_finetune.py): the LoRA also adapts the head and the
    # embeddings, with a high learning rate and one example per step; deterministic on CPU,
    # with a second, shorter round continuing the adapter as the safety net.
    first = FinetuneConfig(
        base_model=str(qwen3_dir),
        output_dir=str(tmp_path / "round1"),
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=["all-linear", "lm_head", "embed_tokens"],
        learning_rate=1e-2,
        warmup_ratio=0.1,
        epochs=80,
        batch_size=1,
        grad_accum=1,
        checkpoint_every=0,
    )
    again = {
        "output_dir": str(tmp_path / "round2"),
        "adapter_init": str(tmp_path / "round1" / "adapter"),
        "learning_rate": 3e-3,
        "epochs": 30,
    }
    started = time.monotonic()
    log = []
    for config in (first, FinetuneConfig.from_dict(first.to_dict() | again)):
        result = ft.finetune(config, examples, on_step=lambda step, m: log.append(m["loss"]))
        assert result["steps"] == 2 * config.epochs and result["truncated"] == 0
        scorer = EditScore.from_pretrained(qwen3_dir, adapter=result["adapter_path"])
        assert type(scorer.model).__name__ == "Qwen3VLForConditionalGeneration"
        (scored,) = scorer.score(
            [ScoreItem(instruction, source, edited)], max_new_tokens=40, decoding="greedy"
        )
        if scored["raw"] == expected_raw:
            break
    seconds = time.monotonic() - started
    print(f"Qwen3-VL fine-tune + score: {seconds:.1f} s, {len(log)} steps, loss {log[-1]:.4f}")
    assert scored["raw"] == expected_raw  # greedy generation = the taught JSON
    assert log[-1] < 0.05 < log[0]
    assert scored["error"] is None and scored["passes"] == 1
    for key, value in aggregate((20, 18), (22, 19), 25).items():
        assert scored[key] == pytest.approx(value)
    assert scored["prompt_following"] == pytest.approx(20 / 2.5)
    assert scored["perceptual_quality"] == pytest.approx(19 / 2.5)
