"""The folders model weights may be read from: REWARD_MODELS_DIR, RL_RUNS_DIR and the
MODELS_DIRS allow-list. A job or a registration that names a model folder elsewhere (`base=/`
would have the worker read the whole filesystem to fingerprint it) is refused where its config
is checked, in the web request (a path check, no file read) and again in the worker."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

# Options of scorer and reward specs that name model folders.
SPEC_FOLDERS = ("base", "adapter")


def model_roots() -> list[Path]:
    roots = [settings.REWARD_MODELS_DIR, settings.RL_RUNS_DIR, *settings.MODELS_DIRS]
    return [Path(os.path.realpath(root)) for root in roots]


def check_model_folder(value: str, field: str) -> None:
    """ValueError unless `value`, with its symbolic links resolved, lies inside a model root."""
    resolved = Path(os.path.realpath(Path(str(value)).expanduser()))
    roots = model_roots()
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise ValueError(
            f"{field} {value} is outside the model folders ({', '.join(map(str, roots))}); "
            "an administrator adds folders with MODELS_DIRS"
        )


def check_spec_folders(spec, what: str) -> None:
    """The model folders a scorer or reward spec names (the `base` and `adapter` of it and of
    every spec nested in it: a weighted reward's terms)."""
    if isinstance(spec, dict):
        for key in SPEC_FOLDERS:
            if isinstance(spec.get(key), str) and spec[key]:
                check_model_folder(spec[key], f"{what} {key}")
        for value in spec.values():
            if isinstance(value, dict | list):
                check_spec_folders(value, what)
    elif isinstance(spec, list):
        for item in spec:
            check_spec_folders(item, what)
