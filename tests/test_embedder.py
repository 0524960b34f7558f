"""The embedder's delivery guarantees on the in-memory bus: a failed batch is delivered again, a frame
that keeps failing is set aside with its reason, and rows Milvus refuses (real Milvus) do not stall
the rest. Every frame ends reported, so its media item reaches a final state."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.catalog import Catalog
from rvs.core.store.faces import FaceStore
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings
from rvs.v1 import rvs_pb2 as pb

from fake_pipeline import DIM, FakePipeline, frame, photo_jpeg, reported, tiny
from recorder import Recorder, wait_for

MEDIA = "a" * 64


@dataclass
class Running:
    service: EmbedderService
    events: Recorder
    registry: CollectorRegistry

    def frames_failed(self, reason: str) -> float:
        return self.registry.get_sample_value("rvs_frames_failed_total", {"reason": reason}) or 0.0


def run_embedder(
    frames: list[pb.Frame], pipeline: FakePipeline, store: FaceStore | None = None, **settings: object
) -> Running:
    """Publish the frames on a memory bus and start an embedder on it (stopped by the caller)."""
    bus = MemoryFrameBus(capacity=100)
    for f in frames:
        bus.publish(f)
    fields: dict[str, object] = {"model": "dlib-resnet", "batch_size": 8, "max_wait_ms": 50} | settings
    # Without faces nothing is written: the store is never called, so it need not be reachable.
    store = store or FaceStore("http://127.0.0.1:9", "unused", "fake", DIM)
    events, registry = Recorder(), CollectorRegistry()
    settings_ = EmbedderSettings(**fields)  # type: ignore[arg-type]
    service = EmbedderService(settings_, bus, events, pipeline, store, registry)  # type: ignore[arg-type]
    service.start()
    return Running(service, events, registry)


def fold(events: Recorder, tmp_path: Path, frame_counts: dict[str, int]) -> Catalog:
    """The catalog the query service would fold from these events (after discovery and sampling)."""
    catalog = Catalog(tmp_path / "catalog.db")
    for media_id, n in frame_counts.items():
        catalog.apply(
            pb.MediaEvent(media_id=media_id, discovered=pb.MediaDiscovered(uri=f"/inbox/{media_id}.mp4", kind=2))
        )
        catalog.apply(pb.MediaEvent(media_id=media_id, sampled=pb.MediaSampled(frame_count=n)))
    for event in events.events:
        catalog.apply(event)
    return catalog


def test_memory_bus_rewind_puts_the_batch_back_first() -> None:
    bus = MemoryFrameBus(capacity=10)
    for i in range(6):
        bus.publish(pb.Frame(media_id="m", sample_index=i))
    assert [f.sample_index for f in bus.poll(3, 0)] == [0, 1, 2]
    bus.rewind()
    assert bus.pending() == 6
    assert [f.sample_index for f in bus.poll(4, 0)] == [0, 1, 2, 3]
    bus.commit()
    bus.rewind()  # nothing since the commit: nothing comes back
    assert [f.sample_index for f in bus.poll(10, 0)] == [4, 5]


def test_a_failed_batch_is_delivered_again_not_lost() -> None:
    image = photo_jpeg()
    pipeline = FakePipeline(fail_first=1)  # the first batch raises once (e.g. CUDA out of memory)
    run = run_embedder([frame(MEDIA, i, image) for i in range(8)], pipeline)
    try:
        wait_for(lambda: len(reported(run.events.events, MEDIA)) == 8)
    finally:
        run.service.stop()
    assert reported(run.events.events, MEDIA) == {i: (0, "") for i in range(8)}
    assert pipeline.calls == 2
    assert run.frames_failed("EMBED_FAILED") == 0


def test_a_frame_that_keeps_failing_is_set_aside_and_the_others_are_processed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image, speck = photo_jpeg(), photo_jpeg(size=(1, 1))  # a real photo, and the same shrunk to 1x1
    frames = [frame(MEDIA, i, speck if i == 5 else image) for i in range(8)]
    pipeline = FakePipeline(poison=tiny)  # raises on any batch holding the 1x1 frame, as MTCNN did
    with caplog.at_level(logging.ERROR, logger="rvs.embedder.app"):
        run = run_embedder(frames, pipeline, max_batch_tries=2)
        try:
            wait_for(lambda: len(reported(run.events.events, MEDIA)) == 8, timeout_s=30)
        finally:
            run.service.stop()
    assert reported(run.events.events, MEDIA) == {i: (0, "EMBED_FAILED" if i == 5 else "") for i in range(8)}
    # try 1: the batch; try 2, the last: the batch, then halves down to the bad frame (4, 4, 2, 1, 1, 2)
    assert pipeline.calls == 8
    assert run.frames_failed("EMBED_FAILED") == 1
    assert any("frame 5 of" in r.getMessage() and "EMBED_FAILED" in r.getMessage() for r in caplog.records)
    media = fold(run.events, tmp_path, {MEDIA: 8}).get(MEDIA)
    assert media is not None
    assert (media.state, media.frames_embedded, dict(media.frames_failed)) == (
        pb.MEDIA_STATE_DONE,
        8,
        {"EMBED_FAILED": 1},
    )


@pytest.fixture
def store(milvus_uri: str, collection_name: str) -> Iterator[FaceStore]:
    s = FaceStore(milvus_uri, collection_name, "fake", DIM, consistency="Strong")
    s.open()
    yield s
    s.drop()
    s.close()


def test_a_row_milvus_refuses_is_set_aside_and_the_others_are_indexed(store: FaceStore, tmp_path: Path) -> None:
    image = photo_jpeg()
    poison = "b" * 65  # Milvus's media_id field holds 64 characters: it refuses the row (invalid parameter)
    frames = [frame(MEDIA, i, image) for i in range(6)] + [frame(poison, 0, image)]
    run = run_embedder(frames, FakePipeline(faces=2), store)
    try:
        wait_for(
            lambda: len(reported(run.events.events, MEDIA)) == 6 and len(reported(run.events.events, poison)) == 1,
            timeout_s=60,
        )
    finally:
        run.service.stop()
    assert reported(run.events.events, MEDIA) == {i: (2, "") for i in range(6)}
    assert reported(run.events.events, poison) == {0: (0, "STORE_REJECTED")}
    assert store.count(MEDIA) == 12
    assert run.frames_failed("STORE_REJECTED") == 1
    catalog = fold(run.events, tmp_path, {MEDIA: 6, poison: 1})
    good, bad = catalog.get(MEDIA), catalog.get(poison)
    assert good is not None and bad is not None
    assert (good.state, good.faces_found, dict(good.frames_failed)) == (pb.MEDIA_STATE_DONE, 12, {})
    assert (bad.state, bad.faces_found, dict(bad.frames_failed)) == (pb.MEDIA_STATE_DONE, 0, {"STORE_REJECTED": 1})


def test_a_uri_of_4096_multibyte_characters_does_not_stall_the_embedder(store: FaceStore) -> None:
    """Milvus's max_length counts bytes: such a uri is refused unless the store cuts it to fit. Either
    way the embedder goes on and every frame is reported, indexed or set aside with the reason."""
    image = photo_jpeg()
    uri = "/inbox/" + "é" * (4096 - len("/inbox/.mp4")) + ".mp4"
    frames = [frame(MEDIA, i, image, uri=uri) for i in range(3)]
    run = run_embedder(frames, FakePipeline(faces=1), store)
    try:
        wait_for(lambda: len(reported(run.events.events, MEDIA)) == 3, timeout_s=60)
    finally:
        run.service.stop()
    outcome = reported(run.events.events, MEDIA)
    assert outcome in ({i: (1, "") for i in range(3)}, {i: (0, "STORE_REJECTED") for i in range(3)})
    assert store.count(MEDIA) == (3 if outcome[0][1] == "" else 0)
