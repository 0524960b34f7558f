"""Which original files the search page may serve: a file is served only while it is still the one
that was indexed, where it was indexed. A catalogued path can be swapped after ingest (for a link to
/etc/passwd, or other content); the media id, the sha256 of the content, tells."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from google.rpc import code_pb2

from rvs.core.api_errors import Reason
from rvs.core.media.hashing import content_id
from rvs.query.web.caches import SharedLRU
from rvs.query.web.errors import ApiError

# (device, inode, size, mtime, ctime): the same tuple means the same bytes; ctime cannot be set back.
Identity = tuple[int, int, int, int, int]


class NotServed(ApiError):
    """The file at a media item's path is not one to serve: answered as it is (its code and reason)."""


def _identity(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class MediaFiles:
    """Checks a catalogued path before it is served: a regular file (not a link), inside one of the
    media folders once resolved, whose content hash is the media id. Hashes are remembered per file
    identity, so the range requests of a playing video cost a stat(), not a read of the video."""

    def __init__(self, roots: Sequence[Path], remembered: int = 4096) -> None:
        self.roots = [root.resolve() for root in roots]
        self._digests: SharedLRU[Identity, str] = SharedLRU(remembered)

    def verified(self, uri: str, media_id: str, hashed: bool = True) -> Path:
        """The path to serve for this media item; raises NotServed. `hashed` False: a file whose name,
        not its content, is the media item (a stream's recording, still growing while recorded)."""
        path = Path(uri)
        try:
            st = path.lstat()
        except OSError:
            raise NotServed(code_pb2.NOT_FOUND, Reason.MEDIA_FILE_MISSING, f"{uri} is no longer there") from None
        if not stat.S_ISREG(st.st_mode):
            raise self._changed(uri, "it is no longer a regular file (a symbolic link, a folder...)")
        if not any(path.resolve().is_relative_to(root) for root in self.roots):
            folders = ", ".join(map(str, self.roots)) or "none"
            raise NotServed(
                code_pb2.PERMISSION_DENIED,
                Reason.MEDIA_OUTSIDE_SOURCES,
                f"{uri} is not inside the folders the page serves files from (RVS_WEB_MEDIA_DIRS: {folders})",
            )
        if hashed and self._digest(path, _identity(st)) != media_id:
            raise self._changed(uri, "its content is no longer what was indexed")
        return path

    @staticmethod
    def _changed(uri: str, why: str) -> NotServed:
        return NotServed(code_pb2.NOT_FOUND, Reason.MEDIA_FILE_CHANGED, f"{uri} is not served: {why}")

    def _digest(self, path: Path, identity: Identity) -> str | None:
        """The content hash of the file with this identity; None if it changed while being read."""
        known = self._digests.get(identity)
        if known is not None:
            return known
        try:
            digest = content_id(path)
            unchanged = _identity(path.lstat()) == identity
        except OSError as exc:
            message = f"cannot read {path}: {exc.strerror}"
            raise NotServed(code_pb2.NOT_FOUND, Reason.MEDIA_FILE_MISSING, message) from exc
        if not unchanged:
            return None
        self._digests.put(identity, digest)
        return digest
