"""The catalog: the state and progress of every media item, folded from MediaEvents.

Counts stay exact under replays: a frame counts as embedded once, whatever how often it is
reported (at-least-once delivery), because frames are keyed by (media id, sample index).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rvs.core import alerts_fold, index_fold, people_fold
from rvs.core.clock import now_ms
from rvs.core.retention import RetentionRules
from rvs.v1 import rvs_pb2 as pb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    media_id TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    kind INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    stream TEXT NOT NULL DEFAULT '',      -- a live stream's segment: the stream's name
    started_at_ms INTEGER NOT NULL DEFAULT 0,  -- a live stream's segment: unix time of its time 0
    size_bytes INTEGER NOT NULL DEFAULT 0,
    sampling_started INTEGER NOT NULL DEFAULT 0,
    frame_count INTEGER,              -- set when sampling completed
    frames_sampled INTEGER NOT NULL DEFAULT 0,
    frames_embedded INTEGER NOT NULL DEFAULT 0,
    faces_found INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    frames_expected INTEGER NOT NULL DEFAULT 0,
    sample_interval_ms INTEGER NOT NULL DEFAULT 0,
    faces_rejected TEXT NOT NULL DEFAULT '{}',  -- JSON: reason -> faces
    frames_failed TEXT NOT NULL DEFAULT '{}',  -- JSON: reason -> frames (counted in frames_embedded)
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    error_reason TEXT NOT NULL DEFAULT '',
    error_detail TEXT NOT NULL DEFAULT '',
    deleted INTEGER NOT NULL DEFAULT 0,
    removed_at_ms INTEGER NOT NULL DEFAULT 0,  -- events up to this time belong to a removed ingest
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


# The state, derived from the columns in SQL (one definition), so reads filter and count with an index.
_STATE = f"""CASE
    WHEN deleted THEN {pb.MEDIA_STATE_DELETED}
    WHEN error_reason != '' THEN {pb.MEDIA_STATE_FAILED}
    WHEN frame_count IS NOT NULL THEN
        CASE WHEN frames_embedded >= frame_count THEN {pb.MEDIA_STATE_DONE} ELSE {pb.MEDIA_STATE_EMBEDDING} END
    WHEN sampling_started THEN {pb.MEDIA_STATE_SAMPLING}
    ELSE {pb.MEDIA_STATE_QUEUED}
