from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The product demo: `manage.py demo` and `demo_loop`. It imports the other apps through
    their services; nothing imports it."""

    name = "demo"
    verbose_name = "Demo"

    def ready(self) -> None:
        from demo.jobs import KIND
        from jobs.registry import JobKind, register

        register(
            JobKind(
                name=KIND,
                title="Pre-train the demo's tiny EditScore (EditWorld truth)",
                handler="demo.jobs.run_pretrain_judge",
                config="demo.jobs.JudgeJobConfig",
                queue="gpu",
            )
        )
