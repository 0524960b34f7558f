"""One live stream, on a thread of its own: connect, sample into segments, and on a drop close the
segment, count the gap and connect again after a back-off. A stream never ends by itself: the loop
runs until the service stops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import numpy as np

from rvs.core.bus import BusUnavailable, EventPublisher
from rvs.core.bus.base import BusClosed
from rvs.core.clock import now_ms
from rvs.core.logs import media_log
from rvs.core.media.frames import fit_within
from rvs.core.retry import Backoff
from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics
from rvs.sampler.sampling import Interrupted, MediaJob, MediaSampler, Removed
from rvs.sampler.state import WatchState
from rvs.sampler.streams.reader import StreamEnded, StreamError, StreamReader
from rvs.sampler.streams.recording import Recording, recording_path
from rvs.sampler.streams.segments import Timeline
from rvs.sampler.streams.spec import redact_url, segment_id, source_of
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


@dataclass
class _Open:
    """The segment being sampled."""

    job: MediaJob
    recording: Recording | None
    frames: int = 0
    last_ms: int = 0
    size: tuple[int, int] = (0, 0)
    removed: bool = False


class StreamRunner:
    def __init__(
        self,
        name: str,
        url: str,
        settings: SamplerSettings,
        sampler: MediaSampler,
        events: EventPublisher,
        state: WatchState,
        metrics: SamplerMetrics,
        models: Callable[[], tuple[str, ...]],
        stopping: threading.Event,
    ) -> None:
        self.name = name
        self.shown = redact_url(url)
        self._url = url
        self.settings = settings
        self.sampler = sampler
        self.events = events
        self.state = state
        self.metrics = metrics
        self.models = models
        self.stopping = stopping
        self.backoff = Backoff(settings.stream_backoff_first_s, settings.stream_backoff_max_s)
        self.source = source_of(name)
        self._segment: _Open | None = None
        self._last_wall_ms: int | None = None  # wall-clock time of the last frame before a drop
        self._thread = threading.Thread(target=self._loop, name=f"stream-{name}", daemon=True)
        for metric in (metrics.stream_up, metrics.stream_lag):
            metric.labels(name).set(0)
        for counter in (metrics.stream_reconnects, metrics.stream_gaps, metrics.stream_gap_seconds):
            counter.labels(name)  # shown at 0 before the first drop
        metrics.stream_frames_sampled.labels(name)
        metrics.stream_segments.labels(name)

    def start(self) -> None:
        self._close_left_open()
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def healthy(self) -> bool:
        return self._thread.is_alive()

    def _close_left_open(self) -> None:
        """Segments a crash left open are closed with what was published of them, never resumed."""
        for media_id, frames, duration_ms, width, height in self.state.open_segments(self.name):
            log.info("closing a segment of %s cut short when rvs stopped", self.name, extra=media_log(media_id))
            self._sampled(media_id, frames, duration_ms, (width, height))
            self.state.close_segment(media_id)

    def _loop(self) -> None:
        delay = 0.0
        failing: str | None = None
        while not self.stopping.is_set():
            sampled = False
            try:
                sampled = self._connection()
            except StreamEnded:
                log.warning("stream %s ended (%s); reconnecting", self.name, self.shown)
                failing = None
            except StreamError as exc:
                self.metrics.stream_errors.labels(self.name, exc.reason).inc()
                if exc.reason != failing:  # once per distinct problem, not at every retry
                    log.warning("stream %s: %s; reconnecting", self.name, exc.detail)
                failing = exc.reason
            except (Interrupted, BusClosed):
                pass
            except Exception:  # one bad stream must never stop the sampler
                self.metrics.stream_errors.labels(self.name, "INTERNAL").inc()
                log.exception("stream %s failed; reconnecting", self.name)
                failing = "INTERNAL"
            finally:
                # Down before the segment's close is published: whoever sees it closed sees the drop.
                self.metrics.stream_up.labels(self.name).set(0)
                self._close_segment()
            if self.stopping.is_set():
                break
            delay = self.backoff.first_s if sampled else self.backoff.grow(delay)
            if sampled:
                failing = None
            if self.stopping.wait(delay):
                break
            self.metrics.stream_reconnects.labels(self.name).inc()

    def _connection(self) -> bool:
        """Sample one connection until it drops (an exception) or the service stops; True if it
        gave frames."""
        timeout = self.settings.stream_read_timeout_s
        with StreamReader(self._url, timeout, self.settings.stream_rtsp_transport) as reader:
            log.info("stream %s connected (%s)", self.name, self.shown)
            self.metrics.stream_up.labels(self.name).set(1)
            timeline: Timeline | None = None
            sampled = False
            for packet in reader.packets():
                if self.stopping.is_set():
                    return sampled
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    continue
                t = reader.seconds(stamp)
                if timeline is None or timeline.discontinuous(t):
                    if timeline is not None:
                        log.info("stream %s: its timestamps jumped; starting a new segment", self.name)
                        self._close_segment()
                    timeline = self._timeline(timeline is None)
                if timeline.arrived(t, now_ms()):
                    log.info("stream %s: its wall clock was late; starting a new segment on a better one", self.name)
                    self._close_segment()
                    timeline.end_segment()
                if timeline.rolls(t, packet.is_keyframe):
                    self._close_segment()
                    self._open_segment(timeline, t, reader, stamp)
                for frame in self._decoded(packet):
                    if frame.pts is None:
                        continue
                    ft = reader.seconds(frame.pts)
                    self._last_wall_ms = timeline.wall_ms(ft) if timeline.first is not None else now_ms()
                    sample = timeline.frame(ft)
                    if sample is not None and self._segment is not None:
                        self._publish(frame, sample.index, sample.time_ms)
                        self.metrics.stream_lag.labels(self.name).set(timeline.lag_s(ft, now_ms()))
                        sampled = True
                if self._segment is not None and self._segment.recording is not None:
                    self._segment.recording.write(packet)  # after decoding: muxing re-stamps the packet
            return sampled

    def _decoded(self, packet: av.Packet) -> list[av.VideoFrame]:
        """The packet's frames; a damaged packet costs only its own frames, not the connection."""
        try:
            return packet.decode()  # type: ignore[return-value]
        except (av.error.InvalidDataError, av.error.ArgumentError) as exc:
            self.metrics.stream_errors.labels(self.name, "DAMAGED_PACKET").inc()
            log.debug("stream %s: skipping a packet that does not decode (%s)", self.name, exc)
            return []

    def _timeline(self, connected: bool) -> Timeline:
        """The wall-clock anchor of what follows: now. After a drop, the time since the last frame is a gap."""
        anchor = now_ms()
        if connected and self._last_wall_ms is not None:
            gap_s = max(0.0, (anchor - self._last_wall_ms) / 1000)
            self.metrics.stream_gaps.labels(self.name).inc()
            self.metrics.stream_gap_seconds.labels(self.name).inc(gap_s)
            log.info("stream %s is back after a gap of %.1fs", self.name, gap_s)
        s = self.settings
        return Timeline(anchor, s.fps, s.stream_segment_s, jump_s=s.stream_read_timeout_s)

    def _open_segment(self, timeline: Timeline, t: Fraction, reader: StreamReader, stamp: int) -> None:
        segment = timeline.start_segment(t)
        started = segment.started_at_ms
        media_id = segment_id(self.name, started)
        recording = None
        if self.settings.recording_dir is not None:
            path = recording_path(self.settings.recording_dir, self.name, started)
            try:
                recording = Recording(path, reader.video, stamp)
                uri = str(path)
            except (av.error.FFmpegError, OSError) as exc:
                log.warning("stream %s: cannot record into %s (%s); sampling only", self.name, path, exc)
                uri = f"{self.source}/{started}"
        else:
            uri = f"{self.source}/{started}"
        alert = self.name in self.settings.stream_alert_unknown
        job = MediaJob(
            media_id,
            None,
            uri,
            pb.MEDIA_KIND_VIDEO,
            self.source,
            started,
            self.models(),
            stream=self.name,
            alert_unknown=alert,
        )
        # The state first: a crash after the events leaves the segment to close at the next start.
        self.state.open_segment(media_id, self.name)
        discovered = pb.MediaDiscovered(
            uri=uri, kind=pb.MEDIA_KIND_VIDEO, source=self.source, stream=self.name, started_at_ms=started
        )
        self.events.publish(pb.MediaEvent(media_id=media_id, at_ms=started, discovered=discovered))
        interval_ms = round(1000 / self.settings.fps)
        self.events.publish(
            pb.MediaEvent(
                media_id=media_id, at_ms=now_ms(), sampling_started=pb.SamplingStarted(sample_interval_ms=interval_ms)
            )
        )
        self._segment = _Open(job, recording)
        log.info("stream %s: segment started at %d", self.name, started, extra=media_log(media_id))

    def _publish(self, frame: av.VideoFrame, index: int, time_ms: int) -> None:
        segment = self._segment
        assert segment is not None
        if segment.removed:
            return
        w, h = fit_within(frame.width, frame.height, self.settings.frame_max_side)
        rgb: np.ndarray = np.ascontiguousarray(frame.to_ndarray(width=w, height=h, format="rgb24"))
        try:
            self.sampler.publish_frame(segment.job, index, time_ms, rgb, frame.width / w)
        except Removed:
            log.info("stream %s: the segment was removed; its other frames are not sampled", self.name)
            segment.removed = True
            return
        except BusUnavailable as exc:  # a live frame cannot wait: it is lost, and said so
            log.warning("stream %s: bus unavailable, frame at %d ms lost (%s)", self.name, time_ms, exc)
            return
        segment.frames += 1
        segment.last_ms = time_ms
        segment.size = (frame.width, frame.height)
        self.metrics.stream_frames_sampled.labels(self.name).inc()
        self.state.segment_progress(segment.job.media_id, segment.frames, time_ms, *segment.size)

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        if segment.recording is not None:
            segment.recording.close()
        media_id = segment.job.media_id
        try:
            self.sampler.frames.flush()
            self._sampled(media_id, segment.frames, segment.last_ms, segment.size)
        except (BusUnavailable, BusClosed) as exc:  # left open: closed at the next start
            log.warning("stream %s: could not close the segment (%s)", self.name, exc, extra=media_log(media_id))
            return
        self.state.close_segment(media_id)
        self.metrics.stream_segments.labels(self.name).inc()
        log.info("stream %s: segment closed, %d frames", self.name, segment.frames, extra=media_log(media_id))

    def _sampled(self, media_id: str, frames: int, duration_ms: int, size: tuple[int, int]) -> None:
        sampled = pb.MediaSampled(frame_count=frames, duration_ms=duration_ms, width=size[0], height=size[1])
        self.events.publish(pb.MediaEvent(media_id=media_id, at_ms=now_ms(), sampled=sampled))
