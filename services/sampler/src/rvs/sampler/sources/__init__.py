"""Where media comes from: a watched folder or a watched S3-compatible bucket."""

from __future__ import annotations

from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics
from rvs.sampler.sources.base import Entry, Fetched, ScanResult, Source, SourceError

__all__ = ["Entry", "Fetched", "ScanResult", "Source", "SourceError", "open_sources"]


def open_sources(settings: SamplerSettings, metrics: SamplerMetrics) -> list[Source]:
    from rvs.sampler.sources.folder import FolderSource

    sources: list[Source] = []
    if settings.watch_dir is not None:
        sources.append(
            FolderSource(settings.watch_dir, settings.settle_s, settings.follow_symlinks, settings.scan_interval_s)
        )
    if settings.bucket:
        from rvs.sampler.sources.bucket import BucketSource  # boto3 is only imported when a bucket is watched

        sources.append(BucketSource(settings, metrics))
    if not sources and not settings.streams:
        raise ValueError(
            "nothing to watch: give a folder (--watch DIR, RVS_WATCH_DIR), a bucket (--bucket NAME, RVS_BUCKET)"
            " or a stream (--stream NAME=URL, RVS_STREAMS)"
        )
    return sources
