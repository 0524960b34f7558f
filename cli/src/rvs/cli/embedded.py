"""Embedded mode: sampler, embedder and query service in one process, joined by an in-memory bus,
with an embedded Milvus server. The same service classes run in distributed mode over Kafka."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from rvs.core.bus import removal
from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.catalog import Catalog
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.index_view import check_model, is_index_event, seed, switched
from rvs.core.logs import media_log
from rvs.core.metrics_http import MetricsEndpoint
from rvs.core.model_set import ModelSet, model_loader
from rvs.core.store.embedded_milvus import EmbeddedMilvus
from rvs.core.store.faces import FaceStore, StoreUnavailable, legacy_model, open_face_store
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings
from rvs.query.app import QueryService
from rvs.query.config import QuerySettings
from rvs.sampler.app import SamplerService
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


class LocalEvents:
    """The in-process event path: every event is folded into the catalog; a removal also reaches the
    sampler and the embedder (which stop its ingest), then its faces leave the index; an index-wide
    event (reindex, switch) reaches every service. When a reindex is complete, the switch is
    published here, where the catalog that knows it is."""

    def __init__(self, catalog: Catalog, delete_faces: Callable[[str], int]) -> None:
        self.catalog = catalog
        self.delete_faces = delete_faces
        self.on_removed: list[Callable[[pb.MediaEvent], None]] = []
        self.on_index: list[Callable[[pb.MediaEvent], None]] = []

    def publish(self, event: pb.MediaEvent) -> None:
        if event.HasField("removed"):
            try:
                self.remove(event)
            except StoreUnavailable:
                log.exception("could not remove faces from the index", extra=media_log(event.media_id))
        else:
            self.catalog.apply(event)
            if is_index_event(event):
                for fold in self.on_index:
                    fold(event)
        self.switch_if_complete()

    def switch_if_complete(self) -> None:
        if model := self.catalog.reindex_complete():
            log.info("reindex into %s complete: switching searches to it", model)
            self.publish(switched(model))

    def remove_media(self, media_id: str) -> int:
        """DeleteMedia: the removal as an event, like the sampler's; the faces removed."""
        return self.remove(removal(media_id))

    def remove(self, event: pb.MediaEvent) -> int:
        # Every service knows of the removal before the faces go, so a batch the embedder upserts
        # meanwhile is caught by its check after the upsert.
        self.catalog.apply(event)
        for fold in self.on_removed:
            fold(event)
        removed = self.delete_faces(event.media_id)
        log.info("removed %d faces from the index", removed, extra=media_log(event.media_id))
        return removed

    def flush(self, timeout_s: float | None = None) -> None:
        """Events are applied as they are published: nothing to wait for."""


@dataclass
class EmbeddedSettings:
    sampler: SamplerSettings
    embedder: EmbedderSettings
    query: QuerySettings
    bus_capacity: int = 64


