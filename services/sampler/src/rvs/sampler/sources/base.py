"""The contract between the sampler and a source of media files."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Entry:
    """One file of a source: a path in a folder or an object in a bucket."""

    uri: str  # absolute path, or s3://bucket/key
    size: int
    version: str  # changes whenever the content may have: mtime for files, ETag for objects


@dataclass
class ScanResult:
    ready: list[Entry]  # new or changed, and complete
    removed: list[str]  # uris of known entries that no longer exist


@dataclass(frozen=True)
class Fetched:
    """An entry's content as a local file, and the media id (sha256) of that content."""

    media_id: str
    path: Path


class SourceError(Exception):
    """The source cannot be read right now (unreachable, denied...); retried at the next scan."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Source(Protocol):
    uri: str  # what Media.source reports: the folder's path or s3://bucket/prefix
    kind: str  # metric label: "folder" or "bucket"
    scan_interval_s: float
    spools: bool  # its content is copied to a local spool (a bucket): only a few are fetched ahead

    def owns(self, uri: str) -> bool: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def scan(self, known: dict[str, tuple[int, str]]) -> ScanResult:
        """Compare the source with `known` (uri -> (size, version)); raises SourceError."""
        ...

    def settled(self) -> bool:
        """Whether the last scan left nothing to come back for (a file still being written, a
        notification not yet looked at)."""
        ...

    def wait(self, timeout_s: float, stopping: threading.Event) -> None:
        """Sleep until the next scan is due, or until the source signals a change."""
        ...

    def fetch(self, entry: Entry) -> Fetched:
        """Make the entry's content readable locally; raises SourceError, or OSError if it vanished."""
        ...

    def local_path(self, uri: str, media_id: str) -> Path:
        """The local file of media discovered earlier (for resuming); fetched again if needed."""
        ...

    def release(self, media_id: str) -> None:
        """The local copy of this media is no longer needed."""
        ...
