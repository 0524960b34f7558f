"""People, folded from the index-wide people events into the catalog's database: which person each
unit (a photo's face, a video track) belongs to, the people's names, and which media were clustered.

Events of one media item and index-wide events travel on different partitions in distributed mode:
units of a media item removed after they were clustered are dropped here (and by the removal), so a
late assignment never brings deleted media back into a person.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from rvs.v1 import rvs_pb2 as pb

SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    person_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    name_key TEXT NOT NULL DEFAULT '',     -- the name case-folded, for lookups
    merged_into TEXT NOT NULL DEFAULT '',  -- merged away: its units are this person's now
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS people_name ON people (name_key) WHERE name_key != '';
CREATE TABLE IF NOT EXISTS person_units (
    unit_id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,               -- '': clustered into nobody yet
    model TEXT NOT NULL,
    media_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    faces INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    box TEXT NOT NULL,                     -- JSON [x1, y1, x2, y2]
    detection_score REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS person_units_person ON person_units (person_id, faces);
CREATE INDEX IF NOT EXISTS person_units_media ON person_units (media_id);
-- The deleted media, read by every query of units (_LIVE) without scanning the catalog.
CREATE INDEX IF NOT EXISTS media_deleted ON media (media_id) WHERE deleted;
CREATE TABLE IF NOT EXISTS people_media (
    media_id TEXT NOT NULL,
    model TEXT NOT NULL,
    PRIMARY KEY (media_id, model)
) WITHOUT ROWID;
"""

# Units of media that are still in the catalog (a removal deletes them; this also hides any that
# raced it).
_LIVE = "u.media_id NOT IN (SELECT media_id FROM media WHERE deleted)"


def name_key(name: str) -> str:
    return name.strip().casefold()


def apply(db: sqlite3.Connection, event: pb.MediaEvent, at: int) -> bool:
    """Fold a people event; True if it was one. A media removal drops the media's units too."""
    kind = event.WhichOneof("event")
    if kind == "people_assigned":
        _assign(db, event.people_assigned, at)
    elif kind == "person_renamed":
        r = event.person_renamed
        person = _current(db, r.person_id)
        _ensure(db, person, at)
        db.execute(
            "UPDATE people SET name=?, name_key=?, updated_at_ms=? WHERE person_id=?",
            (r.name.strip(), name_key(r.name), at, person),
        )
    elif kind == "people_merged":
        _merge(db, event.people_merged, at)
    elif kind == "removed":
        db.execute("DELETE FROM person_units WHERE media_id=?", (event.media_id,))
        db.execute("DELETE FROM people_media WHERE media_id=?", (event.media_id,))
        return False  # the catalog folds the rest of a removal
    else:
        return False
    return True


def _current(db: sqlite3.Connection, person_id: str) -> str:
    """The person a (possibly merged-away) id stands for now."""
    seen = set()
    while person_id and person_id not in seen:
        seen.add(person_id)
        row = db.execute("SELECT merged_into FROM people WHERE person_id=?", (person_id,)).fetchone()
        if row is None or not row[0]:
            return person_id
        person_id = row[0]
    return person_id


def _ensure(db: sqlite3.Connection, person_id: str, at: int) -> None:
    if person_id:
        db.execute("INSERT OR IGNORE INTO people (person_id, updated_at_ms) VALUES (?, ?)", (person_id, at))


def _removed_after(db: sqlite3.Connection, media_ids: Iterable[str], at: int) -> set[str]:
    ids = sorted(set(media_ids))
    if not ids:
        return set()
    marks = ",".join("?" * len(ids))
    rows = db.execute(
        f"SELECT media_id FROM media WHERE media_id IN ({marks}) AND (deleted OR removed_at_ms >= ?)", [*ids, at]
    )
    return {r[0] for r in rows}


