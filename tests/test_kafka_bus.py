"""The Kafka transport against a real broker."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from rvs.bus.kafka import KafkaEventPublisher, KafkaFrameConsumer, KafkaFramePublisher, ensure_topics
from rvs.config import BusSettings
from rvs.v1 import rvs_pb2 as pb


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
