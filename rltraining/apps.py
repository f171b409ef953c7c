from django.apps import AppConfig


class RlTrainingConfig(AppConfig):
    name = "rltraining"
    verbose_name = "RL training"
