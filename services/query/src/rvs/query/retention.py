"""The retention job: every so often, media older than their source's limit are removed through
the removal path (the removal event: sampler, embedders and every catalog fold it, and the faces
leave the index), and the catalog forgets media removed longer ago than the limit.

Every query service with a catalog runs it (both modes; in distributed mode each replica): a removal
already made folds to nothing, so replicas racing one another remove each item once in effect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rvs.core.bus import BusUnavailable
from rvs.core.catalog import Catalog
from rvs.core.clock import Clock
from rvs.core.logs import media_log
from rvs.core.periodic import Periodic
from rvs.core.retention import RetentionRules
from rvs.core.store.faces import StoreUnavailable
from rvs.query.metrics import QueryMetrics

log = logging.getLogger(__name__)

_BATCH = 500  # media read from the catalog at a time


class RetentionJob:
    def __init__(
        self,
        rules: RetentionRules,
        interval_s: float,
        catalog: Catalog,
        expire: Callable[[str], int],
        metrics: QueryMetrics,
        clock: Clock,
    ) -> None:
        """`expire` removes one media item as retention does (its faces, then the removal event);
        `clock` is the time the limits are measured from (unix ms)."""
        self.rules = rules
        self.interval_s = interval_s
        self.catalog = catalog
        self.expire = expire
        self.metrics = metrics
        self.clock = clock
        # What a failed pass left is found again by the next.
        self._job = Periodic(
            "retention", interval_s, self.run_once, at_start=True, retried=(StoreUnavailable, BusUnavailable)
        )

    def start(self) -> None:
        self._job.start()

    def stop(self) -> None:
        self._job.stop()

    def run_once(self) -> tuple[int, int]:
        """One pass: (media removed, removed media forgotten by the catalog)."""
        started = time.perf_counter()
        now = self.clock()
        removed = forgotten = 0
        done: set[str] = set()  # an item the removal left in the catalog is not tried again this pass
        while not self._job.stopping.is_set():
            expired = [m for m in self.catalog.expired(self.rules, now, _BATCH) if m not in done]
            if not expired:
                break
            done.update(expired)
            for media_id in expired:
                faces = self.expire(media_id)
                removed += 1
                self.metrics.retention_removed.inc()
                log.info("retention: removed (%d faces): older than its limit", faces, extra=media_log(media_id))
        while purged := self.catalog.purge_removed(self.rules, now, _BATCH):
            forgotten += len(purged)
            self.metrics.retention_purged.inc(len(purged))
        self.metrics.retention_pass_seconds.observe(time.perf_counter() - started)
        if removed or forgotten:
            log.info("retention: %d media removed, %d removed media forgotten", removed, forgotten)
        return removed, forgotten
