"""Benchmark scorers (benchmark/ml/scorers.py): simple kinds, specs, and the OpenAI-compatible judge
against a local chat-completions server."""

import base64
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest
from PIL import Image, ImageFilter

from benchmark.ml.scorers import (
    Candidate,
    ConstantScorer,
    FileScorer,
    OpenAIScorer,
    PixelScorer,
    RandomScorer,
    Score,
    make_scorer,
    parse_spec,
    resize_to_source,
)
from tests import local_http


def _encode(img: Image.Image, fmt="PNG") -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def _textured(size=(96, 64), seed=0) -> Image.Image:
    """Sharp 4-pixel blocks of random grey levels, in RGB."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (size[1] // 4, size[0] // 4), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((4, 4), dtype=np.uint8))
    return Image.fromarray(pixels, "L").convert("RGB")


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.fixture(scope="module")
def source() -> bytes:
    return _encode(_textured())


def _candidate(key, edited, source, instruction="make it pop"):
    return Candidate(key=key, instruction=instruction, source=source, edited=edited)


# ---------------------------------------------------------------- candidates, images


def test_candidate_hash_covers_every_field_and_ignores_the_key(source):
    a = _candidate("a", b"xy", source)
    assert a.content_hash() == _candidate("other-key", b"xy", source).content_hash()
    assert a.content_hash() != _candidate("a", b"xz", source).content_hash()
    assert a.content_hash() != _candidate("a", b"xy", source, "other").content_hash()
    # length prefixes: moving a byte from one field into the next changes the hash
    assert (
        Candidate("k", "i", b"ab", b"c").content_hash()
        != Candidate("k", "i", b"a", b"bc").content_hash()
    )
    assert repr(a) == "Candidate(key='a', instruction='make it pop')"  # no image bytes


def test_resize_to_source(source):
    same = _encode(_textured(seed=1))
    assert resize_to_source(source, same) is same  # sizes match: untouched
    small_jpeg = _encode(_textured((48, 32), seed=1), "JPEG")
    resized = resize_to_source(source, small_jpeg)
    img = _decode(resized)
    assert img.format == "PNG" and img.size == (96, 64)
    palette = _encode(_textured((40, 40)).convert("P"))
    assert _decode(resize_to_source(source, palette)).size == (96, 64)
    with pytest.raises(ValueError, match="edited image cannot be read"):
        resize_to_source(source, b"garbage")


def test_score_as_dict():
    score = Score(prompt_following=1.0, overall=2.0, raw=["x"])
    assert score.as_dict() == {
        "prompt_following": 1.0,
        "consistency": None,
        "perceptual_quality": None,
        "overall": 2.0,
        "raw": ["x"],
        "error": None,
        "reasoning": None,
    }
    assert score.scored and not Score(error="why").scored


# ---------------------------------------------------------------- random, constant


def test_random_is_deterministic_per_seed_and_content(source):
    cands = [_candidate(f"c{i}", _encode(_textured(seed=i)), source) for i in range(5)]
    first = RandomScorer(seed=3).score(cands)
    again = RandomScorer(seed=3).score(list(reversed(cands)))[::-1]
    assert [s.as_dict() for s in first] == [s.as_dict() for s in again]
    alone = RandomScorer(seed=3).score([cands[2]])[0]  # a resumed run scoring one candidate
    assert alone == first[2]
    other_seed = RandomScorer(seed=4).score(cands)
    assert all(a.overall != b.overall for a, b in zip(first, other_seed, strict=True))
    assert len({s.prompt_following for s in first}) == 5
    for s in first:
        assert 0 <= s.prompt_following <= 10 and 0 <= s.perceptual_quality <= 10
        pf, c, pq = s.prompt_following, s.consistency, s.perceptual_quality
        assert s.overall == pytest.approx(math.sqrt(min(pf, c) * pq))


def test_constant_makes_every_pair_a_tie(source):
    cands = [_candidate(f"c{i}", _encode(_textured(seed=i)), source) for i in range(3)]
    scores = ConstantScorer().score(cands)
    assert {(s.prompt_following, s.consistency, s.overall) for s in scores} == {(5.0, 5.0, 5.0)}
    assert make_scorer({"kind": "constant", "value": 2}).score(cands[:1])[0].overall == 2.0


# ---------------------------------------------------------------- pixel


def test_pixel_scores_follow_change_and_sharpness(source):
    scorer = PixelScorer()
    src = _textured()
    inverted = Image.fromarray(255 - np.asarray(src))
    blurred = src.filter(ImageFilter.GaussianBlur(3))
    half_size_copy = _encode(src.resize((48, 32), Image.Resampling.NEAREST))
    copy, heavy, blur, small = scorer.score(
        [
            _candidate("copy", source, source),
            _candidate("heavy", _encode(inverted), source),
            _candidate("blur", _encode(blurred), source),
            _candidate("small", half_size_copy, source),
        ]
    )
    assert copy.consistency == 10.0
    assert copy.prompt_following == 0.0
    assert copy.overall == 0.0  # no change: the prompt was not followed
    assert heavy.consistency < 6.0
    assert heavy.prompt_following > 8.0
    assert blur.perceptual_quality < copy.perceptual_quality - 3
    assert copy.perceptual_quality > 9
    assert small.error is None  # resized to the source size before comparing
    for s in (copy, heavy, blur, small):
        assert s.overall == pytest.approx(
            math.sqrt(min(s.prompt_following, s.consistency) * s.perceptual_quality)
        )
    assert scorer.score([_candidate("bad", b"nope", source)])[0].error.startswith("the edited")


# ---------------------------------------------------------------- file


def test_file_scorer_reads_values_and_reports_missing_keys(tmp_path, source):
    path = tmp_path / "scores.jsonl"
    path.write_text(
        '{"key": "a", "prompt_following": 7, "consistency": 6.5, "overall": 5}\n'
        "\n"
        '{"key": "b", "prompt_following": 1, "consistency": 2, "overall": 3,'
        ' "perceptual_quality": 4, "note": "extra fields are ignored"}\n'
    )
    scorer = make_scorer(parse_spec(f"file:path={path}"))
    a, b, c = scorer.score([_candidate(k, b"", source) for k in ("a", "b", "c")])
    assert (a.prompt_following, a.consistency, a.perceptual_quality, a.overall) == (
        7.0,
        6.5,
        None,
        5.0,
    )
    assert (b.prompt_following, b.consistency, b.perceptual_quality, b.overall) == (1, 2, 4, 3)
    assert c.error == "not in the scores file" and c.overall is None
    key = scorer.cache_key()
    path.write_text('{"key": "a", "prompt_following": 8, "consistency": 6.5, "overall": 5}\n')
    assert FileScorer(path).cache_key() != key  # the file's content is part of the config


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prompt_following": 1, "consistency": 1, "overall": 1}', '"key"'),
        ('{"key": "x", "consistency": 1, "overall": 1}', '"prompt_following" is missing'),
        ('{"key": "x", "prompt_following": "7", "consistency": 1, "overall": 1}', "number"),
        ('{"key": "x", "prompt_following": NaN, "consistency": 1, "overall": 1}', "finite"),
        ('{"key": "a", "prompt_following": 1, "consistency": 1, "overall": 1}', "twice"),
    ],
)
def test_file_scorer_names_the_bad_line(tmp_path, line, reason):
    path = tmp_path / "scores.jsonl"
    good = '{"key": "a", "prompt_following": 1, "consistency": 1, "overall": 1}'
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(ValueError, match="line 3") as info:
        FileScorer(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_file_scorer_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read the scores file"):
        make_scorer({"kind": "file", "path": str(tmp_path / "nope.jsonl")})


# ---------------------------------------------------------------- specs, cache keys


def test_parse_spec():
    assert parse_spec("random:seed=3") == {"kind": "random", "seed": 3}
    assert parse_spec("pixel") == {"kind": "pixel"}
    assert parse_spec("openai:model=gpt-4.1,base_url=http://127.0.0.1:8000/v1,k=4") == {
        "kind": "openai",
        "model": "gpt-4.1",
        "base_url": "http://127.0.0.1:8000/v1",
        "k": 4,
    }
    assert parse_spec("openai: model = m , temperature=0.5, top_p=.9, backoff=1e-3") == {
        "kind": "openai",
        "model": "m",
        "temperature": 0.5,
        "top_p": 0.9,
        "backoff": 0.001,
    }
    assert parse_spec("constant:value=-1") == {"kind": "constant", "value": -1}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty scorer spec"),
        (":seed=3", "bad scorer kind"),
        ("Random Kind:seed=3", "bad scorer kind"),
        ("random:seed", "expected name=value"),
        ("random:=3", "expected name=value"),
        ("random:seed=1,seed=2", "given twice"),
        ("random:seed=1,", "expected name=value"),
    ],
)
def test_parse_spec_errors(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_spec(text)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"kind": "nope"}, "unknown scorer kind 'nope'; known kinds: constant, editscore"),
        ({}, "unknown scorer kind None"),
        ({"kind": "random", "sede": 1}, "unknown option(s) sede for scorer kind 'random'"),
        ({"kind": "random", "seed": 1.5}, "'seed' must be an integer"),
        ({"kind": "constant", "value": "high"}, "'value' must be a number"),
        ({"kind": "pixel", "k": 2}, "allowed: none"),
        ({"kind": "file"}, "needs option path"),
        ({"kind": "openai"}, "needs option model"),
        ({"kind": "openai", "model": "m", "k": 0}, "'k' must be in [1, 16]"),
        ({"kind": "openai", "model": "m", "k": 10**30}, "'k' must be in [1, 16]"),
        ({"kind": "openai", "model": ["m"]}, "'model' must be a string"),
        ({"kind": "openai", "model": "m", "top_p": 2}, "'top_p' must be in [0, 1]"),
        ({"kind": "openai", "model": "m", "base_url": "ftp://x"}, "http(s) URL"),
        ({"kind": "openai", "model": "m", "api_key": "sk-1"}, "OPENAI_API_KEY"),
        ({"kind": "openai", "model": "m", "k": None}, "'k' must not be empty"),
        # a typo must not open 100,000 connections or wait for days (issue 18)
        (
            {"kind": "openai", "model": "m", "concurrency": 100000},
            "'concurrency' must be in [1, 64]",
        ),
        ({"kind": "openai", "model": "m", "timeout": 1e9}, "'timeout' must be in [0.001, 600.0]"),
        ({"kind": "openai", "model": "m", "retries": 1000}, "'retries' must be in [0, 10]"),
        ({"kind": "openai", "model": "m", "backoff": 1e6}, "'backoff' must be in [0, 60.0]"),
        (
            {"kind": "openai", "model": "m", "max_tokens": 10**9},
            "'max_tokens' must be in [1, 32768]",
        ),
    ],
)
def test_make_scorer_errors(spec, reason):
    with pytest.raises(ValueError) as info:
        make_scorer(spec, env={})
    assert reason in str(info.value)


def test_editscore_cache_key_tells_adapters_on_one_base_apart(tmp_path):
    """The reference code keyed scores by the base model's name only: two adapters on
    one base collided. Here the key holds both folders' fingerprints."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    adapters = []
    for name, weights in (("a", b"1" * 100), ("b", b"2" * 100)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
        (folder / "adapter_model.safetensors").write_bytes(weights)
        adapters.append(str(folder))
    plain = make_scorer({"kind": "editscore", "base": str(base)})
    first, second = (
        make_scorer({"kind": "editscore", "base": str(base), "adapter": a}) for a in adapters
    )
    assert len({plain.cache_key(), first.cache_key(), second.cache_key()}) == 3
    assert (
        make_scorer({"kind": "editscore", "base": str(base), "adapter": adapters[0]}).cache_key()
        == first.cache_key()
    )
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"3" * 100)  # retrained in place
    assert (
        make_scorer({"kind": "editscore", "base": str(base), "adapter": adapters[0]}).cache_key()
        != first.cache_key()
    )
    with pytest.raises(ValueError, match="needs option base"):
        make_scorer(parse_spec("editscore"))


