"""The catalog: the state and progress of every media item, folded from MediaEvents.

Counts stay exact under replays: a frame counts as embedded once, whatever how often it is
reported (at-least-once delivery), because frames are keyed by (media id, sample index).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rvs.v1 import rvs_pb2 as pb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    media_id TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    kind INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    size_bytes INTEGER NOT NULL DEFAULT 0,
    sampling_started INTEGER NOT NULL DEFAULT 0,
    frame_count INTEGER,              -- set when sampling completed
    frames_sampled INTEGER NOT NULL DEFAULT 0,
    frames_embedded INTEGER NOT NULL DEFAULT 0,
    faces_found INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    frames_expected INTEGER NOT NULL DEFAULT 0,
    faces_rejected TEXT NOT NULL DEFAULT '{}',  -- JSON: reason -> faces
    frames_failed TEXT NOT NULL DEFAULT '{}',  -- JSON: reason -> frames (counted in frames_embedded)
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    error_reason TEXT NOT NULL DEFAULT '',
    error_detail TEXT NOT NULL DEFAULT '',
    deleted INTEGER NOT NULL DEFAULT 0,
    discovered_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS frames (
    media_id TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    faces INTEGER NOT NULL,
    PRIMARY KEY (media_id, sample_index)
) WITHOUT ROWID;
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _state(row: sqlite3.Row) -> pb.MediaState.ValueType:
    if row["deleted"]:
        return pb.MEDIA_STATE_DELETED
    if row["error_reason"]:
        return pb.MEDIA_STATE_FAILED
    if row["frame_count"] is not None:
        return pb.MEDIA_STATE_DONE if row["frames_embedded"] >= row["frame_count"] else pb.MEDIA_STATE_EMBEDDING
    if row["sampling_started"]:
        return pb.MEDIA_STATE_SAMPLING
    return pb.MEDIA_STATE_QUEUED


def _to_proto(row: sqlite3.Row) -> pb.Media:
    return pb.Media(
        media_id=row["media_id"],
        uri=row["uri"],
        kind=row["kind"],
        state=_state(row),
        frames_sampled=max(row["frames_sampled"], row["frame_count"] or 0),
        frames_embedded=row["frames_embedded"],
        faces_found=row["faces_found"],
        sampling_complete=row["frame_count"] is not None,
        duration_ms=row["duration_ms"],
        frames_expected=row["frame_count"] if row["frame_count"] is not None else row["frames_expected"],
        faces_rejected=json.loads(row["faces_rejected"]),
        frames_failed=json.loads(row["frames_failed"]),
        error_reason=row["error_reason"],
        error_detail=row["error_detail"],
        source=row["source"],
        discovered_at_ms=row["discovered_at_ms"],
        updated_at_ms=row["updated_at_ms"],
    )


def _add_counts(db: sqlite3.Connection, media_id: str, column: str, counts: Counter[str]) -> None:
    """Add to a JSON reason -> count column (faces_rejected, frames_failed)."""
    if not counts:
        return
    row = db.execute(f"SELECT {column} FROM media WHERE media_id=?", (media_id,)).fetchone()
    total = Counter(json.loads(row[0])) if row else Counter()
    total.update(counts)
    db.execute(f"UPDATE media SET {column}=? WHERE media_id=?", (json.dumps(total), media_id))


class Catalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(media)")}
        if "frames_expected" not in columns:  # a catalog written before rvs 0.2
            self._db.execute("ALTER TABLE media ADD COLUMN frames_expected INTEGER NOT NULL DEFAULT 0")
        for counts in ("faces_rejected", "frames_failed"):
            if counts not in columns:
                self._db.execute(f"ALTER TABLE media ADD COLUMN {counts} TEXT NOT NULL DEFAULT '{{}}'")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def apply(self, event: pb.MediaEvent) -> None:
        kind = event.WhichOneof("event")
        at = event.at_ms or _now_ms()
        mid = event.media_id
        with self._tx() as db:
            if kind == "discovered":
                d = event.discovered
                db.execute(
                    "INSERT INTO media (media_id, uri, kind, source, size_bytes, discovered_at_ms, updated_at_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(media_id) DO UPDATE SET uri=excluded.uri, deleted=0,"
                    " updated_at_ms=excluded.updated_at_ms",
                    (mid, d.uri, d.kind, d.source, d.size_bytes, at, at),
                )
            elif kind == "sampling_started":
                # A restart samples again from the start: clear a previous failure, keep embedded frames.
                db.execute(
                    "UPDATE media SET sampling_started=1, frame_count=NULL, error_reason='', error_detail='',"
                    " duration_ms=MAX(duration_ms, ?), frames_expected=?, updated_at_ms=? WHERE media_id=?",
                    (event.sampling_started.duration_ms, event.sampling_started.frames_expected, at, mid),
                )
            elif kind == "sampled":
                s = event.sampled
                db.execute(
                    "UPDATE media SET sampling_started=1, frame_count=?, frames_sampled=?, duration_ms=?, width=?,"
                    " height=?, updated_at_ms=? WHERE media_id=?",
                    (s.frame_count, s.frame_count, s.duration_ms, s.width, s.height, at, mid),
                )
            elif kind == "failed":
                f = event.failed
                db.execute(
                    "UPDATE media SET error_reason=?, error_detail=?, updated_at_ms=? WHERE media_id=?",
                    (f.reason or "FAILED", f.detail, at, mid),
                )
            elif kind == "embedded":
                e = event.embedded
                new_frames = new_faces = 0
                rejected: Counter[str] = Counter()
                failed: Counter[str] = Counter()
                for n, (index, faces) in enumerate(zip(e.sample_indices, e.face_counts, strict=True)):
                    cur = db.execute(
                        "INSERT OR IGNORE INTO frames (media_id, sample_index, faces) VALUES (?, ?, ?)",
                        (mid, index, faces),
                    )
                    if cur.rowcount:  # a replayed frame counts once
                        new_frames += 1
                        new_faces += faces
                        if n < len(e.rejections):
                            rejected.update(dict(e.rejections[n].by_reason))
                        if n < len(e.failures) and e.failures[n]:
                            failed[e.failures[n]] += 1
                _add_counts(db, mid, "faces_rejected", rejected)
                _add_counts(db, mid, "frames_failed", failed)
                db.execute(
                    "UPDATE media SET frames_embedded=frames_embedded+?, faces_found=faces_found+?,"
                    " frames_sampled=MAX(frames_sampled, ?), updated_at_ms=? WHERE media_id=?",
                    (new_frames, new_faces, max(e.sample_indices, default=-1) + 1, at, mid),
                )
            elif kind == "removed":
                db.execute("DELETE FROM frames WHERE media_id=?", (mid,))
                db.execute(
                    "UPDATE media SET deleted=1, frames_embedded=0, faces_found=0, faces_rejected='{}',"
                    " frames_failed='{}', updated_at_ms=? WHERE media_id=?",
                    (at, mid),
                )

    def note_sampled_progress(self, media_id: str, frames_sampled: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE media SET frames_sampled=MAX(frames_sampled, ?) WHERE media_id=?", (frames_sampled, media_id)
            )

    def get(self, media_id: str) -> pb.Media | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM media WHERE media_id=?", (media_id,)).fetchone()
        return _to_proto(row) if row else None

    def list_media(self, state: int = 0, offset: int = 0, limit: int = 100) -> list[pb.Media]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM media ORDER BY discovered_at_ms, media_id", ()).fetchall()
        media = [_to_proto(r) for r in rows]
        if state:
            media = [m for m in media if m.state == state]
        return media[offset : offset + limit]

    def uris(self, media_ids: list[str]) -> dict[str, pb.Media]:
        """Current catalog entries (uri, duration) for the given ids."""
        if not media_ids:
            return {}
        marks = ",".join("?" * len(media_ids))
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM media WHERE media_id IN ({marks})", media_ids).fetchall()
        return {r["media_id"]: _to_proto(r) for r in rows}

    def unfinished(self) -> list[pb.Media]:
        """Media that were queued, sampling or embedding when rvs last stopped."""
        return [
            m
            for m in self.list_media(limit=1 << 30)
            if m.state in (pb.MEDIA_STATE_QUEUED, pb.MEDIA_STATE_SAMPLING, pb.MEDIA_STATE_EMBEDDING)
        ]


class CatalogCollector(Collector):
    """rvs_index_media{state}: media items by state, read from the catalog at scrape time."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily("rvs_index_media", "Media items in the catalog by state.", labels=["state"])
        counts = dict.fromkeys((v for v in pb.MediaState.values() if v), 0)
        for media in self.catalog.list_media(limit=1 << 30):
            counts[media.state] += 1
        for state, n in counts.items():
            family.add_metric([pb.MediaState.Name(state).removeprefix("MEDIA_STATE_").lower()], n)
        yield family
