from __future__ import annotations

from pathlib import Path

from pydantic import Field

from rvs.config import BusSettings


class SamplerSettings(BusSettings):
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
