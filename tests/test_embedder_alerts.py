"""The embedder raising alerts (fast: a fake pipeline, an in-memory store and bus): a watched face's
AlertRaised with its box, still and time, published with the batch's progress; one per track; again,
with the same id, when the batch is redone; unknown faces where the stream asks; the watch-list events
routed to the embedder in embedded mode."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from rvs.cli.embedded import LocalEvents
from rvs.core.alerts.engine import alert_id
from rvs.core.bus import BusUnavailable
from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.catalog import Catalog
from rvs.core.media.frames import decode_frame
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings
from rvs.embedder.process import EmbedderProcess
from rvs.v1 import rvs_pb2 as pb

from fake_pipeline import FakePipeline, MemoryFaceStore, frame, photo_jpeg
from recorder import Recorder

MEDIA = "a" * 64
MODEL = "sface"  # the fake store's model: its threshold is the registry's


class Alerts:
    """An AlertPublisher that keeps what it is given (the alerts topic)."""

    def __init__(self) -> None:
        self.alerts: list[pb.Alert] = []

    def publish(self, alert: pb.Alert) -> None:
        self.alerts.append(alert)

    def flush(self, timeout_s: float | None = None) -> None:
        """Kept as published."""


class Unacknowledged(Recorder):
    """Events kept as published, but the first `refusals` flushes say the broker did not acknowledge them."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def flush(self, timeout_s: float | None = None) -> None:
        if self.refusals:
            self.refusals -= 1
            raise BusUnavailable("events not acknowledged within 30s")


def service(
    events: Recorder | None = None, **settings: object
) -> tuple[EmbedderService, Recorder, Alerts, CollectorRegistry]:
    events, alerts, registry = events or Recorder(), Alerts(), CollectorRegistry()
    fields: dict[str, object] = {"model": MODEL, "batch_size": 8, "max_wait_ms": 50} | settings
    embedder = EmbedderService(
        EmbedderSettings(**fields),  # type: ignore[arg-type]
        MemoryFrameBus(100),
        events,
        FakePipeline(faces=1),  # type: ignore[arg-type]
        MemoryFaceStore(model=MODEL),  # type: ignore[arg-type]
        registry,
        alerts=alerts,
    )
    return embedder, events, alerts, registry


def vector_of(image: bytes) -> list[float]:
    """The vector the fake pipeline gives the face of this picture, as the sampler sends it."""
    decoded = decode_frame(frame(MEDIA, 0, image))
    return [float(v) for v in FakePipeline(faces=1).analyse([decoded]).vectors[0][0]]


def watch(watch_id: str, image: bytes, kind: int = pb.WATCH_KIND_ALERT) -> pb.MediaEvent:
    # The fake's vectors are all-positive, so different pictures are alike: only the same is a match.
    entry = pb.Watch(watch_id=watch_id, name="Ada", kind=kind, threshold=0.9999)  # type: ignore[arg-type]
    template = pb.WatchTemplate(model=MODEL, vector=vector_of(image))
    return pb.MediaEvent(watch_added=pb.WatchAdded(watch=entry, templates=[template]))


def raised(events: Recorder) -> list[pb.Alert]:
    return [e.alert_raised.alert for e in events.of("alert_raised")]


def video(watched: bytes, other: bytes, scale: float = 1.0, stream: str = "") -> list[pb.Frame]:
    """Ten seconds with the watched person, then five with somebody else."""
    frames = [frame(MEDIA, i, watched if i < 10 else other) for i in range(15)]
    for f in frames:
        f.scale, f.ingested_at_ms = scale, 1_700_000_000_000
        f.stream, f.source = stream, f"stream:{stream}" if stream else f.source
    return frames


def test_a_watched_face_raises_one_alert_with_its_box_still_and_time() -> None:
    watched, other = photo_jpeg(seed=1), photo_jpeg(seed=2)
    assert float(np.dot(vector_of(watched), vector_of(other))) < 0.9999
    embedder, events, topic, registry = service()
    embedder.watch_event(watch("w1", watched))
    for f in video(watched, other, scale=2.0):
        embedder.frames.publish(f)  # type: ignore[attr-defined]
    embedder.start()
    embedder.stop(drain_s=30)
    alerts = raised(events)
    assert len(alerts) == 1 and topic.alerts == alerts
    a = alerts[0]
    assert (a.kind, a.watch_id, a.name, a.media_id, a.model) == (pb.ALERT_KIND_WATCH, "w1", "Ada", MEDIA, MODEL)
    assert (a.time_ms, a.seen_at_ms, a.source, a.uri) == (0, 1_700_000_000_000, "/inbox", f"/inbox/{MEDIA}.mp4")
    assert (a.box.x1, a.box.y1, a.box.x2, a.box.y2) == (0, 0, 500, 500)  # 250 px frame at scale 2
    assert a.score == pytest.approx(1.0, abs=1e-5) and a.alert_id == alert_id("w1", MEDIA, 0, 0)
    assert a.raised_at_ms >= 1_700_000_000_000
    with Image.open(io.BytesIO(a.still)) as still:
        assert still.format == "JPEG" and max(still.size) <= 160
    # Index-wide, in the batch's events, after the progress of the frame that raised it.
    event = events.of("alert_raised")[0]
    assert event.media_id == "" and events.events.index(event) > events.events.index(events.of("embedded")[0])
    assert registry.get_sample_value("rvs_alerts_raised_total", {"kind": "watch"}) == 1


