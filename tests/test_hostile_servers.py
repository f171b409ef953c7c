"""Hostile scoring servers (issue 9): a reward server or an OpenAI-compatible judge that answers
garbage, far too much, far too slowly or never. Every case is bounded (response size cap,
per-operation timeout and a wall-clock deadline), ends as an unscored item with the reason,
and never raises out of the RL reward or the benchmark scorer, nor hangs.

The fake servers are http.server threads on 127.0.0.1; no model is loaded."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image

from benchmark.ml import scorers
from benchmark.ml.metric import evaluate, pairs_from_rows
from benchmark.ml.scorers import Candidate, make_scorer
from rewardmodel.ml import client as client_module
from rewardmodel.ml.client import RewardClient, RewardClientError
from rltraining.ml.rewards import build_reward
from tests import local_http

TIMEOUT = 0.3  # per socket operation; the whole request gets 3x
BOUND = 6.0  # seconds any hostile case may take in all (retries included), with slack


def _png(colour=(10, 20, 30), size=(16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- the fake server


class Hostile:
    """Answers every POST with `respond(handler, request_json)`; counts requests."""

    def __init__(self, respond):
        self.respond = respond
        self.requests = 0
        self.stop = threading.Event()
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hostile.requests += 1
                try:
                    hostile.respond(self, json.loads(body) if body else None)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    pass  # the client gave up: what it should do
                self.close_connection = True

        self.server, self.url = local_http.serve(Handler)

    def close(self):
        self.stop.set()
        local_http.stop(self.server)


@pytest.fixture
def hostile():
    started = []

    def start(respond):
        server = Hostile(respond)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def send(handler, status=200, body=b"", ctype="application/json", length=True, headers=()):
    handler.send_response(status)
    if ctype:
        handler.send_header("Content-Type", ctype)
    if length is True:
        handler.send_header("Content-Length", str(len(body)))
    elif length is not None:
        handler.send_header("Content-Length", str(length))
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def stream(total: int, declare: bool):
    """100 MB (or `total`) of JSON-ish bytes, streamed in 1 MB writes."""

    def respond(handler, _request):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declare:
            handler.send_header("Content-Length", str(total))
        handler.send_header("Connection", "close")
        handler.end_headers()
        block = b'{"scores": [' + b" " * (2**20 - 12)
        sent = 0
        while sent < total:
            handler.wfile.write(block)
            sent += len(block)

    return respond


def trickle(headers_too: bool):
    """A byte every 50 ms, for ever: each socket read succeeds, the answer never ends."""

    def respond(handler, _request):
        hostile_stop = handler.server_stop
        if headers_too:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        else:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Connection", "close")  # no length: the body ends when it closes
            handler.end_headers()
        while not hostile_stop.is_set():
            handler.wfile.write(b"X-A: b\r\n"[:1] if headers_too else b" ")
            handler.wfile.flush()
            time.sleep(0.05)

    return respond


def sleeper(seconds: float):
    def respond(handler, _request):
        time.sleep(seconds)
        send(handler, body=b"{}")

    return respond


def redirect_loop(handler, _request):
    send(handler, 302, b"", headers=[("Location", handler.path)])


def closes_mid_body(handler, _request):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "5000")
    handler.end_headers()
    handler.wfile.write(b'{"scores": [')
    handler.wfile.flush()
    handler.connection.close()


# The transport cases, answered the same way to both clients: (respond, reason in the error).
TRANSPORT = {
    "invalid JSON": (lambda h, r: send(h, body=b"{not json"), "malformed"),
    "empty body": (lambda h, r: send(h, body=b""), "malformed"),
    "JSON nesting bomb": (lambda h, r: send(h, body=b"[" * 200_000), "malformed"),
    "100 MB streamed": (stream(100 * 2**20, declare=False), "limit"),
    "100 MB declared": (stream(100 * 2**20, declare=True), "limit"),
    "body never ends": (trickle(headers_too=False), "within"),
    "headers never end": (trickle(headers_too=True), "within"),
    "sleeps past the timeout": (sleeper(5.0), "timed out"),
    "closes mid-body": (closes_mid_body, "IncompleteRead"),
    "HTTP 500": (lambda h, r: send(h, 500, b'{"error": "boom"}'), "HTTP 500"),
    "HTTP 500 of 100 MB": (lambda h, r: send(h, 500, b"x" * (100 * 2**20)), "HTTP 500"),
    "redirect loop": (redirect_loop, "HTTP 302"),
    "wrong content-type (HTML)": (
        lambda h, r: send(h, body=b"<html>proxy error</html>", ctype="text/html"),
        "Content-Type 'text/html'",
    ),
    "wrong content-type (JSON inside)": (
        lambda h, r: send(h, body=b'{"scores": []}', ctype="text/plain"),
        "Content-Type 'text/plain'",
    ),
}


@pytest.fixture(autouse=True)
def _server_stop(monkeypatch):
    """Give handlers the stop event of their server (trickles end when the test does)."""
    stop = threading.Event()
    monkeypatch.setattr(BaseHTTPRequestHandler, "server_stop", stop, raising=False)
    yield
    stop.set()


# ---------------------------------------------------------------- the reward client


def _items(n=2):
    return [{"instruction": f"make it red {i}", "source": _png(), "edited": _png((i, 0, 0))}
            for i in range(n)]  # fmt: skip


def _client(server, **options):
    options = {"timeout": TIMEOUT, "retries": 1, "max_response_bytes": 2**20, **options}
    return RewardClient([server.url], "token", **options)


@pytest.mark.parametrize("case", sorted(TRANSPORT))
def test_reward_client_bounds_a_hostile_server_and_reports_unscored(hostile, case):
    respond, reason = TRANSPORT[case]
    server = hostile(respond)
    started = time.monotonic()
    scores = _client(server, on_failure="unscored").score(_items(3))
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"{case} took {elapsed:.1f} s"
    assert len(scores) == 3
    for score in scores:
        assert score["overall"] is None and score["passes"] == 0
        assert score["error"].startswith("reward server: scoring 3 items failed: ")
        assert server.url in score["error"] and reason in score["error"], score["error"]
        assert len(score["error"]) < 2000  # the hostile body is not carried along
    # the default (on_failure="raise") raises, with the same reason, as quickly
    started = time.monotonic()
    with pytest.raises(RewardClientError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        _client(server, retries=0).score(_items(1))
    assert time.monotonic() - started < BOUND


def test_reward_client_default_cap_refuses_a_100_mb_answer(hostile):
    server = hostile(stream(100 * 2**20, declare=False))
    client = RewardClient([server.url], "t", timeout=2, retries=0, on_failure="unscored")
    [score] = client.score(_items(1))
    assert f"over {client_module.MAX_RESPONSE_BYTES} bytes" in score["error"]


def _scores_answer(scores):
    def respond(handler, request):
        body = json.dumps({"scores": scores}).encode()
        send(handler, body=body.replace(b'"NaN!"', b"NaN").replace(b'"Inf!"', b"Infinity"))

    return respond


WRONG_SHAPES = {
    "no scores key": ({"result": []}, "malformed answer"),
    "scores an object": ({"scores": {"0": {}}}, "answered dict scores for 2 items"),
    "too few scores": ({"scores": [{"overall": 5}]}, "answered 1 scores for 2 items"),
    "scores not objects": ({"scores": [5, 6]}, "each score must be a JSON object"),
    "a list": ([1, 2], "malformed answer"),
    "null": (None, "malformed answer"),
}


@pytest.mark.parametrize("case", sorted(WRONG_SHAPES))
def test_reward_client_refuses_json_of_the_wrong_shape(hostile, case):
    answer, reason = WRONG_SHAPES[case]
    server = hostile(lambda h, r: send(h, body=json.dumps(answer).encode()))
    scores = _client(server, on_failure="unscored").score(_items(2))
    assert all(s["overall"] is None and reason in s["error"] for s in scores), scores
    assert server.requests == 2  # one retry


# Per-item values a server may send inside a well-formed answer: the reward must not take them.
BAD_VALUES = {
    "NaN": ("NaN!", "overall is nan"),
    "Infinity": ("Inf!", "overall is inf"),
    "1e999": (1e999, "overall is inf"),  # json.dumps writes Infinity
    "above 10": (11.5, "overall 11.5 is outside 0..10"),
    "negative": (-0.5, "overall -0.5 is outside 0..10"),
    "huge": (1e300, "overall 1e+300 is outside 0..10"),
    "a string": ("7", "overall is str, not a number"),
    "a boolean": (True, "overall is bool, not a number"),
    "a list": ([7], "overall is list, not a number"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_reward_server_kind_leaves_bad_scores_unscored_and_counts_them(hostile, case):
    value, reason = BAD_VALUES[case]
    server = hostile(_scores_answer([{"overall": 6.0}, {"overall": value}]))
    fn = build_reward({"kind": "reward_server", "urls": [server.url], "token": "t",
                       "timeout": TIMEOUT})  # fmt: skip
    images = [Image.new("RGB", (8, 8))] * 2
    rewards = fn(images, ["a", "a"], images)
    # None: the sample is left out of its group's advantage and of the loss (the default)
    assert rewards == [pytest.approx(0.6), None]
    assert fn.unscored_count == 1 and fn.last_errors == [f"item 1: {reason}"]


def test_reward_server_kind_survives_every_transport_failure(hostile):
    """The RL reward of a dead, slow or garbage-answering server: every item is unscored (None
    by default: excluded from its group's advantage and the loss), counted, and says why."""
    images = [Image.new("RGB", (8, 8))] * 3
    for case in ("body never ends", "100 MB streamed", "invalid JSON", "HTTP 500"):
        server = hostile(TRANSPORT[case][0])
        spec = {"kind": "reward_server", "urls": [server.url], "token": "t", "timeout": TIMEOUT}
        fn = build_reward(spec)
        started = time.monotonic()
        assert fn(images, ["a", "a", "b"], images) == [None, None, None]
        assert time.monotonic() - started < 3 * BOUND
        assert fn.unscored_count == 3
        assert all(e.startswith(f"item {n}: reward server: ") for n, e in enumerate(fn.last_errors))
    # a chosen unscored reward; and unscored=None still stops the run
    assert build_reward({**spec, "unscored": 0.25})(images, ["a"] * 3, images) == [0.25] * 3
    strict = build_reward({**spec, "unscored": None})
    with pytest.raises(RewardClientError, match="HTTP 500"):
        strict(images[:1], ["a"], images[:1])


def test_reward_client_health_is_bounded(hostile):
    server = hostile(stream(100 * 2**20, declare=False))
    slow = hostile(trickle(headers_too=False))
    started = time.monotonic()
    health = RewardClient([server.url, slow.url], "t", timeout=TIMEOUT).health()
    assert time.monotonic() - started < BOUND
    assert [h["status"] for h in health] == ["error", "error"]
    assert "limit" in health[0]["error"] and "within" in health[1]["error"]


# ---------------------------------------------------------------- the OpenAI-compatible judge


def _judge(server, **options):
    spec = {"kind": "openai", "model": "judge", "base_url": server.url + "/v1",
            "timeout": TIMEOUT, "retries": 1, "backoff": 0.01, **options}  # fmt: skip
    return make_scorer(spec, env={})


def _chat(content) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"content": content}}]}).encode()


