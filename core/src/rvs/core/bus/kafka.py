"""Kafka transport for distributed mode (kafka-python against a real Apache Kafka broker).

Frames are keyed by (media id, sample index) so one long video spreads over every partition and
so over every embedder of the consumer group; events are keyed by media id so each media item's
events stay in order. The sampler's producer waits for acks=all; the embedder commits an offset
only after the faces of everything before it are written to Milvus and its events acknowledged,
and seeks back to redo a batch that failed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from rvs.core.bus.base import BusClosed, BusUnavailable
from rvs.core.config import BusSettings
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)
_HEARTBEAT_YIELD_S = 0.01

_ACK_TIMEOUT_S = 30.0  # how long commit() waits for the broker to acknowledge the dead letters


def ensure_topics(settings: BusSettings) -> None:
    """Create the topics if absent (partition count from the settings)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="rvs-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(settings.frames_topic, settings.partitions, 1),
            NewTopic(settings.events_topic, settings.partitions, 1),
            NewTopic(settings.dead_letter_topic, 1, 1),
            NewTopic(settings.alerts_topic, 1, 1),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another service was first
                admin.create_topics(missing)
                log.info("created topics %s", ", ".join(t.name for t in missing))
    finally:
        admin.close()


def _producer(settings: BusSettings) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        retries=2**31 - 1,
        delivery_timeout_ms=120_000,
        linger_ms=5,
        max_request_size=max(settings.max_frame_bytes + 64_000, 1_048_576),
    )


class _Acks:
    """What a producer sent that the broker has not acknowledged yet, and what it refused since the
    last check. Counted by callbacks, so a producer that is never checked keeps nothing."""

    def __init__(self, producer: KafkaProducer, what: str) -> None:
        self._producer = producer
        self._what = what
        self._lock = threading.Lock()
        self._unacked = 0
        self._refused = 0
        self._first_error: BaseException | None = None

    def track(self, future: FutureRecordMetadata) -> None:
        with self._lock:
            self._unacked += 1
        future.add_callback(self._acked).add_errback(self._failed)

    def _acked(self, _metadata: object) -> None:
        with self._lock:
            self._unacked -= 1

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self._unacked -= 1
            self._refused += 1
            self._first_error = self._first_error or error

    def check(self, timeout_s: float | None) -> None:
        """Wait up to `timeout_s` for every record sent so far; raise BusUnavailable unless every
        one was acknowledged (the refusals are forgotten: the caller sends them again)."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError as exc:
            raise BusUnavailable(f"{self._what} not acknowledged within {timeout_s}s: {exc}") from exc
        with self._lock:
            refused, error, unacked = self._refused, self._first_error, self._unacked
            self._refused, self._first_error = 0, None
        if refused or unacked:
            raise BusUnavailable(f"{refused + unacked} {self._what} not acknowledged: {error!r}")


class KafkaFramePublisher:
    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self._producer = _producer(settings)
        self._acks = _Acks(self._producer, "frames")

    def publish(self, frame: pb.Frame) -> None:
        value = frame.SerializeToString()
        # A file's frames spread over the embedders; a stream's stay on one partition, in order, so
        # one embedder follows each stream (its alerts are debounced there).
        key = (f"stream:{frame.stream}" if frame.stream else f"{frame.media_id}:{frame.sample_index}").encode()
        self._acks.track(self._producer.send(self.settings.frames_topic, key=key, value=value))

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the broker acknowledged every published frame; raise BusUnavailable if not."""
        self._acks.check(timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=10)


