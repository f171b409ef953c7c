"""The authors' reference, taken from the installed packages at run time, never re-typed.

The released EditScore adapters were trained on the exact prompt strings and chat layout of the
authors' ``editscore`` package (PyPI 0.2), and score images sized by ``qwen_vl_utils``. A single
character of difference is a different model input, so EditLoop's ``reference`` prompt set asks
those packages for the text, the template and the image sizes (``docs/method.md`` section 3):

* :func:`sc_prompt` / :func:`pq_prompt`: the prompts as ``editscore.EditScore`` assembles them
  (SC = context + two-image edit rule + SC tie rule, PQ = context + PQ rule, "10" replaced by R
  in the rules, then the instruction put in place of ``<instruction>``);
* :func:`chat_text`: ``editscore.mllm_tools.qwen25vl.apply_chat_template`` (the system turn, a
  ``<imgN>: `` label before each image, the prompt after the images);
* :func:`vision_inputs`: ``qwen_vl_utils.process_vision_info`` on the conversation the
  reference builds, i.e. every image made RGB and resized to multiples of 28 px between
  4 and 16384 tokens (aspect ratio kept) before the processor sees it;
* :func:`parse_answer` and :func:`parse_answer_batch`: the package's two answer parsers (the
  benchmark path, ``editscore.utils.mllm_output_to_dict``, and the RL reward server's batch path,
  ``editscore.json_parser.parse_vlm_output_to_dict``).

Both packages are installed ``--no-deps`` (Makefile): they require torchvision, and the only
torchvision built for this torch links against CUDA. ``editscore``'s top level imports without it;
``editscore.mllm_tools.qwen25vl`` and ``qwen_vl_utils`` import torchvision when loaded. Where
torchvision is importable (a GPU machine) they are imported as they are; elsewhere the few
definitions needed are compiled from the installed source files without running the modules'
imports (:func:`_definitions`). Either way the code that runs is the authors'.
"""

from __future__ import annotations
import __future__ as _future

import ast
import contextlib
import importlib
import importlib.util
import io
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

REFERENCE_VERSION = "editscore 0.2"


class ReferenceMissing(ImportError):
    """The authors' package is not installed."""


@cache
def package():
    """The ``editscore`` package. Its ``__init__`` inserts the relative path 'editscore' at the
    front of ``sys.path`` (so that a folder of that name in the working directory would shadow
    modules); the path is restored after the import."""
    saved = list(sys.path)
    try:
        import editscore
    except ImportError as exc:
        raise ReferenceMissing(
            "the authors' reference package is missing: run `make install` (it installs "
            f"editscore==0.2 and qwen-vl-utils with --no-deps): {exc}"
        ) from None
    finally:
        sys.path[:] = saved
    return editscore


@cache
def _assembled(score_range: int) -> tuple[str, str]:
    """(SC template, PQ prompt) exactly as ``editscore.EditScore.__init__`` assembles them. A
    backbone name that matches none of its branches loads no model: only the prompts are built."""
    if isinstance(score_range, bool) or not isinstance(score_range, int) or score_range < 1:
        raise ValueError(f"score_range must be a positive integer, got {score_range!r}")
    scorer = package().EditScore(backbone="editloop-prompts-only", score_range=score_range)
    return scorer.SC_prompt, scorer.PQ_prompt


def sc_prompt(instruction: str, score_range: int) -> str:
    """The SC prompt for one instruction, as ``EditScore.evaluate`` fills it in."""
    return _assembled(score_range)[0].replace("<instruction>", instruction)


def pq_prompt(score_range: int) -> str:
    return _assembled(score_range)[1]


# ---------------------------------------------------------------- torchvision-importing modules


def _torchvision_loads() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision")
    except Exception:  # a CUDA-linked build on a CPU torch: "operator torchvision::nms ..."
        return False
    return True


def _source_file(module: str) -> Path:
    """The installed source file of ``module`` (found without importing it)."""
    head, _, tail = module.rpartition(".")
    if module.startswith("editscore."):
        package()  # finding a submodule imports the package: through package(), which tidies up
    try:
        spec = importlib.util.find_spec(module) if not head else None
        if spec is None:
            parent = importlib.util.find_spec(head)
            if parent is None or not parent.submodule_search_locations:
                raise ModuleNotFoundError(head)
            path = Path(list(parent.submodule_search_locations)[0]) / f"{tail}.py"
        else:
            path = Path(spec.origin)
    except ModuleNotFoundError as exc:
        raise ReferenceMissing(f"{module} is not installed: run `make install` ({exc})") from None
    if not path.is_file():
        raise ReferenceMissing(f"{module} is not installed: {path} does not exist")
    return path


