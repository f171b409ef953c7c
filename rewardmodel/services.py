"""Registering reward models (from a local path) and promoting one."""

from __future__ import annotations

from pathlib import Path

from config.errors import Invalid
from config.model_roots import check_model_folder
from media.digest import folder_sha256
from rewardmodel.jobs import MODEL_NAME
from rewardmodel.ml.prompts import PROMPT_SETS
from rewardmodel.models import RewardModel


class RegistrationRefused(Invalid):
    code = "registration_refused"


def model_register(
    *,
    name: str,
    base: str,
    adapter: str = "",
    prompt_set: str = "reference",
    user=None,
    hash_weights: bool = False,
) -> RewardModel:
    """A checkpoint folder holds config.json; an adapter folder adapter_config.json.
    ``prompt_set`` is the one the model was trained with (the released EditScore models: the
    authors' ``reference`` set).
    Weights are not loaded here (no torch in the web process): the first benchmark
    run or fine-tune loads them. ``hash_weights`` records the adapter's sha256 (it reads the
    whole folder: the command does it, the web form does not)."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise RegistrationRefused("name must be 1-100 letters, digits, '.', '_' or '-'")
    if RewardModel.objects.filter(name=name).exists():
        raise RegistrationRefused(f"a reward model named {name!r} exists already")
    if prompt_set not in PROMPT_SETS:
        raise RegistrationRefused(f"prompt_set must be one of {', '.join(PROMPT_SETS)}")
    try:
        check_model_folder(base, "base")
        if adapter:
            check_model_folder(adapter, "adapter")
    except ValueError as exc:
        raise RegistrationRefused(str(exc)) from None
    base_path = Path(base).expanduser()
    if not (base_path / "config.json").is_file():
        raise RegistrationRefused(f"{base}: not a checkpoint folder (no config.json)")
    adapter_path = Path(adapter).expanduser() if adapter else None
    if adapter_path is not None and not (adapter_path / "adapter_config.json").is_file():
        raise RegistrationRefused(f"{adapter}: not a peft adapter folder (no adapter_config.json)")
    return RewardModel.objects.create(
        name=name, base=str(base_path.resolve()),
        adapter=str(adapter_path.resolve()) if adapter_path else "",
        origin=RewardModel.Origin.IMPORTED, created_by=user, prompt_set=prompt_set,
        weights_sha256=folder_sha256(adapter_path) if hash_weights and adapter_path else "",
    )  # fmt: skip
