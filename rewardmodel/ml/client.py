"""Client for one or several reward-model servers (`rewardmodel.ml.server`), stdlib only.

    client = RewardClient(["http://gpu1:8000", "http://gpu2:8000"], token="...")
    scores = client.score([{"instruction": ..., "source": png_bytes, "edited": png_bytes}], k=1)

Items are grouped by instruction and the groups are dealt round-robin over the servers
(the rotation carries on from one call to the next, so a trainer that sends one group per
call still spreads its load); each server gets its share in its own thread. A request that
fails for a reason another server might not share (connection refused, timeout, 5xx, 401,
a malformed answer) is sent again to the next server, up to `retries` more times. 400 and
413 are the request's own fault and are raised at once. The output follows the input order.

Every answer is bounded: `timeout` per socket operation, a wall-clock `deadline` for the whole
request (connect, send, wait, read: a server that trickles bytes forever is cut off), and at most
`max_response_bytes` of body (a larger Content-Length is refused unread, a longer stream is cut).
An answer that is not JSON (by Content-Type or content), or not `{"scores": [one object per
item]}`, is malformed. With `on_failure="unscored"` a request that still fails after its retries
does not raise: each of its items gets `{"overall": None, ..., "error": "reward server: <why>"}`,
as the model itself reports an item it could not score (what an RL reward wants: see
`rltraining.ml.rewards.EditScoreReward`).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewardmodel.ml.answers import DEFAULT_PARSE_POLICY, check_parse_policy

SCORE_PATH = "/v1/score"
HEALTH_PATH = "/healthz"
NOT_RETRIED = frozenset({400, 413})
MAX_RESPONSE_BYTES = 64 * 2**20  # 256 items x 16 passes of raw text fit many times over
SCORE_KEYS = ("prompt_following", "consistency", "perceptual_quality", "overall")


class RewardClientError(RuntimeError):
    """Scoring failed; the message names the server(s) and what each answered."""


class _Attempt(Exception):
    """One failed request to one server."""

    def __init__(self, url: str, message: str, *, retryable: bool = True):
        super().__init__(f"{url}: {message}")
        self.retryable = retryable


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the bearer token elsewhere: refuse it (fails as a 3xx)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# --- bounded HTTP answers (also used by benchmark.ml.scorers' OpenAI-compatible judge)


class ResponseTooLarge(OSError):
    pass


class DeadlinePassed(TimeoutError):
    pass


_watch = threading.local()  # the calling thread's open deadline, if any
_WATCHED_CLASSES: dict[type, type] = {}


def _watched(connection_class: type) -> type:
    """`connection_class` whose sockets the calling thread's deadline can cut."""
    if connection_class not in _WATCHED_CLASSES:

        class Watched(connection_class):
            def connect(self):
                super().connect()
                state = getattr(_watch, "state", None)
                if state is not None:
                    state.attach(self.sock)

        _WATCHED_CLASSES[connection_class] = Watched
    return _WATCHED_CLASSES[connection_class]


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_watched(http_class), req, **kwargs)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_watched(http_class), req, **kwargs)