def _candidates(n=2):
    return [Candidate(key=f"c{i}", instruction="make it red", source=_png(), edited=_png((i, 9, 9)))
            for i in range(n)]  # fmt: skip


# The judge retries unreadable answers, so wrong content-types read "unreadable response".
JUDGE_REASONS = {
    "invalid JSON": "unreadable response",
    "empty body": "unreadable response",
    "JSON nesting bomb": "unreadable response",
    "closes mid-body": "IncompleteRead",
    "sleeps past the timeout": "timeout",
    "body never ends": "timeout: no complete answer within",
    "headers never end": "timeout: no complete answer within",
}


@pytest.mark.parametrize("case", sorted(TRANSPORT))
def test_openai_judge_bounds_a_hostile_server_and_leaves_the_candidate_unscored(
    hostile, monkeypatch, case
):
    monkeypatch.setattr(scorers, "MAX_RESPONSE_BYTES", 2**20)
    respond, reason = TRANSPORT[case]
    server = hostile(respond)
    started = time.monotonic()
    scores = _judge(server).score(_candidates(2))
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"{case} took {elapsed:.1f} s"
    for score in scores:
        assert score.overall is None and score.prompt_following is None and not score.scored
        assert "1 of 1 passes failed" in score.error
        assert JUDGE_REASONS.get(case, reason) in score.error, score.error
        assert len(score.error) < 3000