END"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS media_order ON media (discovered_at_ms, media_id);
CREATE INDEX IF NOT EXISTS media_state ON media (state, discovered_at_ms, media_id);
CREATE INDEX IF NOT EXISTS media_duration ON media (duration_ms);
"""

# Media per state, kept by triggers in the same transactions, so a scrape reads six rows, not the catalog.
_COUNTS = """
CREATE TABLE state_counts (state INTEGER PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO state_counts SELECT state, COUNT(*) FROM media GROUP BY state;
CREATE TRIGGER media_counted AFTER INSERT ON media BEGIN
    INSERT INTO state_counts VALUES (NEW.state, 1) ON CONFLICT(state) DO UPDATE SET n=n+1;
END;
CREATE TRIGGER media_uncounted AFTER DELETE ON media BEGIN
    UPDATE state_counts SET n=n-1 WHERE state=OLD.state;
END;
CREATE TRIGGER media_recounted AFTER UPDATE ON media WHEN OLD.state != NEW.state BEGIN
    UPDATE state_counts SET n=n-1 WHERE state=OLD.state;
    INSERT INTO state_counts VALUES (NEW.state, 1) ON CONFLICT(state) DO UPDATE SET n=n+1;
END;
"""

# A media item's end in unix ms: its time 0 (a stream segment's start, else its discovery) plus its length.
_END = "(COALESCE(NULLIF(started_at_ms, 0), discovered_at_ms) + duration_ms)"

_UNFINISHED = (pb.MEDIA_STATE_QUEUED, pb.MEDIA_STATE_SAMPLING, pb.MEDIA_STATE_EMBEDDING)


def _of_removed_ingest(kind: str | None, at_ms: int, row: sqlite3.Row) -> bool:
    """An event of an ingest that a removal ended: replayed from before the removal (a replayed
    `discovered` must not bring the item back), or late (frames that were in flight)."""
    return at_ms <= row["removed_at_ms"] or (bool(row["deleted"]) and kind != "discovered")


class Removals:
    """Which media were removed, and when, as a service folds MediaRemoved events: a frame or job of
    an ingest that began before the removal is dropped; a later ingest of the same content is not."""

    def __init__(self) -> None:
        self._at: dict[str, int] = {}
        self._lock = threading.Lock()

    def note(self, event: pb.MediaEvent) -> None:
        with self._lock:
            self._at[event.media_id] = max(self._at.get(event.media_id, 0), event.at_ms or now_ms())

    def covers(self, media_id: str, ingest_started_ms: int) -> bool:
        """True if `media_id` was removed after an ingest that started at `ingest_started_ms`."""
        with self._lock:
            return ingest_started_ms <= self._at.get(media_id, -1)


def _to_proto(row: sqlite3.Row) -> pb.Media:
    return pb.Media(
        media_id=row["media_id"],
        uri=row["uri"],
        kind=row["kind"],
        state=row["state"],
        frames_sampled=max(row["frames_sampled"], row["frame_count"] or 0),
        frames_embedded=row["frames_embedded"],
        faces_found=row["faces_found"],
        sampling_complete=row["frame_count"] is not None,
        duration_ms=row["duration_ms"],
        frames_expected=row["frame_count"] if row["frame_count"] is not None else row["frames_expected"],
        faces_rejected=json.loads(row["faces_rejected"]),
        frames_failed=json.loads(row["frames_failed"]),
        sample_interval_ms=row["sample_interval_ms"],
        error_reason=row["error_reason"],
        error_detail=row["error_detail"],
        source=row["source"],
        stream=row["stream"],
        started_at_ms=row["started_at_ms"],
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
        self._db.executescript(index_fold.SCHEMA)
        self._db.executescript(people_fold.SCHEMA)
        self._db.executescript(alerts_fold.SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_xinfo(media)")}
        if "frames_expected" not in columns:  # a catalog written before rvs 0.2
            self._db.execute("ALTER TABLE media ADD COLUMN frames_expected INTEGER NOT NULL DEFAULT 0")
        for counts in ("faces_rejected", "frames_failed"):
            if counts not in columns:
                self._db.execute(f"ALTER TABLE media ADD COLUMN {counts} TEXT NOT NULL DEFAULT '{{}}'")
        if "sample_interval_ms" not in columns:
            self._db.execute("ALTER TABLE media ADD COLUMN sample_interval_ms INTEGER NOT NULL DEFAULT 0")
        if "removed_at_ms" not in columns:
            self._db.execute("ALTER TABLE media ADD COLUMN removed_at_ms INTEGER NOT NULL DEFAULT 0")
        if "stream" not in columns:  # a catalog written before live streams
            self._db.execute("ALTER TABLE media ADD COLUMN stream TEXT NOT NULL DEFAULT ''")
            self._db.execute("ALTER TABLE media ADD COLUMN started_at_ms INTEGER NOT NULL DEFAULT 0")
        if "state" not in columns:  # computed when read, so it never disagrees with the columns
            self._db.execute(f"ALTER TABLE media ADD COLUMN state INTEGER GENERATED ALWAYS AS ({_STATE}) VIRTUAL")
        self._db.executescript(_INDEXES)
        tables = {r["name"] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "state_counts" not in tables:
            self._db.executescript(f"BEGIN; {_COUNTS} COMMIT;")
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
        at = event.at_ms or now_ms()
        mid = event.media_id
        with self._tx() as db:
            row = db.execute("SELECT deleted, removed_at_ms FROM media WHERE media_id=?", (mid,)).fetchone()
            if kind != "removed" and row is not None and _of_removed_ingest(kind, at, row):
                return
            if people_fold.apply(db, event, at) or alerts_fold.apply(db, event, at):
                return
            if index_fold.apply(db, event, at) or not mid:
                return  # index-wide, or frames of another model than the active one
            if kind == "discovered":
                d = event.discovered
                if row is not None and row["deleted"]:  # a new copy after a removal: a new ingest
                    db.execute("DELETE FROM media WHERE media_id=?", (mid,))
                db.execute(
                    "INSERT INTO media (media_id, uri, kind, source, stream, started_at_ms, size_bytes,"
                    " discovered_at_ms, updated_at_ms, removed_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(media_id) DO UPDATE SET uri=excluded.uri, updated_at_ms=excluded.updated_at_ms",
                    (
                        mid,
                        d.uri,
                        d.kind,
                        d.source,
                        d.stream,
                        d.started_at_ms,
                        d.size_bytes,
                        at,
                        at,
                        row["removed_at_ms"] if row else 0,
                    ),
                )
            elif kind == "sampling_started":
                started = event.sampling_started
                # A restart samples again from the start: clear a previous failure, keep embedded frames.
                db.execute(
                    "UPDATE media SET sampling_started=1, frame_count=NULL, error_reason='', error_detail='',"
                    " duration_ms=MAX(duration_ms, ?), frames_expected=?, sample_interval_ms=?, updated_at_ms=?"
                    " WHERE media_id=?",
                    (started.duration_ms, started.frames_expected, started.sample_interval_ms, at, mid),
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
                    " frames_failed='{}', removed_at_ms=MAX(removed_at_ms, ?), updated_at_ms=? WHERE media_id=?",
                    (at, at, mid),
                )

    def active_model(self) -> str:
        """The model searches use and new media are embedded with; "" on a fresh index."""
        with self._lock:
            return index_fold.get(self._db, "active")

    def reindex_target(self) -> str:
        """The model a running reindex is building; "" when none is."""
        with self._lock:
            return index_fold.get(self._db, "target")

    def reindex_requested_at(self) -> int:
        with self._lock:
            return int(index_fold.get(self._db, "requested_at_ms") or 0)

    def reindex_status(self) -> pb.ReindexStatus:
        with self._lock:
            return index_fold.status(self._db)

    def reindex_complete(self) -> str:
        """The running reindex's model once it can be switched to; "" before."""
        with self._lock:
            return index_fold.complete(self._db)

    def reindex_undone(self) -> list[str]:
        with self._lock:
            return index_fold.undone(self._db)

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
        """A page in discovery order, filtered by state (0: all), read through an index."""
        where, args = ("WHERE state=?", [state]) if state else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM media {where} ORDER BY discovered_at_ms, media_id LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_to_proto(r) for r in rows]

    def counts(self) -> dict[int, int]:
        """Media items per state (every state, zeros included)."""
        with self._lock:
            rows = self._db.execute("SELECT state, n FROM state_counts").fetchall()
        return dict.fromkeys((v for v in pb.MediaState.values() if v), 0) | {r[0]: r[1] for r in rows}

    def uris(self, media_ids: list[str]) -> dict[str, pb.Media]:
        """Current catalog entries (uri, duration) for the given ids."""
        if not media_ids:
            return {}
        marks = ",".join("?" * len(media_ids))
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM media WHERE media_id IN ({marks})", media_ids).fetchall()
        return {r["media_id"]: _to_proto(r) for r in rows}

    def expired(self, rules: RetentionRules, now: int, limit: int) -> list[str]:
        """Media not removed whose end (time 0 plus duration) is older than their source's limit
        (at most `limit`, oldest first)."""
        retention, args = rules.limit_sql()
        with self._lock:
            rows = self._db.execute(
                f"SELECT media_id FROM media WHERE NOT deleted AND {_END} < ? - {retention}"
                " ORDER BY discovered_at_ms, media_id LIMIT ?",
                [now, *args, limit],
            ).fetchall()
        return [r[0] for r in rows]

    def purge_removed(self, rules: RetentionRules, now: int, limit: int) -> list[str]:
        """Forget media removed longer ago than their source's limit (at most `limit`): their rows,
        frames and people units; the media forgotten. By then no event of theirs is in flight."""
        retention, args = rules.limit_sql()
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    f"SELECT media_id FROM media WHERE deleted AND removed_at_ms < ? - {retention} LIMIT ?",
                    [now, *args, limit],
                )
            ]
            for table in ("frames", "person_units", "people_media", "reindex_items", "reindex_frames", "media"):
                db.executemany(f"DELETE FROM {table} WHERE media_id=?", [(m,) for m in ids])
        return ids

    def longest_video_ms(self) -> int:
        """The longest duration of a catalogued item (one still being sampled, a live segment, by what
        is sampled so far): how long before a time window a video that reaches into it can have begun."""
        with self._lock:
            done = self._db.execute("SELECT COALESCE(MAX(duration_ms), 0) FROM media").fetchone()[0]
            growing = self._db.execute(
                "SELECT COALESCE(MAX(frames_sampled * sample_interval_ms), 0) FROM media WHERE state IN (?, ?)",
                (pb.MEDIA_STATE_SAMPLING, pb.MEDIA_STATE_EMBEDDING),
            ).fetchone()[0]
        return int(max(done, growing))

    def has_unfinished(self) -> bool:
        with self._lock:
            return any(self._db.execute("SELECT 1 FROM state_counts WHERE state IN (?, ?, ?) AND n > 0", _UNFINISHED))

    def unfinished(self) -> list[pb.Media]:
        """Media that are queued, sampling or embedding (or were when rvs last stopped)."""
        marks = ",".join("?" * len(_UNFINISHED))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM media WHERE state IN ({marks}) ORDER BY discovered_at_ms, media_id", _UNFINISHED
            ).fetchall()
        return [_to_proto(r) for r in rows]

    def person(self, person_id: str) -> pb.Person | None:
        with self._lock:
            return people_fold.person(self._db, person_id)

    def people(
        self, offset: int = 0, limit: int = 100, named_only: bool = False, name_prefix: str = ""
    ) -> tuple[list[pb.Person], int]:
        """A page of people, most faces first, and how many match."""
        with self._lock:
            return people_fold.people(self._db, offset, limit, named_only, name_prefix)

    def people_named(self, name: str) -> list[str]:
        with self._lock:
            return people_fold.by_name(self._db, name)

    def person_units(self, person_id: str) -> list[pb.PersonUnit]:
        with self._lock:
            return people_fold.units_of(self._db, person_id)

    def units(self, unit_ids: list[str]) -> dict[str, pb.PersonUnit]:
        with self._lock:
            return people_fold.units(self._db, unit_ids)

    def placed_units(self, model: str) -> dict[str, pb.PersonUnit]:
        """Every unit of `model`'s clustering (person_id '' for those clustered into nobody)."""
        with self._lock:
            return people_fold.placed(self._db, model)

    def unclustered(self) -> int:
        with self._lock:
            return people_fold.unclustered_count(self._db)

    def unclustered_media(self, model: str, limit: int) -> list[tuple[str, int]]:
        """(media id, kind) of done media not yet clustered for `model`, oldest first."""
        with self._lock:
            return people_fold.unclustered_media(self._db, model, pb.MEDIA_STATE_DONE, limit)

    def clustered_model(self) -> str:
        with self._lock:
            return people_fold.clustered_model(self._db)

    def watches(self) -> list[pb.Watch]:
        """The live watch entries, oldest first."""
        with self._lock:
            return [a.watch for a in alerts_fold.all_added(self._db)]

    def watch(self, watch_id: str) -> pb.Watch | None:
        with self._lock:
            added = alerts_fold.watch_added(self._db, watch_id)
        return added.watch if added else None

    def watch_events(self) -> list[pb.MediaEvent]:
        """What a service folding the watch list needs to be up to date: every live watch's WatchAdded,
        the latest KnownPeople of each model, and the last alert of each watch per stream or media item."""
        with self._lock:
            added = alerts_fold.all_added(self._db)
            known = alerts_fold.known_people(self._db)
            raised = alerts_fold.latest_alerts(self._db)
        return [
            *(pb.MediaEvent(watch_added=a) for a in added),
            *(pb.MediaEvent(known_people=k) for k in known),
            *(pb.MediaEvent(at_ms=a.raised_at_ms, alert_raised=pb.AlertRaised(alert=a)) for a in raised),
        ]

    def known_people(self, model: str) -> pb.KnownPeople | None:
        with self._lock:
            return next((k for k in alerts_fold.known_people(self._db) if k.model == model), None)

    def alerts(self, after_seq: int = 0, since_ms: int = 0, limit: int = 500) -> list[tuple[int, pb.Alert]]:
        """(seq, alert) folded after `after_seq` and raised at or after `since_ms`, in the order folded."""
        with self._lock:
            return alerts_fold.alerts(self._db, after_seq, since_ms, limit)

    def last_alert_seq(self) -> int:
        with self._lock:
            return alerts_fold.last_seq(self._db)

    def prune_alerts(self, keep: int, before_ms: int) -> int:
        """Keep the newest `keep` alerts raised at or after `before_ms`; the alerts dropped."""
        with self._tx() as db:
            return alerts_fold.prune(db, keep, before_ms)

    def alert_cursor(self, name: str) -> int | None:
        """The seq a delivery (`name`) got to; None before its first."""
        with self._lock:
            row = self._db.execute("SELECT value FROM alert_marks WHERE name=?", (f"cursor:{name}",)).fetchone()
        return row[0] if row else None

    def set_alert_cursor(self, name: str, seq: int) -> None:
        with self._tx() as db:
            alerts_fold.set_mark(db, f"cursor:{name}", seq)


class CatalogCollector(Collector):
    """rvs_index_media{state}: media items by state, read from the catalog at scrape time."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily("rvs_index_media", "Media items in the catalog by state.", labels=["state"])
        for state, n in self.catalog.counts().items():
            family.add_metric([pb.MediaState.Name(state).removeprefix("MEDIA_STATE_").lower()], n)
        yield family