def test_make_scorer_from_text_and_env():
    scorer = make_scorer("openai:model=m,k=4", env={"OPENAI_BASE_URL": "http://judge:9/v1/"})
    assert isinstance(scorer, OpenAIScorer)
    config = scorer.config()
    assert config["base_url"] == "http://judge:9/v1"
    assert (config["k"], config["temperature"], config["top_p"], config["seed"]) == (
        4,
        0.7,
        0.9,
        42,
    )
    assert make_scorer("openai:model=m", env={}).config()["temperature"] == 0.0
    assert make_scorer("openai:model=m", env={}).config()["base_url"] == (
        "https://api.openai.com/v1"
    )
    spec_wins = make_scorer("openai:model=m,base_url=http://a/v1", env={"OPENAI_BASE_URL": "x"})
    assert spec_wins.config()["base_url"] == "http://a/v1"
    assert isinstance(make_scorer("random"), RandomScorer)


OPENAI_VARIANTS = {
    "model": "other",
    "base_url": "http://elsewhere/v1",
    "k": 2,
    "temperature": 0.3,
    "top_p": 0.8,
    "top_k": 20,
    "seed": 7,
    "max_tokens": 256,
    "score_range": 10,
}


def test_cache_key_changes_with_every_scoring_option(tmp_path):
    base = {"kind": "openai", "model": "m", "base_url": "http://judge/v1"}
    keys = {make_scorer(base, env={}).cache_key()}
    for name, value in OPENAI_VARIANTS.items():
        keys.add(make_scorer({**base, name: value}, env={}).cache_key())
    assert len(keys) == 1 + len(OPENAI_VARIANTS)
    simple = [
        "random:seed=0",
        "random:seed=1",
        "constant",
        "constant:value=4",
        "pixel",
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("")
    simple_keys = {make_scorer(s).cache_key() for s in simple} | {FileScorer(path).cache_key()}
    assert len(simple_keys) == len(simple) + 1
    assert not simple_keys & keys
    # canonical: the same config always gives the same key
    assert make_scorer("random:seed=1").cache_key() == make_scorer("random:seed=1").cache_key()


def test_cache_key_never_holds_the_api_key():
    env_a = {"OPENAI_API_KEY": "sk-secret-a"}
    a = make_scorer({"kind": "openai", "model": "m"}, env=env_a)
    b = make_scorer({"kind": "openai", "model": "m"}, env={"OPENAI_API_KEY": "sk-secret-b"})
    assert a.cache_key() == b.cache_key()
    assert "sk-secret" not in json.dumps(a.config()) and "sk-secret" not in repr(a)
    with_userinfo = make_scorer(
        {"kind": "openai", "model": "m", "base_url": "https://user:pw@judge:8443/v1"}, env={}
    )
    assert with_userinfo.config()["base_url"] == "https://judge:8443/v1"
    # transport options do not change what a successful answer is
    transport = {"concurrency": 9, "timeout": 5, "retries": 0, "backoff": 0.1}
    assert make_scorer({"kind": "openai", "model": "m", **transport}, env={}).cache_key() == (
        a.cache_key()
    )


# ---------------------------------------------------------------- OpenAI-compatible judge


def _answer(scores, reasoning="fine"):
    return json.dumps({"reasoning": reasoning, "score": scores})


class Judge:
    """A local chat-completions server. ``reply(request) -> (status, content, delay)`` decides
    each answer; every request is recorded with its headers, JSON body and arrival time."""

    def __init__(self, reply):
        self.reply = reply
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # only a followed redirect would arrive here
                with judge.lock:
                    judge.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": None}
                    )
                self.send_response(200)
                self.end_headers()

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    request = {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "time": time.monotonic(),
                        "n": len(judge.requests),
                    }
                    judge.requests.append(request)
                    judge.active += 1
                    judge.max_active = max(judge.max_active, judge.active)
                try:
                    status, content, delay = judge.reply(request)
                    time.sleep(delay)
                finally:  # before answering: the client's next request may come at once
                    with judge.lock:
                        judge.active -= 1
                try:
                    if status == 200:
                        payload = json.dumps(
                            {"choices": [{"index": 0, "message": {"content": content}}]}
                        ).encode()
                    else:
                        payload = content.encode()
                    self.send_response(status)
                    if 300 <= status < 400:  # a redirect to this same server
                        self.send_header("Location", "/landing")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.server, root = local_http.serve(Handler)
        self.url = f"{root}/v1"

    def close(self):
        local_http.stop(self.server)


