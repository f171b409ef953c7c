"""Reading stored files by name (Django's storage API: local media or any backend)."""

from django.core.files.storage import default_storage


def read_stored(name: str) -> bytes:
    """The bytes of a stored file (images, snapshots' sources), named as stored."""
    with default_storage.open(name, "rb") as f:
        return f.read()
