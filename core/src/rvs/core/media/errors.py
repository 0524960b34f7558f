"""Errors raised while reading media; each carries a short reason code for status and metrics."""

from __future__ import annotations


class MediaError(Exception):
    """A media item cannot be ingested. `reason` is a short, bounded code (used as a metric label)."""

    reason = "MEDIA_ERROR"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnsupportedMedia(MediaError):
    reason = "UNSUPPORTED_TYPE"


class DecodeError(MediaError):
    reason = "DECODE_ERROR"


class NoVideoStream(MediaError):
    reason = "NO_VIDEO_STREAM"


class TooLarge(MediaError):
    reason = "TOO_LARGE"


class EmptyFile(MediaError):
    reason = "EMPTY_FILE"
