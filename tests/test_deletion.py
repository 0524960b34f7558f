"""DeleteMedia is a removal event that every service folds: the embedder drops the item's frames
(a batch in flight included), the sampler stops its ingest, the catalog stays deleted across
restarts; a new copy of the content is ingested again. Real Milvus, real dlib model."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.faces.pipeline import Analysis, FacePipeline
from rvs.core.store.faces import FaceStore
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings
from rvs.v1 import rvs_pb2 as pb

from conftest import free_port, lfw, shared
from corpus import BUSH, POWELL, search
from embedded_app import settings, start
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video
from recorder import Recorder, wait_for

pytestmark = pytest.mark.e2e


class GatedPipeline:
    """The real pipeline, held at a gate: a batch stays in flight for as long as the test wants."""

    def __init__(self, pipeline: FacePipeline) -> None:
        self.pipeline = pipeline
        self.entered = threading.Event()
        self.go = threading.Event()

    def analyse(self, images: list[np.ndarray]) -> Analysis:
        self.entered.set()
        self.go.wait(60)
        return self.pipeline.analyse(images)


def photo_frame(media_id: str, ingested_at_ms: int, photo: Path) -> pb.Frame:
    return pb.Frame(
        media_id=media_id,
        uri=f"/inbox/{media_id}.jpg",
        kind=pb.MEDIA_KIND_IMAGE,
        image=photo.read_bytes(),
        encoding=pb.FRAME_ENCODING_JPEG,
        width=250,
        height=250,
        scale=1.0,
        source="/inbox",
        ingested_at_ms=ingested_at_ms,
    )


def removal(media_id: str, at_ms: int) -> pb.MediaEvent:
    return pb.MediaEvent(media_id=media_id, at_ms=at_ms, removed=pb.MediaRemoved())


@pytest.fixture
def store(milvus_uri: str, collection_name: str) -> Iterator[FaceStore]:
    s = FaceStore(milvus_uri, collection_name, "dlib-resnet", 128, consistency="Strong")
    s.open()
    yield s
    s.client.drop_collection(collection_name)
    s.close()


def test_embedder_drops_frames_of_removed_media_even_in_flight(store: FaceStore) -> None:
    settings = EmbedderSettings(model="dlib-resnet", batch_size=1, max_wait_ms=50)
    real = FacePipeline(settings)
    real.load()
    gated = GatedPipeline(real)
    bus, events = MemoryFrameBus(), Recorder()
    service = EmbedderService(settings, bus, events, gated, store, CollectorRegistry())  # type: ignore[arg-type]
    service.start()
    try:
        bus.publish(photo_frame("m", 1_000, lfw(POWELL, 1)))
        assert gated.entered.wait(30)
        # Removed while its batch is in flight: the remover deletes the faces before they are written.
        service.media_removed(removal("m", 2_000))
        assert store.delete_media("m") == 0
        gated.go.set()
        bus.publish(photo_frame("other", 1_000, lfw(BUSH, 1)))
        wait_for(lambda: any(e.media_id == "other" for e in events.of("embedded")), 60)
        assert store.count("m") == 0, "a batch in flight wrote faces of a removed item"
        # A late frame of the removed ingest is dropped; a new copy ingested after the removal is not.
        bus.publish(photo_frame("m", 1_500, lfw(POWELL, 1)))
        bus.publish(photo_frame("m", 3_000, lfw(POWELL, 1)))
        wait_for(lambda: any(e.media_id == "m" for e in events.of("embedded")), 60)
        assert [e.embedded.face_counts for e in events.of("embedded") if e.media_id == "m"] == [[1]]
        assert store.count("m") == 1
    finally:
        gated.go.set()
        service.stop(drain_s=5)


def test_embedded_delete_stops_ingest_and_survives_restart(tmp_path: Path, milvus_uri: str) -> None:
    watch, data = tmp_path / "watch", tmp_path / "data"
    watch.mkdir()
    shutil.copy(lfw(POWELL, 1), watch / "powell.jpg")
    # A long clip with a face in every sample: it is still being sampled and embedded when deleted.
    background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (640, 360))
    face = lfw(BUSH, 2)
    appears = scene(background, [Appearance(face, 0, 300, x=200, y=60)], {face: load_rgb(face, (250, 250))})
    write_video(watch / "long.mp4", appears, cfr_times(300, 1), rate=1, gop=10, options={"preset": "ultrafast"})
    s = settings(watch, data, free_port(), free_port(), milvus_uri, f"del_{int(time.time())}")
    r = start(s, watch)
    store = r.app.store
    assert store is not None
    try:
        by_name = lambda: {Path(m.uri).name: m for m in r.stub.ListMedia(pb.ListMediaRequest()).media}  # noqa: E731
        wait_for(lambda: by_name().get("long.mp4", pb.Media()).frames_embedded >= 2, 120)
        long = by_name()["long.mp4"]
        assert long.state in (pb.MEDIA_STATE_SAMPLING, pb.MEDIA_STATE_EMBEDDING)
        assert r.stub.DeleteMedia(pb.DeleteMediaRequest(media_id=long.media_id)).faces_removed >= 2
        assert r.app.wait_idle(120)
        published = r.app.registry.get_sample_value("rvs_frames_published_total")
        assert published is not None and published < 250, "the sampler kept sampling a deleted video"
        assert store.count(long.media_id) == 0, "frames of the deleted video were written after the delete"
        photo = by_name()["powell.jpg"]
        assert photo.state == pb.MEDIA_STATE_DONE
        assert r.stub.DeleteMedia(pb.DeleteMediaRequest(media_id=photo.media_id)).faces_removed == 1
        assert search(r.stub, lfw(POWELL, 2)).images == []
    finally:
        r.channel.close()
        r.app.stop()

    r = start(s, watch)  # a restart: nothing resumed, nothing found again by the rescans
    store = r.app.store
    assert store is not None
    try:
        time.sleep(3)
        assert r.app.wait_idle(30)
        media = {Path(m.uri).name: m for m in r.stub.ListMedia(pb.ListMediaRequest()).media}
        assert {n: m.state for n, m in media.items()} == {
            "powell.jpg": pb.MEDIA_STATE_DELETED,
            "long.mp4": pb.MEDIA_STATE_DELETED,
        }
        assert not r.app.registry.get_sample_value("rvs_frames_published_total")
        assert store.count(media["long.mp4"].media_id) == 0 and store.count(media["powell.jpg"].media_id) == 0
        # A new copy of the photo is a new ingest.
        shutil.copy(lfw(POWELL, 1), watch / "powell-again.jpg")
        wait_for(lambda: r.stub.GetMedia(pb.GetMediaRequest(media_id=photo.media_id)).state == pb.MEDIA_STATE_DONE, 60)
        again = r.stub.GetMedia(pb.GetMediaRequest(media_id=photo.media_id))
        assert (Path(again.uri).name, again.faces_found) == ("powell-again.jpg", 1)
        assert [Path(i.uri).name for i in search(r.stub, lfw(POWELL, 2)).images] == ["powell-again.jpg"]
    finally:
        r.channel.close()
        r.app.stop()
