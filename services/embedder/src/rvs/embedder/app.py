"""EmbedderService: the loop only orchestrates poll -> detect+embed -> upsert -> report -> commit.

A batch that raises is rewound and delivered again; on its last try it is halved down to single
frames, and a frame that still fails alone goes to the dead-letter path. Rows Milvus refuses are
isolated the same way. Either way every frame is reported: indexed, or failed with a reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from prometheus_client import CollectorRegistry

from rvs.core.alerts.engine import AlertEngine, SeenFace, alert_event
from rvs.core.alerts.still import face_still
from rvs.core.bus import AlertPublisher, BusUnavailable, EventPublisher, FrameConsumer
from rvs.core.catalog import Removals
from rvs.core.clock import now_ms
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.faces.types import Detection
from rvs.core.logs import media_log
from rvs.core.media.errors import MediaError
from rvs.core.media.frames import decode_frame
from rvs.core.model_set import Loader, ModelSet
from rvs.core.retry import Backoff, Stopped
from rvs.core.store.faces import FaceRow, FaceStore, StoreRejected, StoreUnavailable
from rvs.embedder.config import EmbedderSettings
from rvs.embedder.metrics import EmbedderMetrics
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

EMBED_FAILED, STORE_REJECTED = "EMBED_FAILED", "STORE_REJECTED"
_ACK_TIMEOUT_S = 30.0  # how long a commit waits for the bus to acknowledge the batch's events


@dataclass
class _Outcome:
    """What became of one frame of a batch."""

    frame: pb.Frame
    model: str  # whose collection the frame's faces go into
    faces: int = 0  # faces indexed
    rejected: dict[str, int] = field(default_factory=dict)  # faces not indexed by the quality gates
    failure: str = ""  # why the frame is not (wholly) in the index; "" when it is
    detail: str = ""

    def refuse(self, detail: str) -> None:
        """Milvus refused one of this frame's faces."""
        self.faces -= 1
        self.failure = STORE_REJECTED
        self.detail = self.detail or detail


def _frame_key(frame: pb.Frame) -> tuple[str, int]:
    return frame.media_id, frame.sample_index


