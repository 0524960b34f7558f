"""QueryService: model + index + gRPC server + search page, started and stopped as one unit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge

from rvs.core.bus import removal
from rvs.core.catalog import Catalog, CatalogCollector
from rvs.core.clock import Clock, now_ms
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.index_view import reindex_requested
from rvs.core.model_set import ModelSet
from rvs.core.store.faces import FaceStore, StoreUnavailable
from rvs.query.alerts.feed import AlertFeed
from rvs.query.alerts.watches import WatchList
from rvs.query.alerts.webhook import AlertWebhook
from rvs.query.config import QuerySettings
from rvs.query.metrics import QueryMetrics
from rvs.query.people.directory import People
from rvs.query.people.job import PeopleJob
from rvs.query.people.units import UnitReader
from rvs.query.retention import RetentionJob
from rvs.query.search import SearchEngine
from rvs.query.server import QueryServer, SearchServicer
from rvs.query.web.page import SearchPage
from rvs.query.web.server import WebServer
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


class RemoveMedia(Protocol):
    """Records a media item's removal for every service and deletes its faces; the faces removed."""

    def __call__(self, media_id: str, expired: bool = False) -> int: ...


class QueryService:
    def __init__(
        self,
        settings: QuerySettings,
        pipeline: FacePipeline,
        store: FaceStore,
        catalog: Catalog | None,
        registry: CollectorRegistry,
        remove_media: RemoveMedia | None = None,
        models: ModelSet | None = None,
        publish: Callable[[pb.MediaEvent], None] | None = None,
        clock: Clock = now_ms,
    ) -> None:
        """`remove_media` records a DeleteMedia as a removal event for every service and returns the
        faces removed; without it (no bus) DeleteMedia changes only this service's catalog and the index.
        `models`: the models this service can search with (`pipeline` and `store` first); `publish`
        records an event for every service (a reindex request; None: no bus, no reindex); `clock`:
        the time retention measures ages from."""
        self.settings = settings
        self.catalog = catalog
        self._remove_media = remove_media
        self.models = models or ModelSet((pipeline, store))
        self._publish = publish
        self.engine = SearchEngine(settings, pipeline, store, catalog)
        metrics = QueryMetrics(registry)
        self.people_job: PeopleJob | None = None
        self.watches: WatchList | None = None
        self.alerts: AlertFeed | None = None
        self.webhook: AlertWebhook | None = None
        if catalog is not None:
            # People edits and clustering results are recorded for every service (folded here at once).
            record = publish or catalog.apply
            units = UnitReader(self.engine.tracks, catalog)
            store = lambda: self.engine.active[1]  # noqa: E731
            min_score = lambda: self.engine.default_min_score  # noqa: E731
            self.engine.people = People(catalog, units, store, record, min_score, settings.max_top_k)
            if settings.people_clustering:
                self.people_job = PeopleJob(settings, lambda: self.engine.active, units, catalog, record, metrics)
            self.watches = WatchList(catalog, self.engine, record)
            self.alerts = AlertFeed(settings, catalog, registry)
            if settings.alert_webhook_url is not None and settings.alert_webhook_secret is not None:
                self.webhook = AlertWebhook(
                    str(settings.alert_webhook_url),
                    settings.alert_webhook_secret.get_secret_value().encode(),
                    catalog,
                    registry,
                    timeout_s=settings.alert_webhook_timeout_s,
                )
        self.servicer = SearchServicer(
            self.engine,
            catalog,
            metrics,
            settings.rpc_deadline_s,
            remove_media,
            start_reindex=self._start_reindex if publish else None,
            delete_faces=self.delete_faces,
            people=self.engine.people,
            watches=self.watches,
            alerts=self.alerts,
        )
        self.retention_job: RetentionJob | None = None
        if catalog is not None and not settings.retention.keeps_all:
            self.retention_job = RetentionJob(
                settings.retention, settings.retention_interval_s, catalog, self.expire, metrics, clock
            )
        self.server = QueryServer(settings, self.servicer)
        self.web: WebServer | None = None
        if settings.web_port:
            page = SearchPage(settings, self.engine, catalog, metrics, tls=self.server.tls, watches=self.watches)
            self.web = WebServer(settings, page.asgi)
        self._index_size(registry, lambda: self.engine.store, catalog)

    def _start_reindex(self, model: str) -> None:
        """Load the model and open its collection here first (a model that cannot load is refused
        before anything starts), then record the request for every service."""
        assert self._publish is not None
        self.models.get(model)
        self._publish(reindex_requested(model))

    def index_event(self, event: pb.MediaEvent) -> None:
        """An index-wide event, folded into the catalog already: a switch moves searches; a reindex
        has its model loaded here meanwhile, so the switch does not wait for it."""
        if event.HasField("reindex_requested"):
            model = event.reindex_requested.model
            threading.Thread(target=self._preload, args=(model,), name="preload", daemon=True).start()
            return
        if not event.HasField("switched") or event.switched.model == self.engine.store.model:
            return
        if self.catalog is None or self.catalog.active_model() == event.switched.model:
            self.engine.use(*self.models.get(event.switched.model))

    def _preload(self, model: str) -> None:
        try:
            pipeline, _ = self.models.get(model)
        except Exception:  # the switch loads it again, and says why it cannot
            log.exception("could not load model %s ahead of the switch", model)
            return
        if self.watches is not None:  # every entry matches in the new collection from the switch on
            try:
                if given := self.watches.add_model(pipeline):
                    log.info("the watch list: %d entries given a template for %s", given, model)
            except Exception:
                log.exception("could not give the watch list templates for %s", model)

    def delete_faces(self, media_id: str) -> int:
        """A media item's faces leave every collection: the active model's, a running reindex's
        and any other loaded here."""
        active = (self.catalog.active_model(), self.catalog.reindex_target()) if self.catalog else ()
        return self.models.delete_media(media_id, also=active)

    def expire(self, media_id: str) -> int:
        """Retention's removal of a media item: its faces first (an index away leaves the item to the
        next pass), then the removal event, marked expired so its content is not ingested again."""
        removed = self.delete_faces(media_id)
        if self._remove_media is not None:
            return removed + self._remove_media(media_id, expired=True)
        assert self.catalog is not None
        self.catalog.apply(removal(media_id, expired=True))
        return removed + self.delete_faces(media_id)

    @staticmethod
    def _index_size(registry: CollectorRegistry, store: Callable[[], FaceStore], catalog: Catalog | None) -> None:
        """Index size, read at scrape time: faces from Milvus (the collection searches use), media by
        state from the catalog."""

        def faces() -> float:
            try:
                return float(store().count())
            except StoreUnavailable:
                return float("nan")

        Gauge("rvs_index_faces", "Faces in the index.", registry=registry).set_function(faces)
        if catalog is not None:
            registry.register(CatalogCollector(catalog))

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        """Serve; health says NOT_SERVING until `ready()` (models and index loaded)."""
        self.server.start()
        log.info(
            "gRPC Search on %s:%d (%s%s)",
            self.settings.host,
            self.port,
            "TLS" if self.server.tls else "plaintext",
            ", bearer token required" if self.settings.auth_token else "",
        )
        if self.web is not None:
            self.web.start()
        if self.people_job is not None:
            self.people_job.start()
        if self.retention_job is not None:
            self.retention_job.start()
        for part in (self.alerts, self.webhook):
            if part is not None:
                part.start()

    def ready(self) -> None:
        self.server.set_serving(True)

    def not_ready(self) -> None:
        """Health says NOT_SERVING (clients move elsewhere) while the server still answers."""
        self.server.set_serving(False)

    def healthy(self) -> bool:
        return self.server.serving

    def stop(self, grace_s: float = 5.0) -> None:
        # Open alert streams end first, so the server's grace is not spent waiting for them.
        for part in (self.alerts, self.webhook):
            if part is not None:
                part.stop()
        if self.retention_job is not None:
            self.retention_job.stop()
        if self.people_job is not None:
            self.people_job.stop()
        if self.web is not None:
            self.web.stop()
        self.server.stop(grace_s)
