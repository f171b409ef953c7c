"""`python manage.py demo_loop --url http://127.0.0.1:8000`: the demo's loop on EditWorld, run
by `manage.py demo` once its web server and worker are up (see demo/loop.py for the steps).
Prints one line per step with its wall time; safe to run again (every step reuses what
exists)."""

from __future__ import annotations

import json
import os
import time
import urllib.request

from django.core.management.base import BaseCommand, CommandError

from demo import loop as demo


class Command(BaseCommand):
    help = "Run the EditWorld loop against a running EditLoop (the demo's second half)."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="the running web server")
        parser.add_argument("--groups", type=int, default=demo.Scale.groups)
        parser.add_argument("--job-timeout", type=float, default=900, help="seconds per job")

    def handle(self, *args, url: str, groups: int, job_timeout: float, **options):
        from accounts.models import User

        # The tiny models it builds train beside the worker's jobs: one thread each, or the
        # processes fight over the cores (set before torch is first imported).
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        scale = demo.Scale(groups=groups, human_groups=min(demo.Scale.human_groups, groups // 4))
        started = time.monotonic()

        def step(message: str, **figures) -> None:
            line = {"step": message, "seconds": round(time.monotonic() - started, 1), **figures}
            self.stdout.write(json.dumps(line))
            self.stdout.flush()

        _wait_healthy(url)
        researcher = User.objects.filter(username="researcher").first()
        judge, judge_job = demo.queue_judge(researcher)
        step("tiny EditScore pre-training " + ("queued" if judge_job else "cached"), job=judge_job)
        humans = User.objects.filter(username__in=["annotator", "researcher"])
        dataset, bundle = demo.import_dataset(scale, annotators=humans)
        step("imported", dataset=dataset.name, groups=dataset.groups.count())
        rankings = demo.rank_over_http(url, dataset, bundle, scale)
        from annotation.selectors import groups_left_for

        annotator = humans.filter(username="annotator").first()
        left = groups_left_for(dataset=dataset, user=annotator) if annotator else None
        step("simulated annotators ranked over HTTP", rankings=rankings,
             left_for_annotator=left)  # fmt: skip
        report = demo.refresh_report(dataset)
        step("agreement computed", report=bool(report))
        bench = demo.benchmark_dataset(dataset)
        step("benchmark snapshot exported and imported", pairs=bench.rows)
        runs = demo.queue_benchmark_runs(bench, demo.baseline_scorers(bundle), researcher)
        step("baseline and oracle benchmark runs queued", runs=sorted(runs))

        base = demo.wait_for_judge(judge, judge_job, job_timeout)
        demo.queue_benchmark_runs(bench, demo.base_scorer(base), researcher)
        step("tiny EditScore pre-trained on EditWorld truth", folder=str(base))
        model = demo.queue_finetune(dataset, bench, base, scale, researcher)
        step("tiny EditScore fine-tune queued", model=model.name, job=model.job_id)
        editor = demo.tiny_editor(scale)
        step("tiny EditWorld editor trained (cached)", folder=str(editor))
        outcome = demo.wait_for_job(model.job_id, job_timeout) if model.job_id else "succeeded"
        model.refresh_from_db()
        if outcome != "succeeded" or model.status != "ready":
            raise CommandError(f"the reward-model fine-tune ended {outcome}; see /jobs/")
        # the gate needs the model's held-out benchmark run and the pixel baseline's, finished
        for job_id in demo.benchmark_jobs(bench, [model.name, "pixel", demo.BASE_LABEL]):
            demo.wait_for_job(job_id, job_timeout)
        reward_model, why = demo.choose_rl_reward(model, against="pixel")
        step("reward model fine-tuned and benchmarked on held-out groups", model=model.name,
             gate=why)  # fmt: skip
        run = demo.queue_rl(editor, reward_model, scale, researcher)
        step("RL run queued: watch it on the run page", run=f"{url.rstrip('/')}/rl/{run.pk}/",
             reward=reward_model.name if reward_model else "EditWorld oracle")  # fmt: skip
        outcome = demo.wait_for_job(run.job_id, job_timeout)
        run.refresh_from_db()
        model.refresh_from_db()
        step("loop finished", rl=outcome)
        for line in demo.loop_summary(bench, model, run):
            self.stdout.write(line)
        self.stdout.flush()


def _wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise CommandError(f"{url} did not answer /healthz within {timeout:.0f} s")