def _assign(db: sqlite3.Connection, assigned: pb.PeopleAssigned, at: int) -> None:
    if assigned.replace:
        db.execute("DELETE FROM person_units WHERE model != ? AND NOT pinned", (assigned.model,))
        db.execute("DELETE FROM people_media WHERE model != ?", (assigned.model,))
    gone = _removed_after(db, [*assigned.media_ids, *(u.media_id for u in assigned.units)], at)
    for unit in assigned.units:
        if unit.media_id in gone:
            continue
        person = _current(db, unit.person_id)
        _ensure(db, person, at)
        box = json.dumps([unit.box.x1, unit.box.y1, unit.box.x2, unit.box.y2])
        # A user's placement (pinned) is kept against clustering's; a user's new one replaces it.
        db.execute(
            "INSERT INTO person_units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(unit_id) DO UPDATE SET"
            " person_id=CASE WHEN pinned AND NOT excluded.pinned THEN person_id ELSE excluded.person_id END,"
            " model=excluded.model, media_id=excluded.media_id, kind=excluded.kind, faces=excluded.faces,"
            " time_ms=excluded.time_ms, box=excluded.box, detection_score=excluded.detection_score,"
            " pinned=MAX(pinned, excluded.pinned)",
            (
                unit.unit_id,
                person,
                assigned.model,
                unit.media_id,
                unit.kind,
                unit.faces,
                unit.time_ms,
                box,
                unit.detection_score,
                int(unit.pinned),
            ),
        )
    db.executemany(
        "INSERT OR IGNORE INTO people_media VALUES (?, ?)",
        [(m, assigned.model) for m in sorted(set(assigned.media_ids)) if m not in gone],
    )


def _merge(db: sqlite3.Connection, merged: pb.PeopleMerged, at: int) -> None:
    into = _current(db, merged.into)
    _ensure(db, into, at)
    others = [p for p in dict.fromkeys(_current(db, p) for p in merged.people) if p and p != into]
    for person in others:
        db.execute("UPDATE person_units SET person_id=?, pinned=1 WHERE person_id=?", (into, person))
        db.execute("UPDATE people SET merged_into=?, updated_at_ms=? WHERE person_id=?", (into, at, person))
    row = db.execute("SELECT name FROM people WHERE person_id=?", (into,)).fetchone()
    if not row[0]:
        names = [db.execute("SELECT name FROM people WHERE person_id=?", (p,)).fetchone() for p in others]
        name = next((n[0] for n in names if n and n[0]), "")
        db.execute("UPDATE people SET name=?, name_key=? WHERE person_id=?", (name, name_key(name), into))
    db.execute("UPDATE people SET updated_at_ms=? WHERE person_id=?", (at, into))


# --- reads -------------------------------------------------------------------------------------

# People with their counts, in one pass over their units (a person without units is not listed).
_PEOPLE = f"""
SELECT p.person_id, p.name, SUM(u.faces) AS faces, COUNT(*) AS units, COUNT(DISTINCT u.media_id) AS media
FROM people p JOIN person_units u ON u.person_id = p.person_id
WHERE p.merged_into = '' AND {_LIVE}{{where}}
GROUP BY p.person_id
"""


def _to_person(db: sqlite3.Connection, row: sqlite3.Row) -> pb.Person:
    """The person of a _PEOPLE row, with its representative: the most confident face of its largest unit."""
    person = pb.Person(
        person_id=row["person_id"], name=row["name"], faces=row["faces"], units=row["units"], media_count=row["media"]
    )
    u = db.execute(
        f"SELECT * FROM person_units u WHERE u.person_id=? AND {_LIVE}"
        " ORDER BY u.faces DESC, u.detection_score DESC, u.unit_id LIMIT 1",
        (row["person_id"],),
    ).fetchone()
    x1, y1, x2, y2 = json.loads(u["box"])
    person.media_id, person.kind, person.time_ms = u["media_id"], u["kind"], u["time_ms"]
    person.box.CopyFrom(pb.Box(x1=x1, y1=y1, x2=x2, y2=y2))
    person.face_id = u["unit_id"]
    return person


def person(db: sqlite3.Connection, person_id: str) -> pb.Person | None:
    """A person by id (a merged-away id gives the person it was merged into); None if unknown or
    without units."""
    row = db.execute(_PEOPLE.format(where=" AND p.person_id=?"), (_current(db, person_id),)).fetchone()
    return _to_person(db, row) if row else None


