"""The index's model and its reindexes, folded from the index-wide MediaEvents into the catalog's
database: which model searches use (`active`), which one a reindex is building (`target`), and
each item's progress into the target's collection.

Events of one media item and index-wide events travel on different partitions in distributed mode,
so this fold does not rely on their order: a model's frames and re-reads are recorded whenever they
come, and a reindex request discards only what is older than itself (an earlier reindex's).
"""

from __future__ import annotations

import json
import sqlite3

from rvs.v1 import rvs_pb2 as pb

SCHEMA = """
CREATE TABLE IF NOT EXISTS index_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reindex_items (
    model TEXT NOT NULL,
    media_id TEXT NOT NULL,
    frame_count INTEGER,                  -- frames published for the model; NULL until re-read
    gone_reason TEXT NOT NULL DEFAULT '', -- the source could not be re-read
    gone_detail TEXT NOT NULL DEFAULT '',
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (model, media_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reindex_frames (
    model TEXT NOT NULL,
    media_id TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    faces INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (model, media_id, sample_index)
) WITHOUT ROWID;
"""

# Items whose frames for the model are not all embedded yet (and whose source is not gone).
_UNDONE = """SELECT r.media_id FROM reindex_items r WHERE r.model=? AND r.gone_reason='' AND (r.frame_count IS NULL
    OR r.frame_count > (SELECT COUNT(*) FROM reindex_frames f WHERE f.model=r.model AND f.media_id=r.media_id))"""


def get(db: sqlite3.Connection, key: str) -> str:
    row = db.execute("SELECT value FROM index_state WHERE key=?", (key,)).fetchone()
    return row[0] if row else ""


def _set(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO index_state VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value)
    )


def models(db: sqlite3.Connection) -> list[str]:
    return list(json.loads(get(db, "models") or "[]"))


def _requested_at(db: sqlite3.Connection) -> int:
    return int(get(db, "requested_at_ms") or 0)


def is_active(db: sqlite3.Connection, model: str) -> bool:
    """Whether frames of `model` ("" included) are the catalog's own progress (Media counts)."""
    return not model or model == (get(db, "active") or model)


def apply(db: sqlite3.Connection, event: pb.MediaEvent, at: int) -> bool:
    """Fold an index-wide event, or the index's part of a media event. True if the media event
    is handled here entirely (frames of a model other than the active one)."""
    kind = event.WhichOneof("event")
    mid = event.media_id
    target = get(db, "target")
    if kind == "switched":
        _switch(db, event.switched)
    elif kind == "reindex_requested":
        _request(db, event.reindex_requested.model, at)
    elif kind == "reread":
        r = event.reread
        if r.model == target and at < _requested_at(db):
            return True  # of an earlier reindex to the same model
        deleted = db.execute("SELECT deleted FROM media WHERE media_id=?", (mid,)).fetchone()
        if deleted is None or not deleted[0]:
            db.execute(
                "INSERT INTO reindex_items VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(model, media_id) DO UPDATE SET"
                " frame_count=excluded.frame_count, gone_reason=excluded.gone_reason,"
                " gone_detail=excluded.gone_detail, at_ms=excluded.at_ms",
                (r.model, mid, None if r.gone_reason else r.frame_count, r.gone_reason, r.gone_detail, at),
            )
    elif kind == "embedded" and not is_active(db, event.embedded.model):
        e = event.embedded
        if not (e.model == target and at < _requested_at(db)):
            db.executemany(
                "INSERT OR IGNORE INTO reindex_frames VALUES (?, ?, ?, ?, ?)",
                [(e.model, mid, i, n, at) for i, n in zip(e.sample_indices, e.face_counts, strict=True)],
            )
        return True
    elif kind == "discovered" and target:
        # Media found during a reindex are sampled for both models: the switch waits for them too.
        db.execute("INSERT OR IGNORE INTO reindex_items (model, media_id, at_ms) VALUES (?, ?, ?)", (target, mid, at))
    elif kind == "failed":
        # Nothing of it can be indexed in any model: no reindex waits for it.
        db.execute("DELETE FROM reindex_items WHERE media_id=? AND frame_count IS NULL AND gone_reason=''", (mid,))
    elif kind == "removed":
        db.execute("DELETE FROM reindex_items WHERE media_id=?", (mid,))
        db.execute("DELETE FROM reindex_frames WHERE media_id=?", (mid,))
    return False


