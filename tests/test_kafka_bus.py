"""The Kafka transport against a real broker."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import CollectorRegistry

from rvs.core.bus import BusUnavailable
from rvs.core.bus.kafka import KafkaEventPublisher, KafkaFrameConsumer, KafkaFramePublisher, ensure_topics
from rvs.core.config import BusSettings
from rvs.core.store.faces import FaceStore
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings
from rvs.v1 import rvs_pb2 as pb

from fake_pipeline import DIM, FakePipeline, photo_jpeg, reported, tiny
from fake_pipeline import frame as fake_frame
from recorder import wait_for


@pytest.fixture
def bus(kafka_bootstrap: str) -> BusSettings:
    tag = uuid.uuid4().hex[:8]
    settings = BusSettings(
        kafka_bootstrap=kafka_bootstrap,
        frames_topic=f"frames-{tag}",
        events_topic=f"events-{tag}",
        dead_letter_topic=f"dlq-{tag}",
        consumer_group=f"group-{tag}",
        partitions=4,
    )
    ensure_topics(settings)
    ensure_topics(settings)  # idempotent
    return settings


def frame(media: str, i: int) -> pb.Frame:
    return pb.Frame(media_id=media, sample_index=i, time_ms=i * 1000, image=b"x" * 100)


def drain(consumer: KafkaFrameConsumer, expected: int) -> list[pb.Frame]:
    got: list[pb.Frame] = []
    for _ in range(100):
        got += consumer.poll(50, 0.2)
        if len(got) >= expected:
            break
    return got


def test_frames_spread_over_partitions_and_commits_resume(bus: BusSettings) -> None:
    publisher = KafkaFramePublisher(bus)
    for i in range(40):
        publisher.publish(frame("video", i))
    publisher.flush(30)

    consumer = KafkaFrameConsumer(bus)
    first = drain(consumer, 40)
    assert sorted(f.sample_index for f in first) == list(range(40))
    assert len({tp.partition for tp in consumer._consumer.assignment()}) == 4
    consumer.commit()
    consumer.close()

    for i in range(40, 45):
        publisher.publish(frame("video", i))
    publisher.flush(30)
    publisher.close()
    again = KafkaFrameConsumer(bus)
    rest = drain(again, 5)
    assert sorted(f.sample_index for f in rest) == list(range(40, 45))  # committed frames are not redelivered
    uncommitted = KafkaFrameConsumer(bus)  # same group: nothing new while `again` holds the partitions
    again.close()  # ... which it gives back uncommitted: they are redone
    assert sorted(f.sample_index for f in drain(uncommitted, 5)) == list(range(40, 45))
    uncommitted.close()


def test_garbage_goes_to_the_dead_letter_topic(bus: BusSettings) -> None:
    producer = KafkaProducer(bootstrap_servers=bus.kafka_bootstrap)
    producer.send(bus.frames_topic, key=b"k", value=b"\xff\xfenot a protobuf")
    producer.flush()
    producer.close()
    consumer = KafkaFrameConsumer(bus)
    for _ in range(150):
        assert consumer.poll(10, 0.2) == []  # nothing parseable arrives...
        if consumer._in_hand:  # ... but the record was taken, and will be committed
            break
    assert consumer._in_hand
    consumer.commit()
    consumer.close()
    dlq = KafkaConsumer(
        bus.dead_letter_topic,
        bootstrap_servers=bus.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    records = list(dlq)
    dlq.close()
    assert len(records) == 1 and dict(records[0].headers)["reason"] == b"UNPARSEABLE_FRAME"


def test_events_are_keyed_by_media(bus: BusSettings) -> None:
    events = KafkaEventPublisher(bus)
    for i in range(6):
        events.publish(pb.MediaEvent(media_id="m1", embedded=pb.FramesEmbedded(sample_indices=[i], face_counts=[1])))
    events.flush(30)
    events.close()
    reader = KafkaConsumer(
        bus.events_topic,
        bootstrap_servers=bus.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    records = list(reader)
    reader.close()
    assert len({r.partition for r in records}) == 1  # one media's events stay in order
    assert [pb.MediaEvent.FromString(r.value).embedded.sample_indices[0] for r in records] == list(range(6))


def committed(bus: BusSettings) -> int:
    """Frames the embedders' group has committed, over every partition of the frames topic."""
    reader = KafkaConsumer(bootstrap_servers=bus.kafka_bootstrap, group_id=bus.consumer_group, enable_auto_commit=False)
    partitions = reader.partitions_for_topic(bus.frames_topic) or set()
    total = sum(reader.committed(TopicPartition(bus.frames_topic, p)) or 0 for p in partitions)
    reader.close()
    return total


def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    reader = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    records = list(reader)
    reader.close()
    return records


def refuse_events(bus: BusSettings, refuse: bool) -> None:
    """Make the broker refuse (or accept again) every event: a record limit below any event's size."""
    limit = "64" if refuse else "1048588"
    admin = KafkaAdminClient(bootstrap_servers=bus.kafka_bootstrap)
    try:
        if refuse:
            topic = NewTopic(bus.events_topic, 1, 1, topic_configs={"max.message.bytes": limit})
            admin.create_topics([topic])
        else:
            resource = ConfigResource(ConfigResourceType.TOPIC, bus.events_topic, configs={"max.message.bytes": limit})
            admin.alter_configs([resource])
    finally:
        admin.close()


