from django.core.management.base import BaseCommand, CommandError

from rewardmodel.models import RewardModel
from rewardmodel.services import RegistrationRefused, model_register


class Command(BaseCommand):
    help = "Register an EditScore model from local folders (a Qwen2.5-VL checkpoint, optionally a LoRA adapter)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--base", required=True, help="checkpoint folder (config.json)")
        parser.add_argument("--adapter", default="", help="peft adapter folder")
        parser.add_argument(
            "--prompt-set",
            default="reference",
            choices=["reference", "editloop"],
            help="the prompts the model was trained with (released EditScore models: reference)",
        )
        parser.add_argument(
            "--promote", action="store_true",
            help="make it the default now, without the promotion gate (e.g. a released checkpoint "
            "whose published figures you trust); the page's Promote goes through the gate",
        )  # fmt: skip

    def handle(self, *args, name, base, adapter, prompt_set, promote, **options):
        try:
            model = model_register(
                name=name, base=base, adapter=adapter, prompt_set=prompt_set, hash_weights=True
            )
        except RegistrationRefused as exc:
            raise CommandError(str(exc)) from None
        if promote:  # an explicit override: the gate needs benchmark runs a new model lacks
            model.promote()
            RewardModel.objects.filter(pk=model.pk).update(gate={
                "passed": None, "reason": "promoted by register_reward_model --promote, "
                "without the promotion gate"})  # fmt: skip
        self.stdout.write(f"registered {model.name}{' (promoted)' if promote else ''}")
        if model.weights_sha256:
            self.stdout.write(f"adapter sha256 {model.weights_sha256}")
