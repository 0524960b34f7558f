"""Embedded mode: sampler, embedder and query service in one process, joined by an in-memory bus,
with an embedded Milvus server. The same service classes run in distributed mode over Kafka.
`rvs up --once` runs it until what the watched folder and bucket hold is ingested (live streams
never end: --once refuses them)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field, model_validator

from rvs.core.alerts.watchlist import is_watch_event
from rvs.core.bus import removal
from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.catalog import Catalog
from rvs.core.clock import Clock, now_ms
from rvs.core.config import check_agree
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.index_view import check_model, is_index_event, seed, switched
from rvs.core.lifecycle import Component, InOrder, Part
from rvs.core.logs import media_log
from rvs.core.metrics_http import MetricsEndpoint
from rvs.core.model_set import ModelSet, model_loader
from rvs.core.store.embedded_milvus import embedded_milvus
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
    event (reindex, switch) reaches every service, and a watch-list event (a watch, the named
    people, an alert raised) the embedder. When a reindex is complete, the switch is published
    here, where the catalog that knows it is."""

    def __init__(self, catalog: Catalog, delete_faces: Callable[[str], int]) -> None:
        self.catalog = catalog
        self.delete_faces = delete_faces
        self.on_removed: list[Callable[[pb.MediaEvent], None]] = []
        self.on_index: list[Callable[[pb.MediaEvent], None]] = []
        self.on_watch: list[Callable[[pb.MediaEvent], None]] = []

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
            elif is_watch_event(event):
                for fold in self.on_watch:
                    fold(event)
        self.switch_if_complete()

    def switch_if_complete(self) -> None:
        if model := self.catalog.reindex_complete():
            log.info("reindex into %s complete: switching searches to it", model)
            self.publish(switched(model))

    def remove_media(self, media_id: str, expired: bool = False) -> int:
        """DeleteMedia (and retention, `expired`): the removal as an event, like the sampler's; the
        faces removed."""
        return self.remove(removal(media_id, expired))

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


class EmbeddedSettings(BaseModel):
    """`rvs up`'s settings: each service's own, which must agree on every field they share (one
    data_dir, one model, one Milvus); the values they share are read from `shared`."""

    sampler: SamplerSettings
    embedder: EmbedderSettings
    query: QuerySettings
    bus_capacity: int = Field(64, ge=1)  # frames held between the sampler and the embedder

    @model_validator(mode="after")
    def _parts_agree(self) -> EmbeddedSettings:
        check_agree({"sampler": self.sampler, "embedder": self.embedder, "query": self.query})
        return self

    @property
    def shared(self) -> QuerySettings:
        """Where one value serves every part (the data folder, Milvus, the index's model)."""
        return self.query


