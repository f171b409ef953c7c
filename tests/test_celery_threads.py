"""Each pool process of a worker gets its share of the cores for torch and OpenMP."""

from types import SimpleNamespace

import pytest

from config.celery import _share_the_cores


@pytest.fixture
def environ(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    return monkeypatch


@pytest.mark.parametrize(
    ("pool", "concurrency", "threads"),
    [("prefork", 2, "4"), ("prefork", 8, "1"), ("prefork", 16, "1"), ("solo", 4, "8"),
     ("prefork", "auto", "8")],
)  # fmt: skip
def test_threads_per_pool_process(environ, pool, concurrency, threads):
    import os

    _share_the_cores(SimpleNamespace(pool_cls=pool, concurrency=concurrency))
    assert os.environ["OMP_NUM_THREADS"] == threads


def test_the_operators_setting_wins(environ):
    import os

    environ.setenv("OMP_NUM_THREADS", "3")
    _share_the_cores(SimpleNamespace(pool_cls="prefork", concurrency=8))
    assert os.environ["OMP_NUM_THREADS"] == "3"
