"""Scans a folder tree for new, changed and removed files.

Polling, not inotify: it also works on network and container-mounted folders, and telling when a
slowly copied file is complete needs repeated stat() calls anyway.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rvs.media.kinds import is_ignored_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileStat:
    path: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    ready: list[FileStat]  # new or changed, and unchanged for the settle time
    removed: list[str]  # known paths that no longer exist


class FolderScanner:
    def __init__(self, root: Path, settle_s: float = 2.0, follow_symlinks: bool = False) -> None:
        self.root = root.resolve()
        self.settle_s = settle_s
        self.follow_symlinks = follow_symlinks
        self._settling: dict[str, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, since)

    def _walk(self) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}

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
                found[path] = FileStat(path, st.st_size, st.st_mtime_ns)
        return found

    def _link_allowed(self, path: str) -> bool:
        if self.follow_symlinks:
            return True
        target = Path(path).resolve()
        inside = target.is_relative_to(self.root)
        if not inside:
            log.info("not following %s: it points outside the watched folder (RVS_FOLLOW_SYMLINKS)", path)
        return inside

    def scan(self, known: dict[str, tuple[int, int]]) -> ScanResult:
        """Compare the tree with `known` (path -> (size, mtime_ns))."""
        now = time.monotonic()
        current = self._walk()
        ready = []
        for path, st in current.items():
            if known.get(path) == (st.size, st.mtime_ns):
                self._settling.pop(path, None)
                continue
            seen = self._settling.get(path)
            if seen is None or seen[:2] != (st.size, st.mtime_ns):
                self._settling[path] = (st.size, st.mtime_ns, now)  # new, or still being written
                if self.settle_s > 0:
                    continue
            elif now - seen[2] < self.settle_s:
                continue
            del self._settling[path]
            ready.append(st)
        for path in list(self._settling):
            if path not in current:
                del self._settling[path]
        removed = [p for p in known if p not in current]
        return ScanResult(ready=sorted(ready, key=lambda s: s.path), removed=removed)
