"""SamplerService: scans the watched folder and samples media on worker threads."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from rvs.bus import EventPublisher, FramePublisher
from rvs.logs import media_log
from rvs.media.kinds import media_kind
from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics
from rvs.sampler.sampling import MediaJob, MediaSampler, now_ms
from rvs.sampler.state import WatchState
from rvs.sampler.watcher import FolderScanner
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


def content_id(path: Path) -> str:
    """Media id: sha256 of the content, so copies and renames are recognised."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class SamplerService:
    def __init__(
        self,
        settings: SamplerSettings,
        frames: FramePublisher,
        events: EventPublisher,
        registry: CollectorRegistry,
    ) -> None:
        if settings.watch_dir is None:
            raise ValueError("the sampler needs a folder to watch (--watch DIR or RVS_WATCH_DIR)")
        if not settings.watch_dir.is_dir():
            raise ValueError(f"watched folder {settings.watch_dir} does not exist or is not a folder")
        self.settings = settings
        self.events = events
        self.metrics = SamplerMetrics(registry)
        self.state = WatchState(settings.data_dir / "sampler.db")
        self.scanner = FolderScanner(settings.watch_dir, settings.settle_s, settings.follow_symlinks)
        self.source = str(self.scanner.root)
        self._stopping = threading.Event()
        self._sampler = MediaSampler(settings, frames, events, self.metrics, self._stopping)
        self._jobs: queue.Queue[MediaJob] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._retry_s = 5.0

    def requeue(self, media_ids: set[str]) -> None:
        """Sample these again at start (embedded mode: their frames were in memory when rvs stopped)."""
        for media_id in media_ids:
            self.state.set_status(media_id, "pending")

    def start(self) -> None:
        for media_id, path, kind, _size, discovered in self.state.pending():
            current = self.state.media_path(media_id) or path
            log.info("resuming %s", current, extra=media_log(media_id))
            self._jobs.put(self._job(media_id, Path(current), kind, discovered))
        self._threads = [threading.Thread(target=self._scan_loop, name="sampler-scan", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work_loop, name=f"sampler-{i}", daemon=True)
            for i in range(self.settings.decode_workers)
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop scanning and sampling; a media item cut short is resumed at the next start."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.state.close()

    def idle(self) -> bool:
        return self._jobs.unfinished_tasks == 0

    def _job(self, media_id: str, path: Path, kind: int, discovered_at_ms: int) -> MediaJob:
        return MediaJob(media_id, path, str(path), kind, self.source, discovered_at_ms)

    def _scan_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._scan_once()
            except Exception:  # a scan error (permissions, I/O) is retried at the next interval
                log.exception("scan of %s failed", self.source)
            self._stopping.wait(self.settings.scan_interval_s)

    def _scan_once(self) -> None:
        known = self.state.known_files()
        result = self.scanner.scan({p: (s, m) for p, (s, m, _) in known.items()})
        for path in result.removed:
            orphan = self.state.forget_file(path)
            log.info("file removed: %s", path)
            if orphan:
                self._remove_if_configured(orphan, Path(path))
        for st in result.ready:
            if self._stopping.is_set():
                return
            self._discover(Path(st.path), st.size, st.mtime_ns, known.get(st.path))

    def _remove_if_configured(self, media_id: str, path: Path) -> None:
        """`media_id` has no file left in the folder (deleted or overwritten)."""
        if not self.settings.remove_deleted:
            return
        log.info("removing %s from the index: its content is gone from the folder", path, extra=media_log(media_id))
        self.state.forget_media(media_id)
        self.events.publish(pb.MediaEvent(media_id=media_id, at_ms=now_ms(), removed=pb.MediaRemoved()))

    def _discover(self, path: Path, size: int, mtime_ns: int, previous: tuple[int, int, str] | None) -> None:
        try:
            media_id = content_id(path)
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
            return
        self.state.record_file(str(path), size, mtime_ns, media_id)
        if previous and previous[2] != media_id and self.state.is_orphan(previous[2]):
            self._remove_if_configured(previous[2], path)
        kind = media_kind(path)
        discovered = now_ms()
        if not self.state.add_media(media_id, str(path), kind, size, discovered):
            log.info("%s is a copy of an indexed media item; not ingested again", path, extra=media_log(media_id))
            return
        kind_label = {pb.MEDIA_KIND_IMAGE: "image", pb.MEDIA_KIND_VIDEO: "video"}.get(kind, "other")
        self.metrics.media_discovered.labels(kind_label).inc()
        self.events.publish(
            pb.MediaEvent(
                media_id=media_id,
                at_ms=discovered,
                discovered=pb.MediaDiscovered(uri=str(path), kind=kind, size_bytes=size, source=self.source),
            )
        )
        log.info("discovered %s", path, extra=media_log(media_id))
        if kind == pb.MEDIA_KIND_UNSPECIFIED:
            self.metrics.media_failed.labels("UNSUPPORTED_TYPE").inc()
            self.events.publish(
                pb.MediaEvent(
                    media_id=media_id,
                    at_ms=now_ms(),
                    failed=pb.MediaFailed(
                        reason="UNSUPPORTED_TYPE",
                        detail=f"{path.suffix or 'no extension'} is not a photo or video type",
                    ),
                )
            )
            self.state.set_status(media_id, "failed")
            return
        self._jobs.put(self._job(media_id, path, kind, discovered))

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if self._sampler.run(job):
                    self.state.set_status(job.media_id, "sampled")
                elif not self._stopping.wait(self._retry_s):
                    self._jobs.put(job)  # the bus was unavailable: publish the whole item again later
            finally:
                self._jobs.task_done()
