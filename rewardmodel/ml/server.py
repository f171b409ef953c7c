"""HTTP JSON server in front of an EditScore reward model (no Django).

    python -m rewardmodel.ml.server --model PATH [--adapter PATH] --port P --token T

`POST /v1/score` with `Authorization: Bearer T` and

    {"items": [{"instruction": "...", "source": "<base64 PNG/JPEG>", "edited": "<base64>"}],
     "k": 1, "parse_policy": "unscored"}

(``parse_policy`` is optional: ``unscored``, ``reference`` or ``reference_batch``, see
:mod:`rewardmodel.ml.answers`) answers `{"scores": [{...one dict per item, in order...}], "model": "<name>"}`.
`GET /healthz` (no token) answers `{"status": "ok", "model": ..., "queue": n}`.

The wire format is JSON and base64 only: the server never deserialises code or objects
(the reference server's binary object protocol was a remote-code-execution hole).

Requests that arrive together are merged: one scoring thread owns the model, takes
queued requests for up to `batch_wait` seconds or until `max_batch` items, orders
the merged items by instruction (a trainer's group for one instruction stays together),
calls `scorer.score(items, k=k)` once per (k, parse policy) and hands each request its slice.
Handler threads only parse, check and wait.

Errors are JSON `{"error": "..."}`: 400 bad input, 401 missing or wrong token,
404 unknown path, 405 wrong method, 413 body over the limit or without a Content-Length,
500 scoring failed, 503 shutting down.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hmac
import io
import json
import logging
import math
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from rewardmodel.ml.answers import DEFAULT_PARSE_POLICY, PARSE_POLICIES

log = logging.getLogger(__name__)

MAX_ITEMS = 256
MAX_K = 16
MAX_PIXELS = 40_000_000  # per image; bounds decoding (the model's sizing caps what it sees)
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
SCORE_PATH = "/v1/score"
HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class Item:
    """One candidate as the server hands it to the scorer (same fields as model.ScoreItem)."""

    instruction: str
    source: bytes
    edited: bytes


class Scorer(Protocol):
    """What the server needs from a model: `EditScore` fits, so does a test fake."""

    def score(self, items: Sequence[Any], *, k: int = 1, **options: Any) -> list[dict]: ...


class RequestError(Exception):
    """A request the server refuses; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --- batching


