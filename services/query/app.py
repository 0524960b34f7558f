"""QueryService: model + index + gRPC server, started and stopped as one unit."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from rvs.catalog import Catalog
from rvs.faces.pipeline import FacePipeline
from rvs.query.config import QuerySettings
from rvs.query.metrics import QueryMetrics
from rvs.query.search import SearchEngine
from rvs.query.server import QueryServer, SearchServicer
from rvs.store.faces import FaceStore

log = logging.getLogger(__name__)


class QueryService:
    def __init__(
        self,
        settings: QuerySettings,
        pipeline: FacePipeline,
        store: FaceStore,
        catalog: Catalog | None,
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.engine = SearchEngine(settings, pipeline, store, catalog)
        self.servicer = SearchServicer(self.engine, catalog, QueryMetrics(registry))
        self.server = QueryServer(settings, self.servicer)

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        """Serve; health says NOT_SERVING until `ready()` (models and index loaded)."""
        self.server.start()
        log.info("gRPC Search on %s:%d", self.settings.host, self.port)

    def ready(self) -> None:
        self.server.set_serving(True)

    def stop(self, grace_s: float = 5.0) -> None:
        self.server.stop(grace_s)
