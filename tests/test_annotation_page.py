"""The ranking page in a real browser (Playwright + Debian's chromium)."""

import os

import pytest

from annotation.models import Candidate, Group, Ranking
from tests.annotation_fixtures import make_dataset
from tests.factories import PASSWORD, UserFactory

# Playwright's sync API runs an event loop in this thread; the ORM calls of the
# test itself are still plain synchronous calls between browser steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

DIMS = ["prompt_following", "consistency", "overall"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def annotator_page(page, live_server, transactional_db):
    user = UserFactory(username="ann")
    dataset = make_dataset("shapes", groups=3, candidates=3, overlap=1, annotators=[user])
    errors = []
    page.on(
        "console",
        lambda m: errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(f"{live_server.url}/login/?next=/annotate/{dataset.pk}/")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#board .cand")
    page.errors = errors
    page.user = user
    return page


def _external(tokens: list[str]) -> list[str]:
    """The page shows opaque tokens; rankings are stored with the import's ids."""
    mapping = dict(Candidate.objects.values_list("token", "external_id"))
    return [mapping[t] for t in tokens]


def _ids_in(page, where: str) -> list[str]:
    return page.eval_on_selector_all(
        f'#board .zone[data-where="{where}"] .cand', "cs => cs.map(c => c.dataset.id)"
    )


def _group_external_id(page) -> str:
    """The import id of the group on the page (the page itself knows only its database id)."""
    group_id = page.eval_on_selector("#board-data", "el => JSON.parse(el.textContent).group.id")
    return Group.objects.get(pk=group_id).external_id


def _wait_for_next_group(page, previous: str) -> None:
    """Until the board shows another group than `previous` (an import id)."""
    page.wait_for_function(
        "prev => { const b = document.getElementById('board'); return b && b.dataset.group && b.dataset.group !== prev; }",
        arg=str(Group.objects.get(external_id=previous).pk),
    )


def test_rank_by_mouse_then_by_keyboard(annotator_page):
    page = annotator_page
    # --- group 1 by mouse: drag every card into a tier, on each dimension
    first = _group_external_id(page)
    expected = {}
    for dim in DIMS:
        page.click(f'#dim-tabs button[data-dim="{dim}"]')
        cards = _ids_in(page, "unplaced")
        assert len(cards) == 3
        plan = {
            "prompt_following": [0, 1, 1],
            "consistency": [0, 0, 0],
            "overall": [1, 0, "unusable"],
        }[dim]
        for card, where in zip(cards, plan, strict=True):
            target = f'#board .zone[data-where="{where}"] .zone-list'
            page.drag_and_drop(f'#board .cand[data-id="{card}"]', target)
            assert card in _ids_in(page, str(where))
        tiers = {}
        for card, where in zip(cards, plan, strict=True):
            tiers.setdefault(where, []).append(card)
        ordered = [tiers[w] for w in sorted(k for k in tiers if k != "unusable")]
        expected[dim] = ([_external(t) for t in ordered], _external(tiers.get("unusable", [])))
    page.click("#submit-button")
    _wait_for_next_group(page, first)
    ranking = Ranking.objects.get(group__external_id=first)
    for dim, (tiers, floor) in expected.items():
        assert ranking.tiers[dim] == tiers
        assert ranking.unusable.get(dim, []) == floor
    assert ranking.seconds_spent > 0 and ranking.annotator == page.user

    # --- group 2 by keyboard only
    second = _group_external_id(page)
    order = _external(_ids_in(page, "unplaced"))
    page.keyboard.press("2")  # first card -> tier 2; focus moves to the next unplaced card
    page.keyboard.press("1")
    page.keyboard.press("1")  # tie with the previous one
    page.keyboard.press("Tab")  # consistency; focus on its first unplaced card
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("1")
    page.keyboard.press("1")
    page.keyboard.press("0")  # the third card is unusable on consistency
    page.keyboard.press("Tab")
    page.keyboard.press("c")  # overall: copy consistency's placement...
    page.keyboard.press("Enter")
    _wait_for_next_group(page, second)
    ranking = Ranking.objects.get(group__external_id=second)
    assert ranking.tiers["prompt_following"] == [[order[1], order[2]], [order[0]]]
    assert ranking.tiers["consistency"] == [[order[0], order[1]]]
    assert ranking.unusable["consistency"] == [order[2]]
    assert ranking.tiers["overall"] == [[order[0], order[1]]] and ranking.unusable["overall"] == [
        order[2]
    ]
    assert page.text_content("#session-count") == "2"
    assert page.errors == []


def test_reload_mid_ranking_restores_placements_and_submission_id(annotator_page):
    page = annotator_page
    order = _ids_in(page, "unplaced")
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.keyboard.press("Tab")
    page.keyboard.press("1")
    page.reload()
    page.wait_for_selector("#board .cand")
    assert page.get_attribute('#dim-tabs button[aria-selected="true"]', "data-dim") == "consistency"
    assert _ids_in(page, "0") == [order[0]]
    page.click('#dim-tabs button[data-dim="prompt_following"]')
    assert _ids_in(page, "0") == [order[0]] and _ids_in(page, "1") == [order[1]]
    assert _ids_in(page, "unplaced") == [order[2]]
    assert page.errors == []


def test_enter_with_missing_placements_explains_and_submits_nothing(annotator_page):
    page = annotator_page
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    assert "Place every candidate in: Prompt following, Consistency, Overall" in page.text_content(
        "#message"
    )
    assert Ranking.objects.count() == 0


def test_skip_key_and_compare_viewer(annotator_page):
    page = annotator_page
    first = _group_external_id(page)
    page.keyboard.press("z")
    assert page.is_visible("#compare")
    page.keyboard.press("3")
    page.wait_for_selector("#compare-body canvas.heat")
    page.keyboard.press("4")
    assert page.locator("#compare-body .compare-grid .pane").count() == 4  # source + 3 candidates
    page.mouse.move(300, 300)
    page.mouse.wheel(0, -400)
    transforms = page.eval_on_selector_all(
        "#compare-body .zoomable", "zs => zs.map(z => z.style.transform)"
    )
    assert len(set(transforms)) == 1 and "scale(1)" not in transforms[0]  # zoomed, all in sync
    page.keyboard.press("Escape")
    assert not page.is_visible("#compare")
    page.keyboard.press("s")
    _wait_for_next_group(page, first)
    assert page.errors == []
