"""What the sampler has seen: entries of its sources (uri, size, version -> media id) and
per-media sampling status.

Persisted in SQLite so a restart neither re-ingests finished files nor forgets unfinished ones.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    uri TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    version TEXT NOT NULL,
    media_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_media ON entries (media_id);
CREATE TABLE IF NOT EXISTS media (
    media_id TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    discovered_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sampled', 'failed'))
);
-- Media whose frames are on the bus for a reindex (model, requested at): a restart resumes the rest.
CREATE TABLE IF NOT EXISTS rereads (
    model TEXT NOT NULL,
    media_id TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    PRIMARY KEY (model, media_id)
) WITHOUT ROWID;
-- Media removed by retention: their content, found again (a touched file, a lost entry), is not
-- ingested again, since it is older than the limit.
CREATE TABLE IF NOT EXISTS expired (
    media_id TEXT PRIMARY KEY,
    removed_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
-- Segments of live streams being sampled: one cut short by a crash is closed at the next start.
CREATE TABLE IF NOT EXISTS segments (
    media_id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0
);
"""


class WatchState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """State written by rvs 0.1 (files only, keyed by path) becomes entries keyed by uri."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "files" not in tables:
            return
        self._db.executescript(
            _SCHEMA.split("CREATE TABLE IF NOT EXISTS media")[0]
            + "INSERT OR IGNORE INTO entries SELECT path, size, CAST(mtime_ns AS TEXT), media_id FROM files;"
            "DROP TABLE files; ALTER TABLE media RENAME COLUMN path TO uri;"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def known_entries(self) -> dict[str, tuple[int, str, str]]:
        """uri -> (size, version, media_id)."""
        with self._lock:
            rows = self._db.execute("SELECT uri, size, version, media_id FROM entries").fetchall()
        return {u: (s, v, mid) for u, s, v, mid in rows}

    def forget_entry(self, uri: str) -> str | None:
        """Drop an entry; returns its media id if no other entry holds that media any more."""
        with self._lock:
            row = self._db.execute("SELECT media_id FROM entries WHERE uri=?", (uri,)).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM entries WHERE uri=?", (uri,))
            others = self._db.execute("SELECT 1 FROM entries WHERE media_id=? LIMIT 1", (row[0],)).fetchone()
            return None if others else row[0]

    def is_orphan(self, media_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM entries WHERE media_id=? LIMIT 1", (media_id,)).fetchone() is None

    def status(self, media_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT status FROM media WHERE media_id=?", (media_id,)).fetchone()
        return row[0] if row else None

    def record(
        self, uri: str, size: int, version: str, media_id: str, kind: int, discovered_at_ms: int, status: str
    ) -> bool:
        """Record an entry and its media item in one transaction (a full disk leaves neither);
        False if the media was already known (a copy or a rename)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO entries VALUES (?, ?, ?, ?) ON CONFLICT(uri) DO UPDATE SET size=excluded.size,"
                    " version=excluded.version, media_id=excluded.media_id",
                    (uri, size, version, media_id),
                )
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO media VALUES (?, ?, ?, ?, ?, ?)",
                    (media_id, uri, kind, size, discovered_at_ms, status),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return cur.rowcount == 1

    def set_status(self, media_id: str, status: str) -> None:
        with self._lock:
            self._db.execute("UPDATE media SET status=? WHERE media_id=?", (status, media_id))

    def forget_media(self, media_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM media WHERE media_id=?", (media_id,))

    def forget_removed(self, media_id: str, removed_at_ms: int) -> None:
        """Forget a removed media item, unless discovered again after the removal (a new copy)."""
        with self._lock:
            self._db.execute("DELETE FROM media WHERE media_id=? AND discovered_at_ms<=?", (media_id, removed_at_ms))

    def expire(self, media_id: str, removed_at_ms: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO expired VALUES (?, ?)", (media_id, removed_at_ms))

    def is_expired(self, media_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM expired WHERE media_id=?", (media_id,)).fetchone() is not None

    def record_entry(self, uri: str, size: int, version: str, media_id: str) -> None:
        """Record an entry alone (its media is not ingested): the next scan does not fetch it again."""
        with self._lock:
            self._db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?) ON CONFLICT(uri) DO UPDATE SET size=excluded.size,"
                " version=excluded.version, media_id=excluded.media_id",
                (uri, size, version, media_id),
            )

    def media_uri(self, media_id: str) -> str | None:
        """A current uri of the media (it may have been renamed since discovery)."""
        with self._lock:
            row = self._db.execute("SELECT uri FROM entries WHERE media_id=? LIMIT 1", (media_id,)).fetchone()
        return row[0] if row else None

    def pending(self) -> list[tuple[str, str, int, int, int]]:
        """(media_id, uri, kind, size, discovered_at_ms) of media not yet completely sampled."""
        with self._lock:
            return self._db.execute(
                "SELECT media_id, uri, kind, size, discovered_at_ms FROM media WHERE status='pending'"
                " ORDER BY discovered_at_ms"
            ).fetchall()

    def to_reread(self, model: str, requested_at_ms: int) -> list[tuple[str, str, int, int]]:
        """(media_id, uri, kind, discovered_at_ms) of every known item (but failed ones) not yet
        re-read for the reindex to `model` requested at `requested_at_ms`."""
        with self._lock:
            return self._db.execute(
                "SELECT m.media_id, m.uri, m.kind, m.discovered_at_ms FROM media m WHERE m.status != 'failed'"
                " AND NOT EXISTS (SELECT 1 FROM rereads r WHERE r.model=? AND r.media_id=m.media_id"
                " AND r.requested_at_ms=?) ORDER BY m.discovered_at_ms",
                (model, requested_at_ms),
            ).fetchall()

    def reread_done(self, model: str, media_id: str, requested_at_ms: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO rereads VALUES (?, ?, ?)", (model, media_id, requested_at_ms))

    def reread_again(self, model: str, media_ids: list[str]) -> None:
        """Re-read these again (embedded mode: their frames were in memory when rvs stopped)."""
        with self._lock:
            self._db.executemany("DELETE FROM rereads WHERE model=? AND media_id=?", [(model, m) for m in media_ids])

    def open_segment(self, media_id: str, stream: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO segments (media_id, stream) VALUES (?, ?)", (media_id, stream))

    def segment_progress(self, media_id: str, frames: int, duration_ms: int, width: int, height: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE segments SET frames=?, duration_ms=?, width=?, height=? WHERE media_id=?",
                (frames, duration_ms, width, height, media_id),
            )

    def close_segment(self, media_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM segments WHERE media_id=?", (media_id,))

    def open_segments(self, stream: str) -> list[tuple[str, int, int, int, int]]:
        """(media_id, frames, duration_ms, width, height) of the stream's segments left open."""
        with self._lock:
            return self._db.execute(
                "SELECT media_id, frames, duration_ms, width, height FROM segments WHERE stream=?", (stream,)
            ).fetchall()