class KafkaEventPublisher:
    def __init__(self, settings: BusSettings) -> None:
        self.topic = settings.events_topic
        self._producer = _producer(settings)
        self._acks = _Acks(self._producer, "events")

    def publish(self, event: pb.MediaEvent) -> None:
        self._acks.track(self._producer.send(self.topic, key=event.media_id.encode(), value=event.SerializeToString()))

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the broker acknowledged every published event; raise BusUnavailable if not."""
        self._acks.check(timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=10)


class KafkaAlertPublisher:
    """Each alert, keyed by its id, on the alerts topic (the embedders' only other output)."""

    def __init__(self, settings: BusSettings) -> None:
        self.topic = settings.alerts_topic
        self._producer = _producer(settings)
        self._acks = _Acks(self._producer, "alerts")

    def publish(self, alert: pb.Alert) -> None:
        self._acks.track(self._producer.send(self.topic, key=alert.alert_id.encode(), value=alert.SerializeToString()))

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the broker acknowledged every published alert; raise BusUnavailable if not."""
        self._acks.check(timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=10)


class _Revocations(ConsumerRebalanceListener):
    def __init__(self, on_revoked: Callable[[set[TopicPartition]], None]) -> None:
        self._on_revoked = on_revoked

    def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        self._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))


class KafkaFrameConsumer:
    """One member of the embedders' consumer group."""

    def __init__(self, settings: BusSettings, on_lag: Callable[[dict[int, int]], None] | None = None) -> None:
        self.settings = settings
        self._on_lag = on_lag
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=600_000,  # a CPU batch can take minutes
            # Heartbeats come from a background thread that a busy CPU (torch holding the GIL) can
            # starve; 30 s, not 10, before the group gives a member up (Kafka's own default is 45 s).
            session_timeout_ms=30_000,
            # A topic created a moment ago has no partitions in the first metadata: look again soon
            # rather than after the default 5 minutes, so the group gets its partitions at once.
            metadata_max_age_ms=5_000,
            max_partition_fetch_bytes=max(settings.max_frame_bytes + 64_000, 1_048_576),
        )
        # The group leader assigns only the partitions its metadata knows: know them before joining,
        # or a just-created topic leaves some members with nothing until the next rebalance.
        deadline = time.monotonic() + 30
        while not self._consumer.partitions_for_topic(settings.frames_topic) and time.monotonic() < deadline:
            time.sleep(0.2)
        self._consumer.subscribe([settings.frames_topic], listener=_Revocations(self._revoked))
        self._dead_letters = _producer(settings)
        self._dead_letter_acks = _Acks(self._dead_letters, "dead letters")
        self._in_hand: dict[TopicPartition, int] = {}  # next offset to commit per partition
        self._first: dict[TopicPartition, int] = {}  # first offset polled since the last commit
        self._closed = False

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        # Whatever we hold for these partitions is redone by their next owner: do not commit it.
        for tp in partitions:
            self._in_hand.pop(tp, None)
            self._first.pop(tp, None)

    def poll(self, max_frames: int, max_wait_s: float) -> list[pb.Frame]:
        if self._closed:
            raise BusClosed("consumer closed")
        records = self._consumer.poll(timeout_ms=int(max_wait_s * 1000), max_records=max_frames)
        if not records:
            # kafka-python's poll spins while a heartbeat is due, re-taking the client lock the
            # heartbeat thread waits for; a pause between empty polls lets that thread send it.
            time.sleep(_HEARTBEAT_YIELD_S)
        frames = []
        for tp, batch in records.items():
            for record in batch:
                self._first.setdefault(tp, record.offset)
                self._in_hand[tp] = record.offset + 1
                try:
                    frames.append(pb.Frame.FromString(record.value))
                except Exception as exc:  # a message that is not a Frame: keep it, with the reason
                    log.error(
                        "frame at %s:%d is not a rvs.v1.Frame (%s); sent to %s",
                        tp.partition,
                        record.offset,
                        exc,
                        self.settings.dead_letter_topic,
                    )
                    self._send_dead_letter(record.key, record.value, "UNPARSEABLE_FRAME", str(exc))
        if self._on_lag is not None:
            self._on_lag(self.lag())
        return frames

    def _send_dead_letter(self, key: bytes | None, value: bytes, reason: str, detail: str) -> None:
        headers = [("reason", reason.encode()), ("error", detail.encode()[:500])]
        self._dead_letter_acks.track(
            self._dead_letters.send(self.settings.dead_letter_topic, key=key, value=value, headers=headers)
        )

    def dead_letter(self, frame: pb.Frame, reason: str, detail: str) -> None:
        """The frame goes to the dead-letter topic as it came, with `reason` and `detail` in headers."""
        # A file's frames spread over the embedders; a stream's stay on one partition, in order, so
        # one embedder follows each stream (its alerts are debounced there).
        key = (f"stream:{frame.stream}" if frame.stream else f"{frame.media_id}:{frame.sample_index}").encode()
        self._send_dead_letter(key, frame.SerializeToString(), reason, detail)

    def commit(self) -> None:
        """Commit the offsets in hand once the dead letters are acknowledged; raise BusUnavailable
        (nothing committed) if they are not or the commit fails."""
        if not self._in_hand:
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._in_hand.items()}
        self._dead_letter_acks.check(_ACK_TIMEOUT_S)
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced while this batch ran: its new owner redoes it (upserts are idempotent).
            log.warning("commit refused after a rebalance (%s); the batch will be redone", exc)
        except KafkaError as exc:
            raise BusUnavailable(f"commit failed: {exc}") from exc
        self._in_hand.clear()
        self._first.clear()

    def rewind(self) -> None:
        """Seek back to the first frame polled since the last commit, so the next poll() returns the
        batch again (and commit() does not commit it meanwhile)."""
        assigned = self._consumer.assignment()
        for tp, offset in self._first.items():
            if tp in assigned:
                self._consumer.seek(tp, offset)
        self._in_hand.clear()
        self._first.clear()

    def lag(self) -> dict[int, int]:
        """Messages behind the end of each assigned partition, from the last fetch (no round trip)."""
        lags = {}
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is not None:
                lags[tp.partition] = max(0, end - self._consumer.position(tp))
        return lags

    def close(self) -> None:
        self._closed = True
        self._consumer.close()  # leaves the group, so the others take over at once
        self._dead_letters.close(timeout=10)


class EventFollower:
    """Folds the events topic, from its start, into a service's state: the query service's catalog,
    the removals the sampler and the embedders act on."""

    def __init__(self, settings: BusSettings, apply: Callable[[pb.MediaEvent], None]) -> None:
        self._apply = apply
        self.topic = settings.events_topic
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,  # every instance reads every event
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_caught_up(self, timeout_s: float = 60.0) -> bool:
        """Wait until every event that was in the topic at start is folded; False on timeout."""
        if not self._caught_up.wait(timeout_s):
            log.warning("events topic %s not read to its end within %.0fs; going on", self.topic, timeout_s)
        return self._caught_up.is_set()

    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    def _assign(self) -> dict[TopicPartition, int]:
        """Every partition of the topic, from the beginning; returns the end offsets at start."""
        while not (partitions := self._consumer.partitions_for_topic(self.topic)):
            if self._stop.wait(0.2):
                return {}
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        return dict(self._consumer.end_offsets(tps))

    def _run(self) -> None:
        ends: dict[TopicPartition, int] | None = None
        while not self._stop.is_set():
            try:
                if ends is None:
                    ends = self._assign()
                for batch in self._consumer.poll(timeout_ms=500).values():
                    for record in batch:
                        self._apply(pb.MediaEvent.FromString(record.value))
                if not self._caught_up.is_set() and all(self._consumer.position(tp) >= e for tp, e in ends.items()):
                    self._caught_up.set()
            except Exception:  # keep following; a bad record must not stop the catalog
                log.exception("applying media events failed")
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
