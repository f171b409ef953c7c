"""Job and training configs declared once: a dataclass whose fields carry their help text, bounds
and choices (:func:`option`). From that one declaration come the validation
(:func:`check_options`, called by the dataclass's ``__post_init__``), the launch forms' fields and
tooltips, the CLI options (:func:`add_arguments`), the docs table (:func:`markdown_table`) and the
API's description of a config (:func:`describe`). Cross-field rules stay in ``__post_init__``.

Django-free: the engines' configs (RLConfig, FinetuneConfig) use it as the web's job configs do.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any

_KEY = "editloop"
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class Option:
    """What a field accepts, beside its type annotation."""

    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False  # (min, ...] rather than [min, ...]
    choices: tuple | None = None


def option(default: Any = MISSING, *, help: str, min: float | None = None,
           max: float | None = None, min_exclusive: bool = False, choices: tuple | None = None,
           default_factory: Any = MISSING) -> Any:  # fmt: skip
    """A dataclass field with its help text and bounds (``min``/``max`` inclusive unless
    ``min_exclusive``; ``choices`` a fixed set)."""
    meta = {_KEY: Option(help, min, max, min_exclusive, tuple(choices) if choices else None)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str  # "int", "float", "bool", "str", or "int | None"...
    default: Any
    help: str
    min: float | None
    max: float | None
    min_exclusive: bool
    choices: tuple | None
    optional: bool  # None allowed
    required: bool = False  # no default

    @property
    def range_text(self) -> str:
        if self.choices:
            return " | ".join(map(str, self.choices))
        low = "" if self.min is None else f"{'>' if self.min_exclusive else '≥'} {self.min:g}"
        high = "" if self.max is None else f"≤ {self.max:g}"
        return ", ".join(part for part in (low, high) if part)


def _base_types(annotation) -> tuple[tuple[type, ...], bool]:
    """(the accepted types, whether None is accepted) of a field's resolved annotation."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = tuple(a for a in args if a is not type(None))
        return tuple(typing.get_origin(k) or k for k in kinds), type(None) in args
    return (typing.get_origin(annotation) or annotation,), False


def describe(cls) -> list[OptionInfo]:
    """The declared options of a config class, in field order."""
    hints, out = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_KEY)
        if spec is None:
            continue
        kinds, optional = _base_types(hints[f.name])
        default = (f.default if f.default is not MISSING
                   else f.default_factory() if f.default_factory is not MISSING else None)  # fmt: skip
        name = " | ".join(k.__name__ for k in kinds) + (" | None" if optional else "")
        required = f.default is MISSING and f.default_factory is MISSING
        out.append(OptionInfo(f.name, name, default, spec.help, spec.min, spec.max,
                              spec.min_exclusive, spec.choices, optional, required))  # fmt: skip
    return out


def check_options(instance) -> None:
    """Every declared field of ``instance`` has its type and lies in its bounds; ValueError
    names the field and what it accepts. (bool is not an int here; an int is a float.)"""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        spec = f.metadata.get(_KEY)
        if spec is None:
            continue
        value = getattr(instance, f.name)
        kinds, optional = _base_types(hints[f.name])
        if value is None:
            if optional:
                continue
            raise ValueError(f"{f.name} is required")
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        elif float in kinds and isinstance(value, int | float) and not isinstance(value, bool):
            ok = math.isfinite(value)
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join(_NAMES.get(k, f"a {k.__name__}") for k in kinds)
            raise ValueError(f"{f.name} must be {names}{' or null' if optional else ''}, "
                             f"not {value!r}"[:300])  # fmt: skip
        if spec.choices is not None and value not in spec.choices:
            raise ValueError(f"{f.name} must be one of {', '.join(map(str, spec.choices))}")
        if spec.min is not None and (value <= spec.min if spec.min_exclusive else value < spec.min):
            raise ValueError(f"{f.name} must be {'>' if spec.min_exclusive else '>='} "
                             f"{spec.min:g}, not {value!r} ({spec.help})")  # fmt: skip
        if spec.max is not None and value > spec.max:
            raise ValueError(f"{f.name} must be <= {spec.max:g}, not {value!r} ({spec.help})")


def markdown_table(cls) -> str:
    """The docs table of a config class (docs/configs.md is written from these)."""
    rows = ["| option | type | default | accepts | meaning |", "|---|---|---|---|---|"]
    for o in describe(cls):
        default = ("required" if o.required else "null" if o.default is None
                   else f"`{o.default!r}`" if isinstance(o.default, str) else f"`{o.default}`")  # fmt: skip
        kind = o.type.replace(" | None", " or null").replace(" | ", " or ")
        accepts = o.range_text.replace(" | ", ", ")
        rows.append(f"| `{o.name}` | {kind} | {default} | {accepts} | {o.help} |")
    return "\n".join(rows) + "\n"


def add_arguments(parser: argparse.ArgumentParser, cls, *, skip: tuple = ()) -> None:
    """``--name`` options for the declared scalar fields (help, choices and default shown);
    unset ones stay None (:func:`from_arguments` leaves them out: the class's default)."""
    for o in describe(cls):
        if o.name in skip:
            continue
        flag = "--" + o.name.replace("_", "-")
        kinds = o.type.replace(" | None", "").split(" | ")
        default_text = "none" if o.default is None else o.default
        text = f"{o.help} (default {default_text}{'; ' + o.range_text if o.range_text else ''})"
        if kinds == ["bool"]:
            parser.add_argument(flag, dest=o.name, action=argparse.BooleanOptionalAction,
                                default=None, help=text)  # fmt: skip
        elif kinds[0] in ("int", "float", "str") and len(kinds) == 1:
            convert = {"int": int, "float": float, "str": str}[kinds[0]]
            parser.add_argument(flag, dest=o.name, type=convert, default=None, help=text,
                                choices=o.choices)  # fmt: skip


def from_arguments(args: argparse.Namespace, cls, *, skip: tuple = ()) -> dict:
    """The options the command line set, for ``cls(**...)`` (the rest keep their defaults)."""
    return {o.name: getattr(args, o.name) for o in describe(cls)
            if o.name not in skip and getattr(args, o.name, None) is not None}  # fmt: skip
