"""EmbedderService: the loop only orchestrates poll -> detect+embed -> upsert -> report -> commit."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import numpy as np
from prometheus_client import CollectorRegistry

from rvs.bus import EventPublisher, FrameConsumer
from rvs.catalog import Removals
from rvs.embedder.config import EmbedderSettings
from rvs.embedder.metrics import EmbedderMetrics
from rvs.faces.pipeline import FacePipeline
from rvs.logs import media_log
from rvs.media.errors import MediaError
from rvs.media.frames import decode_frame
from rvs.store.faces import FaceRow, FaceStore, StoreUnavailable
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


class EmbedderService:
    def __init__(
        self,
        settings: EmbedderSettings,
        frames: FrameConsumer,
        events: EventPublisher,
        pipeline: FacePipeline,
        store: FaceStore,
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.frames = frames
        self.events = events
        self.pipeline = pipeline
        self.store = store
        self.metrics = EmbedderMetrics(registry)
        self._removals = Removals()
        self._stopping = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None

    def media_removed(self, event: pb.MediaEvent) -> None:
        """A media item was removed: its frames of that ingest are dropped from now on."""
        self._removals.note(event)

    def _removed(self, media_id: str, ingested_at_ms: int) -> bool:
        return self._removals.covers(media_id, ingested_at_ms)

    def _undo_removed(self, rows: list[FaceRow]) -> set[str]:
        """Media removed while their batch was in flight: delete the faces just written again."""
        gone = {r.media_id for r in rows if self._removed(r.media_id, r.ingested_at_ms)}
        for media_id in gone:
            self.store.delete_media(media_id)
            log.info("deleted the faces of a removed item again after a batch in flight", extra=media_log(media_id))
        return gone

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="embedder", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 30.0) -> None:
        """Process what the bus still holds (up to `drain_s`), commit it, then stop polling.

        Frames not processed by then are not committed: they are processed again after a restart."""
        self._draining.set()
        if self._thread is None:
            return
        self._thread.join(drain_s)
        if self._thread.is_alive():
            log.warning("drain did not finish in %.0fs; stopping after the current batch", drain_s)
            self._stopping.set()
            self._thread.join(60)

    def _loop(self) -> None:
        wait_s = self.settings.max_wait_ms / 1000
        while not self._stopping.is_set():
            try:
                batch = self.frames.poll(self.settings.batch_size, wait_s)
                if not batch:
                    if self._draining.is_set():
                        return
                    continue
                if self.process(batch):
                    self.frames.commit()
            except Exception:  # the loop must survive anything one batch does
                log.exception("embedder batch failed")
                self._stopping.wait(1.0)

    def process(self, batch: list[pb.Frame]) -> bool:
        """Embed and index one batch. False if stopped before the faces were written."""
        self.metrics.frames_consumed.inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        batch = [f for f in batch if not self._removed(f.media_id, f.ingested_at_ms)]
        frames, images = [], []
        bad: list[pb.Frame] = []
        for frame in batch:
            try:
                images.append(decode_frame(frame))
                frames.append(frame)
            except MediaError as exc:
                log.warning("skipping frame: %s", exc.detail, extra=media_log(frame.media_id))
                self.metrics.frames_failed.labels(exc.reason).inc()
                bad.append(frame)
        rows: list[FaceRow] = []
        per_media: dict[str, list[tuple[int, int, dict[str, int]]]] = defaultdict(list)
        if images:
            analysis = self.pipeline.analyse(images)
            self.metrics.detect_seconds.observe(analysis.detect_s)
            self.metrics.embed_seconds.observe(analysis.embed_s)
            for frame, seen, vecs in zip(frames, analysis.frames, analysis.vectors, strict=True):
                dets = seen.faces
                scale = frame.scale or 1.0
                for reason, n in seen.rejected.items():
                    self.metrics.faces_rejected.labels(reason).inc(n)
                for i, (det, vec) in enumerate(zip(dets, vecs, strict=True)):
                    rows.append(
                        FaceRow(
                            media_id=frame.media_id,
                            uri=frame.uri,
                            kind=frame.kind,
                            time_ms=frame.time_ms,
                            face_index=i,
                            box=tuple(v * scale for v in det.box),  # type: ignore[arg-type]
                            det_score=det.score,
                            source=frame.source,
                            ingested_at_ms=frame.ingested_at_ms,
                            vector=np.asarray(vec),
                        )
                    )
                per_media[frame.media_id].append((frame.sample_index, len(dets), dict(seen.rejected)))
        for frame in bad:
            per_media[frame.media_id].append((frame.sample_index, 0, {}))
        if not self._upsert(rows):
            return False
        for media_id in self._undo_removed(rows):
            per_media.pop(media_id, None)
        events = [
            pb.MediaEvent(
                media_id=media_id,
                at_ms=int(time.time() * 1000),
                embedded=pb.FramesEmbedded(
                    sample_indices=[i for i, _, _ in done],
                    face_counts=[n for _, n, _ in done],
                    rejections=[pb.FaceRejections(by_reason=r) for _, _, r in done],
                ),
            )
            for media_id, done in per_media.items()
        ]
        if not self._report(events):
            return False
        self.metrics.frames_embedded.inc(len(frames))
        self.metrics.faces_detected.inc(len(rows))
        return True

    def _report(self, events: list[pb.MediaEvent]) -> bool:
        """Publish progress, retrying until it is recorded (a full disk, an unreachable broker):
        the faces are indexed, and progress must not silently fall behind them."""
        delay = 0.5
        pending = list(events)
        while pending:
            try:
                self.events.publish(pending[0])
                pending.pop(0)
            except Exception as exc:
                log.error("cannot record progress (%s); retrying in %.1fs", exc, delay)
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.retry_max_s)
        return True

    def _upsert(self, rows: list[FaceRow]) -> bool:
        """Write with exponential back-off while Milvus is unavailable; False if stopped meanwhile."""
        delay = 0.5
        while True:
            try:
                t0 = time.perf_counter()
                self.store.upsert(rows)
                self.metrics.upsert_seconds.observe(time.perf_counter() - t0)
                return True
            except StoreUnavailable as exc:
                self.metrics.upsert_errors.inc()
                log.warning("Milvus unavailable (%s); retrying in %.1fs", exc, delay)
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.retry_max_s)
