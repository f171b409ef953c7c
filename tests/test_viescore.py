"""VIEScore prompts, answer parsing and score combination (rewardmodel/viescore.py)."""

import base64
import io
import math
import re

import pytest
from PIL import Image

from rewardmodel import viescore
from rewardmodel.viescore import (
    ParseError,
    average_passes,
    chat_messages,
    combine,
    parse_scores,
    pq_prompt,
    sc_prompt,
)


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
def test_prompts_use_the_score_range_instead_of_ten(score_range):
    sc = sc_prompt("make the sky red", score_range)
    pq = pq_prompt(score_range)
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


def test_default_range_is_25_and_instruction_digits_are_kept():
    assert viescore.SCORE_RANGE == 25
    prompt = sc_prompt("add 10 balloons")
    assert "from 0 to 25" in prompt
    assert prompt.endswith("Editing instruction: add 10 balloons")
    assert pq_prompt() == pq_prompt(25)


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


# ---------------------------------------------------------------- parsing

CLEAN = [
    ('{"reasoning": "Sky is red.", "score": [20, 15]}', [20.0, 15.0]),
    ('Sure!\n```json\n{"reasoning": "ok", "score": [0, 25]}\n```\nDone.', [0.0, 25.0]),
    ('{"reasoning": "ok", "score": [12.5, "7"]}', [12.5, 7.0]),
]


@pytest.mark.parametrize(("text", "expected"), CLEAN)
def test_parse_clean_json(text, expected):
    assert parse_scores(text, 2) == expected


REPAIRS = {
    "single quotes": "{'reasoning': 'The dog's hat is red.', 'score': [18, 22]}",
    "bare keys": '{reasoning: "fine", score: [18, 22]}',
    "python literals": '{"reasoning": "ok", "refused": False, "note": None, "score": [18, 22]}',
    "unescaped inner quotes": '{"reasoning": "The sign now reads "OPEN" as asked.", '
    '"score": [18, 22]}',
    "over-escaped quotes": '{\\"reasoning\\": \\"ok\\", \\"score\\": [18, 22]}',
    "trailing commas": '{"reasoning": "ok", "score": [18, 22,],}',
    "bare keys and single quotes": "{reasoning: 'fine', score: [18, 22], ok: True}",
}


@pytest.mark.parametrize("case", sorted(REPAIRS))
def test_parse_repairs(case):
    text = REPAIRS[case]
    # the repair, not the last-resort regex, reads it: the whole object comes back
    obj = viescore._load_object(text[text.find("{") : text.rfind("}") + 1])
    assert obj is not None and obj["score"] == [18, 22]
    assert parse_scores(text, 2) == [18.0, 22.0]


@pytest.mark.parametrize(
    "text",
    [
        "reasoning: the edit works well\nscore: [18, 22]",  # no braces at all
        '{"reasoning": "unterminated, "score": [18, 22]',  # braces never close
        '{"reasoning": "a {weird} answer" "score": [18, 22]}',  # missing comma: not JSON
        "Final Score = 18, 22",
    ],
)
def test_parse_regex_fallback(text):
    assert parse_scores(text, 2) == [18.0, 22.0]


def test_parse_fallback_takes_the_last_score():
    text = 'I would score: [1, 2] at first... {"reasoning": x "score": [18, 22]}'
    assert parse_scores(text, 2) == [18.0, 22.0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"reasoning": "ok", "score": [18]}', "expected 2 scores, found 1"),
        ('{"reasoning": "ok", "score": [18, 22, 3]}', "expected 2 scores, found 3"),
        ('{"reasoning": "ok", "score": []}', "expected 2 scores, found 0"),
        ('{"reasoning": "ok", "score": [18, 26]}', "outside"),
        ('{"reasoning": "ok", "score": [-1, 20]}', "outside"),
        ('{"reasoning": "ok", "score": [NaN, 20]}', "outside"),
        ('{"reasoning": "ok", "score": [18, "high"]}', "not a number"),
        ('{"reasoning": "ok", "score": [true, 20]}', "not a number"),
        ("I cannot help with that request.", "no JSON object"),
        ('{"reasoning": "looks good"}', "no JSON object"),
        ("score: [eight, nine]", "found 0"),
        ("", "empty"),
    ],
)
def test_parse_refuses_rather_than_inventing(text, reason):
    with pytest.raises(ParseError, match=re.escape(reason)):
        parse_scores(text, 2)


def test_parse_error_is_a_value_error_and_range_is_honoured():
    assert issubclass(ParseError, ValueError)
    assert parse_scores('{"reasoning": "", "score": [10, 3]}', 2, score_range=10) == [10.0, 3.0]
    with pytest.raises(ParseError, match=r"outside \[0, 10\]"):
        parse_scores('{"reasoning": "", "score": [11, 3]}', 2, score_range=10)
    assert parse_scores('{"reasoning": "", "score": 4}', 1) == [4.0]


# ---------------------------------------------------------------- combination


def test_combine_hand_example():
    result = combine([20, 15], [25, 10])
    assert result["prompt_following"] == pytest.approx(8.0)
    assert result["consistency"] == pytest.approx(6.0)
    assert result["perceptual_quality"] == pytest.approx(4.0)
    assert result["overall"] == pytest.approx(math.sqrt(24))
    assert set(result) == set(viescore.SCORE_KEYS)


def test_combine_with_another_range_and_bad_input():
    result = combine([10, 5], [4, 8], score_range=10)
    assert result == pytest.approx(
        {
            "prompt_following": 10.0,
            "consistency": 5.0,
            "perceptual_quality": 4.0,
            "overall": math.sqrt(20),
        }
    )
    with pytest.raises(ValueError):
        combine([10], [4, 8])
    with pytest.raises(ValueError):
        combine([10, 5], [])


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
    assert average_passes([]) == dict.fromkeys(viescore.SCORE_KEYS)
