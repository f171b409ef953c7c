"""Writes docs/configs.md from the declared job and training configs (mlcore.options), so the
docs cannot drift from the code: `python docs/make_config_docs.py` (tests/test_config_options.py
fails when the file is stale)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "configs.md"
CONFIGS = [
    ("RL job", "rltraining.jobs:RLJobConfig",
     "`POST /rl/` (the launch form), `POST /api/jobs/` with kind `rltraining.train`."),
    ("RL training (`training` of an RL job)", "rltraining.ml.trainer:RLConfig",
     "The launch form's hyperparameters; presets `RLConfig.paper()`, `RLConfig.cpu_smoke()`."),
    ("Reward-model fine-tune job", "rewardmodel.jobs:FinetuneJobConfig",
     "The reward-models page, `manage.py finetune_reward_model` (one `--option` per row), "
     "`POST /api/jobs/` with kind `rewardmodel.finetune`."),
]  # fmt: skip


def render() -> str:
    from django.utils.module_loading import import_string

    from mlcore.options import markdown_table

    parts = ["# Job and training options\n",
             "Written by `docs/make_config_docs.py` from the configs' declarations "
             "(`mlcore.options`); every bound here is checked when a job is queued.\n"]  # fmt: skip
    for title, path, where in CONFIGS:
        cls = import_string(path.replace(":", "."))
        parts.append(f"\n## {title}: `{path}`\n\n{where}\n\n{markdown_table(cls)}")
    return "".join(parts)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
