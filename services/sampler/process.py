"""`rvs sampler`: the sampler alone, publishing to Kafka (distributed mode)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from rvs.bus.kafka import KafkaEventPublisher, KafkaFramePublisher, ensure_topics
from rvs.metrics_http import MetricsEndpoint
from rvs.sampler.app import SamplerService
from rvs.sampler.config import SamplerSettings


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

    def start(self) -> None:
        self.metrics.start()
        ensure_topics(self.settings)
        self.frames = KafkaFramePublisher(self.settings)
        self.events = KafkaEventPublisher(self.settings)
        self.service = SamplerService(self.settings, self.frames, self.events, self.registry)
        self.service.start()

    def stop(self) -> None:
        if self.service:
            self.service.stop()  # a media item cut short is sampled again at the next start
        for client in (self.frames, self.events):
            if client:
                client.close()
        self.metrics.stop()
