"""Scorers: turn edited candidates into prompt-following, consistency, quality and overall scores.

Pure Python (standard library, numpy, Pillow; no Django), so a benchmark run can use them from a
Celery task, a management command or a notebook alike.

A scorer is built from a spec, either text (``parse_spec("openai:model=gpt-4.1,k=4")``) or a dict,
by :func:`make_scorer`. Kinds:

``random``   seeded noise; a candidate's scores depend only on (seed, candidate content), so
             reruns and resumed runs agree. Options: ``seed`` (default 0).
``constant`` every dimension = ``value`` (default 5.0): every pair is a tie (accuracy 0).
``pixel``    no weights, a sanity baseline (see :class:`PixelScorer` for the formulas).
``file``     scores precomputed elsewhere, one JSON object per line. Options: ``path``.
``openai``   any OpenAI-compatible chat-completions endpoint used as a VIEScore judge
             (see :class:`OpenAIScorer`).
``editscore`` the EditScore VLM, loaded in the worker (see :class:`EditScoreScorer`).

Every scorer that looks at pixels first resizes the edited image to the source's size
(docs/method.md section 2); random, constant and file never look at pixels.

``Scorer.cache_key()`` is a hash of ``Scorer.config()``, which holds everything that determines
the scores (and never a secret): two scorers share a cache key only if they would score alike.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import random
import re
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from http.client import HTTPException
from pathlib import Path

import numpy as np
from PIL import Image

from rewardmodel.ml import parsing, prompts, scoring
from rewardmodel.ml.client import (
    ResponseTooLarge,
    bounded_handlers,
    deadline,
    json_content_type,
    read_bounded,
)

SCORE_FIELDS = scoring.SCORE_KEYS


@dataclass(frozen=True)
class Candidate:
    """One edited image to score: ``key`` is the candidate id used in benchmark pairs."""

    key: str
    instruction: str
    source: bytes = field(repr=False)
    edited: bytes = field(repr=False)

    def content_hash(self) -> str:
        """sha256 over the instruction and both images, each prefixed by its length so that
        moving bytes from one field to the next changes the hash."""
        digest = hashlib.sha256()
        for part in (self.instruction.encode("utf-8"), self.source, self.edited):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()


@dataclass
class Score:
    """Scores on 0-10 (None = not scored); ``error`` says why a candidate is unscored."""

    prompt_following: float | None = None
    consistency: float | None = None
    perceptual_quality: float | None = None
    overall: float | None = None
    raw: list[str] = field(default_factory=list)  # raw model outputs, kept for inspection
    error: str | None = None
    # A judge's reasoning of its first pass, {"SC": ..., "PQ": ...}, where it wrote one:
    # a teacher for fine-tuning keeps it when its scores order candidates as humans do.
    reasoning: dict[str, str] | None = None

    @property
    def scored(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        return asdict(self)


def _combined(pf: float, c: float, pq: float) -> Score:
    return Score(
        prompt_following=pf,
        consistency=c,
        perceptual_quality=pq,
        overall=math.sqrt(max(0.0, min(pf, c) * pq)),
    )


class Scorer:
    """Base class. Subclasses set ``kind`` and ``version`` (bump it when the scoring changes, so
    that cached scores are not reused), and implement ``_options`` and ``score``."""

    kind: str = ""
    # True when scores follow the candidate's id rather than its content (a scores
    # file): such a scorer must not share scores between candidates of equal content.
    keyed_by_candidate: bool = False
    version: int = 1

    def _options(self) -> dict:
        return {}

    def config(self) -> dict:
        """Everything that determines the scores (never a secret)."""
        return {"kind": self.kind, "version": self.version, **self._options()}

    def settings(self) -> dict:
        """config() without what would need reading files (a model's fingerprint): what a web
        request may show before the worker computes the full config."""
        return self.config()

    def cache_key(self) -> str:
        canonical = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config()}>"


# ---------------------------------------------------------------- images


def _open(data: bytes, what: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the {what} image cannot be read: {exc}") from exc
    return img


def resize_to_source(source: bytes, edited: bytes) -> bytes:
    """The edited image at the source's pixel size, as PNG bytes (bicubic); ``edited`` itself,
    untouched, when the sizes already match. Raises ValueError on unreadable images."""
    src = _open(source, "source")
    out = _open(edited, "edited")
    if out.size == src.size:
        return edited
    if out.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = "A" in out.getbands() or "transparency" in out.info
        out = out.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    out.resize(src.size, Image.Resampling.BICUBIC).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- simple scorers


class RandomScorer(Scorer):
    """Uniform scores in [0, 10] for PF, C and PQ, overall = sqrt(min(PF, C) * PQ), drawn from a
    generator seeded by (seed, candidate content hash): the same candidate always gets the same
    scores under one seed, whatever else is in the batch."""

    kind = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _options(self) -> dict:
        return {"seed": self.seed}

    def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            material = f"{self.seed}:{candidate.content_hash()}".encode()
            rng = random.Random(int.from_bytes(hashlib.sha256(material).digest(), "big"))
            scores.append(_combined(rng.uniform(0, 10), rng.uniform(0, 10), rng.uniform(0, 10)))
        return scores


class ConstantScorer(Scorer):
    """Every dimension of every candidate = ``value``: all pairs tie, so accuracy is 0."""

    kind = "constant"

    def __init__(self, value: float = 5.0):
        self.value = float(value)

    def _options(self) -> dict:
        return {"value": self.value}

    def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        v = self.value
        return [
            Score(prompt_following=v, consistency=v, perceptual_quality=v, overall=v)
            for _ in candidates
        ]


class PixelScorer(Scorer):
    """A weight-free baseline from pixels alone (after resizing the edited image to the source's
    size, then both to at most ``ANALYSIS_MAX_SIDE`` pixels on the long side, in grayscale 0-1):

    * consistency = 10 * (1 - mean |source - edited|): an untouched copy scores 10.
    * prompt following = 10 * sqrt(fraction of pixels whose value moved by more than
      ``CHANGE_THRESHOLD``): an edit that changes nothing did not follow the prompt (0); the
      square root gives small local edits some credit (4 % of the pixels changed -> 2).
      It knows nothing of the instruction: it rewards *change*, not the *right* change.
    * perceptual quality = 10 * v / (v + ``SHARPNESS_HALF_POINT``), v the variance of the
      4-neighbour Laplacian on the 0-255 scale: blur lowers it (v = 100, a common blur
      threshold, gives 5). Noise raises v too, so noise reads as sharpness: a known weakness.
    * overall = sqrt(min(PF, C) * PQ).
    """

    kind = "pixel"
    ANALYSIS_MAX_SIDE = 512
    CHANGE_THRESHOLD = 0.1
    SHARPNESS_HALF_POINT = 100.0

    def _options(self) -> dict:
        return {
            "analysis_max_side": self.ANALYSIS_MAX_SIDE,
            "change_threshold": self.CHANGE_THRESHOLD,
            "sharpness_half_point": self.SHARPNESS_HALF_POINT,
            "resize": "edited to source, bicubic",
        }

    def _gray(self, img: Image.Image) -> np.ndarray:
        img = img.convert("L")
        scale = self.ANALYSIS_MAX_SIDE / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.BOX)
        return np.asarray(img, dtype=np.float64) / 255.0

    def _score_one(self, candidate: Candidate) -> Score:
        try:
            edited = resize_to_source(candidate.source, candidate.edited)
            src = self._gray(_open(candidate.source, "source"))
            out = self._gray(_open(edited, "edited"))
        except ValueError as exc:
            return Score(error=str(exc))
        diff = np.abs(src - out)
        consistency = 10.0 * (1.0 - float(diff.mean()))
        prompt_following = 10.0 * math.sqrt(float((diff > self.CHANGE_THRESHOLD).mean()))
        g = out * 255.0
        if g.shape[0] < 3 or g.shape[1] < 3:
            sharpness = 0.0
        else:
            laplacian = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
            sharpness = float(laplacian.var())
        quality = 10.0 * sharpness / (sharpness + self.SHARPNESS_HALF_POINT)
        return _combined(prompt_following, consistency, quality)

    def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        return [self._score_one(c) for c in candidates]


class FileScorer(Scorer):
    """Scores read from a JSONL file: one object per line with ``key`` (the candidate id) and
    numbers ``prompt_following``, ``consistency``, ``overall`` and optionally
    ``perceptual_quality``; other fields are ignored, blank lines skipped. The file is read and
    checked when the scorer is made (ValueError naming the file and line); its content hash is
    part of the config, so editing the file changes the cache key. A candidate missing from the
    file is unscored with error "not in the scores file"."""

    kind = "file"
    keyed_by_candidate = True
    REQUIRED = ("prompt_following", "consistency", "overall")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read the scores file {self.path}: {exc}") from exc
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.rows = self._parse(data)

    def _parse(self, data: bytes) -> dict[str, Score]:
        rows: dict[str, Score] = {}
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue

            def bad(reason: str, number: int = number) -> ValueError:
                return ValueError(f"{self.path}, line {number}: {reason}")

            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise bad(f"not valid JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise bad("expected a JSON object")
            key = obj.get("key")
            if not isinstance(key, str) or not key:
                raise bad('"key" must be a non-empty string')
            if key in rows:
                raise bad(f"key {key!r} appears twice")
            values = {}
            for name in SCORE_FIELDS:
                if name not in obj:
                    if name in self.REQUIRED:
                        raise bad(f'"{name}" is missing')
                    continue
                value = obj[name]
                if name == "perceptual_quality" and value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise bad(f'"{name}" must be a number, got {value!r}')
                if not math.isfinite(value):
                    raise bad(f'"{name}" must be finite, got {value!r}')
                values[name] = float(value)
            rows[key] = Score(**values)
        return rows

    def _options(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256}

    def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            row = self.rows.get(candidate.key)
            if row is None:
                scores.append(Score(error="not in the scores file"))
            else:
                scores.append(Score(**{name: getattr(row, name) for name in SCORE_FIELDS}))
        return scores


# ---------------------------------------------------------------- OpenAI-compatible judge


class _RequestFailed(Exception):
    pass


@dataclass
class _Answer:
    """One SC or PQ question of one pass: the parsed scores, or the reason there are none."""

    scores: list[float] | None
    raw: list[str]
    error: str | None = None
    reasoning: str | None = None


class OpenAIScorer(Scorer):
    """A VIEScore judge behind any OpenAI-compatible ``/chat/completions`` endpoint.

    Per candidate and pass i (of ``k``): an SC request with [source, edited] and a PQ request
    with [edited] (edited resized to the source's size), sampled with ``temperature``, ``top_p``,
    ``seed`` + i and ``max_tokens``; ``top_k`` is sent only when set (vLLM accepts it, the OpenAI
    API does not). A pass counts when both answers parse; it is combined with
    :func:`rewardmodel.ml.scoring.aggregate` and the passes that count are averaged (Avg@K). A
    candidate with no counting pass is unscored: ``error`` gives the reasons, ``raw`` keeps every
    answer.

    Transport: ``concurrency`` requests in flight at most (a thread pool), a ``timeout`` per
    socket operation and 3 x ``timeout`` for a whole request (a server that trickles an answer
    forever is cut off), answers of at most MAX_RESPONSE_BYTES (a larger one, or one that is not
    JSON by its Content-Type, is unreadable), and up to ``retries`` retries with exponential backoff
    (``backoff`` * 2**attempt seconds, or the server's Retry-After when longer) on HTTP 429, 5xx,
    unreadable responses, timeouts and connection errors; other HTTP errors are not retried. An
    answer that does not parse is re-asked (the same request) up to ``retries`` times.
    These transport options do not change what a successful answer is, so they are not part of
    ``config()``; the API key (env OPENAI_API_KEY) never is.
    """

    kind = "openai"
    RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))

    def __init__(
        self,
        *,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        k: int = 1,
        temperature: float | None = None,
        top_p: float = 0.9,
        top_k: int | None = None,
        seed: int = 42,
        max_tokens: int = 512,
        score_range: int = prompts.SCORE_RANGE,
        prompt_set: str = prompts.DEFAULT_PROMPT_SET,
        concurrency: int = 4,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
    ):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.k = k
        # floats, so that 0 and 0.0 give one cache key
        self.temperature = float((0.7 if k > 1 else 0.0) if temperature is None else temperature)
        self.top_p = float(top_p)
        self.top_k = top_k
        self.seed = seed
        self.max_tokens = max_tokens
        self.score_range = score_range
        self.prompt_set = prompts.check_prompt_set(prompt_set)
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def _options(self) -> dict:
        texts = "\x00".join(
            [
                prompts.DEFAULT_SYSTEM,
                prompts.sc_prompt("\x01instruction\x01", self.score_range, self.prompt_set),
                prompts.pq_prompt(self.score_range, self.prompt_set),
            ]
        )
        return {
            "model": self.model,
            "base_url": _without_credentials(self.base_url),
            "k": self.k,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "score_range": self.score_range,
            "prompt_set": self.prompt_set,
            "prompts_sha256": hashlib.sha256(texts.encode("utf-8")).hexdigest(),
            "images": "edited resized to source (bicubic), PNG data URLs",
        }

    # -- one HTTP request, with retries on transient failures

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        opener = urllib.request.build_opener(_NoRedirect, *bounded_handlers())
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            retry_after = 0.0
            state = None
            try:
                request = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with deadline(3 * self.timeout) as state:
                    with opener.open(request, timeout=self.timeout) as response:
                        wrong_type = json_content_type(response)
                        if wrong_type:
                            raise _BadResponse(wrong_type)
                        payload = read_bounded(response, MAX_RESPONSE_BYTES, state)
                return _content_of(payload)
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                reason = f"HTTP {exc.code}{detail}"
                if exc.code not in self.RETRYABLE_STATUS:
                    raise _RequestFailed(reason) from None
                retry_after = _retry_after_seconds(exc)
            except _BadResponse as exc:
                reason = f"unreadable response: {exc}"
            except ResponseTooLarge as exc:
                reason = f"unreadable response: {exc}"
            except (urllib.error.URLError, HTTPException, OSError) as exc:
                cause = getattr(exc, "reason", exc)
                if state is not None and state.expired and not isinstance(cause, TimeoutError):
                    cause = TimeoutError(f"no complete answer within {state.seconds:g} s")
                kind = "timeout" if isinstance(cause, TimeoutError) else "connection error"
                reason = f"{kind}: {cause}"
            if attempt >= self.retries:
                raise _RequestFailed(f"{reason} (after {attempt + 1} attempts)")
            time.sleep(max(self.backoff * 2**attempt, min(retry_after, 60.0)))
            attempt += 1

    # -- one question of one pass, re-asked while the answer does not parse

    def _ask(self, messages: list[dict], pass_index: int, question: str) -> _Answer:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed + pass_index,
        }
        if self.top_k is not None:
            body["top_k"] = self.top_k
        data = json.dumps(body).encode("utf-8")
        label = f"pass {pass_index} {question}"
        raw: list[str] = []
        error = None
        for _ in range(self.retries + 1):
            try:
                text = self._post(data)
            except _RequestFailed as exc:
                return _Answer(None, raw, f"{label}: {exc}")
            raw.append(text)
            try:
                reasoning, scores = parsing.parse_score_output(text, 2, self.score_range)
                return _Answer(scores, raw, reasoning=reasoning)
            except parsing.ScoreParseError as exc:
                error = f"{label}: unparseable answer ({exc})"
        return _Answer(None, raw, f"{error}, {len(raw)} answers")

    def _messages(self, candidate: Candidate) -> dict[str, list[dict]]:
        edited = resize_to_source(candidate.source, candidate.edited)
        return {
            "SC": prompts.chat_messages(
                prompts.sc_prompt(candidate.instruction, self.score_range, self.prompt_set),
                [candidate.source, edited],
            ),
            "PQ": prompts.chat_messages(
                prompts.pq_prompt(self.score_range, self.prompt_set), [edited]
            ),
        }

    def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        answers: list[dict[tuple[int, str], _Answer]] = [{} for _ in candidates]
        errors: list[str | None] = [None] * len(candidates)
        in_flight: dict[Future, tuple[int, int, str]] = {}
        # Messages are built as requests are submitted and at most 2x concurrency requests wait
        # at once, so only a few candidates' encoded images are held in memory at a time.
        limit = 2 * self.concurrency

        def collect(done) -> None:
            for future in done:
                index, pass_index, question = in_flight.pop(future)
                answers[index][pass_index, question] = future.result()

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai-judge") as pool:
            for index, candidate in enumerate(candidates):
                try:
                    messages = self._messages(candidate)
                except ValueError as exc:
                    errors[index] = str(exc)
                    continue
                for pass_index in range(self.k):
                    for question in ("SC", "PQ"):
                        while len(in_flight) >= limit:
                            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                            collect(done)
                        future = pool.submit(self._ask, messages[question], pass_index, question)
                        in_flight[future] = (index, pass_index, question)
            collect(wait(in_flight).done)
        return [
            Score(error=errors[i]) if errors[i] else self._result(answers[i])
            for i in range(len(candidates))
        ]

    def _result(self, answers: dict[tuple[int, str], _Answer]) -> Score:
        passes, raw, reasons = [], [], []
        for pass_index in range(self.k):
            sc, pq = answers[pass_index, "SC"], answers[pass_index, "PQ"]
            raw += sc.raw + pq.raw
            reasons += [a.error for a in (sc, pq) if a.error]
            if sc.scores is not None and pq.scores is not None:
                passes.append(scoring.aggregate(sc.scores, pq.scores, self.score_range))
        if len(passes) < self.k:
            # Avg@K over fewer passes is another estimator: unscored (and so not
            # cached: a rerun asks again) rather than silently Avg@(K-1).
            missing = f"{self.k - len(passes)} of {self.k} passes failed"
            return Score(raw=raw, error="; ".join([missing, *reasons]))
        mean = scoring.average_passes(passes)
        first = {q: answers[0, q].reasoning for q in ("SC", "PQ")}
        reasoning = {q: text for q, text in first.items() if text}
        return Score(**{name: mean[name] for name in SCORE_FIELDS}, raw=raw,
                     reasoning=reasoning or None)  # fmt: skip


# ---------------------------------------------------------------- EditScore (a local VLM)


MAX_MODEL_FILES = 10_000


def folder_fingerprint(path: str | os.PathLike) -> str:
    """What identifies a checkpoint or adapter folder in a cache key: every file's name
    and size, and the bytes of the small ones (configs, adapters of a few hundred MB are
    hashed by their first and last 4 MB). Two adapters on one base never collide (the
    reference code keyed its cache by the base model's name only)."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{path}: not a folder")
    files = []
    for file in root.rglob("*"):  # bounded: a model folder holds tens of files, not a disk
        if file.is_file():
            files.append(file)
            if len(files) > MAX_MODEL_FILES:
                raise ValueError(f"{path}: more than {MAX_MODEL_FILES} files, not a model folder")
    digest = hashlib.sha256()
    for file in sorted(files):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(root)}\0{size}\0".encode())
        with open(file, "rb") as f:
            if size <= 8 * 2**20:
                digest.update(f.read())
            else:
                digest.update(f.read(4 * 2**20))
                f.seek(-4 * 2**20, os.SEEK_END)
                digest.update(f.read())
    return digest.hexdigest()


# The EditScore scorer's options with a fixed set of values, the default first. The benchmark
# takes two of the model's parse policies: reference_batch is the RL reward server's path.
EDITSCORE_CHOICES = {
    "prompt_set": prompts.PROMPT_SETS,
    "decoding": ("sample", "greedy"),
    "parse_policy": ("unscored", "reference"),
    "backend": ("transformers", "vllm"),
}


class EditScoreScorer(Scorer):
    """The EditScore VLM (rewardmodel.ml.model.EditScore): a Qwen2.5-VL or Qwen3-VL checkpoint,
    with an optional LoRA adapter, loaded in the worker on first use (torch stays out of the web
    process). As the authors' code by default: their prompt set, every pass sampled (pass i
    seeded 42+i, K = 1 included), images sized as theirs, the edit resized to the source first.
    ``parse_policy`` says what an unreadable answer becomes: ``unscored`` (default: re-generated,
    then unscored with the raw text kept, and so counted wrong) or ``reference`` (the package's
    own fallback, to reproduce a published number); ``decoding=greedy`` and ``max_pixels`` are
    explicit departures. Every one of these settings is in :meth:`config` (and the cache key)."""

    kind = "editscore"

    def __init__(self, *, base, adapter=None, k=1, temperature=0.7, top_p=0.9, top_k=20,
                 max_new_tokens=512, seed=42, batch_size=16, retries=2, device="auto",
                 dtype=None, score_range=prompts.SCORE_RANGE, prompt_set=prompts.DEFAULT_PROMPT_SET,
                 decoding="sample", parse_policy="unscored", max_pixels=None, backend="transformers"):  # fmt: skip
        self.base, self.adapter = (
            str(Path(base).resolve()),
            adapter and str(Path(adapter).resolve()),
        )
        for folder in (self.base, self.adapter):
            if folder and not Path(folder).is_dir():
                raise ValueError(f"{folder}: not a folder")
        self.k, self.temperature, self.top_p, self.top_k = (
            k,
            float(temperature),
            float(top_p),
            top_k,
        )
        self.max_new_tokens, self.seed, self.score_range = max_new_tokens, seed, score_range
        self.batch_size, self.retries, self.device, self.dtype = batch_size, retries, device, dtype
        # make_scorer checks these against EDITSCORE_CHOICES
        self.prompt_set, self.decoding = prompt_set, decoding
        self.parse_policy, self.backend = parse_policy, backend
        self.max_pixels = max_pixels
        self._model = None

    # Read lazily: a fingerprint reads the folder's files (seconds for a large checkpoint), so
    # building the scorer to check a spec (in a web request) reads nothing; the worker, which
    # computes the cache key, does.
    def settings(self) -> dict:
        return {"kind": self.kind, "version": self.version, **self._options(files=False)}

    @functools.cached_property
    def base_fingerprint(self) -> str:
        return folder_fingerprint(self.base)

    @functools.cached_property
    def adapter_fingerprint(self) -> str | None:
        return folder_fingerprint(self.adapter) if self.adapter else None

    def _options(self, files: bool = True) -> dict:
        pending = "computed when the run starts"  # settings(): nothing read
        return {
            "base": self.base, "base_fingerprint": self.base_fingerprint if files else pending,
            "adapter": self.adapter,
            "adapter_fingerprint": (self.adapter_fingerprint if files
                                    else pending if self.adapter else None),
            "k": self.k, "decoding": self.decoding,
            # greedy decoding ignores the sampling parameters: one cache key for all of them
            "temperature": self.temperature if self.decoding == "sample" else 0.0,
            "top_p": self.top_p if self.decoding == "sample" else None,
            "top_k": self.top_k if self.decoding == "sample" else None,
            "max_new_tokens": self.max_new_tokens, "seed": self.seed,
            "score_range": self.score_range, "retries": self.retries, "dtype": self.dtype,
            "parse_policy": self.parse_policy, "max_pixels": self.max_pixels,
            "backend": self.backend, "prompt_set": self.prompt_set,
            "prompts_sha256": prompts.prompts_sha256(self.score_range, self.prompt_set),
            "images": "edited resized to source (bicubic), then as the reference sizes them",
        }  # fmt: skip

    def _load(self):
        if self._model is None:
            import torch

            from rewardmodel.ml.model import EditScore

            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = EditScore.from_pretrained(
                self.base, adapter=self.adapter, device=device, dtype=self.dtype,
                score_range=self.score_range, prompt_set=self.prompt_set,
                max_pixels=self.max_pixels, backend=self.backend,
            )  # fmt: skip
        return self._model

    def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        from rewardmodel.ml.model import ScoreItem

        model = self._load()
        results = model.score(
            [ScoreItem(c.instruction, c.source, resize_to_source(c.source, c.edited)) for c in candidates],
            k=self.k, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            max_new_tokens=self.max_new_tokens, seed=self.seed, batch_size=self.batch_size,
            retries=self.retries, decoding=self.decoding, parse_policy=self.parse_policy,
        )  # fmt: skip
        return [
            Score(
                **({name: r.get(name) for name in SCORE_FIELDS} if not r.get("error") else {}),
                raw=list(r.get("raw") or []),
                error=r.get("error"),
            )
            for r in results
        ]


class _BadResponse(Exception):
    pass


# A chat completion of max_tokens is a few kB; far more is a broken or hostile endpoint.
MAX_RESPONSE_BYTES = 16 * 2**20
MAX_ANSWER_CHARS = 200_000  # ~50k tokens of answer text


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the POST's Authorization header to another URL: refuse it
    (urllib then raises HTTPError with the 3xx status, which is not retried)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _content_of(payload: bytes) -> str:
    """The answer text of a chat-completions response body. A refusal (content null) becomes
    its refusal text or "", which then fails to parse and is re-asked."""
    try:
        message = json.loads(payload)["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
        raise _BadResponse(f"no choices[0].message ({exc!r}): {payload[:200]!r}") from None
    if not isinstance(message, dict):
        raise _BadResponse(f"choices[0].message is not an object: {payload[:200]!r}")
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if content is None:
        content = message.get("refusal") or ""
    content = str(content)
    if len(content) > MAX_ANSWER_CHARS:  # kept in Score.raw and parsed: bounded
        raise _BadResponse(f"an answer of {len(content)} characters; the limit is {MAX_ANSWER_CHARS}")  # fmt: skip
    return content


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", errors="replace").strip()
    except Exception:  # the body is only for the message
        text = ""
    return f": {text}" if text else ""


def _retry_after_seconds(exc: urllib.error.HTTPError) -> float:
    try:
        return max(0.0, float(exc.headers.get("Retry-After", "")))
    except (TypeError, ValueError):
        return 0.0


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


# ---------------------------------------------------------------- specs

_KIND = re.compile(r"[a-z][a-z0-9_-]*")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def _spec_value(text: str) -> object:
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_spec(text: str) -> dict:
    """``"kind"`` or ``"kind:name=value,name=value"`` to ``{"kind": kind, name: value, ...}``.

    Integers and decimals become numbers and true/false booleans; anything else stays a string.
    The first ":" ends the kind, so values may hold ":" (URLs) but not ",".
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty scorer spec: expected 'kind' or 'kind:name=value,...'")
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip()
    if not _KIND.fullmatch(kind):
        raise ValueError(f"bad scorer kind {kind!r} in spec {text!r}")
    spec: dict = {"kind": kind}
    if not rest.strip():
        return spec
    for item in rest.split(","):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(
                f"bad option {item.strip()!r} in scorer spec {text!r}: expected name=value"
            )
        if name in spec:
            raise ValueError(f"option {name!r} given twice in scorer spec {text!r}")
        spec[name] = _spec_value(value.strip())
    return spec


def _number(spec: dict, name: str, default, *, integer: bool = False, low=None, high=None):
    value = spec.get(name, default)
    if value is None:
        if default is None:
            return None
        raise ValueError(f"scorer option {name!r} must not be empty")
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        expected = "an integer" if integer else "a number"
        raise ValueError(f"scorer option {name!r} must be {expected}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"scorer option {name!r} must be in {bounds}, got {value!r}")
    return value if integer else float(value)


_OPTIONS = {
    "random": {"seed"},
    "constant": {"value"},
    "pixel": set(),
    "file": {"path"},
    "openai": {
        "model",
        "base_url",
        "k",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "max_tokens",
        "score_range",
        "prompt_set",
        "concurrency",
        "timeout",
        "retries",
        "backoff",
    },
    "editscore": {
        "base",
        "adapter",
        "k",
        "temperature",
        "top_p",
        "top_k",
        "max_new_tokens",
        "seed",
        "batch_size",
        "retries",
        "device",
        "dtype",
        "score_range",
        "prompt_set",
        "decoding",
        "parse_policy",
        "max_pixels",
        "backend",
    },
}


MAX_K = 16  # Avg@K passes at most
# The openai scorer's bounds: a typo must not open 100,000 connections or wait for days.
MAX_CONCURRENCY = 64
MAX_TIMEOUT_SECONDS = 600.0
MAX_RETRIES = 10
MAX_BACKOFF_SECONDS = 60.0
MAX_TOKENS = 32768
MAX_SCORES_FILE_BYTES = 200 * 1024 * 1024


def _choice(spec: dict, name: str, choices: Sequence[str]) -> str:
    """Option ``name`` of ``spec``, one of ``choices`` (the first is the default)."""
    value = spec.get(name, choices[0])
    if value not in choices:
        raise ValueError(
            f"scorer option {name!r} must be one of {', '.join(choices)}, got {value!r}"
        )
    return value


def _inside_scores_dir(path: str, scores_dir: Path) -> str:
    """Scores files of runs started from the web come from one folder: a regular file
    inside it (symlinks resolved), under a size cap. One message for anything else, so
    the answer does not tell what exists elsewhere on the server."""
    root = scores_dir.resolve()
    resolved = (root / path).resolve()
    refused = ValueError(
        f"scores files must be regular files of at most {MAX_SCORES_FILE_BYTES // 2**20} MB "
        f"inside the scores folder ({root}); {path!r} is not"
    )
    if not resolved.is_relative_to(root):
        raise refused
    try:
        info = resolved.stat()
    except OSError:
        raise refused from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SCORES_FILE_BYTES:
        raise refused
    return str(resolved)


def keyed_by_candidate(spec: Mapping) -> bool:
    """Whether a scorer of this spec scores candidates by their id, not their content (a scores
    file does): its cached scores are filed under both. Known without building the scorer."""
    kind = spec.get("kind")
    return any(cls.kind == kind and cls.keyed_by_candidate for cls in Scorer.__subclasses__())


def make_scorer(
    spec: Mapping | str, *, env: Mapping[str, str] = os.environ, scores_dir: Path | None = None
) -> Scorer:
    """The scorer a spec describes (a dict as :func:`parse_spec` returns, or its text).

    Raises ValueError naming an unknown kind or a bad option. The openai kind reads OPENAI_API_KEY (and OPENAI_BASE_URL when the spec has no
    base_url) from ``env``; a key in the spec itself is refused, to keep it out of command lines
    and job configs.
    """
    spec = parse_spec(spec) if isinstance(spec, str) else dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _OPTIONS:
        known = ", ".join(sorted(_OPTIONS))
        raise ValueError(f"unknown scorer kind {kind!r}; known kinds: {known}")
    if "api_key" in spec:
        raise ValueError("do not put the API key in the scorer spec: set OPENAI_API_KEY")
    unknown = sorted(set(spec) - _OPTIONS[kind])
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[kind])) or "none"
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for scorer kind {kind!r}; allowed: {allowed}"
        )
    if kind == "editscore":
        base, adapter = spec.get("base"), spec.get("adapter")
        if not isinstance(base, str) or not base:
            raise ValueError("scorer kind 'editscore' needs option base=<checkpoint folder>")
        if adapter is not None and not isinstance(adapter, str):
            raise ValueError("scorer option 'adapter' must be a folder path")
        for name in ("device", "dtype"):
            if spec.get(name) is not None and not isinstance(spec[name], str):
                raise ValueError(f"scorer option {name!r} must be a string")
        return EditScoreScorer(
            base=base,
            adapter=adapter or None,
            k=_number(spec, "k", 1, integer=True, low=1, high=MAX_K),
            temperature=_number(spec, "temperature", 0.7, low=0),
            top_p=_number(spec, "top_p", 0.9, low=0, high=1),
            top_k=_number(spec, "top_k", 20, integer=True, low=1),
            max_new_tokens=_number(spec, "max_new_tokens", 512, integer=True, low=1),
            seed=_number(spec, "seed", 42, integer=True),
            batch_size=_number(spec, "batch_size", 16, integer=True, low=1, high=256),
            retries=_number(spec, "retries", 2, integer=True, low=0, high=10),
            device=spec.get("device") or "auto",
            dtype=spec.get("dtype"),
            score_range=_number(spec, "score_range", prompts.SCORE_RANGE, integer=True, low=1),
            max_pixels=_number(spec, "max_pixels", None, integer=True, low=28 * 28),
            **{name: _choice(spec, name, values) for name, values in EDITSCORE_CHOICES.items()},
        )
    if kind == "random":
        return RandomScorer(seed=_number(spec, "seed", 0, integer=True))
    if kind == "constant":
        return ConstantScorer(value=_number(spec, "value", 5.0))
    if kind == "pixel":
        return PixelScorer()
    if kind == "file":
        path = spec.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("scorer kind 'file' needs option path=<scores.jsonl>")
        if scores_dir is not None:
            path = _inside_scores_dir(path, Path(scores_dir))
        return FileScorer(path)
    # openai
    model = spec.get("model")
    if model is None or model == "":
        raise ValueError("scorer kind 'openai' needs option model=<name>")
    if not isinstance(model, str):
        raise ValueError("scorer option 'model' must be a string")
    configured = str(env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
    base_url = spec.get("base_url") or configured
    if not isinstance(base_url, str) or urllib.parse.urlsplit(base_url).scheme not in (
        "http",
        "https",
    ):
        raise ValueError(f"scorer option 'base_url' must be an http(s) URL, got {base_url!r}")
    k = _number(spec, "k", 1, integer=True, low=1, high=MAX_K)
    # The server's key goes to the configured endpoint only: a spec naming another URL
    # (a local vLLM server, say) is sent no key, so a spec cannot exfiltrate it.
    same_endpoint = base_url.rstrip("/") == configured
    return OpenAIScorer(
        model=model,
        base_url=base_url,
        api_key=(env.get("OPENAI_API_KEY") or None) if same_endpoint else None,
        k=k,
        temperature=_number(spec, "temperature", None, low=0),
        top_p=_number(spec, "top_p", 0.9, low=0, high=1),
        top_k=_number(spec, "top_k", None, integer=True, low=1),
        seed=_number(spec, "seed", 42, integer=True),
        max_tokens=_number(spec, "max_tokens", 512, integer=True, low=1, high=MAX_TOKENS),
        score_range=_number(spec, "score_range", prompts.SCORE_RANGE, integer=True, low=1),
        prompt_set=_choice(spec, "prompt_set", prompts.PROMPT_SETS),
        concurrency=_number(spec, "concurrency", 4, integer=True, low=1, high=MAX_CONCURRENCY),
        timeout=_number(spec, "timeout", 60.0, low=0.001, high=MAX_TIMEOUT_SECONDS),
        retries=_number(spec, "retries", 3, integer=True, low=0, high=MAX_RETRIES),
        backoff=_number(spec, "backoff", 1.0, low=0, high=MAX_BACKOFF_SECONDS),
    )


__all__ = [
    "Candidate",
    "ConstantScorer",
    "FileScorer",
    "OpenAIScorer",
    "PixelScorer",
    "RandomScorer",
    "Score",
    "Scorer",
    "make_scorer",
    "parse_spec",
    "resize_to_source",
]