def test_rewind_delivers_the_uncommitted_frames_again(bus: BusSettings) -> None:
    publisher = KafkaFramePublisher(bus)
    for i in range(12):
        publisher.publish(frame("video", i))
    publisher.flush(30)
    consumer = KafkaFrameConsumer(bus)
    assert sorted(f.sample_index for f in drain(consumer, 12)) == list(range(12))
    consumer.rewind()  # the batch failed: it comes again, and commit() has nothing of it to commit
    consumer.commit()
    assert sorted(f.sample_index for f in drain(consumer, 12)) == list(range(12))
    consumer.commit()
    consumer.close()
    assert committed(bus) == 12
    publisher.publish(frame("video", 12))
    publisher.flush(30)
    publisher.close()
    again = KafkaFrameConsumer(bus)
    assert [f.sample_index for f in drain(again, 1)] == [12]
    again.close()


def test_event_publisher_flush_fails_when_the_broker_refuses_an_event(kafka_bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    bus = BusSettings(kafka_bootstrap=kafka_bootstrap, events_topic=f"events-{tag}", consumer_group=f"group-{tag}")
    refuse_events(bus, refuse=True)
    events = KafkaEventPublisher(bus)
    events.publish(pb.MediaEvent(media_id="m" * 64, embedded=pb.FramesEmbedded(sample_indices=[0], face_counts=[1])))
    with pytest.raises(BusUnavailable, match="1 events not acknowledged"):
        events.flush(30)
    events.flush(30)  # a refusal is reported once; nothing is left in flight
    events.close()


def embedder_over_kafka(bus: BusSettings, pipeline: FakePipeline, **settings: object) -> EmbedderService:
    fields: dict[str, object] = {"model": "dlib-resnet", "batch_size": 8, "max_wait_ms": 200} | settings
    embedder_settings = EmbedderSettings(**bus.model_dump(), **fields)  # type: ignore[arg-type]
    consumer = KafkaFrameConsumer(embedder_settings)
    events = KafkaEventPublisher(embedder_settings)
    # Without faces nothing is written: the store is never called, so it need not be reachable.
    store = FaceStore("http://127.0.0.1:9", "unused", "fake", DIM)
    service = EmbedderService(embedder_settings, consumer, events, pipeline, store, CollectorRegistry())  # type: ignore[arg-type]
    service.start()
    return service


def stop(service: EmbedderService) -> None:
    service.stop(drain_s=0)
    service.events.close()  # type: ignore[attr-defined]
    service.frames.close()


def test_embedder_redelivers_a_failed_batch_and_dead_letters_a_frame_that_keeps_failing(bus: BusSettings) -> None:
    media = "c" * 64
    image, speck = photo_jpeg(), photo_jpeg(size=(1, 1))
    publisher = KafkaFramePublisher(bus)
    for i in range(10):
        publisher.publish(fake_frame(media, i, speck if i == 4 else image))
    publisher.flush(30)
    publisher.close()
    # The first batch fails once (e.g. CUDA out of memory); a batch with the 1x1 frame fails every time.
    service = embedder_over_kafka(bus, FakePipeline(fail_first=1, poison=tiny), max_batch_tries=2)
    try:
        wait_for(lambda: committed(bus) == 10, timeout_s=60)
    finally:
        stop(service)
    events = [pb.MediaEvent.FromString(r.value) for r in read_all(bus.kafka_bootstrap, bus.events_topic)]
    assert reported(events, media) == {i: (0, "EMBED_FAILED" if i == 4 else "") for i in range(10)}
    [dead] = read_all(bus.kafka_bootstrap, bus.dead_letter_topic)
    assert dict(dead.headers)["reason"] == b"EMBED_FAILED"
    assert b"torch.cat()" in dict(dead.headers)["error"]
    assert pb.Frame.FromString(dead.value).sample_index == 4  # the frame itself, to replay later


def test_frames_are_committed_only_once_their_events_are_acknowledged(bus: BusSettings) -> None:
    tag = uuid.uuid4().hex[:8]
    bus = bus.model_copy(update={"events_topic": f"refusing-{tag}"})
    refuse_events(bus, refuse=True)
    media = "d" * 64
    publisher = KafkaFramePublisher(bus)
    for i in range(4):
        publisher.publish(fake_frame(media, i, photo_jpeg()))
    publisher.flush(30)
    publisher.close()
    pipeline = FakePipeline()
    service = embedder_over_kafka(bus, pipeline)
    try:
        wait_for(lambda: pipeline.calls >= 2 or committed(bus) > 0, timeout_s=90)
        assert committed(bus) == 0  # processed, but its events not acknowledged: not committed, done again
        refuse_events(bus, refuse=False)  # the broker takes events again: the batch is done and committed
        wait_for(lambda: committed(bus) == 4, timeout_s=90)
    finally:
        stop(service)
    events = [pb.MediaEvent.FromString(r.value) for r in read_all(bus.kafka_bootstrap, bus.events_topic)]
    assert reported(events, media) == {i: (0, "") for i in range(4)}
