"""Warm load times of the daily-use pages on a running demo (issue 17).

Signs in as the demo's annotator and researcher (passwords from ``VAR/demo-credentials.json``)
over plain HTTP, loads each page once to warm it, then ``--loads`` times, and prints one JSON
object: the median and the largest time of each page, in milliseconds, and its size. If the
demo's annotator has no ranking yet, it ranks one group through the API first (the revision
page needs one).

    EDITLOOP_VAR_DIR=var .venv/bin/python manage.py demo --no-loop --port 8000   # a finished demo
    .venv/bin/python benchmarks/page_timings.py --url http://127.0.0.1:8000 --var-dir var
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import statistics
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path


class Browser:
    """A cookie-keeping client that signs in like the login form does."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> bytes:
        with self.opener.open(self.url + path, timeout=60) as response:
            return response.read()

    def post_json(self, path: str, payload: dict) -> dict:
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        request = urllib.request.Request(
            self.url + path, data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "X-CSRFToken": token,
                     "Referer": self.url + "/"},
        )  # fmt: skip
        with self.opener.open(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def sign_in(self, username: str, password: str) -> None:
        form = self.get("/login/").decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
        body = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": username, "password": password}
        ).encode()
        request = urllib.request.Request(self.url + "/login/", data=body,
                                         headers={"Referer": self.url + "/login/"})  # fmt: skip
        with self.opener.open(request, timeout=60) as response:
            if "/login/" in response.url:
                raise SystemExit(f"could not sign in as {username}")

    def time(self, path: str, loads: int) -> dict:
        size = len(self.get(path))  # warm
        times = []
        for _ in range(loads):
            began = time.perf_counter()
            self.get(path)
            times.append((time.perf_counter() - began) * 1000)
        return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
                "bytes": size}  # fmt: skip


def first(pattern: str, html: bytes) -> str:
    found = re.search(pattern, html.decode())
    if found is None:
        raise SystemExit(f"no link like {pattern!r}")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--var-dir", type=Path, default=Path("var"))
    parser.add_argument("--loads", type=int, default=20)
    args = parser.parse_args()
    credentials = json.loads((args.var_dir / "demo-credentials.json").read_text())
    annotator, researcher = Browser(args.url), Browser(args.url)
    annotator.sign_in("annotator", credentials["annotator"])
    researcher.sign_in("researcher", credentials["researcher"])
    home = researcher.get("/annotate/")
    dataset = first(r"/annotate/\d+/", home)
    groups = researcher.get(dataset + "groups/")
    group = first(r"/annotate/\d+/groups/\d+/", groups)
    mine = annotator.get("/annotate/mine/")
    if b"/revise/" not in mine:  # the demo's annotator has not ranked yet: one ranking, by API
        dataset_id = int(dataset.strip("/").rsplit("/", 1)[-1])
        listed = json.loads(annotator.get("/api/datasets/"))
        keys = [d["key"] for d in next(d for d in listed if d["id"] == dataset_id)["dimensions"]]
        served = annotator.post_json(f"/api/datasets/{dataset_id}/next/", {})["group"]
        tiers = {key: [[c["id"]] for c in served["candidates"]] for key in keys}
        annotator.post_json(f"/api/groups/{served['id']}/rankings/",
                            {"submission_id": str(uuid.uuid4()), "tiers": tiers})  # fmt: skip
        mine = annotator.get("/annotate/mine/")
    pages = {
        "annotator: datasets": (annotator, "/annotate/"),
        "annotator: ranking page": (annotator, dataset),
        "annotator: my work": (annotator, "/annotate/mine/"),
        "annotator: revise a ranking": (annotator, first(r"/annotate/rankings/\d+/revise/", mine)),
        "researcher: dataset settings": (researcher, dataset + "settings/"),
        "researcher: group browser": (researcher, dataset + "groups/"),
        "researcher: group browser, complete": (researcher, dataset + "groups/?state=complete"),
        "researcher: one group": (researcher, group),
        "researcher: leaderboard": (researcher, "/benchmark/"),
        "researcher: reward models": (researcher, "/reward-models/"),
        "researcher: people": (researcher, "/users/"),
        "researcher: webhooks": (researcher, "/webhooks/"),
        "researcher: API docs": (researcher, "/api/docs/"),
    }
    print(json.dumps({"loads": args.loads, "pages": {
        name: {"path": path, **client.time(path, args.loads)}
        for name, (client, path) in pages.items()}}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
