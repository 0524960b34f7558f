from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from rvs.core.config import BusSettings
from rvs.sampler.streams.spec import check_name, parse_streams


class SamplerSettings(BusSettings):
    """Watching sources and sampling them into frames."""

    watch_dir: Path | None = None
    """Folder to watch for photos and videos (sub-folders included)."""
    fps: float = Field(1.0, gt=0, le=60)
    """Samples per second of video."""
    frame_max_side: int = Field(1280, ge=160, le=8192)
    """Published frames are downscaled so their long side is at most this many pixels."""
    jpeg_quality: int = Field(90, ge=50, le=100)
    """JPEG quality of published frames."""
    scan_interval_s: float = Field(1.0, gt=0)
    """How often the folder is scanned for new, changed and deleted files."""
    settle_s: float = Field(2.0, ge=0)
    """A file is ingested once its size and modification time have not changed for this long."""
    remove_deleted: bool = False
    """Remove a media item from the index when its last file disappears from the folder."""
    follow_symlinks: bool = False
    """Ingest files behind symbolic links that point outside the watched folder."""
    max_image_pixels: int = Field(100_000_000, ge=1)
    """Photos with more pixels than this are refused (decompression-bomb guard)."""
    decode_workers: int = Field(1, ge=1, le=32)
    """Media decoded in parallel."""

    bucket: str = ""
    """S3-compatible bucket to watch, as well as or instead of the folder (empty: none)."""
    bucket_prefix: str = ""
    """Only objects whose key starts with this are ingested."""
    s3_endpoint_url: str = ""
    """S3 endpoint (http://minio:9000...). Empty: AWS S3."""
    s3_region: str = "us-east-1"
    """Region of the bucket."""
    s3_access_key_id: str = ""
    """S3 access key. Empty: boto3's usual chain (AWS_* variables, ~/.aws, instance role)."""
    s3_secret_access_key: SecretStr | None = None
    """S3 secret key (never logged)."""
    bucket_list_interval_s: float = Field(30.0, gt=0)
    """How often the bucket is listed in full. Listing finds everything; notifications only make
    new objects show up sooner."""
    bucket_notify_port: int = Field(0, ge=0, le=65535)
    """Port of the webhook that receives the bucket's event notifications (0: listing only)."""
    bucket_notify_host: str = "127.0.0.1"
    """Interface the notification webhook binds to."""
    bucket_notify_token: SecretStr | None = None
    """If set, notifications must carry `Authorization: Bearer <token>`."""
    bucket_notify_arn: str = ""
    """If set, rvs configures the bucket to send its created/removed events to this target at start
    (MinIO: arn:minio:sqs::<id>:webhook). Stores that are configured on their side leave it empty."""

    streams: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    """Live streams to watch, each as NAME=URL (RTSP, RTMP, HLS, SRT: what FFmpeg opens): repeated
    `--stream cam1=rtsp://host/path`, or RVS_STREAMS="cam1=rtsp://... cam2=rtmp://..." (or a JSON
    object). Names are letters, digits, '_' and '-'; credentials in URLs are never logged."""
    stream_segment_s: float = Field(300.0, ge=1.0, le=86_400.0)
    """A stream is stored as media items (segments) of about this many seconds each, one after
    another; a segment starts at a keyframe, and a reconnection starts a new one."""
    stream_read_timeout_s: float = Field(10.0, gt=0, le=600)
    """A stream that sends nothing for this long (or does not open within it) counts as dropped."""
    stream_backoff_first_s: float = Field(1.0, gt=0)
    """First pause before reconnecting to a dropped stream; it doubles at each failed attempt."""
    stream_backoff_max_s: float = Field(30.0, gt=0)
    """Longest pause between two reconnection attempts."""
    stream_rtsp_transport: Literal["tcp", "udp"] = "tcp"
    """How RTSP streams carry their packets (tcp: no loss behind firewalls and NAT)."""
    stream_alert_unknown: Annotated[tuple[str, ...], NoDecode] = ()
    """Streams (names, separated by commas or spaces) whose faces nobody knows raise an alert."""
    recording_dir: Path | None = None
    """If set, each segment of a stream is recorded (remuxed, not re-encoded) as
    <recording_dir>/<name>/<name>-<start ms>.mp4, which search results play and show stills from;
    unset: only the sampled frames are kept (in the index)."""

    @field_validator("streams", mode="before")
    @classmethod
    def _parse_streams(cls, value: object) -> dict[str, str]:
        return parse_streams(value)

    @field_validator("stream_alert_unknown", mode="before")
    @classmethod
    def _parse_names(cls, value: object) -> tuple[str, ...]:
        names = value.replace(",", " ").split() if isinstance(value, str) else list(value or ())  # type: ignore[call-overload]
        return tuple(check_name(str(n)) for n in names)

    @model_validator(mode="after")
    def _streams_agree(self) -> SamplerSettings:
        unknown = sorted(set(self.stream_alert_unknown) - set(self.streams))
        if unknown:
            raise ValueError(f"stream_alert_unknown names streams that are not configured: {', '.join(unknown)}")
        if self.stream_backoff_max_s < self.stream_backoff_first_s:
            raise ValueError("stream_backoff_max_s is shorter than stream_backoff_first_s")
        if self.recording_dir is not None and self.watch_dir is not None:
            recordings, watched = self.recording_dir.resolve(), self.watch_dir.resolve()
            if recordings.is_relative_to(watched):
                raise ValueError(
                    f"recording_dir {self.recording_dir} is inside watch_dir {self.watch_dir}: "
                    "its recordings would be ingested again as files"
                )
        return self