class EmbedderService:
    def __init__(
        self,
        settings: EmbedderSettings,
        frames: FrameConsumer,
        events: EventPublisher,
        pipeline: FacePipeline,
        store: FaceStore,
        registry: CollectorRegistry,
        load_model: Loader | None = None,
        alerts: AlertPublisher | None = None,
    ) -> None:
        """`pipeline` and `store`: the model the service starts with (the index's active one);
        `load_model` loads another that frames are for (a reindex's), on first need. Alerts go out
        as AlertRaised events, and also to `alerts` (distributed mode's alerts topic)."""
        self.settings = settings
        self._backoff = Backoff(max_s=settings.retry_max_s)
        self.frames = frames
        self.events = events
        self.pipeline = pipeline
        self.store = store
        self.models = ModelSet((pipeline, store), load_model)
        self.active = store.model  # the model of frames that name none
        self.metrics = EmbedderMetrics(registry)
        self.alerting = AlertEngine(settings.alert_gap_s)
        self._alerts = alerts
        self._removals = Removals()
        self._stopping = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        # Failed tries of frames delivered again. A frame whose partition moves to another embedder
        # meanwhile leaves its entry behind: at most a batch per rebalance.
        self._tries: dict[tuple[str, int], int] = {}

    def media_removed(self, event: pb.MediaEvent) -> None:
        """A media item was removed: its frames of that ingest are dropped from now on."""
        self._removals.note(event)

    def index_switched(self, event: pb.MediaEvent) -> None:
        """Searches moved to another model's collection: frames that name no model are for it."""
        if event.HasField("switched") and not event.switched.seed:
            self.active = event.switched.model

    def watch_event(self, event: pb.MediaEvent) -> None:
        """A watch entry added or deleted, the named people, or an alert raised (its track goes on)."""
        self.alerting.apply(event)

    def delete_media(self, media_id: str) -> int:
        """Delete a removed item's faces from every collection this embedder writes."""
        return self.models.delete_media(media_id)

    def _removed(self, media_id: str, ingested_at_ms: int) -> bool:
        return self._removals.covers(media_id, ingested_at_ms)

    def _undo_removed(self, store: FaceStore, rows: list[FaceRow]) -> set[str]:
        """Media removed while their batch was in flight: delete the faces just written again."""
        gone = {r.media_id for r in rows if self._removed(r.media_id, r.ingested_at_ms)}
        for media_id in gone:
            store.delete_media(media_id)
            log.info("deleted the faces of a removed item again after a batch in flight", extra=media_log(media_id))
        return gone

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="embedder", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 30.0) -> None:
        """Process what the bus still holds (up to `drain_s`; 0: none of it), commit it, then stop polling.

        Frames not processed by then are not committed: they are processed again after a restart."""
        self._draining.set()
        if self._thread is None:
            return
        if drain_s > 0:  # with 0 there is no drain to wait for, nor one that did not finish
            self._thread.join(drain_s)
            if self._thread.is_alive():
                log.warning("drain did not finish in %.0fs; stopping after the current batch", drain_s)
        self._stopping.set()
        self._thread.join(60)

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._draining.is_set()

    def _loop(self) -> None:
        wait_s = self.settings.max_wait_ms / 1000
        while not self._stopping.is_set():
            try:
                batch = self.frames.poll(self.settings.batch_size, wait_s)
                if not batch:
                    if self._draining.is_set():
                        return
                    continue
                self._handle(batch)
            except Exception:  # the loop must survive anything the bus does
                log.exception("embedder loop failed")
                self._stopping.wait(1.0)

    def _handle(self, batch: list[pb.Frame]) -> None:
        """Process a polled batch and commit it; if processing raises, rewind it (delivered again)."""
        self.metrics.frames_consumed.inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        keys = [_frame_key(f) for f in batch]
        attempt = 1 + max(self._tries.get(k, 0) for k in keys)
        last = attempt >= self.settings.max_batch_tries
        try:
            done = self._process_isolating(batch) if last else self.process(batch)
        except Exception:
            log.exception(
                "embedder batch of %d frames failed (try %d of %d); it is delivered again",
                len(batch),
                attempt,
                self.settings.max_batch_tries,
            )
            self._tries.update(dict.fromkeys(keys, attempt))
            self.alerting.rollback()  # delivered again, it raises its alerts again
            self.frames.rewind()
            self._stopping.wait(1.0)
            return
        for k in keys:
            self._tries.pop(k, None)
        # Else stopped before the faces were written: redone after a restart.
        if done and self._commit():
            self.alerting.commit()
        else:
            self.alerting.rollback()

    def _commit(self) -> bool:
        """The batch's alerts and progress events first, then its frames: a batch is done only once
        the bus has acknowledged them all. If it has not, the batch is redone (upserts, the catalog's
        fold and alert ids are idempotent); that is no failed try of its frames."""
        try:
            if self._alerts is not None:
                self._alerts.flush(_ACK_TIMEOUT_S)
            self.events.flush(_ACK_TIMEOUT_S)
            self.frames.commit()
        except BusUnavailable as exc:
            log.warning("the bus did not acknowledge a processed batch (%s); it is done again", exc)
            self.frames.rewind()
            self._stopping.wait(1.0)
            return False
        return True

    def _process_isolating(self, batch: list[pb.Frame]) -> bool:
        """The last try: halve the batch until a frame that still fails is alone, and set that one
        aside; the others are indexed. One bad frame costs ~2*log2(n) sub-batches, not n."""
        try:
            return self.process(batch)
        except Exception as exc:
            if len(batch) > 1:
                half = len(batch) // 2
                return self._process_isolating(batch[:half]) and self._process_isolating(batch[half:])
            detail = f"{type(exc).__name__}: {exc}"
            return self._finish(
                [_Outcome(batch[0], m, failure=EMBED_FAILED, detail=detail) for m in self._for(batch[0])]
            )

    def _for(self, frame: pb.Frame) -> list[str]:
        """The models a frame is for: those it names (a reindex's), else the active one."""
        return list(dict.fromkeys(frame.models)) or [self.active]

    def process(self, batch: list[pb.Frame]) -> bool:
        """Embed and index one batch and report every frame. False if stopped before the faces were
        written. Raises what detection or embedding raises; undecodable frames and rows Milvus
        refuses are set aside with their reason."""
        outcomes = [
            _Outcome(f, model)
            for f in batch
            if not self._removed(f.media_id, f.ingested_at_ms)
            for model in self._for(f)
        ]
        by_model: dict[str, list[_Outcome]] = defaultdict(list)
        for outcome in outcomes:
            by_model[outcome.model].append(outcome)
        gone: set[str] = set()
        seen: list[SeenFace] = []
        for model, group in by_model.items():
            pipeline, store = self.models.get(model)  # ModelUnavailable: the batch is tried again
            owned, faces = self._analyse(pipeline, self._decode(group))
            if not self._upsert(store, owned):
                return False
            gone |= self._undo_removed(store, [row for _, row in owned])
            if model == self.active:  # a reindex's re-read of older media raises nothing
                seen += faces
        alerts = self.alerting.evaluate(self.active, [f for f in seen if f.frame.media_id not in gone])
        return self._finish([o for o in outcomes if o.frame.media_id not in gone], alerts)

    def _decode(self, outcomes: list[_Outcome]) -> list[tuple[_Outcome, np.ndarray]]:
        decoded = []
        for outcome in outcomes:
            try:
                decoded.append((outcome, decode_frame(outcome.frame)))
            except MediaError as exc:
                outcome.failure, outcome.detail = exc.reason, exc.detail
        return decoded

    def _analyse(
        self, pipeline: FacePipeline, decoded: list[tuple[_Outcome, np.ndarray]]
    ) -> tuple[list[tuple[_Outcome, FaceRow]], list[SeenFace]]:
        """Detect and embed; one row per face, with the outcome of the frame it is in, and each face
        as the alert engine sees it."""
        if not decoded:
            return [], []
        analysis = pipeline.analyse([image for _, image in decoded])
        self.metrics.detect_seconds.observe(analysis.detect_s)
        self.metrics.embed_seconds.observe(analysis.embed_s)
        owned, faces = [], []
        for (outcome, image), seen, vectors in zip(decoded, analysis.frames, analysis.vectors, strict=True):
            outcome.faces = len(seen.faces)
            outcome.rejected = dict(seen.rejected)
            for i, (det, vec) in enumerate(zip(seen.faces, vectors, strict=True)):
                row = self._row(outcome.frame, i, det, vec)
                owned.append((outcome, row))
                faces.append(SeenFace(outcome.frame, i, row.box, row.vector, partial(face_still, image, det.box)))
        return owned, faces

    @staticmethod
    def _row(frame: pb.Frame, face_index: int, det: Detection, vector: np.ndarray) -> FaceRow:
        scale = frame.scale or 1.0
        return FaceRow(
            media_id=frame.media_id,
            uri=frame.uri,
            kind=frame.kind,
            time_ms=frame.time_ms,
            face_index=face_index,
            box=tuple(v * scale for v in det.box),  # type: ignore[arg-type]
            det_score=det.score,
            source=frame.source,
            ingested_at_ms=frame.ingested_at_ms,
            vector=np.asarray(vector),
        )

    def _upsert(self, store: FaceStore, owned: list[tuple[_Outcome, FaceRow]]) -> bool:
        """Write the rows. Rows Milvus refuses are found by halving until each is alone, and noted on
        their frame's outcome; the others are written. False if stopped meanwhile."""
        try:
            return self._write(store, [row for _, row in owned])
        except StoreRejected as exc:
            if len(owned) > 1:
                half = len(owned) // 2
                return self._upsert(store, owned[:half]) and self._upsert(store, owned[half:])
            owned[0][0].refuse(str(exc))
            return True

    def _write(self, store: FaceStore, rows: list[FaceRow]) -> bool:
        """Write with exponential back-off while Milvus is unavailable; False if stopped meanwhile.
        Raises StoreRejected: retrying what Milvus refuses cannot help."""

        def upsert() -> None:
            t0 = time.perf_counter()
            try:
                store.upsert(rows)
            except (StoreRejected, StoreUnavailable):
                self.metrics.upsert_errors.inc()
                raise
            self.metrics.upsert_seconds.observe(time.perf_counter() - t0)

        def waiting(exc: Exception, delay: float) -> None:
            log.warning("Milvus unavailable (%s); retrying in %.1fs", exc, delay)

        try:
            self._backoff.run(upsert, StoreUnavailable, waiting, self._stopping)
        except Stopped:
            return False
        return True

    def _finish(self, outcomes: list[_Outcome], alerts: Sequence[pb.Alert] = ()) -> bool:
        """Set aside the frames that failed, then report every frame and raise the alerts (before the
        commit: a crash raises them again). False if stopped meanwhile."""
        for outcome in outcomes:
            if outcome.failure:
                self._set_aside(outcome)
        if not self._report(self._events(outcomes) + [alert_event(a) for a in alerts]):
            return False
        if self._alerts is not None:
            for alert in alerts:
                self._alerts.publish(alert)
        for alert in alerts:
            self.metrics.alerts_raised.labels(pb.AlertKind.Name(alert.kind).removeprefix("ALERT_KIND_").lower()).inc()
        for outcome in outcomes:
            for reason, n in outcome.rejected.items():
                self.metrics.faces_rejected.labels(reason).inc(n)
        self.metrics.frames_embedded.inc(sum(not o.failure for o in outcomes))
        self.metrics.faces_detected.inc(sum(o.faces for o in outcomes))
        return True

    def _set_aside(self, outcome: _Outcome) -> None:
        frame = outcome.frame
        log.error(
            "frame %d of %s not indexed, sent to the dead-letter path: %s: %s",
            frame.sample_index,
            frame.uri,
            outcome.failure,
            outcome.detail,
            extra=media_log(frame.media_id),
        )
        self.metrics.frames_failed.labels(outcome.failure).inc()
        self.frames.dead_letter(frame, outcome.failure, outcome.detail)

    @staticmethod
    def _events(outcomes: list[_Outcome]) -> list[pb.MediaEvent]:
        per_media: dict[tuple[str, str], list[_Outcome]] = defaultdict(list)
        for outcome in outcomes:
            per_media[outcome.frame.media_id, outcome.model].append(outcome)
        at_ms = now_ms()
        return [
            pb.MediaEvent(
                media_id=media_id,
                at_ms=at_ms,
                embedded=pb.FramesEmbedded(
                    sample_indices=[o.frame.sample_index for o in done],
                    face_counts=[o.faces for o in done],
                    rejections=[pb.FaceRejections(by_reason=o.rejected) for o in done],
                    failures=[o.failure for o in done],
                    model=model,
                ),
            )
            for (media_id, model), done in per_media.items()
        ]

    def _report(self, events: list[pb.MediaEvent]) -> bool:
        """Publish progress, retrying until it is recorded (a full disk, an unreachable broker):
        the faces are indexed, and progress must not silently fall behind them."""

        def waiting(exc: Exception, delay: float) -> None:
            log.error("cannot record progress (%s); retrying in %.1fs", exc, delay)

        try:
            for event in events:
                self._backoff.run(partial(self.events.publish, event), Exception, waiting, self._stopping)
        except Stopped:
            return False
        return True
