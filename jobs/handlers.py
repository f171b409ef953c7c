"""The self-test job: exercises the whole job path (broker, worker, claim,
heartbeat, progress, metrics, cancel, resume) without any model. Researchers run
it from the job list to check that workers are alive."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from jobs.runner import JobContext


@dataclass
class SelfTestConfig:
    steps: int = 20
    step_seconds: float = 0.25
    fail_at_step: int | None = None

    def __post_init__(self):
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 10_000:
            raise ValueError("steps must be an integer from 1 to 10000")
        if not isinstance(self.step_seconds, int | float) or not 0 <= self.step_seconds <= 60:
            raise ValueError("step_seconds must be a number from 0 to 60")
        if self.fail_at_step is not None and not isinstance(self.fail_at_step, int):
            raise ValueError("fail_at_step must be an integer or null")


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