def _request(db: sqlite3.Connection, model: str, at: int) -> None:
    if model == get(db, "active"):
        return
    _set(db, "target", model)
    _set(db, "requested_at_ms", str(at))
    # What an earlier reindex to this model recorded is stale: the collection missed what came since.
    db.execute("DELETE FROM reindex_items WHERE model=? AND at_ms<?", (model, at))
    db.execute("DELETE FROM reindex_frames WHERE model=? AND at_ms<?", (model, at))
    db.execute(
        "INSERT OR IGNORE INTO reindex_items (model, media_id, at_ms)"
        " SELECT ?, media_id, ? FROM media WHERE NOT deleted AND error_reason=''",
        (model, at),
    )


def _switch(db: sqlite3.Connection, switched: pb.IndexSwitched) -> None:
    model, active = switched.model, get(db, "active")
    if model == active or (switched.seed and active):
        return
    _set(db, "active", model)
    _set(db, "models", json.dumps(sorted({*models(db), model, *([active] if active else [])})))
    if get(db, "target") == model:
        _set(db, "target", "")
        _set(db, "last", model)
        # Faces found are now the new model's (its quality gates and detector may differ).
        db.execute(
            "UPDATE media SET faces_found=(SELECT COALESCE(SUM(faces), 0) FROM reindex_frames f"
            " WHERE f.model=? AND f.media_id=media.media_id)"
            " WHERE media_id IN (SELECT media_id FROM reindex_items WHERE model=? AND frame_count IS NOT NULL)",
            (model, model),
        )


def complete(db: sqlite3.Connection) -> str:
    """The running reindex's model if every item is done or gone and no ingest is in progress (its
    frames for the active model would come after the switch); "" otherwise."""
    target = get(db, "target")
    if not target or db.execute(_UNDONE + " LIMIT 1", (target,)).fetchone():
        return ""
    busy = db.execute(
        f"SELECT 1 FROM state_counts WHERE state IN ({pb.MEDIA_STATE_QUEUED}, {pb.MEDIA_STATE_SAMPLING},"
        f" {pb.MEDIA_STATE_EMBEDDING}) AND n > 0"
    ).fetchone()
    return "" if busy else target


def undone(db: sqlite3.Connection) -> list[str]:
    """Items of the running reindex not yet wholly in the new collection."""
    target = get(db, "target")
    return [r[0] for r in db.execute(_UNDONE, (target,))] if target else []


def status(db: sqlite3.Connection) -> pb.ReindexStatus:
    target, last = get(db, "target"), get(db, "last")
    model = target or last
    out = pb.ReindexStatus(active_model=get(db, "active"), target_model=target, models=models(db), last_model=last)
    if not model:
        return out
    out.items_total = db.execute("SELECT COUNT(*) FROM reindex_items WHERE model=?", (model,)).fetchone()[0]
    undone_n = db.execute(f"SELECT COUNT(*) FROM ({_UNDONE})", (model,)).fetchone()[0]
    gone = db.execute(
        "SELECT r.media_id, COALESCE(m.uri, ''), r.gone_reason, r.gone_detail FROM reindex_items r"
        " LEFT JOIN media m ON m.media_id=r.media_id WHERE r.model=? AND r.gone_reason!='' ORDER BY m.uri",
        (model,),
    ).fetchall()
    out.items_done = out.items_total - undone_n - len(gone)
    out.missing.extend(pb.MissingItem(media_id=g[0], uri=g[1], reason=g[2], detail=g[3]) for g in gone)
    return out
