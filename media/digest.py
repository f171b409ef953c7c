"""Content hashes of folders (a trained adapter, a checkpoint): what pins a model in lineage."""

from __future__ import annotations

import hashlib
from pathlib import Path


def folder_sha256(path: str | Path) -> str:
    """sha256 over every file's relative name and full content, in name order: equal exactly
    when the folders hold the same files with the same bytes. Reads everything (minutes for a
    multi-GB checkpoint): call it from a job or a command, never in a web request."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{path}: not a folder")
    digest = hashlib.sha256(b"editloop-folder-v1\n")
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        content = hashlib.sha256()
        with open(file, "rb") as f:
            while chunk := f.read(2**20):
                content.update(chunk)
        digest.update(f"{file.relative_to(root).as_posix()}\0{content.hexdigest()}\n".encode())
    return digest.hexdigest()
