"""Alerts as they are folded into the catalog, for each WatchAlerts call: the ones raised since a
time, then each new one once (the catalog folds an alert id once, and a follower reads by the
catalog's order), filtered by watch and source. A follower ends when its client goes or the service
stops. The feed also keeps the catalog's alerts bounded."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from rvs.core.catalog import Catalog
from rvs.core.clock import now_ms
from rvs.core.periodic import Periodic
from rvs.query.alerts.watches import WATCH_ID, InvalidWatchRequest
from rvs.query.config import QuerySettings
from rvs.query.search import MAX_UNIX_MS
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

_PAGE = 200
_PRUNE_EVERY_S = 60.0
_DAY_MS = 86_400_000


class TooManyStreams(Exception):
    """max_alert_streams followers are open already (RESOURCE_EXHAUSTED, reason TOO_MANY_STREAMS)."""


@dataclass(frozen=True)
class AlertFilter:
    watch_ids: frozenset[str] = frozenset()  # empty: every alert, unknown faces included
    source_prefix: str = ""

    def __call__(self, alert: pb.Alert) -> bool:
        return (not self.watch_ids or alert.watch_id in self.watch_ids) and alert.source.startswith(self.source_prefix)


def alert_filter(request: pb.WatchAlertsRequest) -> AlertFilter:
    if not 0 <= request.since_ms <= MAX_UNIX_MS:
        raise InvalidWatchRequest(f"since_ms is {request.since_ms}; it must be unix milliseconds (0: new ones only)")
    if len(request.watch_ids) > 1000:
        raise InvalidWatchRequest(f"{len(request.watch_ids)} watch ids; at most 1000")
    for watch_id in request.watch_ids:
        if not WATCH_ID.fullmatch(watch_id):
            raise InvalidWatchRequest(f"{watch_id[:100]!r} is not a watch id (32 hex digits)")
    return AlertFilter(frozenset(request.watch_ids), request.source_prefix)


class AlertFeed:
    def __init__(self, settings: QuerySettings, catalog: Catalog, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.catalog = catalog
        self.stopping = threading.Event()
        self._open = 0
        self._lock = threading.Lock()
        self._pruning = Periodic("alerts-prune", _PRUNE_EVERY_S, self._prune_logged, at_start=True)
        Gauge("rvs_alert_streams", "Open WatchAlerts calls.", registry=registry).set_function(lambda: self._open)

    def start(self) -> None:
        self._pruning.start()

    def stop(self) -> None:
        """Every follower ends within a poll interval."""
        self.stopping.set()
        self._pruning.stop(timeout_s=10)

    def prune(self) -> int:
        before = now_ms() - round(self.settings.alerts_kept_days * _DAY_MS)
        return self.catalog.prune_alerts(self.settings.alerts_kept, before)

    def _prune_logged(self) -> None:
        if dropped := self.prune():
            log.info("alerts: %d old alerts dropped from the catalog", dropped)

    def follow(
        self, since_ms: int, wanted: Callable[[pb.Alert], bool], active: Callable[[], bool]
    ) -> Iterator[pb.Alert]:
        """The alerts raised at or after `since_ms` (0: none of the past), then each new one as it is
        folded, while `active()` and the service runs. Raises TooManyStreams before the first."""
        after = 0 if since_ms else self.catalog.last_alert_seq()
        with self._lock:
            if self._open >= self.settings.max_alert_streams:
                raise TooManyStreams(
                    f"{self._open} alert streams are open already (RVS_MAX_ALERT_STREAMS); try again later"
                )
            self._open += 1
        try:
            yield from self._follow(after, since_ms, wanted, active)
        finally:
            with self._lock:
                self._open -= 1

    def _follow(
        self, seq: int, since_ms: int, wanted: Callable[[pb.Alert], bool], active: Callable[[], bool]
    ) -> Iterator[pb.Alert]:
        while active() and not self.stopping.is_set():
            page = self.catalog.alerts(after_seq=seq, since_ms=since_ms, limit=_PAGE)
            for _, alert in page:
                if wanted(alert):
                    yield alert
            if page:
                seq = page[-1][0]
            if len(page) < _PAGE and self.stopping.wait(self.settings.alert_poll_s):
                return
