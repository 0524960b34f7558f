"""The catalog's fold of the index-wide events: the active model, a reindex's progress per item, the
switch, items whose source is gone; in any order the partitions deliver them."""

from __future__ import annotations

from pathlib import Path

from rvs.core.catalog import Catalog
from rvs.core.index_view import IndexView
from rvs.v1 import rvs_pb2 as pb

A, B = "dlib-resnet", "facenet-casia"


def ev(media_id: str, at_ms: int, **kw: object) -> pb.MediaEvent:
    return pb.MediaEvent(media_id=media_id, at_ms=at_ms, **kw)  # type: ignore[arg-type]


def ingested(c: Catalog, mid: str, frames: int, at: int = 10) -> None:
    c.apply(ev(mid, at, discovered=pb.MediaDiscovered(uri=f"/in/{mid}.mp4", kind=pb.MEDIA_KIND_VIDEO, source="/in")))
    c.apply(ev(mid, at, sampling_started=pb.SamplingStarted()))
    c.apply(
        ev(mid, at, embedded=pb.FramesEmbedded(sample_indices=list(range(frames)), face_counts=[1] * frames, model=A))
    )
    c.apply(ev(mid, at, sampled=pb.MediaSampled(frame_count=frames)))


def embedded(mid: str, at: int, indices: list[int], model: str = B) -> pb.MediaEvent:
    return ev(mid, at, embedded=pb.FramesEmbedded(sample_indices=indices, face_counts=[2] * len(indices), model=model))


def test_seed_reindex_progress_gone_and_switch(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    c.apply(ev("", 1, switched=pb.IndexSwitched(model=A, seed=True)))
    c.apply(ev("", 2, switched=pb.IndexSwitched(model=B, seed=True)))  # a later seed loses
    assert c.active_model() == A
    ingested(c, "v", 3)
    ingested(c, "p", 1)
    ingested(c, "bad", 0)
    c.apply(ev("bad", 10, failed=pb.MediaFailed(reason="DECODE_ERROR")))
    ingested(c, "gone", 1)
    assert c.reindex_status() == pb.ReindexStatus(active_model=A, models=[A])

    c.apply(ev("", 100, reindex_requested=pb.ReindexRequested(model=B)))
    s = c.reindex_status()
    assert (s.target_model, s.items_total, s.items_done) == (B, 3, 0)
    assert c.reindex_complete() == ""
    # Frames of the new model do not touch the item's own progress (the active model's).
    c.apply(embedded("v", 110, [0, 1]))
    assert (c.get("v").frames_embedded, c.get("v").faces_found, c.get("v").state) == (3, 3, pb.MEDIA_STATE_DONE)
    c.apply(ev("v", 120, reread=pb.ItemReread(model=B, frame_count=3)))
    assert c.reindex_status().items_done == 0  # 2 of its 3 frames so far
    c.apply(embedded("v", 130, [2, 2]))  # a replayed frame counts once
    c.apply(embedded("p", 130, [0]))  # before its re-read is reported: the partitions' order
    c.apply(ev("p", 140, reread=pb.ItemReread(model=B, frame_count=1)))
    assert c.reindex_complete() == ""
    c.apply(ev("gone", 150, reread=pb.ItemReread(model=B, gone_reason="SOURCE_GONE", gone_detail="deleted")))
    s = c.reindex_status()
    assert (s.items_total, s.items_done) == (3, 2)
    assert [(m.media_id, m.uri, m.reason) for m in s.missing] == [("gone", "/in/gone.mp4", "SOURCE_GONE")]
    assert c.reindex_complete() == B

    c.apply(ev("", 200, switched=pb.IndexSwitched(model=B)))
    s = c.reindex_status()
    assert (s.active_model, s.target_model, s.last_model, list(s.models)) == (B, "", B, [A, B])
    assert (s.items_done, len(s.missing)) == (2, 1)  # the last reindex's report stays
    assert c.get("v").faces_found == 6  # now the new model's faces
    assert c.reindex_complete() == ""
    # New media after the switch are the active (new) model's own progress.
    c.apply(ev("n", 300, discovered=pb.MediaDiscovered(uri="/in/n.jpg", kind=pb.MEDIA_KIND_IMAGE)))
    c.apply(embedded("n", 300, [0]))
    c.apply(ev("n", 300, sampled=pb.MediaSampled(frame_count=1)))
    assert c.get("n").state == pb.MEDIA_STATE_DONE

    # Back to the first model: what an earlier reindex into it recorded does not count.
    c.apply(embedded("v", 50, [0, 1, 2], model=A))  # an old event, replayed late
    c.apply(ev("", 400, reindex_requested=pb.ReindexRequested(model=A)))
    s = c.reindex_status()
    assert (s.target_model, s.items_total, s.items_done) == (A, 4, 0)
    c.apply(ev("v", 60, reread=pb.ItemReread(model=A, frame_count=3)))  # stale: of before the request
    assert c.reindex_status().items_done == 0
    c.close()


def test_media_during_a_reindex_and_removals(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    c.apply(ev("", 1, switched=pb.IndexSwitched(model=A, seed=True)))
    c.apply(ev("", 100, reindex_requested=pb.ReindexRequested(model=B)))
    assert c.reindex_complete() == B  # nothing to re-read: an empty index switches at once
    c.apply(ev("new", 110, discovered=pb.MediaDiscovered(uri="/in/new.jpg", kind=pb.MEDIA_KIND_IMAGE)))
    assert c.reindex_status().items_total == 1 and c.reindex_complete() == ""
    c.apply(embedded("new", 120, [0], model=A))
    c.apply(embedded("new", 120, [0], model=B))
    c.apply(ev("new", 120, sampled=pb.MediaSampled(frame_count=1)))
    c.apply(ev("new", 121, reread=pb.ItemReread(model=B, frame_count=1)))
    assert (c.get("new").faces_found, c.reindex_complete()) == (2, B)
    c.apply(ev("busy", 130, discovered=pb.MediaDiscovered(uri="/in/busy.mp4", kind=pb.MEDIA_KIND_VIDEO)))
    assert c.reindex_complete() == ""  # an item still ingesting holds the switch
    c.apply(ev("busy", 140, removed=pb.MediaRemoved()))
    assert c.reindex_status().items_total == 1 and c.reindex_complete() == B
    c.close()


def test_index_view_folds_as_the_catalog_does() -> None:
    view = IndexView()
    assert view.models_for_new_media() == []
    view.apply(ev("", 1, switched=pb.IndexSwitched(model=A, seed=True)))
    view.apply(ev("", 2, switched=pb.IndexSwitched(model=B, seed=True)))
    assert view.models_for_new_media() == [A]
    assert view.apply(ev("", 3, reindex_requested=pb.ReindexRequested(model=B)))
    assert (view.models_for_new_media(), view.requested_at_ms) == ([A, B], 3)
    assert view.apply(ev("", 4, switched=pb.IndexSwitched(model=B)))
    assert (view.active, view.target, view.models_for_new_media()) == (B, "", [B])
    assert not view.apply(ev("", 5, switched=pb.IndexSwitched(model=B)))
