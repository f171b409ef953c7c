from django.apps import AppConfig


class RewardModelConfig(AppConfig):
    name = "rewardmodel"
    verbose_name = "Reward models"

    def ready(self) -> None:
        from jobs.registry import JobKind, register

        register(
            JobKind(
                name="rewardmodel.finetune",
                title="Fine-tune EditScore (LoRA)",
                handler="rewardmodel.jobs.run_finetune",
                config="rewardmodel.jobs.FinetuneJobConfig",
                queue="gpu",
                created_through="the reward-models page (/reward-models/)",
            )
        )
