"""VIEScore-style judging of one edited image: prompts, answer parsing and score combination.

Pure Python (the standard library and Pillow): used by the OpenAI-compatible judge in
``benchmark.scorers`` and, later, by the EditScore VLM. The method is described in
``docs/method.md`` section 3; in short:

* Two prompts per candidate. The *semantic consistency* (SC) prompt shows [source, edited] and the
  instruction and asks for two scores: editing success (prompt following) and degree of
  over-editing (consistency; high = a minimal, effective edit). The *perceptual quality* (PQ)
  prompt shows [edited] only and asks for naturalness and artifacts (high = none).
* The rules are written for a 0-10 scale and every "10" in them is replaced by the score range R
  (``SCORE_RANGE`` = 25), so the judge answers integers in [0, R].
* Raw scores are divided by R/10 to come back to 0-10: PF = SC[0], C = SC[1],
  PQ = min(PQ scores), overall = sqrt(min(PF, C) * PQ).
* Answers are parsed strictly: a score is never invented. An answer that cannot be read raises
  :class:`ParseError`; the caller re-asks a bounded number of times and then records the candidate
  as unscored.
* Avg@K: the combined scores of K sampled passes are averaged key by key.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import math
import re
from collections.abc import Sequence

from PIL import Image

SCORE_RANGE = 25
SCORE_KEYS = ("prompt_following", "consistency", "perceptual_quality", "overall")
DEFAULT_SYSTEM = "You are a helpful assistant."

# The prompt texts are ours (a restatement of the VIEScore rules, see docs/method.md). They are
# written for a 0-10 scale; _with_range() swaps every standalone "10" for the range R.
_PERSONA = (
    "You are a professional digital artist. You will judge AI-generated images against the rules "
    "below. Every input image is AI-generated, and so is every person shown in them, so there is "
    "no privacy concern."
)
_OUTPUT_FORMAT = (
    "Answer with a single JSON object and nothing else. Write the reasoning first and keep it "
    "short (one or two sentences); put the scores second, as a list of integers:\n"
    '{"reasoning": "...", "score": [score1, score2]}'
)
_SC_RULES = (
    "Two images are given: the first is an original AI-generated image, the second is an edited "
    "version of it. Judge how well the editing instruction below was carried out in the second "
    "image. The edit may have failed, in which case the two images can look identical.\n"
    "Give two scores from 0 to 10:\n"
    "- score1, editing success: 0 means the edited image does not follow the instruction at all; "
    "10 means it follows the instruction perfectly.\n"
    "- score2, degree of over-editing: 0 means the edited image shows a completely different "
    "scene from the original; 10 means the edited image is recognisably a minimal yet effective "
    "edit of the original, changing only what the instruction asks for.\n"
    "score1 rates the editing success and score2 the degree of over-editing."
)
_PQ_RULES = (
    "One AI-generated image is given. Judge its perceptual quality.\n"
    "Give two scores from 0 to 10:\n"
    "- score1, naturalness: 0 means the image looks completely unnatural (a wrong sense of "
    "distance, inconsistent shadows or lighting, an implausible scene); 10 means it looks "
    "perfectly natural.\n"
    "- score2, artifacts: 0 means the image is dominated by artifacts (distortion, blur, noise, "
    "watermarks, malformed faces, hands or objects); 10 means it shows no artifacts at all.\n"
    "score1 rates the naturalness and score2 the absence of artifacts."
)

_TEN = re.compile(r"(?<!\d)10(?!\d)")


class ParseError(ValueError):
    """A judge's answer holds no usable scores; the message says why."""


def _with_range(text: str, score_range: int) -> str:
    if isinstance(score_range, bool) or not isinstance(score_range, int) or score_range < 1:
        raise ValueError(f"score_range must be a positive integer, got {score_range!r}")
    return _TEN.sub(str(score_range), text)


def sc_prompt(instruction: str, score_range: int = SCORE_RANGE) -> str:
    """Semantic-consistency prompt for images [source, edited]: scores [success, over-editing]."""
    rules = _with_range(f"{_PERSONA}\n\n{_OUTPUT_FORMAT}\n\nRULES:\n\n{_SC_RULES}", score_range)
    # The instruction is appended after the range substitution: a "10" in it stays as written.
    return f"{rules}\n\nEditing instruction: {instruction}"


def pq_prompt(score_range: int = SCORE_RANGE) -> str:
    """Perceptual-quality prompt for image [edited]: scores [naturalness, artifacts]."""
    return _with_range(f"{_PERSONA}\n\n{_OUTPUT_FORMAT}\n\nRULES:\n\n{_PQ_RULES}", score_range)


# ---------------------------------------------------------------- chat messages

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def as_png(data: bytes) -> bytes:
    """``data`` itself when it is already a PNG, else the image re-encoded as PNG."""
    if data[:8] == _PNG_MAGIC:
        return data
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
                img = img.convert("RGB")  # CMYK, YCbCr, F...: PNG cannot store them
            out = io.BytesIO()
            img.save(out, format="PNG")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image: {exc}") from exc
    return out.getvalue()


