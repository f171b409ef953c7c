"""Policies and rewards that live outside the RL engine, found through entry points.

The engine names no domain. A package that brings a policy or a reward declares, in its metadata
(``[project.entry-points."editloop.rl"]`` of its pyproject.toml), a module whose import registers
them: :func:`rltraining.ml.policies.register_lazy_policy` and
:func:`rltraining.ml.rewards.register_reward_kind`. :func:`load_plugins` imports those modules
once, when a name the engine does not know is asked for. A plugin module must stay light (no
torch at import): the web process validates reward specs through it.

EditWorld registers its editor policy and its oracle reward this way (``editworld/plugins.py``).
"""

from __future__ import annotations

import importlib.metadata
import threading

GROUP = "editloop.rl"
_lock = threading.Lock()
_loaded: list[str] | None = None


def load_plugins() -> list[str]:
    """Import every ``editloop.rl`` entry point's module (once); their names."""
    global _loaded
    with _lock:
        if _loaded is None:
            entries = importlib.metadata.entry_points(group=GROUP)
            for entry in entries:
                entry.load()
            _loaded = sorted(entry.name for entry in entries)
        return list(_loaded)
