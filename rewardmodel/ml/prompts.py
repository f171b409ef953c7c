"""EditScore / VIEScore prompts and the chat conversations that carry them.

Pure Python (the standard library and Pillow, plus the authors' ``editscore`` package, imported
on first use): imported by the web process through ``benchmark.ml.scorers``, so no torch,
transformers or Django here. The method is described in ``docs/method.md`` section 3; in short:

* Two prompts per candidate. The *semantic consistency* (SC) prompt shows [source, edited] and the
  instruction and asks for two scores: editing success (prompt following) and degree of
  over-editing (consistency; high = a minimal, effective edit). The *perceptual quality* (PQ)
  prompt shows [edited] only and asks for naturalness and artifacts (high = none).
* The rules are written for a 0-10 scale and every "10" in them is replaced by the score range R
  (``SCORE_RANGE`` = 25), so the judge answers integers in [0, R]; the answer is a JSON object
  with ``reasoning`` first and ``score`` (a list) second.

Two named prompt sets (:data:`PROMPT_SETS`):

``reference`` (the default) the authors' exact text, taken from the installed ``editscore``
              package by :mod:`rewardmodel.ml.reference`: the released EditScore adapters were
              trained on it, and any other wording is a different model input.
``editloop``  EditLoop's own restatement of the same rules (clearer English, the output format
              spelled out), kept for API judges and for models fine-tuned on it. A reward model
              records the set it was trained with.

Layouts: :func:`chat_messages` builds the conversation for an OpenAI-compatible endpoint (the
system turn, a ``<img{i}>: `` label before each image as a PNG data URL, the prompt text last);
:func:`qwen_messages` the same for a Hugging Face processor's chat template. The reference's own
Qwen template is :func:`rewardmodel.ml.reference.chat_text`.

Parsing lives in :mod:`rewardmodel.ml.parsing`, aggregation in :mod:`rewardmodel.ml.scoring`.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Sequence

from PIL import Image

SCORE_RANGE = 25
DEFAULT_SYSTEM = "You are a helpful assistant."
PROMPT_SETS = ("reference", "editloop")
DEFAULT_PROMPT_SET = "reference"

# The EditLoop prompt texts are ours (a restatement of the VIEScore rules, see docs/method.md). They are
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


def _with_range(text: str, score_range: int) -> str:
    if isinstance(score_range, bool) or not isinstance(score_range, int) or score_range < 1:
        raise ValueError(f"score_range must be a positive integer, got {score_range!r}")
    return _TEN.sub(str(score_range), text)


# The answer a judge writes, as fine-tuning teaches it; targets without a teacher's reasoning
# get a short sentence that says nothing about the image.
NEUTRAL_REASONING_SC = (
    "The scores rate how well the edit follows the instruction and how much of the original it "
    "keeps."
)
NEUTRAL_REASONING_PQ = (
    "The scores rate how natural the edited image looks and how free of artifacts it is."
)


def target_json(reasoning: str, scores: Sequence[int]) -> str:
    """The answer text the model learns: ``{"reasoning": "...", "score": [a, b]}``."""
    return json.dumps(
        {"reasoning": reasoning, "score": [int(s) for s in scores]}, ensure_ascii=False
    )


def check_prompt_set(prompt_set: str) -> str:
    if prompt_set not in PROMPT_SETS:
        raise ValueError(f"prompt_set must be one of {', '.join(PROMPT_SETS)}, got {prompt_set!r}")
    return prompt_set


def sc_prompt(
    instruction: str, score_range: int = SCORE_RANGE, prompt_set: str = DEFAULT_PROMPT_SET
) -> str:
    """Semantic-consistency prompt for images [source, edited]: scores [success, over-editing]."""
    check_prompt_set(prompt_set)
    if prompt_set == "reference":
        from rewardmodel.ml import reference

        return reference.sc_prompt(instruction, score_range)
    rules = _with_range(f"{_PERSONA}\n\n{_OUTPUT_FORMAT}\n\nRULES:\n\n{_SC_RULES}", score_range)
    # The instruction is appended after the range substitution: a "10" in it stays as written
    # (the reference does the same).
    return f"{rules}\n\nEditing instruction: {instruction}"


def pq_prompt(score_range: int = SCORE_RANGE, prompt_set: str = DEFAULT_PROMPT_SET) -> str:
    """Perceptual-quality prompt for image [edited]: scores [naturalness, artifacts]."""
    check_prompt_set(prompt_set)
    if prompt_set == "reference":
        from rewardmodel.ml import reference

        return reference.pq_prompt(score_range)
    return _with_range(f"{_PERSONA}\n\n{_OUTPUT_FORMAT}\n\nRULES:\n\n{_PQ_RULES}", score_range)


def prompts_sha256(score_range: int, prompt_set: str) -> str:
    """A hash of both prompts of a set (the instruction left as a placeholder): what a cache key
    holds so that a change of wording is a change of key."""
    import hashlib

    text = sc_prompt("\x01", score_range, prompt_set) + pq_prompt(score_range, prompt_set)
    return hashlib.sha256(text.encode()).hexdigest()


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


def qwen_messages(prompt: str, n_images: int, *, system: str = DEFAULT_SYSTEM) -> list[dict]:
    """The same conversation for a Hugging Face processor's chat template: the system turn, then
    one user turn holding, for each image i (1-based), a text label ``<img{i}>: `` and an
    ``{"type": "image"}`` placeholder, with the prompt text last. Pass the ``n_images`` images
    to the processor in that order (SC: [source, edited]; PQ: [edited])."""
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 0:
        raise ValueError(f"n_images must be a non-negative integer, got {n_images!r}")
    content: list[dict] = []
    for i in range(1, n_images + 1):
        content.append({"type": "text", "text": f"<img{i}>: "})
        content.append({"type": "image"})
    content.append({"type": "text", "text": prompt})
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": content},
    ]


def sc_conversation(
    instruction: str, score_range: int = SCORE_RANGE, prompt_set: str = DEFAULT_PROMPT_SET
) -> tuple[str, int]:
    """(SC prompt text, number of images): the images are [source, edited]."""
    return sc_prompt(instruction, score_range, prompt_set), 2


def pq_conversation(
    score_range: int = SCORE_RANGE, prompt_set: str = DEFAULT_PROMPT_SET
) -> tuple[str, int]:
    """(PQ prompt text, number of images): the image is [edited]."""
    return pq_prompt(score_range, prompt_set), 1
