"""Reading judge answers (rewardmodel/ml/parsing.py): a corpus of messy outputs, each read to the
right (reasoning, scores), and answers that must be refused rather than given a made-up score."""

import math
import re
import time

import pytest

from rewardmodel.ml import parsing
from rewardmodel.ml.parsing import ScoreParseError, parse_score_output, parse_scores

# ---------------------------------------------------------------- corpus: (text, reasoning, scores)

CORPUS = {
    "clean": ('{"reasoning": "Sky is red.", "score": [20, 15]}', "Sky is red.", [20, 15]),
    "score first": ('{"score": [20, 18], "reasoning": "fine"}', "fine", [20, 18]),
    "prose around": (
        'Here is my verdict: {"reasoning": "ok", "score": [3, 4]} Thanks!',
        "ok",
        [3, 4],
    ),
    "code fence": (
        'Sure!\n```json\n{"reasoning": "ok", "score": [0, 25]}\n```\nDone.',
        "ok",
        [0, 25],
    ),
    "code fence then braces in prose": (
        '```json\n{"reasoning": "ok", "score": [18, 22]}\n```\nHope {this} helps.',
        "ok",
        [18, 22],
    ),
    "echoed template before the answer": (
        'Format: {"reasoning": "...", "score": [score1, score2]}\n'
        'Answer: {"reasoning": "good", "score": [21, 19]}',
        "good",
        [21, 19],
    ),
    "single quotes": (
        "{'reasoning': 'The dog's hat is red.', 'score': [18, 22]}",
        "The dog's hat is red.",
        [18, 22],
    ),
    "python literals": (
        "{'reasoning': 'ok', 'refused': False, 'note': None, 'score': (18, 22)}",
        "ok",
        [18, 22],
    ),
    "python literals in json": (
        '{"reasoning": "ok", "refused": False, "note": None, "score": [18, 22]}',
        "ok",
        [18, 22],
    ),
    "bare keys": ('{reasoning: "fine", score: [18, 22]}', "fine", [18, 22]),
    "bare keys and single quotes": (
        "{reasoning: 'fine', score: [18, 22], ok: True}",
        "fine",
        [18, 22],
    ),
    "unescaped inner quotes": (
        '{"reasoning": "The sign now reads "OPEN" as asked.", "score": [18, 22]}',
        'The sign now reads "OPEN" as asked.',
        [18, 22],
    ),
    "unescaped inner quotes before a comma": (
        '{"reasoning": "The sign reads "OPEN", as asked.", "score": [18, 22]}',
        'The sign reads "OPEN", as asked.',
        [18, 22],
    ),
    "over-escaped quotes": (
        '{\\"reasoning\\": \\"ok\\", \\"score\\": [18, 22]}',
        "ok",
        [18, 22],
    ),
    "trailing commas": ('{"reasoning": "ok", "score": [18, 22,],}', "ok", [18, 22]),
    "raw newline in the reasoning": (
        '{"reasoning": "line one\nline two", "score": [18, 22]}',
        "line one\nline two",
        [18, 22],
    ),
    "reason key": ('{"reason": "ok", "score": [18, 22]}', "ok", [18, 22]),
    "rationale key": ('{"rationale": "ok", "score": [18, 22]}', "ok", [18, 22]),
    "capitalised keys": ('{"Reasoning": "ok", "Score": [18, 22]}', "ok", [18, 22]),
    "scores key": ('{"reasoning": "ok", "scores": [18, 22]}', "ok", [18, 22]),
    "numbered score keys": ('{"reasoning": "ok", "score1": 18, "score2": 22}', "ok", [18, 22]),
    "scores as strings": ('{"reasoning": "ok", "score": ["7", "8"]}', "ok", [7, 8]),
    "mixed string and float": ('{"reasoning": "ok", "score": [12.5, "7"]}', "ok", [12.5, 7]),
    "score list as one string": ('{"reasoning": "ok", "score": "[18, 22]"}', "ok", [18, 22]),
    "nested object": (
        '{"result": {"reasoning": "nested", "score": [18, 22]}}',
        "nested",
        [18, 22],
    ),
    "no reasoning": ('{"score": [18, 22]}', None, [18, 22]),
    "null reasoning": ('{"reasoning": null, "score": [18, 22]}', None, [18, 22]),
    # the reasoning string is cut short and never closed before the score
    "truncated reasoning, new line": (
        '{"reasoning": "the edit is fi\n"score": [20, 18]}',
        "the edit is fi",
        [20, 18],
    ),
    "truncated reasoning, same line": (
        '{"reasoning": "the edit is fi "score": [20, 18]}',
        "the edit is fi",
        [20, 18],
    ),
    "truncated reasoning with a comma": (
        '{"reasoning": "the edit is fine, "score": [20, 18]}',
        "the edit is fine",
        [20, 18],
    ),
    "truncated reasoning, no closing brace": (
        '{"reasoning": "the edit is fi\n"score": [20, 18]',
        "the edit is fi",
        [20, 18],
    ),
    "missing comma": (
        '{"reasoning": "a {weird} answer" "score": [18, 22]}',
        "a {weird} answer",
        [18, 22],
    ),
    "no braces at all": (
        "reasoning: the edit works well\nscore: [18, 22]",
        "the edit works well",
        [18, 22],
    ),
    "bare numbers": ("Final Score = 18, 22", None, [18, 22]),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus(case):
    text, reasoning, scores = CORPUS[case]
    assert parse_score_output(text) == (reasoning, [float(s) for s in scores])
    assert parse_scores(text, 2) == [float(s) for s in scores]


@pytest.mark.parametrize(
    "case",
    [
        "single quotes",
        "python literals in json",
        "bare keys",
        "bare keys and single quotes",
        "unescaped inner quotes",
        "unescaped inner quotes before a comma",
        "over-escaped quotes",
        "trailing commas",
    ],
)
def test_repairs_read_the_whole_object(case):
    # the repair, not the last-resort regex, reads it: the whole object comes back
    text = CORPUS[case][0]
    obj = parsing._load_object(text[text.find("{") : text.rfind("}") + 1])
    assert obj is not None and obj["score"] == [18, 22]


def test_the_last_score_wins_in_the_fallback():
    text = 'I would score: [1, 2] at first... {"reasoning": x "score": [18, 22]}'
    assert parse_scores(text, 2) == [18.0, 22.0]


def test_reasoning_mentioning_a_score_keeps_the_real_one():
    text = '{"reasoning": "I would not score: [1, 2] here", "score": [18, 22]}'
    assert parse_score_output(text) == ("I would not score: [1, 2] here", [18.0, 22.0])


def test_expected_count_and_range():
    assert parse_score_output('{"reasoning": "", "score": 4}', 1) == ("", [4.0])
    assert parse_score_output('{"reasoning": "r", "score": [1, 2, 3]}', 3) == ("r", [1, 2, 3])
    assert parse_scores('{"reasoning": "", "score": [10, 3]}', 2, score_range=10) == [10.0, 3.0]
    with pytest.raises(ScoreParseError, match=r"outside \[0, 10\]"):
        parse_scores('{"reasoning": "", "score": [11, 3]}', 2, score_range=10)
    assert parse_scores('{"score": [4.5, 0.5]}', 2, score_range=4.5) == [4.5, 0.5]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"reasoning": "ok", "score": [18]}', "expected 2 scores, found 1"),
        ('{"reasoning": "ok", "score": [18, 22, 3]}', "expected 2 scores, found 3"),
        ('{"reasoning": "ok", "score": 18}', "expected 2 scores, found 1"),
        ('{"reasoning": "ok", "score1": 18}', "expected 2 scores, found 1"),
        ('{"reasoning": "ok", "score": []}', "expected 2 scores, found 0"),
        ('{"reasoning": "ok", "score": [18, 26]}', "outside [0, 25]"),
        ('{"reasoning": "ok", "score": [-1, 20]}', "outside"),
        ('{"reasoning": "ok", "score": [100, 20]}', "outside"),
        ('{"reasoning": "ok", "score": [NaN, 20]}', "outside"),
        ('{"reasoning": "ok", "score": [Infinity, 20]}', "outside"),
        ('{"reasoning": "ok", "score": ["NaN", 20]}', "not a number"),
        ('{"reasoning": "ok", "score": [18, "high"]}', "not a number"),
        ('{"reasoning": "ok", "score": [true, 20]}', "not a number"),
        ("{'reasoning': 'ok', 'score': [True, False]}", "not a number"),
        ('{"reasoning": "ok", "score": [null, 20]}', "not a number"),
        ('{"reasoning": "ok", "score": [[18], [22]]}', "not a number"),
        ('{"reasoning": "ok", "score": {"a": 18, "b": 22}}', "not a number"),
        ('{"reasoning": "ok", "score": "18/25"}', "not a number"),
        ("I cannot help with that request.", "no JSON object"),
        ('{"reasoning": "looks good"}', "no JSON object"),
        ('{"reasoning": "the edit is fine and', "no JSON object"),  # cut before any score
        ('{"reasoning": "a high score"}', "no JSON object"),
        ("score: [eight, nine]", "found 0"),
        ("score: [true, 20]", "found 1"),  # fallback: a boolean is not a number
        ("score: [NaN, 20]", "found 1"),
        ("score: [18, 30]", "outside"),
        ("", "empty"),
        ("   \n ", "empty"),
    ],
)
def test_refuses_rather_than_inventing(text, reason):
    with pytest.raises(ScoreParseError, match=re.escape(reason)):
        parse_score_output(text)
    with pytest.raises(ScoreParseError):
        parse_scores(text, 2)


def test_refuses_non_text():
    for bad in (None, b'{"score": [1, 2]}', 3):
        with pytest.raises(ScoreParseError, match="empty"):
            parse_score_output(bad)


def test_parse_error_is_a_value_error():
    assert issubclass(ScoreParseError, ValueError)
    with pytest.raises(ValueError):
        parse_score_output("no scores here")


def test_scores_are_floats_and_never_nan():
    _, scores = parse_score_output('{"reasoning": "ok", "score": [18, "22"]}')
    assert all(type(s) is float and not math.isnan(s) for s in scores)


def test_long_garbage_is_refused_quickly():
    text = "{" * 500 + "score" + "}" * 500 + " nothing to read " * 200
    with pytest.raises(ScoreParseError):
        parse_score_output(text)


def test_deeply_nested_braces_stay_cheap():
    # 20,000 nested spans: only a bounded number of them is tried, then the fallback reads it.
    text = "{" * 20000 + '"score": [1, 2]' + "}" * 20000
    started = time.monotonic()
    assert parse_score_output(text) == (None, [1.0, 2.0])
    assert time.monotonic() - started < 10
