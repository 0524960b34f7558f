"""What the sampler has seen: files (path, size, mtime -> media id) and per-media sampling status.

Persisted in SQLite so a restart neither re-ingests finished files nor forgets unfinished ones.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    media_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_media ON files (media_id);
CREATE TABLE IF NOT EXISTS media (
    media_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    discovered_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sampled', 'failed'))
);
"""


class WatchState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def known_files(self) -> dict[str, tuple[int, int, str]]:
        with self._lock:
            rows = self._db.execute("SELECT path, size, mtime_ns, media_id FROM files").fetchall()
        return {p: (s, m, mid) for p, s, m, mid in rows}

    def record_file(self, path: str, size: int, mtime_ns: int, media_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size=excluded.size,"
                " mtime_ns=excluded.mtime_ns, media_id=excluded.media_id",
                (path, size, mtime_ns, media_id),
            )

    def forget_file(self, path: str) -> str | None:
        """Drop a file; returns its media id if no other file holds that media any more."""
        with self._lock:
            row = self._db.execute("SELECT media_id FROM files WHERE path=?", (path,)).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM files WHERE path=?", (path,))
            others = self._db.execute("SELECT 1 FROM files WHERE media_id=? LIMIT 1", (row[0],)).fetchone()
            return None if others else row[0]

    def is_orphan(self, media_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM files WHERE media_id=? LIMIT 1", (media_id,)).fetchone() is None

    def add_media(self, media_id: str, path: str, kind: int, size: int, discovered_at_ms: int) -> bool:
        """Register a media item; False if its content is already known (a copy or a rename)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO media VALUES (?, ?, ?, ?, ?, 'pending')",
                (media_id, path, kind, size, discovered_at_ms),
            )
            return cur.rowcount == 1

    def set_status(self, media_id: str, status: str) -> None:
        with self._lock:
            self._db.execute("UPDATE media SET status=? WHERE media_id=?", (status, media_id))

    def forget_media(self, media_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM media WHERE media_id=?", (media_id,))

    def media_path(self, media_id: str) -> str | None:
        """A current path of the media (it may have been renamed since discovery)."""
        with self._lock:
            row = self._db.execute("SELECT path FROM files WHERE media_id=? LIMIT 1", (media_id,)).fetchone()
        return row[0] if row else None

    def pending(self) -> list[tuple[str, str, int, int, int]]:
        """(media_id, path, kind, size, discovered_at_ms) of media not yet completely sampled."""
        with self._lock:
            return self._db.execute(
                "SELECT media_id, path, kind, size, discovered_at_ms FROM media WHERE status='pending'"
                " ORDER BY discovered_at_ms"
            ).fetchall()
