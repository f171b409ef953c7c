"""Screenshots of a running demo for the README, taken in a real browser (Debian's chromium).

    EDITLOOP_VAR_DIR=var .venv/bin/python manage.py demo            # in one terminal, wait
    .venv/bin/python docs/take_screenshots.py --url http://127.0.0.1:8000 --var-dir var

Signs in as the demo's annotator and researcher (passwords from ``var/demo-credentials.json``)
and writes ``docs/screenshots/*.jpg``: the ranking page (1280x720, the smallest window it is
made for), the annotator's history, the dataset's quality page, its group browser and one group,
the reward-model leaderboard, the reward models and the RL run page.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

OUT = Path(__file__).resolve().parent / "screenshots"


def sign_in(page: Page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def first_link(page: Page, pattern: str) -> str:
    """The first href on the page matching ``pattern``."""
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
    for href in hrefs:
        if re.fullmatch(pattern, href):
            return href
    raise LookupError(f"no link like {pattern!r} on {page.url}")


def shoot(page: Page, name: str) -> None:
    """The first screenful, as a JPEG (small enough to keep in the repository)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)  # charts draw after load
    path = OUT / f"{name}.jpg"
    page.screenshot(path=str(path), type="jpeg", quality=80)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--var-dir", type=Path, default=Path("var"))
    args = parser.parse_args()
    url = args.url.rstrip("/")
    credentials = json.loads((args.var_dir / "demo-credentials.json").read_text())
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        viewport = {"width": 1280, "height": 860}

        page = browser.new_page(viewport={"width": 1280, "height": 720})
        sign_in(page, url, "annotator", credentials["annotator"])
        page.goto(f"{url}/annotate/")
        page.goto(url + first_link(page, r"/annotate/\d+/"))
        page.wait_for_selector("#board .cand img")
        shoot(page, "rank")
        page.keyboard.press("s")  # skip one, so that the history has something to reopen
        page.wait_for_timeout(1000)
        page.goto(f"{url}/annotate/mine/")
        shoot(page, "mine")
        page.close()

        page = browser.new_page(viewport=viewport)
        sign_in(page, url, "researcher", credentials["researcher"])
        page.goto(f"{url}/annotate/")
        page.goto(url + first_link(page, r"/annotate/\d+/quality/"))
        shoot(page, "quality")
        page.goto(url + first_link(page, r"/annotate/\d+/groups/") + "?state=complete")
        shoot(page, "groups")
        page.goto(url + first_link(page, r"/annotate/\d+/groups/\d+/"))
        shoot(page, "group")
        page.goto(f"{url}/benchmark/")
        shoot(page, "leaderboard")
        page.goto(f"{url}/reward-models/")
        shoot(page, "reward_models")
        page.goto(f"{url}/rl/")
        page.goto(url + first_link(page, r"/rl/\d+/"))
        shoot(page, "rl_run")
        browser.close()


if __name__ == "__main__":
    main()
