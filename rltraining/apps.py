from django.apps import AppConfig


class RlTrainingConfig(AppConfig):
    name = "rltraining"
    verbose_name = "RL training"

    def ready(self) -> None:
        from jobs.registry import JobKind, register

        register(
            JobKind(
                name="rltraining.train",
                title="RL: Flow-GRPO",
                handler="rltraining.jobs.run_rl",
                config="rltraining.jobs.RLJobConfig",
                queue="gpu",
                created_through="the RL page (POST /rl/)",
            )
        )
        register(
            JobKind(
                name="rltraining.best_of_n",
                title="Best-of-N sampling",
                handler="rltraining.jobs.run_best_of_n",
                config="rltraining.jobs.BestOfNConfig",
                queue="gpu",
                created_through="an RL run's page (Best-of-N)",
            )
        )
