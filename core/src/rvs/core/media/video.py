"""Sampling a video at a fixed rate by its real presentation timestamps.

Sample k is the first frame whose timestamp is at or after k / fps seconds from the start of the
stream, so variable frame rates, odd start times and gaps give true sample times. Frames are only
converted to RGB when they are published. Where the container indexes its keyframes (MP4, MOV,
MKV...) the sampler seeks to the last keyframe before each sample time whenever that skips frames it
would otherwise decode: cheap on short GOPs, and equivalent to decoding straight through on long
ones.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.error
import numpy as np

from rvs.core.media.errors import DecodeError, EmptyFile, NoVideoStream
from rvs.core.media.frames import fit_within

log = logging.getLogger(__name__)

# A frame this close before a sample time still counts as "at" it (rounding of timestamps).
_TOLERANCE = Fraction(1, 1000)


@dataclass(frozen=True)
class Sample:
    index: int
    time_ms: int
    rgb: np.ndarray  # (H, W, 3) uint8, upright
    scale: float  # size in the original video = size of `rgb` * scale


@dataclass(frozen=True)
class VideoInfo:
    duration_ms: int
    width: int  # as coded: before rotation and downscaling
    height: int
    codec: str
    keyframes: int  # keyframes in the container index (0: not indexed)


class VideoSampler:
    """Iterates the samples of one video file. Use as a context manager."""

    def __init__(self, path: str | Path, fps: float = 1.0, max_side: int | None = None, threads: int = 0):
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.path = Path(path)
        self.interval = Fraction(1) / Fraction(fps).limit_denominator(1000)
        self.max_side = max_side
        if self.path.stat().st_size == 0:
            raise EmptyFile("the file is empty (0 bytes)")
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise DecodeError(f"not a decodable media file: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise NoVideoStream("the file has no video stream")
        self._stream = self._container.streams.video[0]
        if self._stream.codec_context is None:
            self._container.close()
            raise DecodeError("the video stream has no decodable codec")
        # Frame threads speed up decoding; slice threads help for single large frames.
        self._stream.thread_type = "AUTO"
        if threads:
            self._stream.codec_context.thread_count = threads
        self._time_base = self._stream.time_base or Fraction(1, 90000)
        self._origin = self._stream.start_time if self._stream.start_time is not None else 0
        self._keyframes = self._keyframe_index()
        self._rate = Fraction(self._stream.average_rate) if self._stream.average_rate else None
        self._skipping = False
        self.info = self._probe()
        self.seeks = 0
        self.frames_decoded = 0
        self.damaged_packets = 0

    def __enter__(self) -> VideoSampler:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _keyframe_index(self) -> list[int]:
        """Timestamps of indexed keyframes, ascending; empty if the container has no usable index."""
        if self._container.format.name.split(",")[0] in {"gif", "image2", "mpegts", "mpeg"}:
            return []  # no index, or seeking there is not reliable
        try:
            entries = self._stream.index_entries
            stamps = sorted({e.timestamp for e in entries if e.is_keyframe})
            first = entries[0].timestamp if len(entries) else 0
        except (AttributeError, av.error.FFmpegError):
            return []
        # Index entries carry decode timestamps; seeking and frames use presentation timestamps.
        # With B-frames the two differ by a constant shift, which the stream's start shows.
        shift = (self._stream.start_time - first) if self._stream.start_time is not None else 0
        stamps = [s + shift for s in stamps]
        return stamps if len(stamps) > 1 else []

    def _probe(self) -> VideoInfo:
        ctx = self._stream.codec_context
        width, height = ctx.width, ctx.height
        duration = Fraction(0)
        if self._stream.duration:
            duration = self._stream.duration * self._time_base
        elif self._container.duration:
            duration = Fraction(self._container.duration, 1_000_000)
        return VideoInfo(
            duration_ms=int(duration * 1000),
            width=width,
            height=height,
            codec=ctx.name,
            keyframes=len(self._keyframes),
        )

    def _seconds(self, pts: int) -> Fraction:
        return (pts - self._origin) * self._time_base

    def _keyframe_before(self, t: Fraction) -> int | None:
        target = self._origin + int(t / self._time_base)
        i = bisect.bisect_right(self._keyframes, target) - 1
        return self._keyframes[i] if i >= 0 else None

    def _frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames from the current position. A packet that does not decode is skipped, so
        a damaged stretch costs only its own frames; damage to the container itself ends the file."""
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.error.EOFError, av.error.InvalidDataError) as exc:
                if not isinstance(exc, av.error.EOFError):
                    log.warning("stopped reading %s early: %s", self.path.name, exc)
                return
            try:
                frames = packet.decode()
            except av.error.EOFError:
                return
            except av.error.InvalidDataError as exc:
                self.damaged_packets += 1
                if self.damaged_packets == 1:
                    log.warning("skipping damaged data in %s: %s", self.path.name, exc)
                continue
            for frame in frames:
                self.frames_decoded += 1
                yield frame

    def _skip_nonref(self, ahead: Fraction) -> None:
        """Far from the next sample, decode only frames that others refer to (B-frames are often half
        of a long GOP). Decoding resumes in full while the frames still in flight (one per frame
        thread, plus reordering) cannot reach the sample, so the sampled frame is always decoded."""
        if self._rate is None:
            return
        in_flight = self._stream.codec_context.thread_count + 8
        skip = ahead > in_flight / self._rate
        if skip != self._skipping:
            self._stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            self._skipping = skip

    def _to_sample(self, index: int, t: Fraction, frame: av.VideoFrame) -> Sample:
        width, height = frame.width, frame.height
        scale = 1.0
        if self.max_side:
            w, h = fit_within(width, height, self.max_side)
            if (w, h) != (width, height):
                scale = width / w
                width, height = w, h
        # Rows may be padded (a 150-pixel-wide frame): models that read the buffer need it contiguous.
        rgb: np.ndarray = np.ascontiguousarray(frame.to_ndarray(width=width, height=height, format="rgb24"))
        quarter_turns = round((frame.rotation or 0) / 90) % 4
        if quarter_turns:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))
        return Sample(index=index, time_ms=int(t * 1000), rgb=rgb, scale=scale)

    def frame_at(self, time_ms: int) -> Sample | None:
        """The frame the sampler takes for a sample at `time_ms`: the first at or after it (None
        past the end). Call it once on a freshly opened sampler: it seeks to the keyframe before
        that time where the container has an index, and decodes from the start where not."""
        target = Fraction(time_ms, 1000)
        keyframe = self._keyframe_before(target) if self._keyframes else None
        if keyframe is not None:
            try:
                self._container.seek(keyframe, stream=self._stream, backward=True)
            except av.error.FFmpegError as exc:  # the demuxer stays where it was: at the start
                log.debug("seek failed in %s (%s); decoding from the start", self.path.name, exc)
        for frame in self._frames():
            if frame.pts is not None and self._seconds(frame.pts) + _TOLERANCE >= target:
                return self._to_sample(0, max(self._seconds(frame.pts), Fraction(0)), frame)
        return None

    def __iter__(self) -> Iterator[Sample]:
        index = 0
        target = Fraction(0)
        position: Fraction | None = None  # time of the last decoded frame
        frames: Iterator[av.VideoFrame] | None = None
        while True:
            keyframe = self._keyframe_before(target) if self._keyframes else None
            if keyframe is not None and (position is None or self._seconds(keyframe) > position):
                try:
                    self._container.seek(keyframe, stream=self._stream, backward=True)
                    self.seeks += 1
                    frames = None
                except av.error.FFmpegError as exc:
                    log.debug("seek failed in %s (%s); decoding through", self.path.name, exc)
                    self._keyframes = []
            if frames is None:
                frames = self._frames()
            for frame in frames:
                if frame.pts is None:
                    continue
                t = self._seconds(frame.pts)
                position = t
                self._skip_nonref(target - t)
                if t + _TOLERANCE >= target:
                    yield self._to_sample(index, max(t, Fraction(0)), frame)
                    index += 1
                    # Next sample time on the grid strictly after this frame (gaps skip ticks).
                    target = (t // self.interval + 1) * self.interval
                    break
            else:
                return