def test_openai_judge_default_cap_refuses_a_100_mb_answer(hostile):
    server = hostile(stream(100 * 2**20, declare=False))
    [score] = _judge(server, retries=0, timeout=2).score(_candidates(1))
    assert f"over {scorers.MAX_RESPONSE_BYTES} bytes" in score.error


JUDGE_SHAPES = {
    "no choices": (b'{"id": "x"}', "unreadable response: no choices[0].message"),
    "empty choices": (b'{"choices": []}', "unreadable response: no choices[0].message"),
    "message a string": (b'{"choices": [{"message": "7"}]}', "not an object"),
    "content parts not text": (b'{"choices": [{"message": {"content": [{"text": 5}]}}]}',
                               "unparseable answer"),
    "answer of 1 MB": (_chat("x" * 2**20), "an answer of 1048576 characters"),
    "NaN scores": (_chat('{"reasoning": "r", "score": [NaN, 5]}'), "unparseable answer"),
    "infinite scores": (_chat('{"reasoning": "r", "score": [Infinity, 1e999]}'),
                        "unparseable answer"),
    "scores out of range": (_chat('{"reasoning": "r", "score": [26, -1]}'), "unparseable answer"),
    "scores not numbers": (_chat('{"reasoning": "r", "score": [true, null]}'),
                           "unparseable answer"),
    "raw NaN in the envelope": (b'{"choices": [{"message": {"content": NaN}}]}',
                                "unparseable answer"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(JUDGE_SHAPES))
def test_openai_judge_wrong_shapes_and_bad_scores_are_unscored(hostile, case):
    body, reason = JUDGE_SHAPES[case]
    server = hostile(lambda h, r: send(h, body=body))
    [score] = _judge(server).score(_candidates(1))
    assert score.overall is None and reason in score.error, score.error
    assert all(len(raw) <= scorers.MAX_ANSWER_CHARS for raw in score.raw)


def test_an_unscored_benchmark_candidate_counts_as_wrong(hostile):
    """The paper's metric: a pair with an unscored candidate is wrong (not skipped)."""

    def respond(handler, request):
        text = json.dumps(request["messages"])
        if "make it blue" in text:  # the judge breaks down on this candidate
            send(handler, body=b"<html>502</html>", ctype="text/html")
        else:
            send(handler, body=_chat('{"reasoning": "ok", "score": [20, 20]}'))

    server = hostile(respond)
    cands = [
        Candidate(key="good", instruction="make it red", source=_png(), edited=_png((1, 2, 3))),
        Candidate(key="bad", instruction="make it blue", source=_png(), edited=_png((3, 2, 1))),
    ]
    good, bad = _judge(server).score(cands)
    assert good.scored and not bad.scored and "text/html" in bad.error
    dims = ("prompt_following", "consistency", "overall")
    scores = {
        c.key: {d: getattr(s, d) for d in dims} for c, s in zip(cands, [good, bad], strict=True)
    }
    # human prefers "bad" in one pair, "good" in the other: only the second can be right
    rows = [("bad", "good", "color_alter", "overall"), ("good", "bad", "color_alter", "overall")]
    result = evaluate(pairs_from_rows(rows, scores), resamples=0)
    assert result["n_unscored"]["overall"] == 2 and result["n_pairs"]["overall"] == 2
    assert result["overall"]["overall"] == 0.0  # unscored pairs are wrong, not left out
