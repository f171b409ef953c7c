"""Small datasets made directly in the database, for API and page tests."""

import io
import zipfile
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from annotation.models import Candidate, Dataset, Group


def _png(colour) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buffer, "PNG")
    return default_storage.save(
        f"test/{'-'.join(map(str, colour))}.png", ContentFile(buffer.getvalue())
    )


def make_dataset(
    name="ds", *, groups=3, candidates=3, overlap=2, annotators=(), lease_ttl_seconds=600, **fields
):
    # Gold groups and repeats are off unless a test asks: routing stays deterministic.
    fields = {"gold_rate": 0, "repeat_rate": 0, **fields}
    dataset = Dataset.objects.create(
        name=name, overlap=overlap, lease_ttl_seconds=lease_ttl_seconds, **fields
    )
    dataset.annotators.add(*annotators)
    for g in range(groups):
        source = _png((g * 20 % 256, 10, 10))
        group = Group.objects.create(
            dataset=dataset, external_id=f"{name}-g{g}", instruction=f"instruction {g}",
            task_type="color_alter", source=source, source_thumb=source,
        )  # fmt: skip
        for c in range(candidates):
            image = _png((g * 20 % 256, 40 * c + 40, 100))
            Candidate.objects.create(
                group=group,
                external_id=f"{name}-g{g}-c{c}",
                editor=f"editor-{c}",
                image=image,
                thumb=image,
            )
    return dataset


def zipped(bundle: Path) -> io.BytesIO:
    """A bundle folder as the in-memory .zip an upload sends (named bundle.zip)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in bundle.rglob("*"):
            if path.is_file():
                zf.write(path, str(path.relative_to(bundle)))
    buffer.seek(0)
    buffer.name = "bundle.zip"
    return buffer
