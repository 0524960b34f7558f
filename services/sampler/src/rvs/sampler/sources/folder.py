"""A watched folder tree: new, changed and removed files.

Polling, not inotify: it also works on network and container-mounted folders, and telling when a
slowly copied file is complete needs repeated stat() calls anyway.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from rvs.core.media.hashing import content_id
from rvs.core.media.kinds import is_ignored_name
from rvs.sampler.sources.base import Entry, Fetched, ScanResult

log = logging.getLogger(__name__)


class FolderSource:
    kind = "folder"
    spools = False

    def __init__(
        self, root: Path, settle_s: float = 2.0, follow_symlinks: bool = False, scan_interval_s: float = 1.0
    ) -> None:
        if not root.is_dir():
            raise ValueError(f"watched folder {root} does not exist or is not a folder")
        self.root = root.resolve()
        self.uri = str(self.root)
        self.settle_s = settle_s
        self.follow_symlinks = follow_symlinks
        self.scan_interval_s = scan_interval_s
        self._settling: dict[str, tuple[int, str, float]] = {}  # path -> (size, version, since)

    def owns(self, uri: str) -> bool:
        return Path(uri).is_relative_to(self.root) if uri.startswith("/") else False

    def start(self) -> None:
        """Polling needs nothing opened."""

    def close(self) -> None:
        """Nothing to close."""

    def _walk(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}

        def on_error(err: OSError) -> None:
            log.warning("cannot read %s: %s", err.filename, err.strerror)

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=on_error, followlinks=False):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if is_ignored_name(name):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.path.islink(path) and not self._link_allowed(path):
                        continue
                    st = os.stat(path)  # follows an allowed link to its target
                except OSError:
                    continue  # vanished or dangling link
                found[path] = Entry(path, st.st_size, str(st.st_mtime_ns))
        return found

    def _link_allowed(self, path: str) -> bool:
        if self.follow_symlinks:
            return True
        inside = Path(path).resolve().is_relative_to(self.root)
        if not inside:
            log.info("not following %s: it points outside the watched folder (RVS_FOLLOW_SYMLINKS)", path)
        return inside

    def scan(self, known: dict[str, tuple[int, str]]) -> ScanResult:
        now = time.monotonic()
        current = self._walk()
        ready = []
        for path, entry in current.items():
            if known.get(path) == (entry.size, entry.version):
                self._settling.pop(path, None)
                continue
            seen = self._settling.get(path)
            if seen is None or seen[:2] != (entry.size, entry.version):
                self._settling[path] = (entry.size, entry.version, now)  # new, or still being written
                if self.settle_s > 0:
                    continue
            elif now - seen[2] < self.settle_s:
                continue
            del self._settling[path]
            ready.append(entry)
        for path in list(self._settling):
            if path not in current:
                del self._settling[path]
        removed = [p for p in known if p not in current]
        return ScanResult(ready=sorted(ready, key=lambda e: e.uri), removed=removed)

    def settled(self) -> bool:
        return not self._settling

    def wait(self, timeout_s: float, stopping: threading.Event) -> None:
        stopping.wait(timeout_s)

    def fetch(self, entry: Entry) -> Fetched:
        path = Path(entry.uri)
        return Fetched(content_id(path), path)

    def local_path(self, uri: str, media_id: str) -> Path:
        return Path(uri)

    def release(self, media_id: str) -> None:
        pass  # the file is the user's
