"""`rvs embedder`: one member of the embedders' consumer group (distributed mode)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from rvs.core.alerts.watchlist import is_watch_event
from rvs.core.bus.kafka import (
    EventFollower,
    KafkaAlertPublisher,
    KafkaEventPublisher,
    KafkaFrameConsumer,
    ensure_topics,
)
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.index_view import IndexView, check_model, seed
from rvs.core.logs import media_log
from rvs.core.metrics_http import MetricsEndpoint
from rvs.core.model_set import model_loader
from rvs.core.store.faces import FaceStore, StoreUnavailable, legacy_model, open_face_store
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


class EmbedderProcess:
    def __init__(self, settings: EmbedderSettings) -> None:
        if not settings.kafka_bootstrap or not settings.milvus_uri:
            raise ValueError("rvs embedder needs RVS_KAFKA_BOOTSTRAP and RVS_MILVUS_URI (or run `rvs up`)")
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = MetricsEndpoint(self.registry, settings.metrics_host, settings.metrics_port)
        self.pipeline = FacePipeline(settings)
        self.service: EmbedderService | None = None
        self.consumer: KafkaFrameConsumer | None = None
        self.events: KafkaEventPublisher | None = None
        self.alerts: KafkaAlertPublisher | None = None
        self.store: FaceStore | None = None
        self.follower: EventFollower | None = None
        self.index = IndexView()

    def start(self) -> None:
        self.metrics.start()
        self.pipeline.load()
        self.store = open_face_store(
            self.settings, self.settings.milvus_uri, self.pipeline.model_name, self.pipeline.dim
        )
        ensure_topics(self.settings)
        self.events = KafkaEventPublisher(self.settings)
        self.alerts = KafkaAlertPublisher(self.settings)
        self.consumer = KafkaFrameConsumer(self.settings, on_lag=lambda lags: self._set_lag(lags))
        self.service = EmbedderService(
            self.settings,
            self.consumer,
            self.events,
            self.pipeline,
            self.store,
            self.registry,
            load_model=model_loader(self.settings, self.settings.milvus_uri),
            alerts=self.alerts,
        )
        self.follower = EventFollower(self.settings, self._fold)
        self.follower.start()
        self.follower.wait_caught_up()  # no frame of an item removed before this start is written
        if not self.index.active:  # a fresh index: the first service to start records its model
            self.events.publish(seed(legacy_model(self.settings, self.settings.milvus_uri) or self.settings.model))
            self.events.flush(30)
        check_model(self.settings.model, self.index.active or self.settings.model)
        self.service.start()

    def _fold(self, event: pb.MediaEvent) -> None:
        if self.index.apply(event) and self.service is not None:
            self.service.index_switched(event)
        if is_watch_event(event) and self.service is not None:
            self.service.watch_event(event)  # from the topic's start: the watch list survives restarts
        if not event.HasField("removed") or self.service is None or self.store is None:
            return
        self.service.media_removed(event)
        if not self.follower or not self.follower.caught_up():
            return  # removed before this embedder started: it has written nothing of it
        # This embedder may have written a batch of it after the remover deleted its faces and
        # before this event arrived: delete again (a no-op when there was none).
        try:
            self.service.delete_media(event.media_id)
        except StoreUnavailable as exc:
            log.error("could not delete the faces of a removed item: %s", exc, extra=media_log(event.media_id))

    def _set_lag(self, lags: dict[int, int]) -> None:
        if self.service:
            self.service.metrics.set_lag(lags)

    def healthy(self) -> bool:
        return self.service is not None and self.service.healthy()

    def stop(self) -> None:
        if self.follower:
            self.follower.stop()
        if self.service:
            self.service.stop(drain_s=0)  # finish the batch in hand and commit it; the rest stays in Kafka
        if self.events:  # every committed batch's events are flushed already; the rest is redone
            self.events.close()
        if self.alerts:
            self.alerts.close()
        if self.consumer:
            self.consumer.close()
        if self.store:
            self.store.close()
        self.metrics.stop()
