"""Simulated annotators: rank EditWorld candidates from their truth, with configurable noise,
tie tendency and position bias, and drive the real annotation API over HTTP (standard library
only: no Django here).

An annotator ranks each dimension separately: prompt_following, consistency and overall read
the candidate's truth fields of the same name; anything else reads ``overall``.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from editworld.oracle import Truth, pixel_hash

DIMENSIONS = ("prompt_following", "consistency", "overall")


class SimulatedAnnotator:
    """``noise``: std of Gaussian noise added to each truth value (0..1 scale) before ranking;
    ``tie_tendency``: neighbours (after sorting) closer than this share a tier; ``position_bias``:
    a bonus of up to this much for candidates shown first (linear in the shown position)."""

    def __init__(self, name: str, noise: float = 0.0, tie_tendency: float = 0.0,
                 position_bias: float = 0.0, seed: int = 0):  # fmt: skip
        if min(noise, tie_tendency, position_bias) < 0:
            raise ValueError("noise, tie_tendency and position_bias must be >= 0")
        self.name, self.noise, self.tie_tendency = name, noise, tie_tendency
        self.position_bias = position_bias
        self.rng = random.Random(f"{name}:{seed}")

    def perceived(self, truths: Sequence[Truth], dimension: str) -> list[float]:
        field = dimension if dimension in DIMENSIONS else "overall"
        n = len(truths)
        out = []
        for position, truth in enumerate(truths):
            value = truth.get(field) + (self.rng.gauss(0, self.noise) if self.noise else 0.0)
            if self.position_bias and n > 1:
                value += self.position_bias * (n - 1 - position) / (n - 1)
            out.append(value)
        return out

    def rank(self, ids: Sequence[str], truths: Sequence[Truth],
             dimensions: Sequence[str] = DIMENSIONS) -> dict:  # fmt: skip
        """{"tiers": {dimension: [[id, ...], ...]}} for candidates in the order shown."""
        if len(ids) != len(truths):
            raise ValueError("one truth per candidate id")
        tiers = {}
        for dimension in dimensions:
            values = self.perceived(truths, dimension)
            order = sorted(range(len(ids)), key=lambda i: -values[i])
            ranked: list[list[str]] = []
            last = None
            for i in order:
                if ranked and last - values[i] <= self.tie_tendency:
                    ranked[-1].append(ids[i])
                else:
                    ranked.append([ids[i]])
                last = values[i]
            tiers[dimension] = ranked
        return {"tiers": tiers}


def truth_by_image_hash(root: str | Path) -> dict[str, Truth]:
    """{pixel hash of a candidate image: its Truth} for a bundle (the API names candidates by
    opaque tokens, so the simulated annotator recognises them by their pixels)."""
    from editworld.dataset import read_truth

    root = Path(root)
    truths = read_truth(root)
    out = {}
    for line in (root / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            for candidate in json.loads(line)["candidates"]:
                out[pixel_hash((root / candidate["image"]).read_bytes())] = truths[candidate["id"]]
    return out


def _call(base: str, token: str, method: str, path: str, body=None, timeout: float = 30):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base.rstrip('/')}{path}", data=data, method=method,
                                     headers={"Authorization": f"Token {token}",
                                              "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
            return response.status, payload
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def annotate_over_http(base_url: str, token: str, dataset_id: int, annotator: SimulatedAnnotator,
                       truth_lookup: dict[str, Truth], max_groups: int | None = None,
                       retries: int = 3) -> int:  # fmt: skip
    """Rank groups of the dataset through the API as a human would (next, images, submit)
    until the API has none left for this annotator or ``max_groups`` were ranked. Returns the
    number of rankings submitted. Raises RuntimeError on an unexpected answer."""
    done = 0
    while max_groups is None or done < max_groups:
        status, payload = _call(base_url, token, "POST", f"/api/datasets/{dataset_id}/next/", {})
        if status == 204:
            break
        if status != 200:
            raise RuntimeError(f"next: HTTP {status}: {payload[:300]!r}")
        group = json.loads(payload)["group"]
        ids, truths = [], []
        for candidate in group["candidates"]:
            status, image = _call(base_url, token, "GET", candidate["image_url"])
            if status != 200:
                raise RuntimeError(f"image {candidate['image_url']}: HTTP {status}")
            truth = truth_lookup.get(pixel_hash(bytes(image)))
            if truth is None:
                raise RuntimeError(f"candidate {candidate['id']} is not in this bundle")
            ids.append(candidate["id"])
            truths.append(truth)
        body = {**annotator.rank(ids, truths), "submission_id": str(uuid.uuid4()),
                "seconds_spent": 5.0}  # fmt: skip
        for attempt in range(retries + 1):  # the same submission id: stored once
            status, payload = _call(base_url, token, "POST",
                                    f"/api/groups/{group['id']}/rankings/", body)  # fmt: skip
            if status in (200, 201):
                break
            if status < 500 or attempt == retries:
                raise RuntimeError(f"submit: HTTP {status}: {payload[:300]!r}")
            time.sleep(0.5 * 2**attempt)
        done += 1
    return done
