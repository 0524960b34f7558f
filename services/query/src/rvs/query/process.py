"""`rvs query`: the query service alone. With Kafka it also keeps a catalog of every media item by
following the events topic, so ListMedia/GetMedia work in distributed mode."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from rvs.core.bus import removal
from rvs.core.bus.kafka import EventFollower, KafkaEventPublisher, ensure_topics
from rvs.core.catalog import Catalog
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.index_view import check_model, is_index_event, seed, switched
from rvs.core.metrics_http import MetricsEndpoint
from rvs.core.model_set import ModelSet, model_loader
from rvs.core.store.embedded_milvus import embedded_milvus
from rvs.core.store.faces import FaceStore, legacy_model, open_face_store
from rvs.query.app import QueryService
from rvs.query.config import QuerySettings
from rvs.v1 import rvs_pb2 as pb

_ACK_TIMEOUT_S = 30.0  # DeleteMedia waits this long for the broker to record the removal


class QueryProcess:
    def __init__(self, settings: QuerySettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = MetricsEndpoint(self.registry, settings.metrics_host, settings.metrics_port)
        self.milvus = embedded_milvus(settings)
        self.catalog: Catalog | None = None
        self.follower: EventFollower | None = None
        self.removals: KafkaEventPublisher | None = None
        self.service: QueryService | None = None
        self.store: FaceStore | None = None

    def start(self) -> None:
        s = self.settings
        self.metrics.start()
        if self.milvus:
            self.milvus.start()
        uri = s.milvus_uri or (self.milvus.uri if self.milvus else "")
        if s.kafka_bootstrap:
            ensure_topics(s)
            self.catalog = Catalog(s.data_dir / "query-catalog.db")
            self.follower = EventFollower(s, self._fold)
            self.follower.start()
            self.removals = KafkaEventPublisher(s)
            self.follower.wait_caught_up()  # a restarted service answers with every removal folded
            if not self.catalog.active_model():  # a fresh index (or one made before reindexing)
                self._publish(seed(legacy_model(s, uri) or s.model))
            check_model(s.model, self.catalog.active_model())
        pipeline = FacePipeline(s)
        pipeline.load()
        self.store = open_face_store(s, uri, pipeline.model_name, pipeline.dim)
        remove = self._remove_media if self.removals else None
        models = ModelSet((pipeline, self.store), model_loader(s, uri))
        publish = self._publish if self.removals else None
        self.service = QueryService(
            s, pipeline, self.store, self.catalog, self.registry, remove_media=remove, models=models, publish=publish
        )
        self.service.start()
        if self.catalog is not None and (active := self.catalog.active_model()) != pipeline.model_name:
            self.service.index_event(switched(active))  # switched while this service was loading
        self.service.ready()
        if self.follower is not None and (model := self.catalog.reindex_complete() if self.catalog else ""):
            self._publish(switched(model))  # completed while no query service was there to switch

    def _fold(self, event: pb.MediaEvent) -> None:
        """Every event into the catalog; an index-wide one to the service; a reindex found complete
        is switched to (by every query replica that finds it: a repeated switch folds to nothing).
        Only once caught up: before, the catalog misses items whose events are yet to be read."""
        assert self.catalog is not None
        self.catalog.apply(event)
        if is_index_event(event) and self.service is not None:
            self.service.index_event(event)
        if self.follower is not None and self.follower.caught_up() and (model := self.catalog.reindex_complete()):
            self._publish(switched(model))

    def _publish(self, event: pb.MediaEvent) -> None:
        """An index-wide event on the events topic, recorded before it is folded here at once."""
        assert self.removals is not None and self.catalog is not None
        self.removals.publish(event)
        self.removals.flush(_ACK_TIMEOUT_S)  # BusUnavailable if the broker did not record it
        self.catalog.apply(event)
        if self.service is not None:
            self.service.index_event(event)

    def _remove_media(self, media_id: str, expired: bool = False) -> int:
        """DeleteMedia (and retention, `expired`): recorded on the events topic first (the sampler
        stops the ingest, embedders drop its frames, every query replica and restart folds it), then
        the faces are deleted."""
        assert self.removals is not None and self.catalog is not None and self.store is not None
        event = removal(media_id, expired)
        self.removals.publish(event)
        self.removals.flush(_ACK_TIMEOUT_S)  # BusUnavailable if the broker did not record it
        self.catalog.apply(event)  # at once for this caller; the follower folds it again, to no effect
        return self.store.delete_media(media_id)

    def healthy(self) -> bool:
        return self.service is not None and self.service.healthy()

    def stop(self) -> None:
        if self.service:
            self.service.stop()
        if self.follower:
            self.follower.stop()
        if self.removals:
            self.removals.close()
        if self.catalog:
            self.catalog.close()
        if self.service:
            self.service.models.close()
        if self.store:
            self.store.close()
        if self.milvus:
            self.milvus.stop()
        self.metrics.stop()
