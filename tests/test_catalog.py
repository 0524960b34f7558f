from __future__ import annotations

import sqlite3
from pathlib import Path

from rvs.core.catalog import Catalog, CatalogCollector
from rvs.v1 import rvs_pb2 as pb


def ev(media_id: str, **kw: object) -> pb.MediaEvent:
    return pb.MediaEvent(media_id=media_id, at_ms=1, **kw)  # type: ignore[arg-type]


def discovered(c: Catalog, mid: str = "m") -> None:
    c.apply(ev(mid, discovered=pb.MediaDiscovered(uri="/a.mp4", kind=pb.MEDIA_KIND_VIDEO, source="/")))


def test_life_cycle_states(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    discovered(c)
    assert c.get("m").state == pb.MEDIA_STATE_QUEUED
    c.apply(ev("m", sampling_started=pb.SamplingStarted(duration_ms=3000)))
    assert c.get("m").state == pb.MEDIA_STATE_SAMPLING
    c.apply(ev("m", embedded=pb.FramesEmbedded(sample_indices=[0, 1], face_counts=[1, 2])))
    c.apply(ev("m", sampled=pb.MediaSampled(frame_count=3, duration_ms=3000)))
    m = c.get("m")
    assert (m.state, m.frames_sampled, m.frames_embedded, m.faces_found) == (pb.MEDIA_STATE_EMBEDDING, 3, 2, 3)
    c.apply(ev("m", embedded=pb.FramesEmbedded(sample_indices=[2], face_counts=[0])))
    assert c.get("m").state == pb.MEDIA_STATE_DONE
    assert [x.media_id for x in c.unfinished()] == []


def test_replayed_frames_count_once(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    discovered(c)
    for _ in range(3):
        c.apply(ev("m", embedded=pb.FramesEmbedded(sample_indices=[0, 1], face_counts=[2, 1])))
    m = c.get("m")
    assert (m.frames_embedded, m.faces_found) == (2, 3)


def test_failure_and_retry(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    discovered(c)
    c.apply(ev("m", failed=pb.MediaFailed(reason="DECODE_ERROR", detail="bad")))
    m = c.get("m")
    assert (m.state, m.error_reason, m.error_detail) == (pb.MEDIA_STATE_FAILED, "DECODE_ERROR", "bad")
    c.apply(ev("m", sampling_started=pb.SamplingStarted()))
    assert c.get("m").state == pb.MEDIA_STATE_SAMPLING


def test_removed_and_persisted(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    discovered(c, "a")
    discovered(c, "b")
    c.apply(ev("a", removed=pb.MediaRemoved()))
    c.close()
    c = Catalog(tmp_path / "c.db")
    assert c.get("a").state == pb.MEDIA_STATE_DELETED
    assert [m.media_id for m in c.list_media(state=pb.MEDIA_STATE_QUEUED)] == ["b"]
    assert c.get("nope") is None


def in_every_state(c: Catalog, n: int, prefix: str = "") -> dict[str, int]:
    """n media items in each state (edge cases included); returns media id -> expected state."""
    expected: dict[str, int] = {}
    for i in range(n):
        for state, events in (
            (pb.MEDIA_STATE_QUEUED, []),
            (pb.MEDIA_STATE_SAMPLING, [dict(sampling_started=pb.SamplingStarted(frames_expected=2))]),
            (pb.MEDIA_STATE_EMBEDDING, [dict(sampled=pb.MediaSampled(frame_count=2))]),
            (
                pb.MEDIA_STATE_DONE,
                [
                    dict(sampled=pb.MediaSampled(frame_count=1)),
                    dict(embedded=pb.FramesEmbedded(sample_indices=[0], face_counts=[1])),
                ],
            ),
            (pb.MEDIA_STATE_DONE, [dict(sampled=pb.MediaSampled(frame_count=0))]),
            (pb.MEDIA_STATE_FAILED, [dict(failed=pb.MediaFailed(reason="DECODE_ERROR"))]),
            (
                pb.MEDIA_STATE_FAILED,
                [dict(sampled=pb.MediaSampled(frame_count=0)), dict(failed=pb.MediaFailed(reason="X"))],
            ),
            (pb.MEDIA_STATE_DELETED, [dict(failed=pb.MediaFailed(reason="X")), dict(removed=pb.MediaRemoved())]),
        ):
            mid = f"{prefix}{i:06d}-{len(expected)}"
            discovered(c, mid)
            for kw in events:
                c.apply(ev(mid, **kw))
            expected[mid] = state
    return expected


def test_states_filters_and_pages_in_sql(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    expected = in_every_state(c, 3)
    assert {m: c.get(m).state for m in expected} == expected
    everything = [m.media_id for m in c.list_media(limit=1000)]
    assert everything == sorted(expected)  # discovery order, then id
    pages = [c.list_media(offset=o, limit=5) for o in range(0, len(expected) + 5, 5)]
    assert [m.media_id for page in pages for m in page] == everything
    for state in set(expected.values()):
        wanted = [m for m in everything if expected[m] == state]
        assert [m.media_id for m in c.list_media(state=state, limit=1000)] == wanted
        assert [m.media_id for m in c.list_media(state=state, offset=1, limit=2)] == wanted[1:3]
    assert c.counts() == {s: list(expected.values()).count(s) for s in pb.MediaState.values() if s}
    assert c.has_unfinished()
    unfinished = (pb.MEDIA_STATE_QUEUED, pb.MEDIA_STATE_SAMPLING, pb.MEDIA_STATE_EMBEDDING)
    assert [m.media_id for m in c.unfinished()] == [m for m in everything if expected[m] in unfinished]
    family = next(iter(CatalogCollector(c).collect()))
    assert {s.labels["state"]: s.value for s in family.samples} == {
        pb.MediaState.Name(s).removeprefix("MEDIA_STATE_").lower(): n for s, n in c.counts().items()
    }


def test_pages_and_unfinished_cost_the_same_in_a_large_catalog(tmp_path: Path) -> None:
    """A page, a filtered page, get() and unfinished() read what they return, not every row:
    SQLite's virtual-machine steps do not grow with the catalog."""

    def steps(c: Catalog) -> list[int]:
        counted = []
        n = [0]

        def step() -> int:
            n[0] += 1
            return 0  # 0: go on

        for read in (
            lambda: c.list_media(limit=20),
            lambda: c.list_media(state=pb.MEDIA_STATE_DONE, limit=20),
            lambda: c.list_media(state=pb.MEDIA_STATE_QUEUED, limit=20),
            lambda: c.get("000000-0"),
            lambda: c.unfinished(),
        ):
            n[0] = 0
            c._db.set_progress_handler(step, 10)
            read()
            c._db.set_progress_handler(None, 10)
            counted.append(n[0])
        return counted

    small = Catalog(tmp_path / "small.db")
    in_every_state(small, 20)
    large = Catalog(tmp_path / "large.db")
    in_every_state(large, 20)
    for i in range(3000):  # finished items only: unfinished() stays the same size
        mid = f"zz{i:06d}"
        discovered(large, mid)
        large.apply(ev(mid, sampled=pb.MediaSampled(frame_count=0)))
    reads = ("page", "done page", "queued page", "get", "unfinished")
    for name, a, b in zip(reads, steps(small), steps(large), strict=True):
        assert b <= a * 1.2 + 10, f"{name}: {a} steps with 160 media, {b} with 3,160"


def test_replayed_events_do_not_resurrect_a_removed_item(tmp_path: Path) -> None:
    """The query service replays the events topic over its catalog at every start."""
    c = Catalog(tmp_path / "c.db")
    log = [
        pb.MediaEvent(media_id="m", at_ms=10, discovered=pb.MediaDiscovered(uri="/a.jpg", kind=pb.MEDIA_KIND_IMAGE)),
        pb.MediaEvent(media_id="m", at_ms=11, sampled=pb.MediaSampled(frame_count=1)),
        pb.MediaEvent(media_id="m", at_ms=12, embedded=pb.FramesEmbedded(sample_indices=[0], face_counts=[2])),
        pb.MediaEvent(media_id="m", at_ms=20, removed=pb.MediaRemoved()),
    ]
    for event in log + log:  # folded live, then replayed after a restart
        c.apply(event)
    m = c.get("m")
    assert (m.state, m.frames_embedded, m.faces_found) == (pb.MEDIA_STATE_DELETED, 0, 0)
    for event in log[:3]:  # replayed in any order against the folded catalog
        c.apply(event)
        assert c.get("m").state == pb.MEDIA_STATE_DELETED
    # Frames that were in flight when it was removed are not counted.
    c.apply(pb.MediaEvent(media_id="m", at_ms=21, embedded=pb.FramesEmbedded(sample_indices=[1], face_counts=[1])))
    assert c.get("m").faces_found == 0
    # A new copy of the content, discovered after the removal, is a new ingest from scratch.
    c.apply(pb.MediaEvent(media_id="m", at_ms=30, discovered=pb.MediaDiscovered(uri="/b.jpg", kind=1)))
    m = c.get("m")
    assert (m.state, m.uri, m.frames_sampled, m.frames_embedded, m.faces_found, m.discovered_at_ms) == (
        pb.MEDIA_STATE_QUEUED,
        "/b.jpg",
        0,
        0,
        0,
        30,
    )
    c.apply(pb.MediaEvent(media_id="m", at_ms=31, embedded=pb.FramesEmbedded(sample_indices=[0], face_counts=[2])))
    assert c.get("m").faces_found == 2
    c.apply(log[0])  # an old discovery replayed after the new one changes nothing
    assert (c.get("m").uri, c.get("m").faces_found) == ("/b.jpg", 2)
    assert c.counts()[c.get("m").state] == 1 and sum(c.counts().values()) == 1


def test_a_catalog_written_before_state_columns_is_migrated(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    expected = in_every_state(c, 2)
    c.close()
    db = sqlite3.connect(tmp_path / "c.db")  # back to the columns and tables of rvs 0.2
    db.executescript(
        "DROP TRIGGER media_counted; DROP TRIGGER media_uncounted; DROP TRIGGER media_recounted;"
        "DROP TABLE state_counts; DROP INDEX media_state; DROP INDEX media_order;"
        "ALTER TABLE media DROP COLUMN state; ALTER TABLE media DROP COLUMN removed_at_ms;"
        "ALTER TABLE media DROP COLUMN stream; ALTER TABLE media DROP COLUMN started_at_ms;"
    )
    db.close()
    c = Catalog(tmp_path / "c.db")
    assert {m: c.get(m).state for m in expected} == expected
    assert c.counts() == {s: list(expected.values()).count(s) for s in pb.MediaState.values() if s}


def test_failed_frames_count_as_processed_with_their_reason(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    discovered(c)
    c.apply(ev("m", sampled=pb.MediaSampled(frame_count=3)))
    failed = pb.FramesEmbedded(sample_indices=[0, 1, 2], face_counts=[1, 0, 0], failures=["", "EMBED_FAILED", ""])
    for _ in range(2):  # a replay counts once
        c.apply(ev("m", embedded=failed))
    m = c.get("m")
    assert (m.state, m.frames_embedded, m.faces_found, dict(m.frames_failed)) == (
        pb.MEDIA_STATE_DONE,
        3,
        1,
        {"EMBED_FAILED": 1},
    )
    c.apply(ev("m", removed=pb.MediaRemoved()))
    assert dict(c.get("m").frames_failed) == {}


def test_a_catalog_from_before_frames_failed_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "c.db")
    db.execute(
        "CREATE TABLE media (media_id TEXT PRIMARY KEY, uri TEXT NOT NULL, kind INTEGER NOT NULL,"
        " source TEXT NOT NULL DEFAULT '', size_bytes INTEGER NOT NULL DEFAULT 0,"
        " sampling_started INTEGER NOT NULL DEFAULT 0, frame_count INTEGER,"
        " frames_sampled INTEGER NOT NULL DEFAULT 0, frames_embedded INTEGER NOT NULL DEFAULT 0,"
        " faces_found INTEGER NOT NULL DEFAULT 0, duration_ms INTEGER NOT NULL DEFAULT 0,"
        " width INTEGER NOT NULL DEFAULT 0, height INTEGER NOT NULL DEFAULT 0,"
        " error_reason TEXT NOT NULL DEFAULT '', error_detail TEXT NOT NULL DEFAULT '',"
        " deleted INTEGER NOT NULL DEFAULT 0, discovered_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL)"
    )
    db.execute("INSERT INTO media (media_id, uri, kind, discovered_at_ms, updated_at_ms) VALUES ('m', '/a', 1, 1, 1)")
    db.commit()
    db.close()
    c = Catalog(tmp_path / "c.db")
    c.apply(ev("m", embedded=pb.FramesEmbedded(sample_indices=[0], face_counts=[0], failures=["DECODE_ERROR"])))
    assert dict(c.get("m").frames_failed) == {"DECODE_ERROR": 1}


def test_a_stream_segment_keeps_its_stream_and_wall_clock_start(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    segment = pb.MediaDiscovered(
        uri="stream:cam1/1764633600000",
        kind=pb.MEDIA_KIND_VIDEO,
        source="stream:cam1",
        stream="cam1",
        started_at_ms=1_764_633_600_000,
    )
    c.apply(pb.MediaEvent(media_id="s", at_ms=1_764_633_600_000, discovered=segment))
    m = c.get("s")
    assert (m.stream, m.started_at_ms, m.discovered_at_ms) == ("cam1", 1_764_633_600_000, 1_764_633_600_000)
    discovered(c)
    assert (c.get("m").stream, c.get("m").started_at_ms) == ("", 0)