class EmbeddedApp:
    """Embedded mode as parts started in order and stopped in reverse (`parts`): a stop takes work
    in last (health, then the sampler), drains the embedder, then closes the index and the catalog."""

    def __init__(self, settings: EmbeddedSettings, clock: Clock = now_ms) -> None:
        """`clock`: the time retention measures ages from (a test's clock)."""
        self.settings = settings
        self.clock = clock
        shared = settings.shared
        self.registry = CollectorRegistry()
        self.metrics = MetricsEndpoint(self.registry, shared.metrics_host, shared.metrics_port)
        self.milvus = embedded_milvus(shared)
        self.uri = shared.milvus_uri or (self.milvus.uri if self.milvus else "")
        self.catalog = Catalog(shared.data_dir / "catalog.db")
        # The query service exists once its part has started; a removal before then has no faces to delete.
        self.events = LocalEvents(self.catalog, lambda media_id: self.query.delete_faces(media_id) if self.query else 0)
        self.bus = MemoryFrameBus(settings.bus_capacity)
        # Each service owns its model, as in distributed mode: a search never waits behind a batch.
        self.embed_pipeline = FacePipeline(settings.embedder)
        self.query_pipeline = FacePipeline(settings.query)
        self.store: FaceStore | None = None
        self.sampler: SamplerService | None = None
        self.embedder: EmbedderService | None = None
        self.query: QueryService | None = None
        self._progress_stop = threading.Event()
        self.parts = InOrder(
            [
                Part("catalog", stop=self.catalog.close),  # opened above, closed last
                Part("metrics", self.metrics.start, self.metrics.stop),
                *([Part("milvus", self.milvus.start, self.milvus.stop)] if self.milvus else []),
                Part("index", self._open_index, self._close_index),
                Part("services", self._build_services, self._close_models),
                _built("query", lambda: self.query),  # listening; NOT_SERVING until `serving`
                Part("bus", stop=self.bus.close),
                _built("embedder", lambda: self.embedder),  # its stop drains the bus, the sampler stopped
                _built("sampler", lambda: self.sampler),
                Part("serving", self._serve, self._unserve),
                Part("progress", self._start_progress, self._progress_stop.set),
            ]
        )
        self._stopped = False

    def start(self) -> None:
        self.parts.start()

    def healthy(self) -> bool:
        return self.parts.healthy()

    def stop(self) -> None:
        """Stop taking work, drain what is in flight, then close everything in order."""
        if self._stopped:
            return
        self._stopped = True
        log.info("stopping: draining in-flight work")
        self.parts.stop()
        log.info("stopped")

    # -- the parts, in order

    def _open_index(self) -> None:
        """The index's model settled in the catalog, both pipelines loaded, the store opened."""
        self._settle_model()
        self.embed_pipeline.load()
        self.query_pipeline.load()
        self.store = open_face_store(
            self.settings.shared, self.uri, self.query_pipeline.model_name, self.query_pipeline.dim
        )

    def _close_index(self) -> None:
        if self.store is not None:
            self.store.close()

    def _settle_model(self) -> None:
        """The index's model: recorded in the catalog, or seeded on a fresh index (with the model of
        a collection rvs made before per-model collections, else RVS_MODEL); RVS_MODEL must be it."""
        shared = self.settings.shared
        if not self.catalog.active_model():
            self.catalog.apply(seed(legacy_model(shared, self.uri) or shared.model))
        check_model(shared.model, self.catalog.active_model())

    def _build_services(self) -> None:
        """The three services, each told of the others' removals and index events, and of the index
        as the catalog knows it."""
        assert self.store is not None
        s = self.settings
        self.query = QueryService(
            self._query_settings(),
            self.query_pipeline,
            self.store,
            self.catalog,
            self.registry,
            remove_media=self.events.remove_media,
            models=ModelSet((self.query_pipeline, self.store), model_loader(s.query, self.uri)),
            publish=self.events.publish,
            clock=self.clock,
        )
        self.embedder = EmbedderService(
            s.embedder,
            self.bus,
            self.events,
            self.embed_pipeline,
            self.store,
            self.registry,
            load_model=model_loader(s.embedder, self.uri),
        )
        self.sampler = SamplerService(s.sampler, self.bus, self.events, self.registry)
        self.events.on_removed += [self.sampler.media_removed, self.embedder.media_removed]
        self.events.on_index += [self.sampler.index_event, self.embedder.index_switched, self.query.index_event]
        self.events.on_watch.append(self.embedder.watch_event)
        # The watch list, the named people and each track's last alert, as the catalog kept them.
        for event in self.catalog.watch_events():
            self.embedder.watch_event(event)
        for event in self._index_events():
            self.sampler.index_event(event)
            self.query.index_event(event)
        # Frames of these were in memory when rvs last stopped: sample files again, close segments.
        unfinished = self.catalog.unfinished()
        self.sampler.close_cut_segments([m for m in unfinished if m.stream])
        self.sampler.requeue({m.media_id for m in unfinished if not m.stream})
        self.sampler.reread_again(self.catalog.reindex_undone())

    def _close_models(self) -> None:
        for service in (self.query, self.embedder):
            if service is not None:
                service.models.close()

    def _serve(self) -> None:
        assert self.query is not None
        self.query.ready()
        self.events.switch_if_complete()  # a reindex that completed just before rvs stopped

    def _unserve(self) -> None:
        if self.query is not None:
            self.query.not_ready()

    def _start_progress(self) -> None:
        threading.Thread(target=self._report_progress, name="progress", daemon=True).start()

    # --

    def _index_events(self) -> list[pb.MediaEvent]:
        """The index as the catalog knows it: its model and a running reindex."""
        events = [pb.MediaEvent(switched=pb.IndexSwitched(model=self.catalog.active_model()))]
        if target := self.catalog.reindex_target():
            at = self.catalog.reindex_requested_at()
            events.append(pb.MediaEvent(at_ms=at, reindex_requested=pb.ReindexRequested(model=target)))
        return events

    def _query_settings(self) -> QuerySettings:
        """The query settings, with the watched folder and the streams' recordings among those the
        search page serves files from."""
        query, sampler = self.settings.query, self.settings.sampler
        folders = tuple(d for d in (sampler.watch_dir, sampler.recording_dir) if d is not None)
        if not folders:
            return query
        return query.model_copy(update={"web_media_dirs": (*query.web_media_dirs, *folders)})

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

    def idle(self) -> bool:
        """Every source scanned, and nothing queued or in progress."""
        return (
            self.sampler is not None
            and self.sampler.caught_up()
            and self.bus.pending() == 0
            and not self.catalog.has_unfinished()
        )

    def wait_idle(self, timeout_s: float) -> bool:
        """True once idle (used by tests and `rvs eval`), False if it was not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.2)
        return False

    def run_once(self, stopping: threading.Event) -> int:
        """`rvs up --once`, once started: wait until what the sources hold is ingested (0), a signal
        came (0: a clean stop all the same) or a part stopped working (1)."""
        while not stopping.wait(0.2):
            if self.idle():
                log.info("everything in the sources is ingested: stopping (--once)")
                return 0
            if not self.healthy():
                log.error("stopping: %s stopped working", ", ".join(self.parts.unhealthy()))
                return 1
        return 0


def _built(name: str, get: Callable[[], Component | None]) -> Part:
    """The part of a service that an earlier part builds (it needs the index): started, stopped and
    asked whether it is healthy once it exists."""

    def start() -> None:
        service = get()
        assert service is not None
        service.start()

    def stop() -> None:
        if (service := get()) is not None:
            service.stop()

    def healthy() -> bool:
        return (service := get()) is not None and service.healthy()

    return Part(name, start, stop, healthy)