class EmbeddedApp:
    def __init__(self, settings: EmbeddedSettings) -> None:
        self.settings = settings
        common = settings.query
        self.registry = CollectorRegistry()
        self.metrics = MetricsEndpoint(self.registry, common.metrics_host, common.metrics_port)
        self.milvus = (
            None
            if common.milvus_uri
            else EmbeddedMilvus(common.data_dir / "milvus", common.milvus_port, common.milvus_isolate)
        )
        self.catalog = Catalog(common.data_dir / "catalog.db")
        self.bus = MemoryFrameBus(settings.bus_capacity)
        # Each service owns its model, as in distributed mode: a search never waits behind a batch.
        self.embed_pipeline = FacePipeline(settings.embedder)
        self.query_pipeline = FacePipeline(settings.query)
        self.store: FaceStore | None = None
        self.sampler: SamplerService | None = None
        self.embedder: EmbedderService | None = None
        self.query: QueryService | None = None
        self._progress_stop = threading.Event()
        self._stopped = False

    def start(self) -> None:
        s = self.settings
        self.metrics.start()
        if self.milvus is not None:
            self.milvus.start()
        uri = s.query.milvus_uri or (self.milvus.uri if self.milvus else "")
        self._settle_model(uri)
        self.embed_pipeline.load()
        self.query_pipeline.load()
        self.store = open_face_store(s.query, uri, self.query_pipeline.model_name, self.query_pipeline.dim)
        query_models = ModelSet((self.query_pipeline, self.store), model_loader(s.query, uri))
        # Set once the query service exists; a removal before then has no faces to delete.
        events = LocalEvents(self.catalog, lambda media_id: self.query.delete_faces(media_id) if self.query else 0)
        self.query = QueryService(
            self._query_settings(),
            self.query_pipeline,
            self.store,
            self.catalog,
            self.registry,
            remove_media=events.remove_media,
            models=query_models,
            publish=events.publish,
        )
        self.query.start()
        self.embedder = EmbedderService(
            s.embedder,
            self.bus,
            events,
            self.embed_pipeline,
            self.store,
            self.registry,
            load_model=model_loader(s.embedder, uri),
        )
        self.sampler = SamplerService(s.sampler, self.bus, events, self.registry)
        events.on_removed += [self.sampler.media_removed, self.embedder.media_removed]
        events.on_index += [self.sampler.index_event, self.embedder.index_switched, self.query.index_event]
        for event in self._index_events():  # the index as the catalog knows it, for every service
            self.sampler.index_event(event)
            self.query.index_event(event)
        # Frames of these were in memory when rvs last stopped: sample them again.
        self.sampler.requeue({m.media_id for m in self.catalog.unfinished()})
        self.sampler.reread_again(self.catalog.reindex_undone())
        self.embedder.start()
        self.sampler.start()
        self.query.ready()
        events.switch_if_complete()  # a reindex that completed just before rvs stopped
        threading.Thread(target=self._report_progress, name="progress", daemon=True).start()

    def _settle_model(self, uri: str) -> None:
        """The index's model: recorded in the catalog, or seeded on a fresh index (with the model of
        a collection rvs made before per-model collections, else RVS_MODEL); RVS_MODEL must be it."""
        configured = self.settings.query.model
        if not self.catalog.active_model():
            self.catalog.apply(seed(legacy_model(self.settings.query, uri) or configured))
        check_model(configured, self.catalog.active_model())

    def _index_events(self) -> list[pb.MediaEvent]:
        events = [pb.MediaEvent(switched=pb.IndexSwitched(model=self.catalog.active_model()))]
        if target := self.catalog.reindex_target():
            at = self.catalog.reindex_requested_at()
            events.append(pb.MediaEvent(at_ms=at, reindex_requested=pb.ReindexRequested(model=target)))
        return events

    def _query_settings(self) -> QuerySettings:
        """The query settings, with the watched folder among those the search page serves files from."""
        query, watch = self.settings.query, self.settings.sampler.watch_dir
        if watch is None:
            return query
        return query.model_copy(update={"web_media_dirs": (*query.web_media_dirs, watch)})

    def _report_progress(self, every_s: float = 5.0) -> None:
        """A line per media item in progress, so long work is visible in the log."""
        while not self._progress_stop.wait(every_s):
            for m in self.catalog.unfinished():
                total = str(m.frames_sampled) + ("" if m.sampling_complete else "+")
                log.info(
                    "progress %s: %s, sampled %s, embedded %d, faces %d",
                    m.uri,
                    pb.MediaState.Name(m.state).removeprefix("MEDIA_STATE_").lower(),
                    total,
                    m.frames_embedded,
                    m.faces_found,
                    extra=media_log(m.media_id),
                )

    def wait_idle(self, timeout_s: float) -> bool:
        """True once nothing is queued or in progress (used by tests and `rvs up --once`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sampler and self.sampler.idle() and self.bus.pending() == 0 and not self.catalog.has_unfinished():
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        """Stop taking work, drain what is in flight, then close everything in order."""
        if self._stopped:
            return
        self._stopped = True
        log.info("stopping: draining in-flight work")
        self._progress_stop.set()
        if self.query:
            self.query.server.set_serving(False)
        if self.sampler:
            self.sampler.stop()
        if self.embedder:
            self.embedder.stop()
        self.bus.close()
        if self.query:
            self.query.stop()
            self.query.models.close()
        if self.embedder:
            self.embedder.models.close()
        if self.store:
            self.store.close()
        if self.milvus:
            self.milvus.stop()
        self.catalog.close()
        self.metrics.stop()
        log.info("stopped")
