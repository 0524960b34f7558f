"""Turns one media item into frames on the bus and progress events."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rvs.core.bus import BusUnavailable, EventPublisher, FramePublisher
from rvs.core.clock import now_ms
from rvs.core.disk import is_disk_full
from rvs.core.logs import media_log, media_scope
from rvs.core.media.errors import DecodeError, MediaError
from rvs.core.media.frames import encode_jpeg_within, fit_within
from rvs.core.media.images import decode_image
from rvs.core.media.kinds import kind_label
from rvs.core.media.video import VideoSampler
from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaJob:
    media_id: str
    path: Path | None  # local file; None until a resumed job is fetched again
    uri: str
    kind: int
    source: str
    discovered_at_ms: int
    models: tuple[str, ...] = ()  # the collections its frames are for (empty: the active one)
    reindex: str = ""  # a running reindex's model: report the item re-read for it once published
    reread: bool = False  # a re-read for the reindex alone: the item's own progress is not reported
    stream: str = ""  # a live stream's segment: the stream's name
    alert_unknown: bool = False  # a live stream's segment: its unknown faces raise an alert


class Interrupted(Exception):
    """Sampling stopped because the service is shutting down; the media is resumed at restart."""


class Removed(Exception):
    """Sampling stopped because the media item was removed; it is not resumed."""


class MediaSampler:
    def __init__(
        self,
        settings: SamplerSettings,
        frames: FramePublisher,
        events: EventPublisher,
        metrics: SamplerMetrics,
        stopping: threading.Event,
        removed: Callable[[MediaJob], bool],
    ) -> None:
        self.settings = settings
        self.frames = frames
        self.events = events
        self.metrics = metrics
        self.stopping = stopping
        self.removed = removed

    def _event(self, media_id: str, **kwargs: object) -> None:
        self.events.publish(pb.MediaEvent(media_id=media_id, at_ms=now_ms(), **kwargs))  # type: ignore[arg-type]

    def publish_frame(self, job: MediaJob, index: int, time_ms: int, rgb: np.ndarray, scale: float) -> None:
        """One sample on the bus. Raises Interrupted (stopping), Removed, BusClosed, BusUnavailable."""
        if self.stopping.is_set():
            raise Interrupted
        if self.removed(job):
            raise Removed
        original_width = rgb.shape[1] * scale
        # Room for the message's other fields; the image is nearly all of it.
        data, rgb = encode_jpeg_within(rgb, self.settings.jpeg_quality, self.settings.max_frame_bytes - 8192)
        scale = original_width / rgb.shape[1]
        self.frames.publish(
            pb.Frame(
                media_id=job.media_id,
                uri=job.uri,
                kind=job.kind,  # type: ignore[arg-type]
                sample_index=index,
                time_ms=time_ms,
                image=data,
                encoding=pb.FRAME_ENCODING_JPEG,
                width=rgb.shape[1],
                height=rgb.shape[0],
                scale=scale,
                source=job.source,
                ingested_at_ms=job.discovered_at_ms,
                models=job.models,
                stream=job.stream,
                alert_unknown=job.alert_unknown,
            )
        )
        self.metrics.frames_published.inc()
        self.metrics.frame_bytes.observe(len(data))

    def run(self, job: MediaJob) -> bool:
        """Sample one media item. True when every frame was published (or it failed for good);
        False when it must be tried again: interrupted by shutdown, or the bus was unavailable."""
        with media_scope(job.media_id):
            return self._run(job)

    def _run(self, job: MediaJob) -> bool:
        assert job.path is not None
        extra = media_log(job.media_id)
        started = time.monotonic()
        try:
            if job.kind == pb.MEDIA_KIND_IMAGE:
                self._progress(job, sampling_started=pb.SamplingStarted(frames_expected=1))
                count, duration_ms, (width, height) = 1, 0, self._sample_image(job)
            else:
                count, duration_ms, (width, height) = self._sample_video(job)
            self.frames.flush()
        except Interrupted:
            log.info("sampling of %s interrupted by shutdown; it resumes at the next start", job.uri, extra=extra)
            return False
        except Removed:
            log.info("stopped sampling %s: it was removed", job.uri, extra=extra)
            return True
        except BusUnavailable as exc:
            log.warning("bus unavailable while sampling %s (%s); will sample it again", job.uri, exc, extra=extra)
            return False
        except MediaError as exc:
            if job.reread:  # it was indexed before: the reindex reports it rather than drop it
                self.gone(job, exc.reason, exc.detail)
            else:
                self.fail(job, exc.reason, exc.detail)
            return True
        except Exception as exc:  # one bad file must never stop the sampler
            if is_disk_full(exc):  # not the file's fault: sample it again once there is room
                log.error("no space left for rvs's state (%s); will sample %s again", exc, job.uri, extra=extra)
                return False
            log.exception("unexpected error sampling %s", job.uri, extra=extra)
            (self.gone if job.reread else self.fail)(job, "INTERNAL", f"{type(exc).__name__}: {exc}")
            return True
        self._progress(
            job,
            sampled=pb.MediaSampled(frame_count=count, duration_ms=duration_ms, width=width, height=height),
        )
        if job.reindex:
            self._event(job.media_id, reread=pb.ItemReread(model=job.reindex, frame_count=count))
        elapsed = time.monotonic() - started
        self.metrics.media_sampled.labels(kind_label(job.kind)).inc()
        if duration_ms:
            self.metrics.sampling_ratio.observe(elapsed / (duration_ms / 1000))
        log.info("sampled %s: %d frames in %.2fs", job.uri, count, elapsed, extra=extra)
        return True

    def _progress(self, job: MediaJob, **kwargs: object) -> None:
        """The item's own progress; a re-read for a reindex reports only its ItemReread."""
        if not job.reread:
            self._event(job.media_id, **kwargs)

    def gone(self, job: MediaJob, reason: str, detail: str) -> None:
        """A reindex cannot re-read this item: reported in its status, never silently dropped."""
        log.warning(
            "cannot re-read %s for %s: %s (%s)", job.uri, job.reindex, detail, reason, extra=media_log(job.media_id)
        )
        self._event(job.media_id, reread=pb.ItemReread(model=job.reindex, gone_reason=reason, gone_detail=detail))

    def fail(self, job: MediaJob, reason: str, detail: str) -> None:
        log.warning("cannot ingest %s: %s (%s)", job.uri, detail, reason, extra=media_log(job.media_id))
        self.metrics.media_failed.labels(reason).inc()
        self._event(job.media_id, failed=pb.MediaFailed(reason=reason, detail=detail))

    def _sample_image(self, job: MediaJob) -> tuple[int, int]:
        assert job.path is not None
        with open(job.path, "rb") as f:
            rgb = decode_image(f.read(), max_pixels=self.settings.max_image_pixels)
        height, width = rgb.shape[:2]
        w, h = fit_within(width, height, self.settings.frame_max_side)
        scale = 1.0
        if (w, h) != (width, height):
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
            scale = width / w
        self.publish_frame(job, 0, 0, rgb, scale)
        return width, height

    def _sample_video(self, job: MediaJob) -> tuple[int, int, tuple[int, int]]:
        assert job.path is not None
        with VideoSampler(job.path, fps=self.settings.fps, max_side=self.settings.frame_max_side) as video:
            info = video.info
            expected = int(info.duration_ms / 1000 * self.settings.fps) + 1 if info.duration_ms else 0
            interval_ms = round(float(video.interval) * 1000)
            started = pb.SamplingStarted(
                duration_ms=info.duration_ms, frames_expected=expected, sample_interval_ms=interval_ms
            )
            self._progress(job, sampling_started=started)
            count = 0
            last_ms = 0
            size = (info.width, info.height)
            for sample in video:
                if count == 0:  # upright, as shown: rotation applied, before downscaling
                    h, w = sample.rgb.shape[:2]
                    size = (round(w * sample.scale), round(h * sample.scale))
                self.publish_frame(job, sample.index, sample.time_ms, sample.rgb, sample.scale)
                count += 1
                last_ms = sample.time_ms
            if count == 0:
                raise DecodeError("no decodable video frame in the file")
            return count, max(info.duration_ms, last_ms), size
