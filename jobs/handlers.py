"""The self-test job: exercises the whole job path (broker, worker, claim,
heartbeat, progress, metrics, cancel, resume) without any model. Researchers run
it from the job list to check that workers are alive."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from jobs.runner import JobContext
from mlcore.options import check_options, option


@dataclass
class SelfTestConfig:
    steps: int = option(20, help="steps to walk through", min=1, max=10_000)
    step_seconds: float = option(0.25, help="seconds per step", min=0, max=60)
    fail_at_step: int | None = option(None, help="raise at this step (to see a failure)")

    def __post_init__(self):
        check_options(self)


def run_selftest(ctx: JobContext) -> dict:
    cfg = SelfTestConfig(**ctx.config)
    last = ctx.last_logged_step()
    start = 0 if last is None else last + 1  # resume after a lost worker
    for step in range(start, cfg.steps):
        ctx.heartbeat()
        if cfg.fail_at_step == step:
            raise RuntimeError(f"self-test failure requested at step {step}")
        time.sleep(cfg.step_seconds)
        ctx.log_metrics(step, {"loss": math.exp(-step / 10), "reward": step / cfg.steps})
        ctx.progress((step + 1) / cfg.steps, f"step {step + 1}/{cfg.steps}")
    return {"steps": cfg.steps, "resumed_from": start, "attempt": ctx.attempt}
