"""The RL run page in a real browser: the evaluation gallery's round slider, by keyboard."""

import os

import pytest

from accounts.models import Role
from media.storage import store_image
from rltraining.jobs import rl_enqueue
from rltraining.models import RLSample
from tests.annotation_fixtures import make_dataset
from tests.benchmark_fixtures import png
from tests.factories import PASSWORD, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
ROUNDS = (0, 5, 10)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RL_RUNS_DIR = tmp_path / "rl_runs"


@pytest.fixture
def run(transactional_db):
    researcher = UserFactory(username="rita", role=Role.RESEARCHER)
    dataset = make_dataset("prompts", groups=6, candidates=2)
    run = rl_enqueue(
        config={"run_name": "slider", "policy": "/models/tiny", "reward": {"kind": "brightness"},
                "dataset_id": dataset.pk},
        user=researcher,
    )  # fmt: skip
    for r in ROUNDS:
        for p in range(2):
            source = store_image(png(p * 40, (32, 32)), "source")
            image = store_image(png(100 + r * 10 + p, (32, 32)), "sample")
            RLSample.objects.create(
                run=run, round=r, prompt_index=p, instruction=f"make it red {p}",
                source=source.name, source_thumb=source.thumb, image=image.name,
                thumb=image.thumb, reward=r / 10 + p / 100,
            )  # fmt: skip
    return run


def _thumbs(run, round_index) -> list[str]:
    samples = RLSample.objects.filter(run=run, round=round_index).order_by("prompt_index")
    return [f"/rl/samples/{s.pk}/thumb/" for s in samples]


def test_the_round_slider_moves_through_the_evaluated_rounds_by_keyboard(page, live_server, run):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.url}/login/?next=/rl/{run.pk}/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#round-slider")

    def expect_round(round_index):
        page.wait_for_function(
            "r => document.querySelector('#gallery-round').textContent.trim() === r",
            arg=str(round_index),
        )
        srcs = page.eval_on_selector_all(
            "#gallery-samples img.rl-sample", "i => i.map(x => x.getAttribute('src'))"
        )
        assert srcs == _thumbs(run, round_index)
        page.wait_for_function(  # the images are served
            "() => [...document.querySelectorAll('#gallery-samples img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.get_attribute("#round-slider", "aria-valuetext") == f"round {round_index}"

    expect_round(10)  # the last evaluated round first
    page.focus("#round-slider")
    page.keyboard.press("ArrowLeft")
    expect_round(5)
    page.keyboard.press("ArrowLeft")
    expect_round(0)
    assert "(base policy)" in page.inner_text("#gallery-samples")
    page.keyboard.press("End")
    expect_round(10)
    page.keyboard.press("Home")
    expect_round(0)
    page.keyboard.press("ArrowRight")
    expect_round(5)
    assert page.evaluate("document.activeElement.id") == "round-slider"  # focus stays
    assert not errors
