"""Reading a live stream with PyAV: opened and read under timeouts, so a server that stops sending
ends the read instead of hanging it; every error names the stream, never its URL's credentials."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from types import TracebackType

import av
import av.error

from rvs.sampler.streams.spec import redact_url


class StreamError(Exception):
    """The stream cannot be read just now: `reason` for metrics, `detail` (redacted) for the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class StreamEnded(Exception):
    """The server ended the stream (the publisher stopped): reconnect, like after a drop."""


def _options(url: str, rtsp_transport: str) -> dict[str, str]:
    # Frames handed over as they come (lag behind live stays small); a second of probing finds the
    # codec without waiting the default five.
    options = {"fflags": "nobuffer", "analyzeduration": "1000000"}
    if url.lower().startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = rtsp_transport
    if url.lower().startswith("rtmp"):
        # The client's buffer length (FFmpeg asks for 3 s): nginx-rtmp holds back that much of a live
        # stream, which put every frame ~2 s late on the wall clock (measured); 100 ms keeps it live.
        options["rtmp_buffer"] = "100"
    return options


class StreamReader:
    """One connection to a stream: its video packets with their times in seconds. A context manager."""

    def __init__(self, url: str, timeout_s: float, rtsp_transport: str = "tcp") -> None:
        self.shown = redact_url(url)
        try:
            self._container = av.open(
                url, options=_options(url, rtsp_transport), timeout=(timeout_s, timeout_s), metadata_errors="ignore"
            )
        except av.error.ExitError:
            raise StreamError("TIMEOUT", f"{self.shown} did not open within {timeout_s:g}s") from None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise StreamError(_reason(exc), f"cannot open {self.shown}: {_message(exc, url)}") from None
        self.timeout_s = timeout_s
        if not self._container.streams.video:
            self._container.close()
            raise StreamError("NO_VIDEO", f"{self.shown} has no video stream")
        self.video = self._container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.time_base = self.video.time_base or Fraction(1, 90000)

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._container.close()

    def packets(self) -> Iterator[av.Packet]:
        """Video packets as they arrive. Raises StreamError (a read timed out or failed) or StreamEnded."""
        demux = self._container.demux(self.video)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                raise StreamEnded from None
            except av.error.EOFError:
                raise StreamEnded from None
            except av.error.ExitError:
                raise StreamError("TIMEOUT", f"{self.shown} sent nothing for {self.timeout_s:g}s") from None
            except (av.error.FFmpegError, OSError) as exc:
                raise StreamError(_reason(exc), f"reading {self.shown} failed: {_message(exc, '')}") from None
            if packet.size == 0:  # the flush packet at the end of a stream
                raise StreamEnded
            yield packet

    def seconds(self, pts: int) -> Fraction:
        return pts * self.time_base


def _reason(exc: Exception) -> str:
    if isinstance(exc, av.error.HTTPNotFoundError | av.error.FileNotFoundError):
        return "NOT_FOUND"
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError | av.error.PermissionError):
        return "REFUSED"
    if isinstance(exc, av.error.ConnectionRefusedError | av.error.ConnectionResetError):
        return "CONNECTION"
    if isinstance(exc, av.error.InvalidDataError):
        return "INVALID_DATA"
    return "READ_ERROR"


def _message(exc: Exception, url: str) -> str:
    """The error's text without the URL FFmpeg repeats in it (with its credentials)."""
    text = str(exc)
    if url:
        text = text.replace(url, redact_url(url))
    return text