@pytest.fixture
def judge():
    servers = []

    def start(reply):
        server = Judge(reply)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _question(request) -> str:
    images = [p for p in request["body"]["messages"][1]["content"] if p["type"] == "image_url"]
    return "SC" if len(images) == 2 else "PQ"


def _good(request):
    return 200, _answer([20, 15] if _question(request) == "SC" else [25, 10]), 0


def _scorer(server, env=None, **options):
    spec = {"kind": "openai", "model": "judge-1", "base_url": server.url, "backoff": 0.01}
    return make_scorer({**spec, **options}, env=env if env is not None else {})


def test_openai_requests_and_combined_scores(judge, source):
    server = judge(_good)
    small = _encode(_textured((48, 32), seed=5), "JPEG")
    # The key goes to the configured endpoint (OPENAI_BASE_URL) only.
    scorer = _scorer(server, env={"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.url})
    [score] = scorer.score([_candidate("c", small, source, "paint the floor red")])
    assert score.error is None
    assert score.prompt_following == pytest.approx(8.0)
    assert score.consistency == pytest.approx(6.0)
    assert score.perceptual_quality == pytest.approx(4.0)
    assert score.overall == pytest.approx(math.sqrt(24))
    assert sorted(score.raw) == sorted([_answer([20, 15]), _answer([25, 10])])

    assert len(server.requests) == 2
    by_question = {_question(r): r for r in server.requests}
    for request in server.requests:
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["Authorization"] == "Bearer sk-test"
        body = request["body"]
        assert body["model"] == "judge-1"
        assert (body["seed"], body["temperature"], body["top_p"], body["max_tokens"]) == (
            42,
            0.0,
            0.9,
            512,
        )
        assert "top_k" not in body
        assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    sc_parts = by_question["SC"]["body"]["messages"][1]["content"]
    assert [p.get("text") for p in sc_parts if p["type"] == "text"][:2] == ["<img1>: ", "<img2>: "]
    assert sc_parts[-1]["text"].rstrip().endswith("Editing instruction: paint the floor red")
    urls = [p["image_url"]["url"] for p in sc_parts if p["type"] == "image_url"]
    images = [base64.b64decode(u.removeprefix("data:image/png;base64,")) for u in urls]
    assert images[0] == source
    assert _decode(images[1]).size == (96, 64)  # the edited image, resized to the source
    pq_parts = by_question["PQ"]["body"]["messages"][1]["content"]
    assert "naturalness" in pq_parts[-1]["text"] and "0 to 25" in pq_parts[-1]["text"]
    [pq_url] = [p["image_url"]["url"] for p in pq_parts if p["type"] == "image_url"]
    assert pq_url == urls[1]


def test_openai_without_a_key_sends_no_authorization(judge, source):
    server = judge(_good)
    _scorer(server).score([_candidate("c", source, source)])
    assert all("Authorization" not in r["headers"] for r in server.requests)


def test_openai_avg_at_k(judge, source):
    def reply(request):
        if _question(request) == "PQ":
            return 200, _answer([25, 10]), 0
        seed = request["body"]["seed"]
        return 200, _answer([20, 15] if seed == 42 else [10, 25], f"seed {seed}"), 0

    server = judge(reply)
    [score] = _scorer(server, k=2, top_k=20).score([_candidate("c", source, source)])
    assert sorted(r["body"]["seed"] for r in server.requests) == [42, 42, 43, 43]
    assert {r["body"]["temperature"] for r in server.requests} == {0.7}
    assert {r["body"]["top_k"] for r in server.requests} == {20}
    # pass 42: PF 8, C 6, PQ 4, O sqrt(24); pass 43: PF 4, C 10, PQ 4, O 4
    assert score.prompt_following == pytest.approx(6.0)
    assert score.consistency == pytest.approx(8.0)
    assert score.perceptual_quality == pytest.approx(4.0)
    assert score.overall == pytest.approx((math.sqrt(24) + 4) / 2)
    assert len(score.raw) == 4
    assert score.reasoning == {"SC": "seed 42", "PQ": "fine"}  # the first pass's


def test_openai_avg_at_k_needs_every_pass(judge, source):
    """Avg@2 over one pass would be another estimator: the candidate is unscored
    (and not cached, so a rerun asks again), the answers kept."""

    def reply(request):
        if request["body"]["seed"] == 43 and _question(request) == "SC":
            return 200, "no idea", 0
        return _good(request)

    server = judge(reply)
    [score] = _scorer(server, k=2, retries=1).score([_candidate("c", source, source)])
    assert score.overall is None and score.error.startswith("1 of 2 passes failed")
    assert score.raw.count("no idea") == 2


def test_openai_key_goes_only_to_the_configured_endpoint_and_never_follows_redirects(judge, source):
    server = judge(_good)
    env = {"OPENAI_API_KEY": "sk-secret", "OPENAI_BASE_URL": "https://api.example.invalid/v1"}
    [score] = _scorer(server, env=env).score([_candidate("c", source, source)])
    assert score.error is None
    assert all("Authorization" not in r["headers"] for r in server.requests)
    moved = judge(lambda request: (302, "", 0))
    env = {"OPENAI_API_KEY": "sk-secret", "OPENAI_BASE_URL": moved.url}
    [score] = _scorer(moved, env=env, retries=0).score([_candidate("c", source, source)])
    assert score.overall is None and "HTTP 302" in score.error
    assert [r["path"] for r in moved.requests] == ["/v1/chat/completions"] * 2  # nothing followed


def test_openai_malformed_answer_is_reasked_then_unscored(judge, source):
    server = judge(lambda request: (200, "I'd rather not say.", 0))
    cands = [_candidate("c", source, source)]
    [score] = _scorer(server, retries=2).score(cands)
    assert score.overall is None and score.prompt_following is None
    assert score.raw == ["I'd rather not say."] * 6  # 3 SC + 3 PQ answers, all kept
    assert "pass 0 SC: unparseable answer" in score.error
    assert "pass 0 PQ: unparseable answer" in score.error
    assert "3 answers" in score.error
    assert len(server.requests) == 6


def test_openai_malformed_then_good_answer(judge, source):
    def reply(request):
        if request["n"] == 0:
            return 200, '{"reasoning": "hmm", "score": [30, 99]}', 0  # out of range
        return _good(request)

    server = judge(reply)
    [score] = _scorer(server, concurrency=1).score([_candidate("c", source, source)])
    assert score.error is None and score.overall == pytest.approx(math.sqrt(24))
    assert len(score.raw) == 3 and score.raw[0].startswith('{"reasoning": "hmm"')


def test_openai_http_500_is_retried_with_backoff(judge, source):
    def reply(request):
        return (500, '{"error": "busy"}', 0) if request["n"] < 2 else _good(request)

    server = judge(reply)
    scorer = _scorer(server, concurrency=1, backoff=0.1, retries=3)
    [score] = scorer.score([_candidate("c", source, source)])
    assert score.error is None and score.overall == pytest.approx(math.sqrt(24))
    times = [r["time"] for r in server.requests]
    assert len(times) == 4  # SC: 500, 500, 200; PQ: 200
    assert times[1] - times[0] >= 0.1 * 0.9  # backoff * 2**0
    assert times[2] - times[1] >= 0.2 * 0.9  # backoff * 2**1


def test_openai_persistent_errors_leave_the_candidate_unscored(judge, source):
    server = judge(lambda request: (503, '{"error": "down"}', 0))
    [score] = _scorer(server, retries=1).score([_candidate("c", source, source)])
    assert score.overall is None
    assert 'HTTP 503: {"error": "down"} (after 2 attempts)' in score.error
    assert len(server.requests) == 4

    bad_request = judge(lambda request: (400, '{"error": "bad model"}', 0))
    [score] = _scorer(bad_request, retries=3).score([_candidate("c", source, source)])
    assert "HTTP 400" in score.error and "(after" not in score.error
    assert len(bad_request.requests) == 2  # a client error is not retried


def test_openai_timeout_is_retried_then_reported(judge, source):
    def slow_first(request):
        status, content, _ = _good(request)
        return status, content, (1.0 if request["n"] == 0 else 0)

    server = judge(slow_first)
    scorer = _scorer(server, concurrency=1, timeout=0.2, retries=1)
    [score] = scorer.score([_candidate("c", source, source)])
    assert score.error is None and score.overall == pytest.approx(math.sqrt(24))
    assert len(server.requests) == 3

    always_slow = judge(lambda request: (200, _answer([1, 1]), 1.0))
    started = time.monotonic()
    [score] = _scorer(always_slow, timeout=0.2, retries=0).score([_candidate("c", source, source)])
    assert time.monotonic() - started < 0.9
    assert score.overall is None and "timeout" in score.error


def test_openai_connection_refused(source):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scorer = make_scorer(
        {"kind": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1", "retries": 1,
         "backoff": 0.01},
        env={},
    )  # fmt: skip
    [score] = scorer.score([_candidate("c", source, source)])
    assert "connection error" in score.error and "(after 2 attempts)" in score.error


def test_openai_concurrency_is_parallel_and_bounded(judge, source):
    def reply(request):
        status, content, _ = _good(request)
        return status, content, 0.15

    server = judge(reply)
    cands = [_candidate(f"c{i}", _encode(_textured(seed=i)), source) for i in range(4)]
    started = time.monotonic()
    scores = _scorer(server, concurrency=3).score(cands)
    elapsed = time.monotonic() - started
    assert all(s.overall == pytest.approx(math.sqrt(24)) for s in scores)
    assert len(server.requests) == 8
    assert server.max_active == 3
    assert elapsed < 8 * 0.15 * 0.75  # well under the serial time

    serial = judge(reply)
    _scorer(serial, concurrency=1).score(cands[:2])
    assert serial.max_active == 1


def test_openai_unreadable_candidate_and_order(judge, source):
    def reply(request):
        instruction = request["body"]["messages"][1]["content"][-1]["text"]
        if _question(request) == "PQ":
            return 200, _answer([25, 25]), 0
        value = 5 if instruction.rstrip().endswith("first") else 20
        return 200, _answer([value, value]), 0

    server = judge(reply)
    cands = [
        _candidate("a", source, source, "first"),
        _candidate("b", b"broken", source, "second"),
        _candidate("c", source, source, "third"),
    ]
    a, b, c = _scorer(server, concurrency=2).score(cands)
    assert a.prompt_following == pytest.approx(2.0) and c.prompt_following == pytest.approx(8.0)
    assert b.overall is None and "edited image cannot be read" in b.error
    assert len(server.requests) == 4
