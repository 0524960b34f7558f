"""SamplerService: watches its sources (a folder, a bucket) and samples media on worker threads;
samples each live stream on a thread of its own."""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time

from prometheus_client import CollectorRegistry

from rvs.core.bus import EventPublisher, FramePublisher, removal
from rvs.core.catalog import Removals
from rvs.core.clock import now_ms
from rvs.core.disk import is_disk_full
from rvs.core.index_view import IndexView
from rvs.core.logs import media_log
from rvs.core.media.hashing import content_id
from rvs.core.media.kinds import kind_label, media_kind
from rvs.core.retry import Backoff
from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics
from rvs.sampler.sampling import MediaJob, MediaSampler
from rvs.sampler.sources import Entry, Source, SourceError, open_sources
from rvs.sampler.state import WatchState
from rvs.sampler.streams.runner import StreamRunner
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

# A source that cannot be read is scanned again after 1 s, then 2, 4... up to a minute.
_SCAN_BACKOFF = Backoff(first_s=1.0, max_s=60.0)


class SamplerService:
    def __init__(
        self,
        settings: SamplerSettings,
        frames: FramePublisher,
        events: EventPublisher,
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.events = events
        self.metrics = SamplerMetrics(registry)
        self.sources: list[Source] = open_sources(settings, self.metrics)
        self.state = WatchState(settings.data_dir / "sampler.db")
        self._stopping = threading.Event()
        self._removals = Removals()
        self._sampler = MediaSampler(settings, frames, events, self.metrics, self._stopping, self._removed)
        self._jobs: queue.Queue[MediaJob] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._retry_s = 5.0
        self.index = IndexView()  # the active model and a running reindex, as the events say
        self._started = False
        self._settled: set[str] = set()  # sources whose last scan since the start left nothing to come back for
        self.streams = [
            StreamRunner(
                name,
                url.get_secret_value(),
                settings,
                self._sampler,
                events,
                self.state,
                self.metrics,
                lambda: tuple(self.index.models_for_new_media()),
                self._stopping,
            )
            for name, url in settings.streams.items()
        ]

    def requeue(self, media_ids: set[str]) -> None:
        """Sample these again at start (embedded mode: their frames were in memory when rvs stopped)."""
        for media_id in media_ids:
            self.state.set_status(media_id, "pending")

    def close_cut_segments(self, segments: list[pb.Media]) -> None:
        """Close these unfinished segments of live streams with the frames the catalog has of them
        (embedded mode: the rest were in memory when rvs stopped). A stream cannot be read back, so a
        segment is closed, never sampled again."""
        for media in segments:
            log.info(
                "closing a segment of %s cut short when rvs stopped", media.stream, extra=media_log(media.media_id)
            )
            sampled = pb.MediaSampled(frame_count=media.frames_embedded, duration_ms=media.duration_ms)
            self.events.publish(pb.MediaEvent(media_id=media.media_id, at_ms=now_ms(), sampled=sampled))
            self.state.close_segment(media.media_id)

    def media_removed(self, event: pb.MediaEvent) -> None:
        """A media item was removed (DeleteMedia, or its file with RVS_REMOVE_DELETED): stop sampling
        it, and forget it so a restart does not resume it. A new copy of it is a new ingest, unless
        retention removed it (it is older than the limit)."""
        self._removals.note(event)
        at = event.at_ms or now_ms()
        self.state.forget_removed(event.media_id, at)
        if event.removed.expired:
            self.state.expire(event.media_id, at)

    def index_event(self, event: pb.MediaEvent) -> None:
        """Fold an index-wide event; a reindex requested while running is planned at once (one
        requested before the start is planned by `start`, after every event is folded)."""
        if self.index.apply(event) and event.HasField("reindex_requested") and self._started:
            self._plan_reindex()

    def reread_again(self, media_ids: list[str]) -> None:
        """Re-read these for the running reindex (embedded mode: their frames were in memory)."""
        if self.index.target:
            self.state.reread_again(self.index.target, media_ids)

    def _plan_reindex(self) -> None:
        """Queue a re-read of every known item not yet re-read for the running reindex."""
        target, at = self.index.target, self.index.requested_at_ms
        items = self.state.to_reread(target, at)
        log.info("reindex into %s: re-reading %d media items from their sources", target, len(items))
        for media_id, uri, kind, discovered in items:
            uri = self.state.media_uri(media_id) or uri
            job = MediaJob(media_id, None, uri, kind, "", discovered, (target,), target, reread=True)
            source = self._owner(uri)
            if source is None:
                self._sampler.gone(job, "SOURCE_NOT_WATCHED", f"{uri} is in no source rvs watches now")
                self.state.reread_done(target, media_id, at)
                continue
            self._jobs.put(dataclasses.replace(job, source=source.uri))

    def _removed(self, job: MediaJob) -> bool:
        return self._removals.covers(job.media_id, job.discovered_at_ms)

    def start(self) -> None:
        for source in self.sources:
            source.start()
        for media_id, uri, kind, _size, discovered in self.state.pending():
            uri = self.state.media_uri(media_id) or uri
            source = self._owner(uri)
            if source is None:
                log.warning("not resuming %s: its source is no longer watched", uri, extra=media_log(media_id))
                continue
            log.info("resuming %s", uri, extra=media_log(media_id))
            self._jobs.put(MediaJob(media_id, None, uri, kind, source.uri, discovered))
        self._threads = [
            threading.Thread(target=self._scan_loop, args=(s,), name=f"scan-{s.kind}", daemon=True)
            for s in self.sources
        ]
        self._threads += [
            threading.Thread(target=self._work_loop, name=f"sampler-{i}", daemon=True)
            for i in range(self.settings.decode_workers)
        ]
        for t in self._threads:
            t.start()
        for stream in self.streams:
            stream.start()
        self._started = True
        if self.index.target:  # requested before this start (or while it was down): resumed
            self._plan_reindex()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop scanning and sampling; a media item cut short is resumed at the next start."""
        self._stopping.set()
        for source in self.sources:
            source.close()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        # Each stream closes its segment as it stops; one blocked in a read is let go by its timeout.
        deadline = (
            max(deadline, time.monotonic() + self.settings.stream_read_timeout_s + 1) if self.streams else deadline
        )
        for stream in self.streams:
            stream.join(max(0.0, deadline - time.monotonic()))
        self.state.close()

    def idle(self) -> bool:
        """No media item is queued or being sampled."""
        return self._jobs.unfinished_tasks == 0

    def caught_up(self) -> bool:
        """Every source has been scanned since the start, and nothing found is left to sample."""
        return len(self._settled) == len(self.sources) and self.idle()

    def healthy(self) -> bool:
        return (
            self._started
            and not self._stopping.is_set()
            and all(t.is_alive() for t in self._threads)
            and all(s.healthy() for s in self.streams)
        )

    def _owner(self, uri: str) -> Source | None:
        return next((s for s in self.sources if s.owns(uri)), None)

    def _scan_loop(self, source: Source) -> None:
        failing: str | None = None
        delay = source.scan_interval_s
        while not self._stopping.is_set():
            try:
                self._scan_once(source)
                if failing:
                    log.info("%s can be read again", source.uri)
                failing, delay = None, source.scan_interval_s
            except SourceError as exc:
                self.metrics.source_errors.labels(source.kind, exc.reason).inc()
                if exc.reason != failing:  # once per distinct problem, not at every retry
                    log.error("%s; retrying", exc.detail)
                failing, delay = exc.reason, _SCAN_BACKOFF.grow(delay)
            except Exception as exc:  # an unexpected scan error is retried at the next interval
                reason = "DISK_FULL" if is_disk_full(exc) else "INTERNAL"
                self.metrics.source_errors.labels(source.kind, reason).inc()
                if reason != failing:
                    if reason == "DISK_FULL":
                        log.error("no space left in %s for rvs's state (%s); retrying", self.settings.data_dir, exc)
                    else:
                        log.exception("scan of %s failed", source.uri)
                failing, delay = reason, _SCAN_BACKOFF.grow(delay)
            source.wait(delay, self._stopping)

    def _scan_once(self, source: Source) -> None:
        self._settled.discard(source.uri)
        known = {uri: v for uri, v in self.state.known_entries().items() if source.owns(uri)}
        result = source.scan({uri: (size, version) for uri, (size, version, _) in known.items()})
        self.metrics.source_scans.labels(source.kind).inc()
        for uri in result.removed:
            orphan = self.state.forget_entry(uri)
            log.info("removed from the source: %s", uri)
            if orphan:
                self._remove_if_configured(orphan, uri)
        for entry in result.ready:
            # A bucket's objects are copied to a spool: keep only a few ahead of the decoders.
            while source.spools and self._jobs.qsize() > self.settings.decode_workers:
                if self._stopping.wait(0.1):
                    return
            if self._stopping.is_set():
                return
            previous = known.get(entry.uri)
            self._discover(source, entry, previous[2] if previous else None)
        if source.settled():
            self._settled.add(source.uri)

    def _remove_if_configured(self, media_id: str, uri: str) -> None:
        """`media_id` has no entry left in any source (deleted or overwritten)."""
        if not self.settings.remove_deleted:
            return
        log.info("removing %s from the index: its content is gone from the source", uri, extra=media_log(media_id))
        self.state.forget_media(media_id)
        self.events.publish(removal(media_id))

    def _discover(self, source: Source, entry: Entry, previous: str | None) -> None:
        try:
            fetched = source.fetch(entry)  # SourceError: retried at the next scan
        except OSError as exc:
            log.warning("cannot read %s: %s", entry.uri, exc)
            return
        media_id = fetched.media_id
        if self.state.is_expired(media_id):
            log.info("%s was removed by retention; not ingested again", entry.uri, extra=media_log(media_id))
            self.state.record_entry(entry.uri, entry.size, entry.version, media_id)
            source.release(media_id)
            return
        kind = media_kind(entry.uri)
        discovered = now_ms()
        new = self.state.status(media_id) is None
        job = MediaJob(media_id, fetched.path, entry.uri, kind, source.uri, discovered)
        # Events first, then the state: if either fails (a full disk) nothing is recorded, and the
        # next scan finds the entry again; the catalog folds a repeated event into the same item.
        if new:
            self.events.publish(
                pb.MediaEvent(
                    media_id=media_id,
                    at_ms=discovered,
                    discovered=pb.MediaDiscovered(uri=entry.uri, kind=kind, size_bytes=entry.size, source=source.uri),
                )
            )
            if kind == pb.MEDIA_KIND_UNSPECIFIED:
                suffix = entry.uri.rsplit("/", 1)[-1].rpartition(".")[2]
                what = f".{suffix}" if suffix else "no extension"
                self._sampler.fail(job, "UNSUPPORTED_TYPE", f"{what} is not a photo or video type")
        status = "failed" if kind == pb.MEDIA_KIND_UNSPECIFIED else "pending"
        added = self.state.record(entry.uri, entry.size, entry.version, media_id, kind, discovered, status)
        if previous and previous != media_id and self.state.is_orphan(previous):
            self._remove_if_configured(previous, entry.uri)
        if not added:
            log.info("%s is a copy of a known media item; not ingested again", entry.uri, extra=media_log(media_id))
            if self.state.status(media_id) != "pending":
                source.release(media_id)
            return
        self.metrics.media_discovered.labels(kind_label(kind)).inc()
        log.info("discovered %s", entry.uri, extra=media_log(media_id))
        if kind == pb.MEDIA_KIND_UNSPECIFIED:
            source.release(media_id)
            return
        self._jobs.put(job)

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._work(job)
            except Exception as exc:  # never lose the item: try it again later
                if is_disk_full(exc):
                    log.error("no space left for rvs's state (%s); will retry %s", exc, job.uri)
                else:
                    log.exception("sampling %s failed; will retry", job.uri, extra=media_log(job.media_id))
                if not self._stopping.wait(self._retry_s):
                    self._jobs.put(job)
            finally:
                self._jobs.task_done()

    def _work(self, job: MediaJob) -> None:
        source = self._owner(job.uri)
        if source is None:
            return
        if job.reread:
            self._reread(source, job)
            return
        # Decided now, not when found: a reindex requested or switched meanwhile counts.
        job = dataclasses.replace(job, models=tuple(self.index.models_for_new_media()), reindex=self.index.target)
        if self._removed(job):
            log.info("not sampling %s: it was removed", job.uri, extra=media_log(job.media_id))
            source.release(job.media_id)
            return
        if job.path is None:  # resumed after a restart
            try:
                job = dataclasses.replace(job, path=source.local_path(job.uri, job.media_id))
            except OSError as exc:
                self._sampler.fail(job, "SOURCE_GONE", f"the file is no longer in the source: {exc}")
                self.state.set_status(job.media_id, "failed")
                return
            except SourceError as exc:
                self._retry_later(source, job, exc)
                return
        if self._sampler.run(job):
            self.state.set_status(job.media_id, "sampled")
            if job.reindex:
                self.state.reread_done(job.reindex, job.media_id, self.index.requested_at_ms)
            source.release(job.media_id)
        elif not self._stopping.wait(self._retry_s):
            self._jobs.put(job)  # the bus was unavailable: publish the whole item again later

    def _retry_later(self, source: Source, job: MediaJob, exc: SourceError) -> None:
        """The source cannot be read just now (a bucket unreachable): the job goes back in the queue."""
        self.metrics.source_errors.labels(source.kind, exc.reason).inc()
        log.warning("%s; will try again", exc.detail, extra=media_log(job.media_id))
        if not self._stopping.wait(self._retry_s):
            self._jobs.put(job)

    def _reread(self, source: Source, job: MediaJob) -> None:
        """Sample a catalogued item again for a reindex's model, from its source as it is now."""
        at = self.index.requested_at_ms
        if job.reindex != self.index.target:
            return  # that reindex switched, or another replaced it
        if self._removed(job):
            return
        try:
            path = source.local_path(job.uri, job.media_id)
            # A file is re-read only while it still holds what was indexed (a bucket's download is
            # checked by local_path); other content under the name is another media item.
            if not source.spools and content_id(path) != job.media_id:
                raise FileNotFoundError(f"{job.uri} holds other content now")
        except OSError as exc:
            self._sampler.gone(job, "SOURCE_GONE", f"the item is no longer in its source: {exc}")
            self.state.reread_done(job.reindex, job.media_id, at)
            return
        except SourceError as exc:
            self._retry_later(source, job, exc)
            return
        if self._sampler.run(dataclasses.replace(job, path=path)):
            self.state.reread_done(job.reindex, job.media_id, at)
            source.release(job.media_id)
        elif not self._stopping.wait(self._retry_s):
            self._jobs.put(job)
