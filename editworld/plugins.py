"""EditWorld's plug-ins for the RL engine (``rltraining.ml.plugins``, entry point group
``editloop.rl`` in pyproject.toml): the editor policy and the oracle reward.

Light on purpose: nothing heavy is imported until a policy is loaded or a reward built (the web
process validates reward specs through this module).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rltraining.ml.policies import register_lazy_policy
from rltraining.ml.rewards import register_reward_kind

register_lazy_policy("EditWorldEditor", "editworld.editor:EditWorldEditorPolicy")


def _check_oracle(spec: Mapping[str, Any]) -> None:
    for key in ("n", "size", "seed"):
        value = spec[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"editworld_oracle: {key} must be a non-negative integer")


def _oracle(spec: Mapping[str, Any]):
    from editworld.dataset import prompt_oracle

    return prompt_oracle(
        spec["n"], spec["size"], spec["seed"], dimension=spec.get("dimension", "overall")
    )


# EditWorld's truth for the prompts editworld.dataset.prompts(n, size, seed) makes.
register_reward_kind(
    "editworld_oracle",
    keys={"n", "size", "seed", "dimension"},
    required={"n", "size", "seed"},
    check=_check_oracle,
    build=_oracle,
)
