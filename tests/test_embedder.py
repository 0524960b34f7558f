"""The embedder's delivery guarantees on the in-memory bus: a failed batch is delivered again, a frame
that keeps failing is set aside with its reason, and rows Milvus refuses do not stall the rest. Every
frame ends reported, so its media item reaches a final state. EmbedderService.process on its own
with a fake pipeline and an in-memory store; the rows Milvus refuses also on a real Milvus (slow)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.catalog import Catalog
from rvs.core.model_set import Loader
from rvs.core.store.faces import FaceStore, face_key
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings
from rvs.v1 import rvs_pb2 as pb

from fake_pipeline import DIM, FakePipeline, MemoryFaceStore, frame, photo_jpeg, reported, tiny
from recorder import Recorder, wait_for

MEDIA = "a" * 64
OTHER = "b" * 64


class DeadLetters(MemoryFrameBus):
    """The memory bus, keeping what is sent to the dead-letter path (the Kafka bus's topic)."""

    def __init__(self) -> None:
        super().__init__(capacity=100)
        self.dead: list[tuple[pb.Frame, str, str]] = []

    def dead_letter(self, frame: pb.Frame, reason: str, detail: str) -> None:
        self.dead.append((frame, reason, detail))


@dataclass
class Running:
    service: EmbedderService
    bus: DeadLetters
    events: Recorder
    registry: CollectorRegistry

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def frames_failed(self, reason: str) -> float:
        return self.metric("rvs_frames_failed_total", reason=reason)

    def dead(self) -> list[tuple[int, str]]:
        """(sample index, reason) of each frame sent to the dead-letter path."""
        return [(f.sample_index, reason) for f, reason, _ in self.bus.dead]


def embedder(
    pipeline: FakePipeline,
    store: FaceStore | MemoryFaceStore | None = None,
    load_model: Loader | None = None,
    **settings: object,
) -> Running:
    """An embedder over a memory bus (not started), writing to `store` (an in-memory one by default)."""
    fields: dict[str, object] = {"model": "dlib-resnet", "batch_size": 8, "max_wait_ms": 50} | settings
    bus, events, registry = DeadLetters(), Recorder(), CollectorRegistry()
    service = EmbedderService(
        EmbedderSettings(**fields),  # type: ignore[arg-type]
        bus,
        events,
        pipeline,  # type: ignore[arg-type]
        store or MemoryFaceStore(),  # type: ignore[arg-type]
        registry,
        load_model,
    )
    return Running(service, bus, events, registry)


def run_embedder(
    frames: list[pb.Frame], pipeline: FakePipeline, store: FaceStore | MemoryFaceStore | None = None, **settings: object
) -> Running:
    """Publish the frames on a memory bus and start an embedder on it (stopped by the caller)."""
    run = embedder(pipeline, store, **settings)
    for f in frames:
        run.bus.publish(f)
    run.service.start()
    return run


def drained(frames: list[pb.Frame], pipeline: FakePipeline, store: MemoryFaceStore, **settings: object) -> Running:
    """Run an embedder until it has processed every frame (stop drains the bus), as the loop does."""
    run = run_embedder(frames, pipeline, store, **settings)
    run.service.stop(drain_s=60)
    assert run.bus.pending() == 0
    return run


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
    image, speck = photo_jpeg(), photo_jpeg(size=(1, 1))  # a photo, and one of 1x1 pixels
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
    assert pipeline.calls == 8 and pipeline.sizes == [8, 8, 4, 4, 2, 1, 1, 2]
    assert run.frames_failed("EMBED_FAILED") == 1 and run.dead() == [(5, "EMBED_FAILED")]
    assert "ValueError: torch.cat()" in run.bus.dead[0][2]
    assert run.metric("rvs_frames_consumed_total") == 2 * 8  # delivered twice
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


# -- EmbedderService.process, on its own ------------------------------------------------------------


def frames_of(media_id: str, n: int, start: int = 0) -> list[pb.Frame]:
    return [frame(media_id, i, photo_jpeg(seed=i)) for i in range(start, start + n)]


def test_a_batch_is_embedded_indexed_and_reported() -> None:
    store, pipeline = MemoryFaceStore(), FakePipeline(faces=2)
    run = embedder(pipeline, store)
    batch = frames_of(MEDIA, 4) + frames_of(OTHER, 2)
    batch[1].scale = 2.0  # sampled at half size: boxes go back to the original's pixels
    assert run.service.process(batch) is True
    assert pipeline.sizes == [6]  # the whole batch through the pipeline at once
    assert store.keys(MEDIA) == sorted(face_key(MEDIA, i * 1000, face) for i in range(4) for face in range(2))
    assert store.count(OTHER) == 4
    row = store.rows[face_key(MEDIA, 1000, 1)]
    assert (row.uri, row.kind, row.time_ms, row.face_index, row.source) == (
        f"/inbox/{MEDIA}.mp4",
        pb.MEDIA_KIND_VIDEO,
        1000,
        1,
        "/inbox",
    )
    assert row.box == (0.0, 0.0, 500.0, 500.0) and row.vector.shape == (DIM,)
    assert [(e.media_id, e.embedded.model) for e in run.events.of("embedded")] == [(MEDIA, "fake"), (OTHER, "fake")]
    assert reported(run.events.events, MEDIA) == {i: (2, "") for i in range(4)}
    assert reported(run.events.events, OTHER) == {0: (2, ""), 1: (2, "")}
    assert run.dead() == []
    assert run.metric("rvs_frames_embedded_total") == 6 and run.metric("rvs_faces_detected_total") == 12


def test_a_frame_that_does_not_decode_goes_to_the_dead_letter_path_and_counts_as_processed(tmp_path: Path) -> None:
    store, pipeline = MemoryFaceStore(), FakePipeline(faces=1)
    run = embedder(pipeline, store)
    batch = frames_of(MEDIA, 3)
    batch[1].image = b"\xff\xd8 not a JPEG after all"
    assert run.service.process(batch) is True
    assert pipeline.sizes == [2]  # the undecodable frame never reaches the pipeline
    assert run.dead() == [(1, "DECODE_ERROR")]
    assert "frame 1 of " + MEDIA in run.bus.dead[0][2]
    assert reported(run.events.events, MEDIA) == {0: (1, ""), 1: (0, "DECODE_ERROR"), 2: (1, "")}
    assert store.keys(MEDIA) == [face_key(MEDIA, 0, 0), face_key(MEDIA, 2000, 0)]
    assert run.frames_failed("DECODE_ERROR") == 1 and run.metric("rvs_frames_embedded_total") == 2
    media = fold(run.events, tmp_path, {MEDIA: 3}).get(MEDIA)
    assert media is not None
    assert (media.state, media.frames_embedded, dict(media.frames_failed)) == (
        pb.MEDIA_STATE_DONE,
        3,
        {"DECODE_ERROR": 1},
    )


def test_with_one_try_a_failing_batch_is_halved_at_once() -> None:
    """max_batch_tries 1: the first try is the last, so it halves; every other frame is indexed once."""
    store = MemoryFaceStore()
    frames = frames_of(MEDIA, 8)
    frames[2].image = photo_jpeg(size=(1, 1))
    pipeline = FakePipeline(faces=1, poison=tiny)
    run = drained(frames, pipeline, store, max_batch_tries=1)
    assert pipeline.sizes == [8, 4, 2, 2, 1, 1, 4]  # never delivered again: [0-3] -> [0 1] [2 3] -> [2] [3]
    assert run.dead() == [(2, "EMBED_FAILED")] and store.upserts == [2, 1, 4] and store.count(MEDIA) == 7
    assert run.metric("rvs_frames_consumed_total") == 8


def test_a_failure_that_passes_is_outlived_by_the_last_try_without_losing_a_frame() -> None:
    """CUDA out of memory on both tries: the last try halves, the halves pass, nothing is set aside."""
    store, pipeline = MemoryFaceStore(), FakePipeline(faces=1, fail_first=2)
    run = drained(frames_of(MEDIA, 8), pipeline, store, max_batch_tries=2)
    assert pipeline.sizes == [8, 8, 4, 4]
    assert run.dead() == [] and store.count(MEDIA) == 8
    assert reported(run.events.events, MEDIA) == {i: (1, "") for i in range(8)}


def test_frames_of_a_removed_item_are_dropped_and_a_later_ingest_of_it_is_not() -> None:
    store, pipeline = MemoryFaceStore(), FakePipeline(faces=1)
    run = embedder(pipeline, store)
    run.service.media_removed(pb.MediaEvent(media_id=MEDIA, at_ms=100, removed=pb.MediaRemoved()))
    old = frames_of(MEDIA, 2)  # ingested at 1 ms, before the removal
    again = frames_of(MEDIA, 2, start=10)
    for f in again:
        f.ingested_at_ms = 200  # the same content found again later: a new ingest
    assert run.service.process(old + frames_of(OTHER, 1) + again) is True
    assert pipeline.sizes == [3]
    assert store.keys(MEDIA) == [face_key(MEDIA, 10_000, 0), face_key(MEDIA, 11_000, 0)]
    assert reported(run.events.events, MEDIA) == {10: (1, ""), 11: (1, "")}
    assert store.count(OTHER) == 1 and run.dead() == []


def test_an_item_removed_while_its_batch_is_in_flight_is_not_resurrected(caplog: pytest.LogCaptureFixture) -> None:
    """The removal arrives after the batch was checked and before its faces are written: they are
    written, then deleted again, and nothing is reported for the item; the others are kept."""
    store = MemoryFaceStore()

    class RemovedMeanwhile(FakePipeline):
        def analyse(self, images):  # type: ignore[no-untyped-def]
            run.service.media_removed(pb.MediaEvent(media_id=MEDIA, at_ms=100, removed=pb.MediaRemoved()))
            return super().analyse(images)

    run = embedder(RemovedMeanwhile(faces=1), store)
    with caplog.at_level(logging.INFO, logger="rvs.embedder.app"):
        assert run.service.process(frames_of(MEDIA, 3) + frames_of(OTHER, 2)) is True
    assert store.upserts == [5]  # written with the rest ...
    assert store.count(MEDIA) == 0 and store.count(OTHER) == 2  # ... and deleted again
    assert [e.media_id for e in run.events.events] == [OTHER]
    assert any("removed item again" in r.getMessage() for r in caplog.records)
    assert run.service.process(frames_of(MEDIA, 1, start=3)) is True  # its frames still in the bus
    assert store.count(MEDIA) == 0 and [e.media_id for e in run.events.events] == [OTHER]


def test_rows_the_store_refuses_are_set_aside_and_the_others_are_indexed() -> None:
    poison = "c" * 64
    store = MemoryFaceStore(refuse=lambda row: row.media_id == poison)
    run = embedder(FakePipeline(faces=2), store)
    assert run.service.process(frames_of(MEDIA, 3) + frames_of(poison, 1) + frames_of(OTHER, 2)) is True
    assert store.count(MEDIA) == 6 and store.count(OTHER) == 4 and store.count(poison) == 0
    assert reported(run.events.events, poison) == {0: (0, "STORE_REJECTED")}
    assert reported(run.events.events, MEDIA) == {i: (2, "") for i in range(3)}
    assert run.dead() == [(0, "STORE_REJECTED")] and run.metric("rvs_milvus_upsert_errors_total") >= 1


def test_milvus_away_for_a_while_is_waited_for() -> None:
    store = MemoryFaceStore(unavailable=1)
    run = embedder(FakePipeline(faces=1), store)
    t0 = time.monotonic()
    assert run.service.process(frames_of(MEDIA, 2)) is True
    assert time.monotonic() - t0 >= 0.5  # the first back-off
    assert store.upserts == [2, 2] and store.count(MEDIA) == 2
    assert run.metric("rvs_milvus_upsert_errors_total") == 1 and run.dead() == []


def test_stopped_while_milvus_is_away_the_batch_is_neither_reported_nor_committed() -> None:
    store = MemoryFaceStore(unavailable=10**6)
    run = run_embedder(frames_of(MEDIA, 3), FakePipeline(faces=1), store)
    wait_for(lambda: len(store.upserts) >= 1)
    run.service.stop(drain_s=0.2)
    assert run.events.events == [] and store.rows == {} and run.dead() == []
    run.bus.rewind()  # what a restart gets: the frames again
    assert run.bus.pending() == 3


def test_a_frame_for_two_models_is_indexed_in_both_collections_and_reported_for_each() -> None:
    """During a reindex the sampler names the models a frame is for; the other one loads on first need."""
    active, target = MemoryFaceStore(model="fake"), MemoryFaceStore(model="fake-2")
    loaded: list[str] = []

    def load(model: str) -> tuple[FakePipeline, MemoryFaceStore]:
        loaded.append(model)
        return FakePipeline(faces=1), target

    run = embedder(FakePipeline(faces=1), active, load)  # type: ignore[arg-type]
    both = frames_of(MEDIA, 1)[0]
    both.models[:] = ["fake", "fake-2"]
    assert run.service.process([both, *frames_of(OTHER, 1)]) is True
    assert loaded == ["fake-2"]
    assert (active.count(MEDIA), target.count(MEDIA), active.count(OTHER), target.count(OTHER)) == (1, 1, 1, 0)
    assert sorted((e.media_id, e.embedded.model) for e in run.events.of("embedded")) == [
        (MEDIA, "fake"),
        (MEDIA, "fake-2"),
        (OTHER, "fake"),
    ]
