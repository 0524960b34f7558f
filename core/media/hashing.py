"""Media ids: the sha256 of a file's content, so copies and renames are recognised, and a file
that now holds something else is not taken for what was indexed."""

from __future__ import annotations

import hashlib
from pathlib import Path


def content_id(path: Path) -> str:
    """Media id of the file at `path`: the hex sha256 of its content."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