def png_data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(as_png(data)).decode("ascii")


def chat_messages(
    prompt: str, images: Sequence[bytes], *, system: str = DEFAULT_SYSTEM
) -> list[dict]:
    """OpenAI chat-completions messages: the system turn, then one user turn holding, for each
    image i (1-based), a text label ``<img{i}>: `` and the image as a PNG data URL, with the prompt
    text last (the Qwen2.5-VL layout EditScore was trained on)."""
    content: list[dict] = []
    for i, image in enumerate(images, start=1):
        content.append({"type": "text", "text": f"<img{i}>: "})
        content.append({"type": "image_url", "image_url": {"url": png_data_url(image)}})
    content.append({"type": "text", "text": prompt})
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": content},
    ]


# ---------------------------------------------------------------- parsing

_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_PY_LITERAL = re.compile(r"\b(True|False|None)\b")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*:)")
_SINGLE_QUOTED = re.compile(r"([{\[,:]\s*)'((?:[^\\]|\\.)*?)'(?=\s*[,:}\]])", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_SCORE_LIST = re.compile(r"scores?\W{0,3}?\s*[:=]\s*\[([^\]]*)\]", re.I)
_SCORE_RUN = re.compile(
    r"scores?\W{0,3}?\s*[:=]\s*(-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)*)", re.I
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


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
    """Escape quotes inside string values: a '"' closes a string only when the next
    non-blank character can follow a JSON string (, : } ]); any other is escaped."""
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
            else:
                rest = s[i + 1 :].lstrip()
                if not rest or rest[0] in ",:}]":
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
        return json.loads(s)
    except ValueError:
        pass
    try:  # a Python dict literal: single quotes, True/False/None
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


def _score_field(obj: dict) -> tuple[bool, object]:
    for key, value in obj.items():
        if isinstance(key, str) and key.strip().lower() in ("score", "scores"):
            return True, value
    return False, None


def _as_number(value: object) -> float:
    if isinstance(value, bool):
        raise ParseError(f"score {value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value.strip())
    raise ParseError(f"score {value!r} is not a number")


def _checked(values: list[float], expected: int, score_range: int) -> list[float]:
    if len(values) != expected:
        raise ParseError(f"expected {expected} scores, found {len(values)}: {values}")
    for value in values:
        if not (0 <= value <= score_range):  # also refuses NaN
            raise ParseError(f"score {value:g} is outside [0, {score_range}]")
    return values


def parse_scores(text: str, expected: int, score_range: int = SCORE_RANGE) -> list[float]:
    """The ``expected`` scores of a judge's answer, each in [0, score_range].

    Reads the ``{...}`` span as JSON, then after repairs (Python literals, bare keys, single
    quotes, unescaped inner quotes, over-escaped quotes, trailing commas); failing that, the
    numbers after the last ``score``. Raises :class:`ParseError` when it finds too few or too
    many numbers, or one outside the range: it never makes a score up.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty answer")
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        obj = _load_object(text[start : end + 1])
        if obj is not None:
            found, value = _score_field(obj)
            if found:
                items = value if isinstance(value, list | tuple) else [value]
                return _checked([_as_number(v) for v in items], expected, score_range)
    # Last resort: the numbers after the last "score" (the score list comes after the reasoning).
    matches = list(_SCORE_LIST.finditer(text)) or list(_SCORE_RUN.finditer(text))
    if not matches:
        raise ParseError("no JSON object with a score list and no score numbers in the answer")
    numbers = [float(n) for n in _NUMBER.findall(matches[-1].group(1))]
    return _checked(numbers, expected, score_range)


# ---------------------------------------------------------------- combination


def combine(sc: Sequence[float], pq: Sequence[float], score_range: int = SCORE_RANGE) -> dict:
    """Raw judge scores to the four 0-10 dimensions of one pass.

    PF = SC[0] / (R/10), C = SC[1] / (R/10), PQ = min(PQ) / (R/10),
    overall = sqrt(min(PF, C) * PQ).
    """
    if len(sc) != 2:
        raise ValueError(f"the SC answer needs 2 scores, got {len(sc)}")
    if not pq:
        raise ValueError("the PQ answer needs at least one score")
    scale = score_range / 10
    pf = sc[0] / scale
    c = sc[1] / scale
    q = min(pq) / scale
    return {
        "prompt_following": pf,
        "consistency": c,
        "perceptual_quality": q,
        "overall": math.sqrt(min(pf, c) * q),
    }


def average_passes(passes: Sequence[dict]) -> dict:
    """Avg@K: for each key (the four score keys first, then any other seen), the mean over the
    passes that hold a number for it, or None when none does."""
    keys = list(SCORE_KEYS)
    for p in passes:
        keys += [k for k in p if k not in keys]
    result = {}
    for key in keys:
        values = [p[key] for p in passes if p.get(key) is not None]
        # fsum: exact, so the same pass scores in another order give the same mean
        # (a tie stays a tie; the benchmark counts ties as wrong).
        result[key] = math.fsum(values) / len(values) if values else None
    return result
