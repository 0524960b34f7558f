from __future__ import annotations

from pathlib import Path

from rvs.catalog import Catalog
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
