"""Writes docs/configs.md from the declared job and training configs (mlcore.options), so the
docs cannot drift from the code: `python docs/make_config_docs.py` (tests/test_config_options.py
fails when the file is stale)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "configs.md"
# Where each kind is launched from (the rest: POST /api/jobs/ with its kind).
WHERE = {
    "rltraining.train": "the RL page (`/rl/`), or `POST /api/jobs/`.",
    "rewardmodel.finetune": "the reward-models page, `manage.py finetune_reward_model` (one "
    "`--option` per row), or `POST /api/jobs/`.",
    "rltraining.best_of_n": "an RL run's page.",
    "benchmark.run": "the leaderboard's form, `POST /api/benchmark/runs/`, `manage.py "
    "benchmark_run`.",
    "annotation.import": "the import page, `POST /api/datasets/import/`.",
    "annotation.export_snapshot": "a dataset's quality page, `POST /api/datasets/<id>/snapshots/`.",
}


def render() -> str:
    from django.utils.module_loading import import_string

    from jobs import registry
    from mlcore.options import markdown_table

    parts = ["# Job and training options\n\n",
             "Written by `docs/make_config_docs.py` from the configs' declarations "
             "(`mlcore.options`); every bound here is checked when a job is queued, and "
             "`GET /api/jobs/kinds/` returns the same as JSON.\n"]  # fmt: skip
    for kind in registry.all_kinds():
        where = WHERE.get(kind.name, "`POST /api/jobs/`.")
        parts.append(f"\n## {kind.title}: kind `{kind.name}`, queue `{kind.queue}`\n\n"
                     f"From {where}\n\n{markdown_table(import_string(kind.config))}")  # fmt: skip
    parts.append("\n## RL training: `training` of an RL job (`rltraining.ml.trainer.RLConfig`)\n\n"
                 "The RL page's hyperparameters; presets `RLConfig.paper()` (the defaults) and "
                 f"`RLConfig.cpu_smoke()`.\n\n{markdown_table(import_string('rltraining.ml.trainer.RLConfig'))}")  # fmt: skip
    return "".join(parts)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
