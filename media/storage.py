"""Where every app keeps and reads images and files: Django's storage API (the local media
folder by default, any storage backend otherwise), content-addressed writes that an
all-or-nothing import can undo, and images stored as annotators are served them (checked,
metadata stripped, with a thumbnail)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from media.images import CheckedImage, check_image


def read_stored(name: str) -> bytes:
    """The bytes of a stored file (images, snapshots' sources), named as stored."""
    with default_storage.open(name, "rb") as f:
        return f.read()


@dataclass(frozen=True)
class StoredImage:
    name: str
    thumb: str


# Writes of one stored name are serialised: two paths of a bundle with the same content (a
# candidate identical to its source) hash to the same name, and the pool's threads would
# otherwise check, delete and write it at once. Striped, so the set of locks stays bounded.
_NAME_LOCKS = tuple(threading.Lock() for _ in range(64))


class StorageFailed(OSError):
    """The media storage refused a write (a full disk, a read-only or unwritable folder).
    Not the bundle's fault: the import stops at the first one."""

    def __init__(self, name: str, cause: OSError):
        self.name = name
        self.cause = cause
        reason = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(cause.errno, f"cannot write {name!r} to the media storage: {reason}")


class ContentStore:
    """Content-addressed writes that can be undone."""

    def __init__(self):
        self.created: list[str] = []
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes) -> str:
        with _NAME_LOCKS[hash(name) % len(_NAME_LOCKS)]:
            try:
                if default_storage.exists(name):
                    if default_storage.size(name) == len(data):
                        return name
                    # A worker killed mid-write left a truncated file under this hash.
                    default_storage.delete(name)
            except OSError as exc:
                raise StorageFailed(name, exc) from exc
            try:
                saved = default_storage.save(name, ContentFile(data))
            except OSError as exc:
                # A disk that fills up mid-file leaves the part written: the name did
                # not exist a moment ago (under this lock), so what is there is ours.
                _delete_quietly(name)
                raise StorageFailed(name, exc) from exc
        with self._lock:
            self.created.append(saved)
        return saved

    def undo(self) -> None:
        for name in self.created:
            _delete_quietly(name)


def _delete_quietly(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError:  # undo goes on: every other file of the import still goes
        pass


def store_image(data: bytes, label: str) -> StoredImage:
    """Check one image (BadImage names `label`) and store it with its thumbnail under its
    content hash, as imports do: for images a job produces (RL samples)."""
    return store_checked(check_image(data, label), ContentStore())


def store_checked(checked: CheckedImage, store: ContentStore) -> StoredImage:
    digest = checked.sha256
    name = store.put(f"images/{digest[:2]}/{digest}.{checked.extension}", checked.data)
    thumb = store.put(f"thumbs/{digest[:2]}/{digest}.jpg", checked.thumb_jpeg)
    return StoredImage(name=name, thumb=thumb)
