"""The reward-model server and client over real HTTP on 127.0.0.1, with a fake scorer.

No database and no model: the fake scorer records its calls and answers deterministic
scores (overall = len(instruction), raw = a digest of the source image), so every test can
check that each item got its own result.
"""

import ast
import base64
import hashlib
import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from rewardmodel.ml import server as server_module
from rewardmodel.ml.client import RewardClient, RewardClientError
from rewardmodel.ml.server import make_server

REPO = Path(__file__).resolve().parent.parent
ML_DIR = REPO / "rewardmodel" / "ml"
TOKEN = "s3cret-token"


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4 + seed % 7, 5), (seed * 37 % 256, seed % 256, 90)).save(buffer, fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class FakeScorer:
    name = "fake-editscore"

    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate  # when given, scoring waits for it
        self.calls: list[dict] = []
        self.fail_with: Exception | None = None
        self.lock = threading.Lock()

    def score(self, items, *, k=1):
        with self.lock:
            self.calls.append(
                {
                    "instructions": [item.instruction for item in items],
                    "sources": [digest(item.source) for item in items],
                    "k": k,
                }
            )
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.fail_with is not None:
            raise self.fail_with
        return [
            {
                "prompt_following": 1.0,
                "consistency": 2.0,
                "perceptual_quality": float("nan") if "nan" in item.instruction else 3.0,
                "overall": float(len(item.instruction)),
                "raw": [digest(item.source), digest(item.edited)],
                "error": None,
                "passes": k,
            }
            for item in items
        ]

    @property
    def instructions_seen(self) -> set[str]:
        return {i for call in self.calls for i in call["instructions"]}


@pytest.fixture
def start_server():
    servers = []

    def start(scorer=None, **options):
        scorer = scorer or FakeScorer()
        options.setdefault("batch_wait", 0.0)
        server = make_server(scorer, token=TOKEN, host="127.0.0.1", port=0, **options)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server, scorer

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def item(instruction: str, seed: int) -> dict:
    return {
        "instruction": instruction,
        "source": image_bytes(seed),
        "edited": image_bytes(seed + 1),
    }


def wire(items: list[dict]) -> list[dict]:
    return [
        {"instruction": i["instruction"], "source": b64(i["source"]), "edited": b64(i["edited"])}
        for i in items
    ]


def post(url: str, payload, *, token: str | None = TOKEN, raw: bytes | None = None):
    """(status, JSON answer) of POST /v1/score."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + "/v1/score", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def raw_exchange(server, head: str, body: bytes = b"", *, then: bytes | None = None) -> bytes:
    """Sends a hand-written request (maybe a body shorter than announced) and reads the
    answer until the server closes. A server that waited for the announced body would
    make this time out."""
    with socket.create_connection(server.server_address[:2], timeout=5) as sock:
        request = head + "Connection: close\n\n"
        sock.sendall(request.replace("\n", "\r\n").encode() + body)
        if then is not None:  # the body, once the server said 100 Continue
            first = sock.recv(4096)
            assert first.startswith(b"HTTP/1.1 100"), first
            sock.sendall(then)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# --- scoring and auth


def test_scores_items_in_order_with_the_token(start_server):
    server, scorer = start_server()
    items = [item("make the sky pink", 1), item("add a hat", 2)]

    status, answer = post(server.url, {"items": wire(items), "k": 2})

    assert status == 200
    assert answer["model"] == "fake-editscore"
    assert [s["overall"] for s in answer["scores"]] == [17.0, 9.0]
    assert [s["raw"][0] for s in answer["scores"]] == [digest(i["source"]) for i in items]
    assert [s["raw"][1] for s in answer["scores"]] == [digest(i["edited"]) for i in items]
    assert answer["scores"][0]["passes"] == 2
    assert scorer.calls[0]["k"] == 2


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x", "Bearer ünï"],
)
def test_refuses_a_missing_or_wrong_token(start_server, authorization):
    server, scorer = start_server()
    body = json.dumps({"items": wire([item("x", 1)])}).encode()
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(server.url + "/v1/score", data=body, headers=headers)

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)

    assert caught.value.code == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in json.loads(caught.value.read())["error"]
    assert scorer.calls == []


def test_token_is_checked_before_the_body_is_read(start_server):
    server, scorer = start_server()
    head = "POST /v1/score HTTP/1.1\nHost: x\nAuthorization: Bearer nope\nContent-Length: 5000000\n"

    answer = raw_exchange(server, head, b'{"items": [')  # and then nothing more

    assert status_of(answer) == 401
    assert scorer.calls == []


def test_healthz_needs_no_token(start_server):
    server, _ = start_server()
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as response:
        assert json.loads(response.read()) == {
            "status": "ok",
            "model": "fake-editscore",
            "queue": 0,
        }


def test_unknown_path_and_wrong_method(start_server):
    server, _ = start_server()
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url + "/v1/score", timeout=10)
    assert caught.value.code == 405
    request = urllib.request.Request(server.url + "/v2/score", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url + "/nope", timeout=10)
    assert caught.value.code == 404


# --- size limits


def test_oversized_body_is_refused_without_being_read(start_server):
    server, scorer = start_server(max_body_bytes=10_000)
    head = (
        f"POST /v1/score HTTP/1.1\nHost: x\nAuthorization: Bearer {TOKEN}\n"
        "Content-Type: application/json\nContent-Length: 50000000\n"
    )

    started = time.monotonic()
    answer = raw_exchange(server, head, b"x" * 20_000)  # 20 kB of the announced 50 MB

    assert status_of(answer) == 413
    assert b"over the limit" in answer
    assert time.monotonic() - started < 3  # answered at once, not after a read timeout
    assert scorer.calls == []


def test_body_just_over_the_limit_is_413_and_just_under_is_read(start_server):
    server, scorer = start_server(max_body_bytes=2_000)
    payload = {"items": wire([item("x", 1)]), "pad": ""}
    size = len(json.dumps(payload).encode())
    payload["pad"] = "p" * (2_000 - size)
    assert post(server.url, payload)[0] == 200

    payload["pad"] += "p"
    status, answer = post(server.url, payload)

    assert status == 413
    assert "2001 bytes" in answer["error"]
    assert len(scorer.calls) == 1


def test_body_without_content_length_is_413(start_server):
    server, scorer = start_server()
    head = f"POST /v1/score HTTP/1.1\nHost: x\nAuthorization: Bearer {TOKEN}\n"
    assert status_of(raw_exchange(server, head)) == 413

    for bad in ("-1", "1_0", "+5", "ten"):
        assert status_of(raw_exchange(server, head + f"Content-Length: {bad}\n")) == 400
    chunked = head + "Transfer-Encoding: chunked\n"
    assert status_of(raw_exchange(server, chunked, b"5\r\nhello\r\n0\r\n\r\n")) == 413
    assert scorer.calls == []


def test_expect_continue_is_refused_or_accepted_before_the_body(start_server):
    server, scorer = start_server(max_body_bytes=10_000)
    body = json.dumps({"items": wire([item("add a hat", 1)])}).encode()
    head = f"POST /v1/score HTTP/1.1\nHost: x\nExpect: 100-continue\nContent-Length: {len(body)}\n"
    assert status_of(raw_exchange(server, head + "Authorization: Bearer bad\n")) == 401
    too_big = head.replace(str(len(body)), "99999") + f"Authorization: Bearer {TOKEN}\n"
    assert status_of(raw_exchange(server, too_big)) == 413
    assert scorer.calls == []

    answer = raw_exchange(server, head + f"Authorization: Bearer {TOKEN}\n", then=body)

    assert status_of(answer) == 200
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["scores"][0]["overall"] == 9.0


# --- input checks


GOOD = b64(image_bytes(3))
GIF = io.BytesIO()
Image.new("RGB", (4, 4)).save(GIF, "GIF")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"[" * 100_000, "not valid JSON"),
        ({"items": {"instruction": "x"}}, "items must be a list"),
        ({"k": 1}, "items must be a list"),
        ({"items": []}, "items is empty"),
        ({"items": [{}] * 257}, "too many items"),
        ({"items": ["x"]}, "items[0] must be an object"),
        ({"items": [{"source": GOOD, "edited": GOOD}]}, "items[0].instruction"),
        ({"items": [{"instruction": "  ", "source": GOOD, "edited": GOOD}]}, "instruction"),
        ({"items": [{"instruction": 3, "source": GOOD, "edited": GOOD}]}, "instruction"),
        ({"items": [{"instruction": "x", "edited": GOOD}]}, "items[0].source"),
        ({"items": [{"instruction": "x", "source": GOOD, "edited": "%%%"}]}, "not valid base64"),
        ({"items": [{"instruction": "x", "source": GOOD, "edited": "abc"}]}, "not valid base64"),
        (
            {"items": [{"instruction": "x", "source": b64(b"hello there"), "edited": GOOD}]},
            "items[0].source is not a readable image",
        ),
        (
            {"items": [{"instruction": "x", "source": GOOD, "edited": b64(image_bytes(3)[:40])}]},
            "items[0].edited is not a readable image",
        ),
        (
            {"items": [{"instruction": "x", "source": b64(GIF.getvalue()), "edited": GOOD}]},
            "GIF images are not accepted",
        ),
        *[
            ({"items": [{"instruction": "x", "source": GOOD, "edited": GOOD}], "k": k}, "k must")
            for k in (0, 17, "2", True, 1.5, None)
        ],
    ],
)
def test_bad_input_is_400_with_a_message(start_server, body, message):
    server, scorer = start_server()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    status, answer = post(server.url, None, raw=raw)

    assert status == 400
    assert message in answer["error"]
    assert scorer.calls == []


def test_accepts_jpeg_webp_data_urls_and_wrapped_base64(start_server):
    server, _ = start_server()
    jpeg, webp = image_bytes(4, "JPEG"), image_bytes(5, "WEBP")
    wrapped = base64.encodebytes(jpeg).decode()  # newline every 76 characters
    items = [
        {"instruction": "a", "source": wrapped, "edited": "data:image/webp;base64," + b64(webp)}
    ]

    status, answer = post(server.url, {"items": items})

    assert status == 200
    assert answer["scores"][0]["raw"] == [digest(jpeg), digest(webp)]


def test_scorer_failure_is_500_and_the_server_keeps_serving(start_server):
    server, scorer = start_server()
    scorer.fail_with = RuntimeError("CUDA out of memory")
    status, answer = post(server.url, {"items": wire([item("x", 1)])})
    assert status == 500
    assert "CUDA out of memory" in answer["error"]

    scorer.fail_with = None
    assert post(server.url, {"items": wire([item("x", 1)])})[0] == 200


def test_non_finite_scores_become_null(start_server):
    server, _ = start_server()
    status, answer = post(server.url, {"items": wire([item("nan please", 1)])})
    assert status == 200
    assert answer["scores"][0]["perceptual_quality"] is None


# --- batching


def concurrently(functions):
    barrier = threading.Barrier(len(functions))
    results = [None] * len(functions)

    def run(n):
        barrier.wait()
        results[n] = functions[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(functions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def assert_grouped_by_instruction(instructions: list[str]) -> None:
    """Each instruction's items are contiguous."""
    runs = [i for n, i in enumerate(instructions) if n == 0 or instructions[n - 1] != i]
    assert len(runs) == len(set(runs)), instructions


def wait_for_queue(server, size: int) -> None:
    deadline = time.monotonic() + 10
    while server.batcher.pending < size:
        assert time.monotonic() < deadline, server.batcher.pending
        time.sleep(0.01)


def test_requests_arriving_together_are_merged_and_split_back(start_server):
    gate = threading.Event()
    server, scorer = start_server(FakeScorer(gate), batch_wait=0.05, max_batch=64)
    # Six requests, each interleaving two instructions that other requests also use.
    requests = [
        [item(f"instruction {r % 3}", 10 * r + n) if n % 2 else item("shared", 10 * r + n)
         for n in range(4)]
        for r in range(6)
    ]  # fmt: skip
    first = threading.Thread(target=post, args=(server.url, {"items": wire(requests[0])}))
    first.start()
    while not scorer.calls:  # the model is busy with the first request...
        time.sleep(0.01)

    threads = [
        threading.Thread(target=lambda r=r: answers.__setitem__(r, post(server.url, {"items": wire(requests[r])})))
        for r in range(1, 6)
    ]  # fmt: skip
    answers = {}
    for thread in threads:
        thread.start()
    wait_for_queue(server, 6)  # ...while five more arrive
    gate.set()
    for thread in [first, *threads]:
        thread.join(10)

    assert [len(call["sources"]) for call in scorer.calls] == [4, 20]
    merged = scorer.calls[1]
    assert_grouped_by_instruction(merged["instructions"])
    assert merged["instructions"][:10] == ["shared"] * 10  # first seen, from all requests
    for r in range(1, 6):
        status, answer = answers[r]
        assert status == 200
        items = requests[r]
        assert [s["raw"][0] for s in answer["scores"]] == [digest(i["source"]) for i in items]
        assert [s["overall"] for s in answer["scores"]] == [len(i["instruction"]) for i in items]


def test_requests_within_batch_wait_are_merged(start_server):
    server, scorer = start_server(batch_wait=1.0, max_batch=64)
    requests = [[item(f"i{r % 2}", 2 * r), item("common", 2 * r + 1)] for r in range(4)]

    answers = concurrently(
        [lambda items=items: post(server.url, {"items": wire(items)}) for items in requests]
    )

    assert len(scorer.calls) < len(requests)
    for call in scorer.calls:
        assert_grouped_by_instruction(call["instructions"])
    for items, (status, answer) in zip(requests, answers, strict=True):
        assert status == 200
        assert [s["raw"][0] for s in answer["scores"]] == [digest(i["source"]) for i in items]


def test_batches_stop_at_max_batch_and_split_by_k(start_server):
    server, scorer = start_server(batch_wait=0.3, max_batch=4)
    requests = [([item(f"r{r}", 2 * r), item(f"r{r}", 2 * r + 1)], 1 + r % 2) for r in range(6)]

    answers = concurrently(
        [
            lambda items=items, k=k: post(server.url, {"items": wire(items), "k": k})
            for items, k in requests
        ]
    )

    for (items, k), (status, answer) in zip(requests, answers, strict=True):
        assert status == 200
        assert [s["passes"] for s in answer["scores"]] == [k, k]
        assert [s["raw"][0] for s in answer["scores"]] == [digest(i["source"]) for i in items]
    assert all(len(call["sources"]) <= 4 for call in scorer.calls)
    for call in scorer.calls:  # one k per scorer call, and the items asked with that k
        asked = {i: k for items, k in requests for i in (x["instruction"] for x in items)}
        assert {asked[i] for i in call["instructions"]} == {call["k"]}


def test_healthz_reports_the_queue(start_server):
    gate = threading.Event()
    server, scorer = start_server(FakeScorer(gate), max_batch=1)
    threads = [
        threading.Thread(target=post, args=(server.url, {"items": wire([item(f"q{n}", n)])}))
        for n in range(3)
    ]
    for thread in threads:
        thread.start()

    def queue() -> int:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as response:
            return json.loads(response.read())["queue"]

    deadline = time.monotonic() + 10
    while queue() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert queue() == 3  # one being scored, two waiting
    assert len(scorer.calls) == 1
    gate.set()
    for thread in threads:
        thread.join(10)
    assert queue() == 0
    assert len(scorer.calls) == 3


# --- client


def test_client_spreads_instruction_groups_over_servers_and_keeps_order(start_server):
    (one, scorer_one), (two, scorer_two) = start_server(), start_server()
    client = RewardClient([one.url, two.url + "/"], TOKEN)
    items = [item(name, 10 * n + rep) for rep in range(2) for n, name in enumerate("ABCD")]

    scores = client.score(items, k=3)

    assert [s["raw"][0] for s in scores] == [digest(i["source"]) for i in items]
    assert all(s["passes"] == 3 for s in scores)
    assert scorer_one.instructions_seen == {"A", "C"}
    assert scorer_two.instructions_seen == {"B", "D"}
    for call in scorer_one.calls + scorer_two.calls:
        assert_grouped_by_instruction(call["instructions"])

    # The rotation carries on across calls: one group per call alternates servers.
    client.score([item("E", 90)])
    client.score([item("F", 91)])
    assert "E" in scorer_one.instructions_seen and "F" in scorer_two.instructions_seen


def test_client_sends_large_groups_in_several_requests(start_server):
    server, scorer = start_server()
    client = RewardClient([server.url], TOKEN, max_items_per_request=3)
    items = [item("A" if n < 5 else "B", n) for n in range(7)]

    scores = client.score(items)

    assert [s["raw"][0] for s in scores] == [digest(i["source"]) for i in items]
    assert [len(call["sources"]) for call in scorer.calls] == [3, 2, 2]


def unused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed: connections are refused


def test_client_fails_over_to_the_next_server(start_server):
    live, scorer = start_server()
    client = RewardClient([unused_url(), live.url], TOKEN, timeout=5)
    items = [item(name, n) for n, name in enumerate("ABCAB")]

    scores = client.score(items)

    assert [s["raw"][0] for s in scores] == [digest(i["source"]) for i in items]
    assert scorer.instructions_seen == {"A", "B", "C"}


def test_client_error_names_every_server_it_tried(start_server):
    dead_one, dead_two = unused_url(), unused_url()
    client = RewardClient([dead_one, dead_two], TOKEN, timeout=5, retries=1)

    with pytest.raises(RewardClientError) as caught:
        client.score([item("A", 1)])

    assert dead_one in str(caught.value) and dead_two in str(caught.value)


def test_client_does_not_retry_a_bad_request_but_does_retry_a_wrong_token(start_server):
    (one, scorer_one), (two, scorer_two) = start_server(), start_server()
    client = RewardClient([one.url, two.url], TOKEN)
    bad = {"instruction": "A", "source": b"not an image", "edited": image_bytes(1)}
    with pytest.raises(RewardClientError, match=r"HTTP 400: items\[0\]\.source") as caught:
        client.score([bad])
    assert one.url in str(caught.value) and two.url not in str(caught.value)

    wrong = RewardClient([one.url, two.url], "wrong", retries=1)
    with pytest.raises(RewardClientError, match="HTTP 401") as caught:
        wrong.score([item("A", 1)])
    assert one.url in str(caught.value) and two.url in str(caught.value)
    assert scorer_one.calls == scorer_two.calls == []


def test_client_input_checks_and_health(start_server):
    server, _ = start_server()
    client = RewardClient([server.url, unused_url()], TOKEN, timeout=5)
    assert client.score([]) == []
    with pytest.raises(ValueError, match="k must"):
        client.score([item("A", 1)], k=0)
    with pytest.raises(ValueError, match=r"items\[0\]\.source"):
        client.score([{"instruction": "A", "source": "a path", "edited": b""}])

    health = client.health()

    assert health[0] == {"url": server.url, "status": "ok", "model": "fake-editscore", "queue": 0}
    assert health[1]["status"] == "error"


# --- command line


def test_main_loads_the_model_and_serves_it(monkeypatch):
    import rewardmodel.ml as ml_package

    loaded = {}

    class FakeEditScore(FakeScorer):
        @classmethod
        def from_pretrained(cls, path, adapter=None, **options):
            loaded.update(path=path, adapter=adapter, options=options)
            return cls()

    class ScoreItem:
        def __init__(self, instruction, source, edited):
            self.instruction, self.source, self.edited = instruction, source, edited

    fake_model = type(sys)("rewardmodel.ml.model")
    fake_model.EditScore, fake_model.ScoreItem = FakeEditScore, ScoreItem
    monkeypatch.setitem(sys.modules, "rewardmodel.ml.model", fake_model)
    monkeypatch.setattr(ml_package, "model", fake_model, raising=False)
    started = []
    real_make_server = server_module.make_server

    def capture(*args, **kwargs):
        started.append((real_make_server(*args, **kwargs), kwargs))
        return started[0][0]

    monkeypatch.setattr(server_module, "make_server", capture)
    monkeypatch.setattr(server_module.logging, "basicConfig", lambda **kwargs: None)
    argv = ["--model", "/models/base", "--adapter", "/models/run-7", "--port", "0"]
    argv += ["--token", TOKEN, "--batch-wait-ms", "5", "--max-batch", "8", "--dtype", "bfloat16"]
    argv += ["--device", "cuda:1"]
    thread = threading.Thread(target=server_module.main, args=(argv,), daemon=True)
    thread.start()
    for _ in range(100):
        if started:
            break
        time.sleep(0.05)
    server, kwargs = started[0]
    try:
        status, answer = post(server.url, {"items": wire([item("add a hat", 1)])})
    finally:
        server.shutdown()
        thread.join(10)

    assert loaded == {
        "path": "/models/base",
        "adapter": "/models/run-7",
        "options": {"dtype": "bfloat16", "device": "cuda:1"},
    }
    assert kwargs["batch_wait"] == 0.005 and kwargs["max_batch"] == 8
    assert kwargs["item_type"] is ScoreItem
    assert status == 200
    assert answer == {"scores": answer["scores"], "model": "run-7"}
    assert answer["scores"][0]["overall"] == 9.0


def test_command_line_requires_a_token(monkeypatch):
    with pytest.raises(ValueError, match="token"):
        make_server(FakeScorer(), token="")

    monkeypatch.delenv("EDITSCORE_TOKEN", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "rewardmodel.ml.server", "--model", "m", "--port", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--token" in result.stderr


# --- no object deserialisation anywhere


FORBIDDEN = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names.update(a.value for a in node.args if isinstance(a, ast.Constant))
    return names


def test_no_module_here_imports_pickle():
    for path in sorted(ML_DIR.rglob("*.py")):
        assert not imported_modules(path) & FORBIDDEN, path
    for path in (ML_DIR / "server.py", ML_DIR / "client.py"):
        assert "pickle" not in path.read_text().lower(), path
    # Nor does anything they pull in, Pillow's image plugins included.
    probe = (
        "import base64, io, json, sys\n"
        "from PIL import Image\n"
        "from rewardmodel.ml import client, server\n"
        "for fmt in ('PNG', 'JPEG', 'WEBP'):\n"
        "    b = io.BytesIO(); Image.new('RGB', (8, 8)).save(b, fmt)\n"
        "    s = base64.b64encode(b.getvalue()).decode()\n"
        "    body = json.dumps({'items': [{'instruction': 'x', 'source': s, 'edited': s}]})\n"
        "    server.parse_score_request(body.encode())\n"
        "print(sorted(m for m in sys.modules if 'pickle' in m))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
