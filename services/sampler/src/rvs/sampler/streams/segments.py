"""The time arithmetic of a live stream, apart from any I/O: wall-clock time from stream time, where
segments start and end, and which frames are samples.

Stream time is the frames' presentation time in seconds. At (re)connection the first packet is
anchored to the wall clock (wall = connect_wall + (pts - first_pts)). A packet is never early, only
late (a thread held up by a loaded machine, a buffer): the anchor follows the most punctual packet
yet, and a segment begun on an anchor that proves late by more than _REANCHOR_MS is ended, so the
next one starts on the right time. A segment starts at a keyframe
(so its recording can be played from its start) once the current one has lasted `segment_s`, or at
the first frame after twice that if no keyframe came; sample k of a segment is its first frame at or
after k / fps seconds from the segment's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

# A frame this close before a sample time still counts as "at" it (rounding of timestamps).
_TOLERANCE = Fraction(1, 1000)
# How late a segment's wall clock may prove before the segment is ended for one on a better anchor.
_REANCHOR_MS = 500


@dataclass(frozen=True)
class Segment:
    started_at_ms: int  # wall-clock unix ms of its time 0
    start: Fraction  # its time 0, in stream time


@dataclass(frozen=True)
class Sample:
    index: int
    time_ms: int  # from the segment's start


class Timeline:
    """One connection's frames, in order: where segments roll over and which frames are sampled."""

    def __init__(self, connect_wall_ms: int, fps: float, segment_s: float, jump_s: float) -> None:
        self.connect_wall_ms = connect_wall_ms
        self._offset_ms: int | None = None  # wall - stream time, of the most punctual packet yet
        self._segment_offset_ms = 0  # the offset the open segment began on
        self.interval = Fraction(1) / Fraction(fps).limit_denominator(1000)
        self.segment_s = Fraction(segment_s).limit_denominator(1000)
        self.jump_s = Fraction(jump_s).limit_denominator(1000)
        self.first: Fraction | None = None
        self.last: Fraction | None = None
        self.segment: Segment | None = None
        self._next_index = 0
        self._next_at = Fraction(0)

    def wall_ms(self, t: Fraction) -> int:
        assert self.first is not None
        if self._offset_ms is None:
            return self.connect_wall_ms + int((t - self.first) * 1000)
        return self._offset_ms + int(t * 1000)

    def arrived(self, t: Fraction, now_ms: int) -> bool:
        """A packet at `t` was read at `now_ms`. True if it shows the open segment's wall clock late
        by more than _REANCHOR_MS: the caller ends the segment (`end_segment`)."""
        if self._offset_ms is None:
            self.first = self.first if self.first is not None else t
            self._offset_ms = self.wall_ms(t) - int(t * 1000)
        self._offset_ms = min(self._offset_ms, now_ms - int(t * 1000))
        return self.segment is not None and self._segment_offset_ms - self._offset_ms > _REANCHOR_MS

    def end_segment(self) -> None:
        """No segment until the next keyframe starts one."""
        self.segment = None

    def discontinuous(self, t: Fraction) -> bool:
        """Whether time jumps here (backwards, or forwards by more than jump_s): the rest of the
        connection cannot be placed on the wall clock from the anchor, so it is treated as a new one."""
        return self.last is not None and (t < self.last - Fraction(1) or t - self.last > self.jump_s)

    def rolls(self, t: Fraction, keyframe: bool) -> bool:
        """Whether a packet at `t` starts a new segment (the first segment begins at a keyframe). The
        connection's first packet is the wall-clock anchor."""
        if self.first is None:
            self.first = t
        if self.segment is None:
            return keyframe
        length = t - self.segment.start
        return (keyframe and length >= self.segment_s) or length >= 2 * self.segment_s

    def start_segment(self, t: Fraction) -> Segment:
        if self.first is None:
            self.first = t
        self.segment = Segment(self.wall_ms(t), t)
        self._segment_offset_ms = self.wall_ms(t) - int(t * 1000)
        self._next_index, self._next_at = 0, Fraction(0)
        return self.segment

    def frame(self, t: Fraction) -> Sample | None:
        """The sample a decoded frame at `t` is, if any (None before the first segment)."""
        self.last = t if self.last is None else max(self.last, t)
        if self.segment is None:
            return None
        offset = max(t - self.segment.start, Fraction(0))
        if offset + _TOLERANCE < self._next_at:
            return None
        sample = Sample(self._next_index, int(offset * 1000))
        self._next_index += 1
        self._next_at = (offset // self.interval + 1) * self.interval  # the next tick after this frame
        return sample

    def lag_s(self, t: Fraction, now_ms: int) -> float:
        """How far behind live the frame at `t` is handled (never below 0: a server may send a burst
        of buffered frames on connection, which the anchor counts as live)."""
        return max(0.0, (now_ms - self.wall_ms(t)) / 1000)

    def offset_ms(self, t: Fraction) -> int:
        assert self.segment is not None
        return int(max(t - self.segment.start, Fraction(0)) * 1000)
