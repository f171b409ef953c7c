"""Simulated annotators: they rank EditWorld candidates from their truth, with configurable noise,
tie tendency and position bias, and drive the real annotation API over HTTP like a person at the
ranking page would (standard library only: urllib and json, no Django).

The API shows candidates under opaque tokens, never their import ids, so an annotator recognises
a candidate by its pixels: :func:`truth_by_image_hash` maps the pixel hash of every candidate
image of a bundle to its truth, and :func:`annotate_over_http` fetches each candidate's image
through the API and looks it up.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence

from editworld.dataset import truth_by_image_hash
from editworld.oracle import Truth, pixel_hash

DIMENSIONS = ("prompt_following", "consistency", "overall")
#: Which truth field an annotation dimension reads.
DIMENSION_FIELDS = {
    "prompt_following": "prompt_following",
    "consistency": "consistency",
    "overall": "overall",
    "quality": "quality",
    "perceptual_quality": "quality",
}

TruthLookup = Mapping[str, Truth] | Callable[[bytes], Truth]


class SimulatedAnnotator:
    """A ranker of candidates by their truth.

    ``noise``: standard deviation of Gaussian noise added to each truth value (0-1 scale), drawn
    afresh for every candidate, dimension and group. ``tie_tendency``: candidates whose values
    are within this of the best value of a tier join that tier (0: only equal values tie).
    ``position_bias``: a bonus of this much for the candidate shown first, falling linearly to 0
    for the last. ``unusable_below``: a candidate whose value falls below it goes to the
    unusable floor (None: never). ``seed``: the random stream (with ``name``), so a run can be
    repeated.
    """

    def __init__(
        self,
        name: str,
        noise: float = 0.0,
        tie_tendency: float = 0.0,
        position_bias: float = 0.0,
        seed: int = 0,
        *,
        unusable_below: float | None = None,
    ):
        for label, value in (("noise", noise), ("tie_tendency", tie_tendency),
                             ("position_bias", position_bias)):  # fmt: skip
            if not value >= 0:
                raise ValueError(f"{label} must be >= 0, got {value!r}")
        self.name = name
        self.noise, self.tie_tendency, self.position_bias = noise, tie_tendency, position_bias
        self.unusable_below = unusable_below
        self.seed = seed
        self.rng = random.Random(f"{name}:{seed}")

    def __repr__(self) -> str:
        return (f"SimulatedAnnotator({self.name!r}, noise={self.noise}, "
                f"tie_tendency={self.tie_tendency}, position_bias={self.position_bias})")  # fmt: skip

    def perceived(self, truths: Sequence[Truth], dimension: str) -> list[float]:
        """What this annotator sees of each candidate on ``dimension``, in the shown order."""
        if dimension not in DIMENSION_FIELDS:
            raise ValueError(f"no truth for dimension {dimension!r}: one of {list(DIMENSION_FIELDS)}")  # fmt: skip
        field, n = DIMENSION_FIELDS[dimension], len(truths)
        out = []
        for position, truth in enumerate(truths):
            value = truth.get(field)
            if self.noise:
                value += self.rng.gauss(0.0, self.noise)
            if self.position_bias and n > 1:
                value += self.position_bias * (n - 1 - position) / (n - 1)
            out.append(value)
        return out

    def rank(
        self,
        truths: Sequence[Truth],
        dimensions: Sequence[str] = DIMENSIONS,
        ids: Sequence[str] | None = None,
    ) -> dict:
        """``{"tiers": {dimension: [[id, ...], ...]}, "unusable": {dimension: [id, ...]}}`` for
        candidates with these truths, in the order they are shown; ``ids`` name them (default
        "0", "1", ...). Best tier first; ``unusable`` lists only non-empty floors."""
        ids = [str(i) for i in range(len(truths))] if ids is None else list(ids)
        if len(ids) != len(truths):
            raise ValueError(f"{len(ids)} ids for {len(truths)} truths")
        tiers, unusable = {}, {}
        for dimension in dimensions:
            values = self.perceived(truths, dimension)
            floor = [
                i for i in range(len(ids))
                if self.unusable_below is not None and values[i] < self.unusable_below
            ]  # fmt: skip
            ranked: list[list[str]] = []
            top = None
            # sorted() is stable: equal values keep the shown order inside their tier
            for i in sorted((i for i in range(len(ids)) if i not in floor), key=lambda i: -values[i]):  # fmt: skip
                if ranked and top - values[i] <= self.tie_tendency:
                    ranked[-1].append(ids[i])
                else:
                    ranked.append([ids[i]])
                    top = values[i]
            tiers[dimension] = ranked
            if floor:
                unusable[dimension] = [ids[i] for i in floor]
        return {"tiers": tiers, "unusable": unusable}

    def seconds_spent(self, candidates: int) -> float:
        """A plausible time on a group: 4-8 s per candidate."""
        return round(candidates * self.rng.uniform(4.0, 8.0), 1)


# ---------------------------------------------------------------------------- over HTTP


class ApiError(RuntimeError):
    """The API answered something a person at the page would not have expected."""


def _call(base_url: str, token: str, method: str, path: str, body=None, timeout: float = 30.0):
    url = urllib.parse.urljoin(base_url.rstrip("/") + "/", path.lstrip("/"))
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _detail(status: int, payload: bytes) -> str:
    return f"HTTP {status}: {payload[:300].decode('utf-8', 'replace')}"


def resolve_dataset(base_url: str, token: str, dataset: int | str, timeout: float = 30.0) -> dict:
    """The dataset's entry in ``GET /api/datasets/`` (id, name, dimensions, ...), found by id or
    by name; LookupError if this user may not annotate it."""
    status, payload = _call(base_url, token, "GET", "/api/datasets/", timeout=timeout)
    if status != 200:
        raise ApiError(f"datasets: {_detail(status, payload)}")
    entries = json.loads(payload)
    for entry in entries:
        if entry["id"] == dataset or entry["name"] == dataset or str(entry["id"]) == str(dataset):
            return entry
    names = ", ".join(repr(e["name"]) for e in entries) or "none"
    raise LookupError(f"dataset {dataset!r} is not one this user annotates (they have: {names})")


def _lookup(truth_lookup: TruthLookup, image: bytes) -> Truth | None:
    if callable(truth_lookup):
        return truth_lookup(image)
    return truth_lookup.get(pixel_hash(image))


def annotate_over_http(
    base_url: str,
    token: str,
    dataset_name_or_id: int | str,
    annotator: SimulatedAnnotator,
    truth_lookup: TruthLookup,
    max_groups: int | None = None,
    *,
    retries: int = 3,
    timeout: float = 30.0,
) -> int:
    """Rank groups of a dataset through the annotation API as a person would: ``POST
    /api/datasets/<id>/next/``, fetch each candidate's image from its ``image_url``, rank, and
    ``POST /api/groups/<id>/rankings/`` with a fresh ``submission_id`` (a retry after a failed
    request reuses it, so a ranking is stored once). Goes on until the API has nothing left for
    this annotator (204) or ``max_groups`` rankings were submitted; returns how many were.

    ``token``: the annotator's API token (``Authorization: Token ...``). ``truth_lookup``:
    pixel hash -> truth (:func:`truth_by_image_hash`), or a function of the image bytes. The
    dataset's own dimensions are ranked. Raises ApiError on an unexpected answer and KeyError
    for an image the lookup does not know.
    """
    dataset = resolve_dataset(base_url, token, dataset_name_or_id, timeout)
    dimensions = [d["key"] for d in dataset["dimensions"]]
    call = lambda *a, **k: _call(base_url, token, *a, timeout=timeout, **k)  # noqa: E731
    submitted = 0
    while max_groups is None or submitted < max_groups:
        status, payload = call("POST", f"/api/datasets/{dataset['id']}/next/", {})
        if status == 204:
            break
        if status != 200:
            raise ApiError(f"next: {_detail(status, payload)}")
        group = json.loads(payload)["group"]
        truths = []
        for candidate in group["candidates"]:
            status, image = call("GET", candidate["image_url"])
            if status != 200:
                raise ApiError(f"image {candidate['image_url']}: {_detail(status, image)}")
            truth = _lookup(truth_lookup, image)
            if truth is None:
                raise KeyError(
                    f"group {group['id']}: a candidate image is not in the truth lookup "
                    "(was the dataset imported from another bundle?)"
                )
            truths.append(truth)
        ranking = annotator.rank(truths, dimensions, ids=[c["id"] for c in group["candidates"]])
        body = {
            "submission_id": str(uuid.uuid4()),
            **ranking,
            "seconds_spent": annotator.seconds_spent(len(truths)),
        }
        for attempt in range(retries + 1):
            try:
                status, payload = call("POST", f"/api/groups/{group['id']}/rankings/", body)
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                status, payload = 599, b"no answer"
            if status in (200, 201):  # 200: a retry of a ranking already stored
                submitted += 1
                break
            if status == 409:  # ranked already (e.g. by another process as this annotator)
                break
            if status < 500 or attempt == retries:
                raise ApiError(f"ranking of group {group['id']}: {_detail(status, payload)}")  # fmt: skip
            time.sleep(0.2 * 2**attempt)
    return submitted


__all__ = [
    "DIMENSIONS", "DIMENSION_FIELDS", "ApiError", "SimulatedAnnotator", "annotate_over_http",
    "resolve_dataset", "truth_by_image_hash",
]  # fmt: skip
