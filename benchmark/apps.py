from django.apps import AppConfig


class BenchmarkConfig(AppConfig):
    name = "benchmark"
    verbose_name = "Benchmark"

    def ready(self) -> None:
        from jobs.registry import JobKind, register

        # One handler, two queues: model scorers need a GPU worker, API and
        # baseline scorers do not.
        for name, queue in (("benchmark.run", "default"), ("benchmark.run_gpu", "gpu")):
            register(
                JobKind(
                    name=name,
                    title="Benchmark run",
                    handler="benchmark.runs.run_benchmark",
                    config="benchmark.runs.RunConfig",
                    queue=queue,
                    created_through="POST /api/benchmark/runs/ or the leaderboard",
                )
            )