@dataclass
class _Pending:
    items: list[Any]
    k: int
    parse_policy: str = DEFAULT_PARSE_POLICY
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Merges requests that arrive together into few `scorer.score` calls, on one thread.

    `submit` returns a future of the request's results (one dict per item, in order).
    The thread waits up to `batch_wait` seconds after the oldest queued request arrived,
    or until `max_batch` items are queued, then takes whole requests from the front of
    the queue (at least one, even a request larger than `max_batch`).
    """

    def __init__(self, scorer: Scorer, *, batch_wait: float = 0.02, max_batch: int = 16):
        if batch_wait < 0 or max_batch < 1:
            raise ValueError("batch_wait must be >= 0 and max_batch >= 1")
        self.scorer = scorer
        self.batch_wait = batch_wait
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._busy = 0  # requests taken by the scoring thread, not answered yet
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="score-batcher", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Requests queued or being scored."""
        with self._cond:
            return len(self._queue) + self._busy

    def submit(self, items: list[Any], k: int, parse_policy: str = DEFAULT_PARSE_POLICY) -> Future:
        pending = _Pending(items=items, k=k, parse_policy=parse_policy)
        with self._cond:
            if self._closed:
                raise RequestError(503, "server is shutting down")
            self._queue.append(pending)
            self._cond.notify()
        return pending.future

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop taking requests; those still queued fail with 503."""
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for pending in left:
            pending.future.set_exception(RequestError(503, "server is shutting down"))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _take(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = self._queue[0].arrived + self.batch_wait
            while not self._closed:
                queued = sum(len(p.items) for p in self._queue)
                remaining = deadline - time.monotonic()
                if queued >= self.max_batch or remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._closed:
                return None
            taken = [self._queue.popleft()]
            size = len(taken[0].items)
            while self._queue and size + len(self._queue[0].items) <= self.max_batch:
                size += len(self._queue[0].items)
                taken.append(self._queue.popleft())
            self._busy += len(taken)
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            try:
                by_options: dict[tuple[int, str], list[_Pending]] = {}
                for pending in taken:
                    by_options.setdefault((pending.k, pending.parse_policy), []).append(pending)
                for (k, parse_policy), group in by_options.items():
                    self._score_group(group, k, parse_policy)
            finally:
                with self._cond:
                    self._busy -= len(taken)

    def _score_group(self, group: list[_Pending], k: int, parse_policy: str) -> None:
        # Items of one instruction stay contiguous, in first-seen order, across requests.
        slots: dict[str, list[tuple[int, int]]] = {}
        for r, pending in enumerate(group):
            for i, item in enumerate(pending.items):
                slots.setdefault(item.instruction, []).append((r, i))
        order = [slot for same_instruction in slots.values() for slot in same_instruction]
        merged = [group[r].items[i] for r, i in order]
        try:
            # The default policy is not passed: a scorer that only knows k (a fake) still fits.
            options = {} if parse_policy == DEFAULT_PARSE_POLICY else {"parse_policy": parse_policy}
            results = list(self.scorer.score(merged, k=k, **options))
            if len(results) != len(merged):
                raise RuntimeError(
                    f"scorer returned {len(results)} results for {len(merged)} items"
                )
        except Exception as exc:  # every waiting request learns what happened
            log.exception("scoring %d items failed", len(merged))
            for pending in group:
                pending.future.set_exception(exc)
            return
        answers: list[list[Any]] = [[None] * len(p.items) for p in group]
        for (r, i), result in zip(order, results, strict=True):
            answers[r][i] = result
        for pending, answer in zip(group, answers, strict=True):
            pending.future.set_result(answer)


# --- request parsing


def _decode_image(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise RequestError(400, f"{where} must be a non-empty base64 string")
    if value.startswith("data:"):  # data URL: data:image/png;base64,....
        value = value.partition(",")[2]
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{where} is not valid base64") from None
    _check_image(data, where)
    return data


def _check_image(data: bytes, where: str) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format, image.size
            if fmt not in IMAGE_FORMATS:
                raise RequestError(400, f"{where}: {fmt} images are not accepted (PNG, JPEG, WEBP)")
            if width * height > MAX_PIXELS:
                raise RequestError(400, f"{where}: image of {width}x{height} is too large")
            image.verify()
    except RequestError:
        raise
    except Exception:
        raise RequestError(400, f"{where} is not a readable image") from None


def parse_score_request(
    body: bytes, *, max_items: int = MAX_ITEMS, item_type: Callable[..., Any] = Item
) -> tuple[list[Any], int, str]:
    """Checks a `/v1/score` body; returns (items, k, parse_policy) or raises RequestError(400)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(400, "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise RequestError(400, "body must be a JSON object")
    k = payload.get("k", 1)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise RequestError(400, f"k must be an integer from 1 to {MAX_K}")
    parse_policy = payload.get("parse_policy", DEFAULT_PARSE_POLICY)
    if parse_policy not in PARSE_POLICIES:
        raise RequestError(400, f"parse_policy must be one of {', '.join(PARSE_POLICIES)}")
    raw_items = payload.get("items")
    if not isinstance(raw_items, list):
        raise RequestError(400, "items must be a list")
    if not raw_items:
        raise RequestError(400, "items is empty")
    if len(raw_items) > max_items:
        raise RequestError(400, f"too many items: {len(raw_items)} > {max_items}")
    items = []
    for n, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            raise RequestError(400, f"items[{n}] must be an object")
        instruction = raw.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise RequestError(400, f"items[{n}].instruction must be a non-empty string")
        source = _decode_image(raw.get("source"), f"items[{n}].source")
        edited = _decode_image(raw.get("edited"), f"items[{n}].edited")
        items.append(item_type(instruction=instruction, source=source, edited=edited))
    return items, k, parse_policy


def _jsonable(value: Any) -> Any:
    """Scores as strict JSON: NaN/inf become null, dataclasses become objects."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _jsonable(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if value is None or isinstance(value, str | int):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return _jsonable(value.item())
    return str(value)


# --- HTTP


class ScoreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        batcher: Batcher,
        *,
        token: str,
        model_name: str,
        max_body_bytes: int,
        max_items: int,
        item_type: Callable[..., Any],
    ):
        if not token:
            raise ValueError("a token is required")
        self.batcher = batcher
        self.token = token.encode("utf-8", "surrogatepass")
        self.model_name = model_name
        self.max_body_bytes = max_body_bytes
        self.max_items = max_items
        self.item_type = item_type
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ScoreHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def server_close(self) -> None:
        super().server_close()
        self.batcher.close()

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exception(), ConnectionError | TimeoutError):  # client went away
            log.info("%s: connection lost: %s", client_address[0], sys.exception())
        else:
            super().handle_error(request, client_address)


class ScoreHandler(BaseHTTPRequestHandler):
    server: ScoreServer
    protocol_version = "HTTP/1.1"
    server_version = "EditScoreServer/1"
    timeout = 60  # seconds a client may stall while sending its request

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: dict, *, close: bool = False) -> None:
        body = json.dumps(payload, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="editscore"')
        if close:  # the request body was not read: the connection cannot be reused
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, error: RequestError, *, close: bool = False) -> None:
        self._send_json(error.status, {"error": str(error)}, close=close)

    def _check_auth(self) -> None:
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        given_bytes = given.strip().encode("utf-8", "surrogatepass")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, self.server.token):
            raise RequestError(401, "missing or wrong bearer token")

    def _body_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(413, "chunked bodies are not accepted: send a Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise RequestError(413, "a Content-Length is required")
        raw = raw.strip()
        if not (raw.isascii() and raw.isdigit()):  # int() would take "+1", "1_000"
            raise RequestError(400, "bad Content-Length")
        length = int(raw)
        if length > self.server.max_body_bytes:
            raise RequestError(
                413, f"body of {length} bytes is over the limit of {self.server.max_body_bytes}"
            )
        return length

    def handle_expect_100(self) -> bool:
        # Refuse before the client sends the body (curl sends Expect for large bodies).
        if self.command == "POST" and self.path.split("?")[0] == SCORE_PATH:
            try:
                self._check_auth()
                self._body_length()
            except RequestError as error:
                self._send_error(error, close=True)
                return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == HEALTH_PATH:
            self._send_json(
                200,
                {
                    "status": "ok",
                    "model": self.server.model_name,
                    "queue": self.server.batcher.pending,
                },
            )
        elif path == SCORE_PATH:
            self._send_error(RequestError(405, "use POST"))
        else:
            self._send_error(RequestError(404, "not found"))

    def do_POST(self) -> None:
        if self.path.split("?")[0] != SCORE_PATH:
            self._send_error(RequestError(404, "not found"), close=True)
            return
        try:
            # Token and size come first, so that a refused body is never read.
            self._check_auth()
            length = self._body_length()
        except RequestError as error:
            self._send_error(error, close=True)
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return
        try:
            items, k, parse_policy = parse_score_request(
                body, max_items=self.server.max_items, item_type=self.server.item_type
            )
            results = self.server.batcher.submit(items, k, parse_policy).result()
        except RequestError as error:
            self._send_error(error)
            return
        except Exception as exc:
            self._send_json(500, {"error": f"scoring failed: {type(exc).__name__}: {exc}"})
            return
        self._send_json(200, {"scores": _jsonable(results), "model": self.server.model_name})


def make_server(
    scorer: Scorer,
    *,
    token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    max_body_bytes: int = 64 * 2**20,
    batch_wait: float = 0.02,
    max_batch: int = 16,
    model_name: str | None = None,
    max_items: int = MAX_ITEMS,
    item_type: Callable[..., Any] = Item,
) -> ScoreServer:
    """A bound server (port 0 picks a free one: see `.url`); run it with `serve_forever()`,
    stop it with `shutdown()` then `server_close()`. `batch_wait` is in seconds.
    `item_type(instruction=, source=, edited=)` builds what `scorer.score` receives."""
    batcher = Batcher(scorer, batch_wait=batch_wait, max_batch=max_batch)
    name = model_name or getattr(scorer, "name", None) or type(scorer).__name__
    try:
        return ScoreServer(
            (host, port),
            batcher,
            token=token,
            model_name=str(name),
            max_body_bytes=max_body_bytes,
            max_items=max_items,
            item_type=item_type,
        )
    except BaseException:
        batcher.close()
        raise


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    import os

    parser = argparse.ArgumentParser(
        prog="python -m rewardmodel.ml.server", description="Serve an EditScore reward model."
    )
    parser.add_argument("--model", required=True, help="base model path or id (or merged)")
    parser.add_argument("--adapter", help="LoRA adapter directory")
    parser.add_argument("--name", help="model name reported to clients (default: dir name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--token",
        default=os.environ.get("EDITSCORE_TOKEN"),
        help="bearer token clients must send (default: $EDITSCORE_TOKEN)",
    )
    parser.add_argument("--max-body-mb", type=float, default=64.0)
    parser.add_argument("--max-items", type=int, default=MAX_ITEMS)
    parser.add_argument("--batch-wait-ms", type=float, default=20.0)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument(
        "--device", default="auto", help="cuda, cuda:N, cpu, mps (default: cuda when available)"
    )
    parser.add_argument("--dtype", help="bfloat16, float16, float32 (default: the model's choice)")
    parser.add_argument("--score-range", type=int, help="score range R the model was taught")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or $EDITSCORE_TOKEN) is required")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from rewardmodel.ml import model as editscore_model  # torch & co. only from here on

    options = {key: getattr(args, key) for key in ("dtype", "score_range") if getattr(args, key)}
    options["device"] = args.device
    if args.device == "auto":
        import torch

        options["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    scorer = editscore_model.EditScore.from_pretrained(args.model, adapter=args.adapter, **options)
    name = args.name or Path(args.adapter or args.model).name
    server = make_server(
        scorer,
        token=args.token,
        host=args.host,
        port=args.port,
        max_body_bytes=int(args.max_body_mb * 2**20),
        batch_wait=args.batch_wait_ms / 1000,
        max_batch=args.max_batch,
        model_name=name,
        max_items=args.max_items,
        item_type=getattr(editscore_model, "ScoreItem", Item),
    )
    log.info("serving %s on %s", name, server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
