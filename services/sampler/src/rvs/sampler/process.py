"""`rvs sampler`: the sampler alone, publishing to Kafka (distributed mode)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from rvs.core.bus.kafka import EventFollower, KafkaEventPublisher, KafkaFramePublisher, ensure_topics
from rvs.core.index_view import is_index_event
from rvs.core.metrics_http import MetricsEndpoint
from rvs.sampler.app import SamplerService
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb


class SamplerProcess:
    def __init__(self, settings: SamplerSettings) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("rvs sampler needs Kafka: set RVS_KAFKA_BOOTSTRAP (or run everything with `rvs up`)")
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = MetricsEndpoint(self.registry, settings.metrics_host, settings.metrics_port)
        self.frames: KafkaFramePublisher | None = None
        self.events: KafkaEventPublisher | None = None
        self.service: SamplerService | None = None
        self.follower: EventFollower | None = None

    def start(self) -> None:
        self.metrics.start()
        ensure_topics(self.settings)
        self.frames = KafkaFramePublisher(self.settings)
        self.events = KafkaEventPublisher(self.settings)
        self.service = SamplerService(self.settings, self.frames, self.events, self.registry)
        self.follower = EventFollower(self.settings, self._fold)
        self.follower.start()
        self.follower.wait_caught_up()  # removals made while it was down: not resumed
        self.service.start()

    def _fold(self, event: pb.MediaEvent) -> None:
        if self.service is None:
            return
        if event.HasField("removed"):
            self.service.media_removed(event)
        elif is_index_event(event):  # a reindex to run (planned once caught up, at start), a switch
            self.service.index_event(event)

    def healthy(self) -> bool:
        return self.service is not None and self.service.healthy()

    def stop(self) -> None:
        if self.follower:
            self.follower.stop()
        if self.service:
            self.service.stop()  # a media item cut short is sampled again at the next start
        for client in (self.frames, self.events):
            if client:
                client.close()
        self.metrics.stop()
