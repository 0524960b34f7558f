"""A segment's recording: the stream's video packets remuxed (not re-encoded) into a fragmented MP4,
which browsers play and which stays readable up to its last fragment if rvs stops mid-segment."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import av.error

log = logging.getLogger(__name__)


def recording_path(recording_dir: Path, name: str, started_at_ms: int) -> Path:
    return recording_dir / name / f"{name}-{started_at_ms}.mp4"


class Recording:
    """Packets of one segment, from its first keyframe; timestamps start at 0 with the segment."""

    def __init__(self, path: Path, template: av.video.stream.VideoStream, start_pts: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._start = start_pts
        self._out = av.open(
            str(path), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}
        )
        self._stream = self._out.add_stream_from_template(template)
        self._last_dts: int | None = None
        self._failed = False

    def write(self, packet: av.Packet) -> None:
        """Add a packet (it is re-stamped: decode it first). A recording that cannot be written any
        more stops, said once; the segment is still sampled."""
        if self._failed or packet.dts is None or packet.pts is None:
            return  # nothing to place it by
        dts = packet.dts - self._start
        if self._last_dts is not None and dts <= self._last_dts:
            return  # the muxer refuses timestamps that do not increase
        packet.pts, packet.dts = packet.pts - self._start, dts
        packet.stream = self._stream
        try:
            self._out.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("recording into %s stopped: %s", self.path, exc)
            self._failed = True
            return
        self._last_dts = dts

    def close(self) -> None:
        try:
            self._out.close()
        except (av.error.FFmpegError, OSError) as exc:  # the frames are indexed all the same
            log.warning("could not finish the recording %s: %s", self.path, exc)
