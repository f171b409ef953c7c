"""Reading a judge's answer: the reasoning and the raw scores of one EditScore / VIEScore reply.

Pure Python (the standard library only): imported by the web process through
``benchmark.ml.scorers``, so no torch, transformers or Django here. See ``docs/method.md`` section 3.

The expected answer is ``{"reasoning": "...", "score": [s1, s2]}`` with every score in [0, R].
Models (and API judges) write many near misses; :func:`parse_score_output` reads:

* the object inside prose or a ```json code fence (the first ``{`` to the last ``}``, then each
  balanced ``{...}`` span, the last first);
* as JSON, then after repairs: over-escaped quotes, Python literals (True/False/None, single
  quotes, tuples), bare keys, unescaped quotes inside a string, trailing commas;
* ``reason`` / ``rationale`` / ``explanation`` for ``reasoning``, ``scores`` for ``score``,
  ``score1``, ``score2``... as separate keys, and scores written as strings (``"7"``, ``"7, 8"``);
* failing all that, the numbers after the last ``score:`` / ``score =`` (e.g. a reasoning string
  that is cut short or never closed before ``"score": [...]``), with the reasoning taken as the
  text between the reasoning key and that score.

It never invents a score: a wrong count, a value outside [0, R], NaN, a boolean, an empty list or
no score at all raises :class:`ScoreParseError`, and the caller re-asks a bounded number of times,
then records the candidate as unscored with the raw text kept.
"""

from __future__ import annotations

import ast
import bisect
import json
import re

from .prompts import SCORE_RANGE

__all__ = ["ScoreParseError", "parse_score_output", "parse_scores"]


class ScoreParseError(ValueError):
    """A judge's answer holds no usable scores; the message says why."""


_REASONING_KEYS = ("reasoning", "reason", "rationale", "explanation")
_SCORE_KEYS = ("score", "scores")
_MAX_SPANS = 16  # candidate {...} spans tried per answer
_MAX_DEPTH = 3  # how deep a score key is looked for in nested objects