def people(
    db: sqlite3.Connection, offset: int, limit: int, named_only: bool = False, name_prefix: str = ""
) -> tuple[list[pb.Person], int]:
    """A page of people with units, most faces first, and how many match."""
    where, args = "", []
    if named_only:
        where += " AND p.name_key != ''"
    if name_prefix:
        where += " AND substr(p.name_key, 1, ?) = ?"
        args += [len(name_key(name_prefix)), name_key(name_prefix)]
    listed = _PEOPLE.format(where=where)
    total = db.execute(f"SELECT COUNT(*) FROM ({listed})", args).fetchone()[0]
    rows = db.execute(f"{listed} ORDER BY faces DESC, p.person_id LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
    return [_to_person(db, r) for r in rows], total


def by_name(db: sqlite3.Connection, name: str) -> list[str]:
    """Ids of the people with this name (case-insensitive), in id order."""
    rows = db.execute(
        "SELECT person_id FROM people WHERE name_key=? AND merged_into='' ORDER BY person_id", (name_key(name),)
    )
    return [r[0] for r in rows]


def _to_unit(row: sqlite3.Row) -> pb.PersonUnit:
    x1, y1, x2, y2 = json.loads(row["box"])
    return pb.PersonUnit(
        unit_id=row["unit_id"],
        person_id=row["person_id"],
        media_id=row["media_id"],
        kind=row["kind"],
        faces=row["faces"],
        time_ms=row["time_ms"],
        box=pb.Box(x1=x1, y1=y1, x2=x2, y2=y2),
        detection_score=row["detection_score"],
        pinned=bool(row["pinned"]),
    )


def units_of(db: sqlite3.Connection, person_id: str) -> list[pb.PersonUnit]:
    """A person's units on media still catalogued, largest first."""
    rows = db.execute(
        f"SELECT * FROM person_units u WHERE u.person_id=? AND {_LIVE} ORDER BY u.faces DESC, u.unit_id",
        (_current(db, person_id),),
    )
    return [_to_unit(r) for r in rows]


def units(db: sqlite3.Connection, unit_ids: Iterable[str]) -> dict[str, pb.PersonUnit]:
    ids = sorted(set(unit_ids))
    found: dict[str, pb.PersonUnit] = {}
    for i in range(0, len(ids), 10_000):  # under SQLite's limit on bound parameters
        chunk = ids[i : i + 10_000]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT * FROM person_units u WHERE u.unit_id IN ({marks}) AND {_LIVE}", chunk)
        found |= {r["unit_id"]: _to_unit(r) for r in rows}
    return found


def placed(db: sqlite3.Connection, model: str) -> dict[str, pb.PersonUnit]:
    """Every unit of `model`'s clustering still catalogued (person_id '' for the loose ones)."""
    rows = db.execute(f"SELECT * FROM person_units u WHERE u.model=? AND {_LIVE}", (model,))
    return {r["unit_id"]: _to_unit(r) for r in rows}


def unclustered_count(db: sqlite3.Connection) -> int:
    return db.execute(f"SELECT COUNT(*) FROM person_units u WHERE u.person_id='' AND {_LIVE}").fetchone()[0]


def unclustered_media(db: sqlite3.Connection, model: str, done: int, limit: int) -> list[tuple[str, int]]:
    """(media id, kind) of finished media (state `done`) not yet clustered for `model`, oldest first."""
    rows = db.execute(
        "SELECT media_id, kind FROM media WHERE state=? AND media_id NOT IN"
        " (SELECT media_id FROM people_media WHERE model=?) ORDER BY discovered_at_ms, media_id LIMIT ?",
        (done, model, limit),
    )
    return [(r[0], r[1]) for r in rows]


def clustered_model(db: sqlite3.Connection) -> str:
    """The model of the clustering so far ('' before any): the one media were clustered for (clustering
    again for another model forgets the others)."""
    row = db.execute("SELECT model FROM people_media GROUP BY model ORDER BY COUNT(*) DESC LIMIT 1").fetchone()
    return row[0] if row else ""
