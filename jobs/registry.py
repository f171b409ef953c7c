"""Job kinds. Each app registers its kinds in its AppConfig.ready().

Handlers and config classes are dotted paths imported only when needed: a
handler may import torch, and the web process must never do that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.utils.module_loading import import_string

from config.errors import Invalid


class UnknownJobKind(Invalid, LookupError):
    code = "unknown_job_kind"


class InvalidJobConfig(Invalid):
    code = "invalid_config"


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    handler: str  # "package.module.function", called as function(ctx) in the worker
    queue: str = "default"  # "default" or "gpu"
    config: str | None = None  # dotted path to a dataclass; must import without torch
    # Where jobs of this kind are made, when that also makes the objects they work on (a run's
    # row, an upload): the generic POST /api/jobs/ refuses the kind and names this instead.
    created_through: str = ""


_REGISTRY: dict[str, JobKind] = {}


def register(kind: JobKind) -> None:
    existing = _REGISTRY.get(kind.name)
    if existing is not None and existing != kind:
        raise ValueError(f"job kind {kind.name!r} registered twice with different settings")
    _REGISTRY[kind.name] = kind


def get(name: str) -> JobKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownJobKind(f"unknown job kind {name!r}; known kinds: {known}") from None


def creatable(name: str) -> JobKind:
    """The kind, if the generic jobs API may create it; Invalid naming the right way if not."""
    kind = get(name)
    if kind.created_through:
        raise InvalidJobConfig(
            f"jobs of kind {name!r} are created through {kind.created_through}, which also "
            "makes what they work on; POST /api/jobs/ cannot"
        )
    return kind


def all_kinds() -> list[JobKind]:
    return sorted(_REGISTRY.values(), key=lambda k: k.name)


def config_options(kind: JobKind) -> list:
    """The declared options (mlcore.options.OptionInfo) of the kind's config; [] without one."""
    from mlcore.options import describe

    return describe(import_string(kind.config)) if kind.config else []


def validate_config(kind: JobKind, config: dict | None) -> dict:
    """Build the kind's config dataclass from `config` and return it as JSON-ready dict.

    The dataclass validates in __post_init__ (raising ValueError/TypeError);
    both become InvalidJobConfig with the dataclass's message.
    """
    config = dict(config or {})
    if kind.config is None:
        if config:
            raise InvalidJobConfig(f"job kind {kind.name!r} takes no config")
        return {}
    cls = import_string(kind.config)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise InvalidJobConfig(
            f"unknown config field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(names))}"
        )
    try:
        instance = cls(**config)
    except (TypeError, ValueError) as exc:
        raise InvalidJobConfig(str(exc)) from None
    return dataclasses.asdict(instance)
