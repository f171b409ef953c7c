from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from jobs.registry import JobKind, register

        register(
            JobKind(
                name="jobs.selftest",
                title="Self-test",
                handler="jobs.handlers.run_selftest",
                config="jobs.handlers.SelfTestConfig",
            )
        )
