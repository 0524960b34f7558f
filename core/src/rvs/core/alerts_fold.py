"""The watch list and its alerts, folded from the index-wide watch events into the catalog's database:
the live watch entries (with the WatchAdded that made each, for a service to be brought up to date),
the latest KnownPeople per model, and the alerts in the order they were folded.

Alerts come at least once (a replay raises the same alert_id again): an id folds once. The alerts
kept are bounded (`prune`); a replay of one pruned already is not folded again, because an alert raised
before the newest one pruned is refused (`horizon`).
"""

from __future__ import annotations

import sqlite3

from rvs.v1 import rvs_pb2 as pb

SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (
    watch_id TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    added BLOB,                            -- the WatchAdded; NULL once deleted (a replay stays deleted)
    deleted INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS known_people (
    model TEXT PRIMARY KEY,
    event BLOB NOT NULL                    -- the latest KnownPeople of the model
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, -- the order folded
    alert_id TEXT NOT NULL UNIQUE,
    watch_id TEXT NOT NULL,
    source TEXT NOT NULL,
    place TEXT NOT NULL,                   -- a stream's source, else the media id: where the face was
    raised_at_ms INTEGER NOT NULL,
    alert BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_at_ms);
CREATE TABLE IF NOT EXISTS alert_marks (
    name TEXT PRIMARY KEY,                 -- 'horizon': newest raised_at_ms pruned; cursors of deliveries
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""


def apply(db: sqlite3.Connection, event: pb.MediaEvent, at: int) -> bool:
    """Fold a watch-list event; True if it was one."""
    kind = event.WhichOneof("event")
    if kind == "watch_added":
        added = event.watch_added
        db.execute(
            "INSERT INTO watches (watch_id, created_at_ms, added) VALUES (?, ?, ?) ON CONFLICT(watch_id) DO UPDATE"
            " SET added=CASE WHEN deleted THEN NULL ELSE excluded.added END",
            (added.watch.watch_id, added.watch.created_at_ms or at, added.SerializeToString()),
        )
    elif kind == "watch_deleted":
        db.execute(
            "INSERT INTO watches (watch_id, created_at_ms, added, deleted) VALUES (?, ?, NULL, 1)"
            " ON CONFLICT(watch_id) DO UPDATE SET added=NULL, deleted=1",
            (event.watch_deleted.watch_id, at),
        )
    elif kind == "known_people":
        known = event.known_people
        db.execute("INSERT OR REPLACE INTO known_people VALUES (?, ?)", (known.model, known.SerializeToString()))
    elif kind == "alert_raised":
        alert = event.alert_raised.alert
        raised = alert.raised_at_ms or at
        if alert.alert_id and raised > mark(db, "horizon"):
            db.execute(
                "INSERT OR IGNORE INTO alerts (alert_id, watch_id, source, place, raised_at_ms, alert)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    alert.alert_id,
                    alert.watch_id,
                    alert.source,
                    alert.source if alert.source.startswith("stream:") else alert.media_id,
                    raised,
                    alert.SerializeToString(),
                ),
            )
    else:
        return False
    return True


def prune(db: sqlite3.Connection, keep: int, before_ms: int) -> int:
    """Drop the alerts beyond the newest `keep` and those raised before `before_ms`; the alerts dropped."""
    row = db.execute(
        "SELECT MAX(raised_at_ms) FROM alerts WHERE raised_at_ms < ? OR seq <= (SELECT MAX(seq) FROM alerts) - ?",
        (before_ms, keep),
    ).fetchone()
    if row[0] is None:
        return 0
    set_mark(db, "horizon", max(mark(db, "horizon"), row[0]))
    return db.execute("DELETE FROM alerts WHERE raised_at_ms <= ?", (row[0],)).rowcount


def mark(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT value FROM alert_marks WHERE name=?", (name,)).fetchone()
    return row[0] if row else 0


def set_mark(db: sqlite3.Connection, name: str, value: int) -> None:
    db.execute("INSERT OR REPLACE INTO alert_marks VALUES (?, ?)", (name, value))


# --- reads -------------------------------------------------------------------------------------


def watch_added(db: sqlite3.Connection, watch_id: str) -> pb.WatchAdded | None:
    row = db.execute("SELECT added FROM watches WHERE watch_id=? AND NOT deleted", (watch_id,)).fetchone()
    return pb.WatchAdded.FromString(row[0]) if row and row[0] else None


def all_added(db: sqlite3.Connection) -> list[pb.WatchAdded]:
    """Every live watch's WatchAdded, oldest first."""
    rows = db.execute("SELECT added FROM watches WHERE NOT deleted ORDER BY created_at_ms, watch_id")
    return [pb.WatchAdded.FromString(r[0]) for r in rows if r[0]]


def known_people(db: sqlite3.Connection) -> list[pb.KnownPeople]:
    return [pb.KnownPeople.FromString(r[0]) for r in db.execute("SELECT event FROM known_people ORDER BY model")]


def alerts(db: sqlite3.Connection, after_seq: int, since_ms: int, limit: int) -> list[tuple[int, pb.Alert]]:
    rows = db.execute(
        "SELECT seq, alert FROM alerts WHERE seq > ? AND raised_at_ms >= ? ORDER BY seq LIMIT ?",
        (after_seq, since_ms, limit),
    )
    return [(r[0], pb.Alert.FromString(r[1])) for r in rows]


def latest_alerts(db: sqlite3.Connection) -> list[pb.Alert]:
    """The last alert of each watch on each stream (or media item, for files), oldest first."""
    rows = db.execute("SELECT alert FROM alerts WHERE seq IN (SELECT MAX(seq) FROM alerts GROUP BY watch_id, place)")
    return [pb.Alert.FromString(r[0]) for r in rows]


def last_seq(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COALESCE(MAX(seq), 0) FROM alerts").fetchone()[0]