def _definitions(module: str, names: Sequence[str], namespace: dict[str, Any]) -> dict:
    """The top-level functions and constants ``names`` of ``module``'s installed source, compiled
    and run in ``namespace`` (which supplies what they use), without the module's own imports.
    Annotations are not evaluated (they name torch types)."""
    path = _source_file(module)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wanted = set(names)
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in wanted:
            body.append(node)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in wanted for t in node.targets
        ):
            body.append(node)
    found = {n.name if isinstance(n, ast.FunctionDef) else n.targets[0].id for n in body}
    if found != wanted:
        raise ReferenceMissing(f"{path} does not define {sorted(wanted - found)}")
    code = compile(
        ast.Module(body=body, type_ignores=[]),
        str(path),
        "exec",
        flags=_future.annotations.compiler_flag,
        dont_inherit=True,
    )
    exec(code, namespace)
    return namespace


@cache
def _chat_template_function():
    if _torchvision_loads():
        return importlib.import_module("editscore.mllm_tools.qwen25vl").apply_chat_template
    package()  # a clear error when editscore is missing
    return _definitions("editscore.mllm_tools.qwen25vl", ["apply_chat_template"], {})[
        "apply_chat_template"
    ]


_VISION_NAMES = (
    "MAX_RATIO",
    "SPATIAL_MERGE_SIZE",
    "IMAGE_MIN_TOKEN_NUM",
    "IMAGE_MAX_TOKEN_NUM",
    "round_by_factor",
    "ceil_by_factor",
    "floor_by_factor",
    "smart_resize",
    "to_rgb",
    "fetch_image",
    "extract_vision_info",
    "process_vision_info",
)


@cache
def _vision_module() -> dict:
    if _torchvision_loads():
        return vars(importlib.import_module("qwen_vl_utils.vision_process"))
    import base64
    import copy
    import logging
    import math
    import os
    import typing

    from PIL import Image

    namespace = {
        "base64": base64,
        "copy": copy,
        "math": math,
        "os": os,
        "BytesIO": io.BytesIO,
        "Image": Image,
        "logger": logging.getLogger("qwen_vl_utils"),
        **{
            name: getattr(typing, name)
            for name in ("Any", "Dict", "List", "Optional", "Tuple", "Union")
        },
    }
    return _definitions("qwen_vl_utils.vision_process", _VISION_NAMES, namespace)


def chat_text(prompt: str, n_images: int) -> str:
    """The text the reference hands the Qwen2.5-VL processor for ``prompt`` and ``n_images``
    images (its ``apply_chat_template``, which the released Qwen2.5-VL adapters were trained on)."""
    return _chat_template_function()(prompt, num_images=n_images)


def reference_messages(images: Sequence[Any], prompt: str) -> list[dict]:
    """The conversation the reference's ``prepare_input`` builds (Qwen2.5-VL and Qwen3-VL alike):
    one user turn, the images first, then the prompt text. The Qwen2.5-VL backbone reads only its
    images from it (through ``process_vision_info``); the Qwen3-VL backbone renders it with the
    processor's own chat template (no system turn, no image labels)."""
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": image} for image in images]
            + [{"type": "text", "text": prompt}],
        }
    ]


def vision_inputs(images: Sequence[Any], patch_size: int = 14) -> list:
    """``images`` (PIL) as ``qwen_vl_utils.process_vision_info`` prepares them for the processor:
    RGB (transparency on white), resized to multiples of 2 * ``patch_size`` px with its default
    token budget (4 to 16384 merged patches)."""
    if not images:
        return []
    image_inputs, _videos = _vision_module()["process_vision_info"](
        reference_messages(images, ""), image_patch_size=patch_size
    )
    return list(image_inputs or [])


def smart_resize(height: int, width: int, factor: int = 28, **limits) -> tuple[int, int]:
    """``qwen_vl_utils.smart_resize``: the (height, width) an image of that size is resized to."""
    return _vision_module()["smart_resize"](height, width, factor, **limits)


# ---------------------------------------------------------------- answers


def parse_answer(text: str, *, give_up: bool, score_range: int, instruction: str = ""):
    """``editscore.utils.mllm_output_to_dict``, the parser of the benchmark path
    (``EditScore.evaluate``): a dict with ``score`` (and ``reasoning``), or False when the answer
    is unreadable. With ``give_up`` it returns the package's guess (random scores from the
    ``random`` module, as the reference does after two failed tries). Its diagnostic prints
    are swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return package().utils.mllm_output_to_dict(
            text, give_up_parsing=give_up, text_prompt=instruction, score_range=score_range
        )


def parse_answer_batch(text: str) -> dict:
    """``editscore.json_parser.parse_vlm_output_to_dict``, the parser of the batch path
    (``EditScore.batch_evaluate``, the RL reward server): always a dict; ``score`` may be []."""
    package()
    return importlib.import_module("editscore.json_parser").parse_vlm_output_to_dict(text)