def test_a_batch_redone_raises_its_alert_again_with_the_same_id() -> None:
    watched, other = photo_jpeg(seed=1), photo_jpeg(seed=2)
    embedder, events, _, _ = service(Unacknowledged(refusals=1))
    embedder.watch_event(watch("w1", watched))
    for f in video(watched, other):
        embedder.frames.publish(f)  # type: ignore[attr-defined]
    embedder.start()
    embedder.stop(drain_s=30)
    ids = [a.alert_id for a in raised(events)]
    assert ids == [alert_id("w1", MEDIA, 0, 0)] * 2  # the first batch's commit failed: redone


def test_a_deleted_or_muted_watch_raises_nothing_and_unknown_faces_alert_where_asked() -> None:
    watched, other = photo_jpeg(seed=1), photo_jpeg(seed=2)
    embedder, events, _, registry = service()
    embedder.watch_event(watch("w1", watched))
    embedder.watch_event(pb.MediaEvent(watch_deleted=pb.WatchDeleted(watch_id="w1")))
    embedder.watch_event(watch("me", other, kind=pb.WATCH_KIND_MUTE))
    frames = video(watched, other, stream="door")
    for f in frames:
        f.alert_unknown = True
    assert embedder.process(frames[:8]) and embedder.process(frames[8:])
    # The watched person is nobody now: one unknown alert for the track; the muted one never.
    assert [(a.kind, a.time_ms, a.source) for a in raised(events)] == [(pb.ALERT_KIND_UNKNOWN, 0, "stream:door")]
    assert registry.get_sample_value("rvs_alerts_raised_total", {"kind": "unknown"}) == 1


def test_an_alert_raised_before_a_restart_is_not_raised_again() -> None:
    watched, other = photo_jpeg(seed=1), photo_jpeg(seed=2)
    before, events, _, _ = service()
    before.watch_event(watch("w1", watched))
    frames = video(watched, other, stream="door")
    assert before.process(frames[:4])
    after, replay, _, _ = service()
    for event in [watch("w1", watched), *events.of("alert_raised")]:
        after.watch_event(event)  # the events topic from its start
    assert after.process(frames) and raised(replay) == []


def test_embedded_mode_routes_watch_events_to_the_embedder(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    try:
        local = LocalEvents(catalog, lambda _: 0)
        folded: list[str] = []
        local.on_watch.append(lambda e: folded.append(e.WhichOneof("event")))
        local.on_index.append(lambda e: folded.append("index:" + e.WhichOneof("event")))
        for event in (
            watch("w1", photo_jpeg(seed=1)),
            pb.MediaEvent(watch_deleted=pb.WatchDeleted(watch_id="w1")),
            pb.MediaEvent(known_people=pb.KnownPeople(model=MODEL)),
            pb.MediaEvent(alert_raised=pb.AlertRaised(alert=pb.Alert(alert_id="x"))),
            pb.MediaEvent(switched=pb.IndexSwitched(model=MODEL)),
        ):
            local.publish(event)
        assert folded == ["watch_added", "watch_deleted", "known_people", "alert_raised", "index:switched"]
    finally:
        catalog.close()


def test_distributed_mode_folds_watch_events_from_the_events_topic() -> None:
    process = EmbedderProcess(
        EmbedderSettings(kafka_bootstrap="127.0.0.1:9", milvus_uri="http://127.0.0.1:9", model=MODEL, detector="yunet")
    )
    process.service, events, _, _ = service()
    watched = photo_jpeg(seed=1)
    process._fold(watch("w1", watched))  # as EventFollower hands it over
    assert process.service.alerting.watches.models() == {MODEL}
    assert process.service.process([frame(MEDIA, 0, watched)]) and len(raised(events)) == 1
    process._fold(pb.MediaEvent(watch_deleted=pb.WatchDeleted(watch_id="w1")))
    assert process.service.alerting.watches.models() == set()