def bounded_handlers() -> list:
    """urllib handlers to pass to build_opener so that `deadline()` can cut a request."""
    return [_WatchedHTTPHandler(), _WatchedHTTPSHandler()]


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def attach(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _cut(sock)

    def fire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _cut(sock)


def _cut(sock) -> None:
    try:  # the raw socket: a blocked recv() or send() in another thread returns at once
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


@contextlib.contextmanager
def deadline(seconds: float):
    """Within the block, connections opened by this thread through `bounded_handlers()` are
    shut down once `seconds` have passed; check `.expired` when a read ends early."""
    state = _Deadline(seconds)
    timer = threading.Timer(seconds, state.fire)
    timer.daemon = True
    previous = getattr(_watch, "state", None)
    _watch.state = state
    timer.start()
    try:
        yield state
    finally:
        timer.cancel()
        _watch.state = previous


def read_bounded(response, max_bytes: int, state: _Deadline | None = None) -> bytes:
    """The body of `response`, refusing one over `max_bytes` (unread when its Content-Length
    says so). Raises ResponseTooLarge, or DeadlinePassed when `state` cut the connection."""
    length = response.headers.get("Content-Length")
    declared = (
        int(length)
        if length is not None and length.strip().isascii() and length.strip().isdigit()
        else None
    )
    if declared is not None and declared > max_bytes:
        raise ResponseTooLarge(f"the answer is {declared} bytes; the limit is {max_bytes}")
    parts, size = [], 0
    while True:
        chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(f"the answer is over {max_bytes} bytes, the limit")
        parts.append(chunk)
    if state is not None and state.expired:
        raise DeadlinePassed(f"no complete answer within {state.seconds:g} s")
    body = b"".join(parts)
    if declared is not None and size < declared:  # the server closed the connection early
        raise http.client.IncompleteRead(body[:100], declared - size)
    return body


def json_content_type(response) -> str | None:
    """Why the answer's Content-Type is not JSON, or None (JSON, or no Content-Type at all)."""
    given = response.headers.get("Content-Type")
    if given is None:
        return None
    media = given.split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    return f"Content-Type {media or given!r}, not application/json"


class RewardClient:
    """Scores edits on reward-model servers; see the module docstring.

    `urls`: server base URLs (`http://host:port`). `timeout`: seconds per socket operation
    of one request. `retries`: how many more servers (cycling) a failed request is sent to.
    A call's items are cut into requests of at most `max_items_per_request` items and about
    `max_request_bytes` of JSON, keeping an instruction's items together where they fit.
    Environment proxies are ignored unless `proxies` is given (urllib's mapping).
    `deadline`: seconds one request may take in all (default 3 x `timeout`);
    `max_response_bytes`: the largest answer read. `on_failure`: "raise" (RewardClientError) or
    "unscored" (the failed request's items come back unscored, with the reason).
    """

    def __init__(
        self,
        urls: Sequence[str],
        token: str,
        *,
        timeout: float = 120,
        retries: int = 2,
        max_items_per_request: int = 256,
        max_request_bytes: int = 60 * 2**20,
        proxies: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        on_failure: str = "raise",
    ):
        if isinstance(urls, str):
            urls = [urls]
        self.urls = [url.rstrip("/") for url in urls]
        if not self.urls:
            raise ValueError("at least one server URL is needed")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url!r}")
        if retries < 0 or max_items_per_request < 1:
            raise ValueError("retries must be >= 0 and max_items_per_request >= 1")
        if on_failure not in ("raise", "unscored"):
            raise ValueError(f"on_failure must be 'raise' or 'unscored', not {on_failure!r}")
        if max_response_bytes < 1 or not timeout > 0 or (deadline is not None and not deadline > 0):
            raise ValueError("timeout, deadline and max_response_bytes must be positive")
        self.deadline = float(deadline) if deadline is not None else 3.0 * timeout
        self.max_response_bytes = max_response_bytes
        self.on_failure = on_failure
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.max_items_per_request = max_items_per_request
        self.max_request_bytes = max_request_bytes
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler(dict(proxies or {})), _NoRedirect, *bounded_handlers()
        )
        self._lock = threading.Lock()
        self._next_server = 0

    # --- public

    def score(
        self, items: Iterable[Any], k: int = 1, *, parse_policy: str = DEFAULT_PARSE_POLICY
    ) -> list[dict]:
        """One score dict per item, in input order. Items are mappings (or objects) with
        `instruction` (str), `source` and `edited` (encoded PNG/JPEG/WEBP bytes).
        `parse_policy` is what the server does with unreadable answers
        (:mod:`rewardmodel.ml.answers`)."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 16:
            raise ValueError("k must be an integer from 1 to 16")
        check_parse_policy(parse_policy)
        options = {"k": k}
        if parse_policy != DEFAULT_PARSE_POLICY:  # servers before it knew the field
            options["parse_policy"] = parse_policy
        encoded = [_encode_item(item, n) for n, item in enumerate(items)]
        if not encoded:
            return []
        groups: dict[str, list[int]] = {}
        for n, item in enumerate(encoded):
            groups.setdefault(item["instruction"], []).append(n)
        with self._lock:
            start = self._next_server
            self._next_server = (start + len(groups)) % len(self.urls)
        shares: dict[int, list[list[int]]] = {}
        for g, indices in enumerate(groups.values()):
            shares.setdefault((start + g) % len(self.urls), []).append(indices)

        results: list[dict | None] = [None] * len(encoded)
        failed = threading.Event()

        def run_share(server: int, share: list[list[int]]) -> None:
            for chunk in self._chunks(share, encoded):
                if failed.is_set():
                    return
                body = json.dumps({"items": [encoded[n] for n in chunk], **options}).encode()
                try:
                    scores = self._post_with_failover(server, body, len(chunk))
                except RewardClientError as exc:
                    if self.on_failure != "unscored":
                        failed.set()
                        raise
                    scores = [_unscored(f"reward server: {exc}") for _ in chunk]
                except BaseException:
                    failed.set()
                    raise
                for n, score in zip(chunk, scores, strict=True):
                    results[n] = score

        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="reward") as pool:
            futures = [pool.submit(run_share, s, share) for s, share in shares.items()]
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        return results  # type: ignore[return-value]  # every slot was filled

    def health(self) -> list[dict]:
        """`GET /healthz` of every server: its JSON, or `{"status": "error", "error": ...}`;
        each with `url` added."""
        answers = []
        for url in self.urls:
            try:
                with deadline(self.deadline) as state:
                    with self._opener.open(url + HEALTH_PATH, timeout=self.timeout) as response:
                        answer = json.loads(read_bounded(response, 2**20, state))
                if not isinstance(answer, dict):
                    raise ValueError(f"not a JSON object: {answer!r:.200}")
            except (OSError, ValueError, http.client.HTTPException) as exc:
                answer = {"status": "error", "error": str(exc)}
            answers.append({"url": url, **answer})
        return answers

    # --- internals

    def _chunks(self, share: list[list[int]], encoded: list[dict]) -> list[list[int]]:
        """Requests for one server: whole instruction groups while they fit."""
        chunks: list[list[int]] = []
        current: list[int] = []
        size = 0
        for group in share:
            group_size = sum(_item_bytes(encoded[n]) for n in group)
            if current and (
                len(current) + len(group) > self.max_items_per_request
                or size + group_size > self.max_request_bytes
            ):
                chunks.append(current)
                current, size = [], 0
            for n in group:  # a group too big for one request is cut where it must be
                item_size = _item_bytes(encoded[n])
                if current and (
                    len(current) >= self.max_items_per_request
                    or size + item_size > self.max_request_bytes
                ):
                    chunks.append(current)
                    current, size = [], 0
                current.append(n)
                size += item_size
        if current:
            chunks.append(current)
        return chunks

    def _post_with_failover(self, first: int, body: bytes, count: int) -> list[dict]:
        attempts: list[_Attempt] = []
        tried: set[int] = set()
        for attempt in range(self.retries + 1):
            server = (first + attempt) % len(self.urls)
            if server in tried:  # all servers failed once already: back off a little
                time.sleep(min(0.5 * 2 ** (attempt - len(self.urls)), 5.0))
            tried.add(server)
            try:
                return self._post(self.urls[server], body, count)
            except _Attempt as failure:
                attempts.append(failure)
                if not failure.retryable:
                    break
        tries = "; ".join(str(a) for a in attempts)
        raise RewardClientError(f"scoring {count} items failed: {tries}")

    def _post(self, url: str, body: bytes, count: int) -> list[dict]:
        request = urllib.request.Request(
            url + SCORE_PATH,
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        wrong_type, state = None, None
        try:
            with deadline(self.deadline) as state:
                with self._opener.open(request, timeout=self.timeout) as response:
                    wrong_type = json_content_type(response)
                    payload = b"" if wrong_type else read_bounded(response, self.max_response_bytes, state)  # fmt: skip
        except urllib.error.HTTPError as exc:
            raise _Attempt(
                url,
                f"HTTP {exc.code}: {_error_text(exc)}",
                retryable=exc.code not in NOT_RETRIED,
            ) from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout, DNS
            reason = getattr(exc, "reason", exc)
            if state is not None and state.expired and not isinstance(reason, DeadlinePassed):
                reason = DeadlinePassed(f"no complete answer within {state.seconds:g} s")
            raise _Attempt(url, f"{type(reason).__name__}: {reason}") from None
        if wrong_type:
            raise _Attempt(url, f"malformed answer: {wrong_type}")
        try:
            scores = json.loads(payload)["scores"]
        except (ValueError, KeyError, TypeError, IndexError, RecursionError):
            raise _Attempt(url, f"malformed answer: {payload[:200]!r}") from None
        if not isinstance(scores, list) or len(scores) != count:
            got = len(scores) if isinstance(scores, list) else type(scores).__name__
            raise _Attempt(url, f"answered {got} scores for {count} items")
        if not all(isinstance(score, dict) for score in scores):
            raise _Attempt(url, "malformed answer: each score must be a JSON object")
        return scores


def _unscored(error: str) -> dict:
    """What the server answers for an item the model could not score."""
    return {**dict.fromkeys(SCORE_KEYS), "raw": [], "error": error, "passes": 0}


def _encode_item(item: Any, n: int) -> dict:
    def get(key: str) -> Any:
        return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)

    instruction = get("instruction")
    if not isinstance(instruction, str):
        raise ValueError(f"items[{n}].instruction must be a string")
    encoded = {"instruction": instruction}
    for key in ("source", "edited"):
        data = get(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"items[{n}].{key} must be the image file's bytes")
        encoded[key] = base64.b64encode(data).decode("ascii")
    return encoded


def _item_bytes(encoded: dict) -> int:
    size = len(encoded["source"]) + len(encoded["edited"]) + len(json.dumps(encoded["instruction"]))
    return size + 64  # keys, quotes, separators


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(2000)
    except (OSError, http.client.HTTPException):
        return exc.reason or ""
    try:
        text = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError, RecursionError):
        text = body.decode("utf-8", "replace").strip() or str(exc.reason)
    return text if len(text) <= 300 else text[:300] + "..."
