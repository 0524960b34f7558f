"""Media ids: the sha256 of a file's content, so copies and renames are recognised, and a file
that now holds something else is not taken for what was indexed."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file's content, read in chunks (memory stays flat for any size)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def content_id(path: Path) -> str:
    """Media id of the file at `path`: the hex sha256 of its content."""
    return file_sha256(path)
