from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from rvs.core.config import BusSettings


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
