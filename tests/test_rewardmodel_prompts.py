"""EditScore prompts and chat conversations (rewardmodel/ml/prompts.py) and the aggregation of raw
scores (rewardmodel/ml/scoring.py). Answer parsing: test_rewardmodel_parsing.py."""

import base64
import io
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rewardmodel.ml import prompts, scoring
from rewardmodel.ml.prompts import (
    chat_messages,
    pq_conversation,
    pq_prompt,
    qwen_messages,
    sc_conversation,
    sc_prompt,
)
from rewardmodel.ml.scoring import aggregate, average_passes

REPO = Path(__file__).resolve().parent.parent


def _png(color, size=(8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def _jpeg(color, size=(8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG", quality=95)
    return out.getvalue()


# ---------------------------------------------------------------- prompts


@pytest.mark.parametrize("score_range", [25, 7, 50])
def test_editloop_prompts_use_the_score_range_instead_of_ten(score_range):
    sc = sc_prompt("make the sky red", score_range, "editloop")
    pq = pq_prompt(score_range, "editloop")
    for prompt in (sc, pq):
        assert f"from 0 to {score_range}" in prompt
        assert f"{score_range} means" in prompt  # the top of each scale
        assert not re.search(r"(?<!\d)10(?!\d)", prompt)
        assert "professional digital artist" in prompt
        assert "AI-generated" in prompt
        # reasoning first, then the score list
        fmt = prompt[prompt.index('{"reasoning"') :]
        assert fmt.index('"reasoning"') < fmt.index('"score"')
        assert '"score": [' in fmt
    assert sc.rstrip().endswith("Editing instruction: make the sky red")
    assert "over-editing" in sc and "editing success" in sc
    assert "naturalness" in pq and "artifacts" in pq
    assert "instruction:" not in pq.lower()


@pytest.mark.parametrize("prompt_set", prompts.PROMPT_SETS)
def test_default_range_is_25_and_instruction_digits_are_kept(prompt_set):
    assert prompts.SCORE_RANGE == 25
    prompt = sc_prompt("add 10 balloons", prompt_set=prompt_set)
    assert "from 0 to 25" in prompt.replace("From scale 0 to 25", "from 0 to 25")
    assert prompt.rstrip().endswith("Editing instruction: add 10 balloons")
    assert pq_prompt(prompt_set=prompt_set) == pq_prompt(25, prompt_set)


def test_the_default_prompt_set_is_the_references():
    # The text itself is pinned against the installed package in test_reference_parity.py.
    assert prompts.DEFAULT_PROMPT_SET == "reference"
    assert sc_prompt("x") == sc_prompt("x", 25, "reference") != sc_prompt("x", 25, "editloop")
    assert pq_prompt() == pq_prompt(25, "reference") != pq_prompt(25, "editloop")
    with pytest.raises(ValueError, match="prompt_set"):
        pq_prompt(25, "mine")


def test_prompt_rejects_a_bad_range():
    with pytest.raises(ValueError, match="score_range"):
        pq_prompt(0)


# ---------------------------------------------------------------- chat messages


def test_chat_messages_label_images_and_put_the_prompt_last():
    source, edited = _png("red"), _jpeg("blue")
    messages = chat_messages("PROMPT", [source, edited])
    assert messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert messages[1]["role"] == "user"
    parts = messages[1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "text"]
    assert parts[0]["text"] == "<img1>: "
    assert parts[2]["text"] == "<img2>: "
    assert parts[-1] == {"type": "text", "text": "PROMPT"}
    urls = [parts[1]["image_url"]["url"], parts[3]["image_url"]["url"]]
    assert all(u.startswith("data:image/png;base64,") for u in urls)
    decoded = [base64.b64decode(u.split(",", 1)[1]) for u in urls]
    assert decoded[0] == source  # a PNG travels as is
    with Image.open(io.BytesIO(decoded[1])) as img:  # the JPEG was re-encoded to PNG
        assert img.format == "PNG"
        assert img.size == (8, 6)
        r, g, b = img.convert("RGB").getpixel((3, 3))
        assert b > 240 and r < 15 and g < 15


def test_chat_messages_custom_system_and_bad_image():
    messages = chat_messages("P", [_png("white")], system="Judge.")
    assert messages[0]["content"] == "Judge."
    assert [p["type"] for p in messages[1]["content"]] == ["text", "image_url", "text"]
    with pytest.raises(ValueError, match="not a readable image"):
        chat_messages("P", [b"not an image"])


# ---------------------------------------------------------------- Hugging Face conversations


def test_qwen_messages_label_each_image_before_it_and_put_the_prompt_last():
    messages = qwen_messages("PROMPT", 2)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert messages[1]["content"] == [
        {"type": "text", "text": "<img1>: "},
        {"type": "image"},
        {"type": "text", "text": "<img2>: "},
        {"type": "image"},
        {"type": "text", "text": "PROMPT"},
    ]


def test_qwen_messages_follow_the_openai_layout():
    # Same turns, same labels, same order: only the image parts differ (placeholder vs data URL).
    hf = qwen_messages("P", 2, system="Judge.")
    oa = chat_messages("P", [_png("red"), _png("blue")], system="Judge.")
    assert hf[0] == oa[0] == {"role": "system", "content": "Judge."}
    assert [p["type"] for p in hf[1]["content"]] == [
        "image" if p["type"] == "image_url" else p["type"] for p in oa[1]["content"]
    ]
    assert [p.get("text") for p in hf[1]["content"]] == [p.get("text") for p in oa[1]["content"]]


def test_qwen_messages_one_image_none_and_bad_counts():
    assert qwen_messages("P", 1)[1]["content"] == [
        {"type": "text", "text": "<img1>: "},
        {"type": "image"},
        {"type": "text", "text": "P"},
    ]
    assert qwen_messages("P", 0)[1]["content"] == [{"type": "text", "text": "P"}]
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_images"):
            qwen_messages("P", bad)


def test_sc_and_pq_conversations():
    assert sc_conversation("make the sky red") == (sc_prompt("make the sky red"), 2)
    assert sc_conversation("x", 10) == (sc_prompt("x", 10), 2)
    assert pq_conversation() == (pq_prompt(), 1)
    assert pq_conversation(10) == (pq_prompt(10), 1)
    prompt, n = sc_conversation("make the sky red")
    content = qwen_messages(prompt, n)[1]["content"]
    assert sum(p["type"] == "image" for p in content) == 2
    assert content[-1]["text"].rstrip().endswith("Editing instruction: make the sky red")


def test_prompt_modules_stay_light():
    # The web process imports these through benchmark.ml.scorers: no torch, transformers, Django.
    probe = (
        "import sys; import rewardmodel.ml.prompts, rewardmodel.ml.parsing, "
        "rewardmodel.ml.scoring; "
        "print(sorted(m for m in ('torch', 'transformers', 'django', 'peft') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- aggregation


def test_aggregate_hand_example():
    result = aggregate([20, 15], [25, 10])
    assert result["prompt_following"] == pytest.approx(8.0)
    assert result["consistency"] == pytest.approx(6.0)
    assert result["perceptual_quality"] == pytest.approx(4.0)
    assert result["overall"] == pytest.approx(math.sqrt(24))
    assert set(result) == set(scoring.SCORE_KEYS)


def test_aggregate_with_another_range_and_bad_input():
    result = aggregate([10, 5], [4, 8], score_range=10)
    assert result == pytest.approx(
        {
            "prompt_following": 10.0,
            "consistency": 5.0,
            "perceptual_quality": 4.0,
            "overall": math.sqrt(20),
        }
    )
    with pytest.raises(ValueError):
        aggregate([10], [4, 8])
    with pytest.raises(ValueError):
        aggregate([10, 5], [])


def test_average_passes_skips_missing_values():
    passes = [
        {"prompt_following": 8.0, "consistency": 6.0, "perceptual_quality": 4.0, "overall": 5.0},
        {"prompt_following": 4.0, "consistency": None, "perceptual_quality": 2.0},
        {"prompt_following": 6.0, "consistency": 9.0, "perceptual_quality": 3.0, "overall": 7.0},
    ]
    result = average_passes(passes)
    assert result == pytest.approx(
        {"prompt_following": 6.0, "consistency": 7.5, "perceptual_quality": 3.0, "overall": 6.0}
    )
    assert average_passes([{"prompt_following": 1.0}])["overall"] is None
    assert average_passes([]) == dict.fromkeys(scoring.SCORE_KEYS)


def test_aggregate_overall_uses_the_weaker_of_pf_and_c():
    # C (2) is below PF (10): overall = sqrt(2 * 10)
    result = aggregate([25, 5], [25, 25])
    assert result["overall"] == pytest.approx(math.sqrt(20))
    # a zero anywhere in min(PF, C) or PQ zeroes the overall score
    assert aggregate([0, 25], [25, 25])["overall"] == 0.0
    assert aggregate([25, 25], [0, 25])["overall"] == 0.0
    assert aggregate([25, 25], [25, 25], 25.0) == pytest.approx(
        dict.fromkeys(scoring.SCORE_KEYS, 10.0)
    )


def test_aggregate_refuses_a_bad_range():
    for bad in (0, -25, True):
        with pytest.raises(ValueError, match="score_range"):
            aggregate([1, 1], [1, 1], bad)


def test_average_passes_is_order_independent():
    values = [0.1, 0.2, 0.3, 1e16, -1e16, 0.7]
    passes = [{"overall": v} for v in values]
    forward = average_passes(passes)["overall"]
    assert average_passes(list(reversed(passes)))["overall"] == forward
    assert forward == pytest.approx(1.3 / 6)