_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_PY_LITERAL = re.compile(r"\b(True|False|None)\b")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*:)")
_SINGLE_QUOTED = re.compile(r"([{\[,:]\s*)'((?:[^\\]|\\.)*?)'(?=\s*[,:}\]])", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
# What may follow the quote that really closes a JSON string: ':' (it was a key), '}' or ']', or
# a comma followed by the next key or list item; any other quote is part of the text.
_STRING_END = re.compile(
    r"""\s*(?:[:}\]]|,\s*(?:["'{}\[\]]|-?\d|[A-Za-z_]\w*\s*["']?\s*:|(?:true|false|null)\b|$)|$)"""
)
_SCORE_LIST = re.compile(r"scores?\W{0,3}?\s*[:=]\s*\[([^\]]*)\]", re.I)
_SCORE_RUN = re.compile(
    r"scores?\W{0,3}?\s*[:=]\s*(-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)*)", re.I
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NUMBER_LIST = re.compile(r"[\[(]?\s*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)*\s*[\])]?")
_NUMBERED_SCORE = re.compile(r"scores?_?(\d+)")
_REASONING_KEY = re.compile(
    r"""["']?\b(?:reasoning|reason|rationale|explanation)\b["']?\s*[:=]\s*""", re.I
)
_FALLBACK_TAIL = re.compile(r"""\s*["']?\s*,?\s*["']?\s*$""")
_ESCAPE = re.compile(r"""\\(["'\\/nt])""")


# ---------------------------------------------------------------- repairs


def _python_literals(s: str) -> str:
    return _PY_LITERAL.sub(lambda m: _PY_LITERALS[m.group(1)], s)


def _quote_bare_keys(s: str) -> str:
    return _BARE_KEY.sub(r'\1"\2"\3', s)


def _single_to_double_quotes(s: str) -> str:
    def requote(m: re.Match) -> str:
        inner = m.group(2).replace("\\'", "'")
        return m.group(1) + json.dumps(inner)

    return _SINGLE_QUOTED.sub(requote, s)


def _unescape_quotes(s: str) -> str:
    # A whole object written with escaped quotes: {\"reasoning\": \"...\", \"score\": [1, 2]}
    return s.replace('\\"', '"') if '\\"' in s else s


def _escape_inner_quotes(s: str) -> str:
    """Escape the quotes inside string values: a '"' closes a string only when what follows can
    follow a JSON string (see ``_STRING_END``); any other is escaped."""
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(s):
        ch = s[i]
        if in_string and ch == "\\" and i + 1 < len(s):
            out.append(s[i : i + 2])
            i += 2
            continue
        if ch == '"':
            if not in_string:
                in_string = True
            elif _STRING_END.match(s, i + 1):
                in_string = False
            else:
                out.append('\\"')
                i += 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _drop_trailing_commas(s: str) -> str:
    return _TRAILING_COMMA.sub(r"\1", s)


_REPAIRS = (
    _unescape_quotes,
    _python_literals,
    _quote_bare_keys,
    _single_to_double_quotes,
    _escape_inner_quotes,
    _drop_trailing_commas,
)


def _load(s: str) -> object:
    try:
        return json.loads(s, strict=False)  # strict=False: raw newlines inside strings
    except ValueError:
        pass
    try:  # a Python dict literal: single quotes, True/False/None, tuples
        return ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _load_object(span: str) -> dict | None:
    """The span as a dict: as written, after each repair alone, then after all repairs in turn."""
    variants = [span]
    variants += [repair(span) for repair in _REPAIRS]
    cumulative = span
    for repair in _REPAIRS:
        cumulative = repair(cumulative)
        variants.append(cumulative)
    seen = set()
    for variant in variants:
        if variant in seen:
            continue
        seen.add(variant)
        obj = _load(variant)
        if isinstance(obj, dict):
            return obj
    return None


# ---------------------------------------------------------------- finding the object


def _spans(text: str) -> list[str]:
    """Candidate ``{...}`` spans that mention a score: the first '{' to the last '}', then every
    balanced span (braces counted naively), the latest-ending and outermost first."""
    bounds: list[tuple[int, int]] = []
    first, last = text.find("{"), text.rfind("}")
    if first != -1 and last > first:
        bounds.append((first, last + 1))
    stack: list[int] = []
    balanced: list[tuple[int, int]] = []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            balanced.append((stack.pop(), i + 1))
    balanced.sort(key=lambda b: (-b[1], b[0]))
    bounds += [b for b in balanced if b not in bounds]
    # Keep the spans that hold a "score", without slicing every one of them (nested braces in a
    # long answer would make that quadratic).
    hits = [m.start() for m in re.finditer("score", text, re.I)]
    spans = []
    for a, b in bounds:
        i = bisect.bisect_left(hits, a)
        if i < len(hits) and hits[i] + 5 <= b:
            spans.append(text[a:b])
            if len(spans) == _MAX_SPANS:
                break
    return spans


def _key(key: object) -> str | None:
    return key.strip().lower() if isinstance(key, str) else None


def _score_value(obj: dict) -> tuple[bool, object]:
    keys = {_key(k): v for k, v in obj.items() if _key(k) is not None}
    for name in _SCORE_KEYS:
        if name in keys:
            return True, keys[name]
    numbered = {}
    for name, value in keys.items():
        m = _NUMBERED_SCORE.fullmatch(name)
        if m:
            numbered[int(m.group(1))] = value
    if numbered and sorted(numbered) == list(range(1, len(numbered) + 1)):
        return True, [numbered[i] for i in sorted(numbered)]
    return False, None


def _find_score(obj: dict, depth: int = 0) -> tuple[dict, object] | None:
    """(the dict holding the score, the score value), looking into nested objects too."""
    found, value = _score_value(obj)
    if found:
        return obj, value
    if depth < _MAX_DEPTH:
        for value in obj.values():
            if isinstance(value, dict):
                hit = _find_score(value, depth + 1)
                if hit is not None:
                    return hit
    return None


def _reasoning_of(*objs: dict) -> str | None:
    for obj in objs:
        keys = {_key(k): v for k, v in obj.items() if _key(k) is not None}
        for name in _REASONING_KEYS:
            value = keys.get(name)
            if isinstance(value, str):
                return value
            if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
                return " ".join(value)
    return None


def _reasoning_fallback(text: str, score_start: int) -> str | None:
    """The reasoning of an answer that is not an object: the text after the reasoning key, up to
    the score (or, when the score comes first, up to the last '}' or the end)."""
    m = _REASONING_KEY.search(text)
    if m is None:
        return None
    if m.start() < score_start:
        body = text[m.end() : score_start]
    else:
        body = text[m.end() :]
        close = body.rfind("}")
        if close != -1:
            body = body[:close]
    body = _FALLBACK_TAIL.sub("", body).strip()
    if body[:1] in ('"', "'"):
        body = body[1:]
    body = _ESCAPE.sub(lambda e: {"n": "\n", "t": "\t"}.get(e.group(1), e.group(1)), body)
    return body.strip() or None


# ---------------------------------------------------------------- scores


def _as_number(value: object) -> float:
    if isinstance(value, bool):
        raise ScoreParseError(f"score {value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value.strip())
    raise ScoreParseError(f"score {value!r} is not a number")


def _values(value: object) -> list[float]:
    if isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, str) and _NUMBER_LIST.fullmatch(value.strip()):
        items = _NUMBER.findall(value)  # "7, 8" or "[7, 8]"
    else:
        items = [value]
    return [_as_number(v) for v in items]


def _checked(values: list[float], expected: int, score_range: float) -> list[float]:
    if len(values) != expected:
        raise ScoreParseError(f"expected {expected} scores, found {len(values)}: {values}")
    for value in values:
        if not (0 <= value <= score_range):  # also refuses NaN
            raise ScoreParseError(f"score {value:g} is outside [0, {score_range:g}]")
    return values


def parse_score_output(
    text: str, expected: int = 2, score_range: float = SCORE_RANGE
) -> tuple[str | None, list[float]]:
    """(reasoning, raw scores) of a judge's answer: ``expected`` scores, each in
    [0, score_range], not rescaled; the reasoning is None when the answer has none.

    Raises :class:`ScoreParseError` (a ``ValueError``) when no valid scores can be recovered:
    never a made-up score.
    """
    if not isinstance(text, str) or not text.strip():
        raise ScoreParseError("empty answer")
    for span in _spans(text):
        obj = _load_object(span)
        if obj is None:
            continue
        hit = _find_score(obj)
        if hit is not None:
            owner, value = hit
            return _reasoning_of(owner, obj), _checked(_values(value), expected, score_range)
    # Last resort: the numbers after the last "score" (the score list comes after the reasoning).
    matches = list(_SCORE_LIST.finditer(text)) or list(_SCORE_RUN.finditer(text))
    if not matches:
        raise ScoreParseError("no JSON object with a score list and no score numbers in the answer")
    match = matches[-1]
    numbers = [float(n) for n in _NUMBER.findall(match.group(1))]
    scores = _checked(numbers, expected, score_range)
    return _reasoning_fallback(text, match.start()), scores


def parse_scores(text: str, expected: int = 2, score_range: float = SCORE_RANGE) -> list[float]:
    """The raw scores of :func:`parse_score_output`, without the reasoning."""
    return parse_score_output(text, expected, score_range)[1]
