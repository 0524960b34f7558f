from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SamplerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.media_discovered = Counter(
            "rvs_media_discovered", "Media items found in a source.", ["kind"], registry=registry
        )
        self.media_sampled = Counter(
            "rvs_media_sampled", "Media items whose every frame was published.", ["kind"], registry=registry
        )
        self.media_failed = Counter(
            "rvs_media_failed", "Media items that could not be ingested.", ["reason"], registry=registry
        )
        self.frames_published = Counter("rvs_frames_published", "Frames published to the bus.", registry=registry)
        self.frame_bytes = Histogram(
            "rvs_frame_payload_bytes",
            "Size of published frame payloads.",
            buckets=(16e3, 32e3, 64e3, 128e3, 256e3, 512e3, 1e6, 2e6),
            registry=registry,
        )
        self.sampling_ratio = Histogram(
            "rvs_sampling_seconds_per_video_second",
            "Wall seconds spent sampling one second of video.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.source_scans = Counter("rvs_source_scans", "Scans of a source.", ["source"], registry=registry)
        self.source_errors = Counter(
            "rvs_source_errors",
            "Failed scans or reads of a source, by reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.bucket_notifications = Counter(
            "rvs_bucket_notifications", "Bucket event notifications received.", ["event"], registry=registry
        )
        self.bucket_bytes = Counter(
            "rvs_bucket_downloaded_bytes", "Bytes of objects downloaded from the bucket.", registry=registry
        )
        # Live streams, by the stream's name (never its URL).
        self.stream_up = Gauge(
            "rvs_stream_up", "1 while the stream is connected and read.", ["stream"], registry=registry
        )
        self.stream_reconnects = Counter(
            "rvs_stream_reconnects",
            "Attempts to connect to a stream again after it dropped.",
            ["stream"],
            registry=registry,
        )
        self.stream_gaps = Counter(
            "rvs_stream_gaps",
            "Times the stream dropped and came back, leaving a stretch unrecorded.",
            ["stream"],
            registry=registry,
        )
        self.stream_gap_seconds = Counter(
            "rvs_stream_gap_seconds",
            "Wall-clock seconds of the stream missed while it was away.",
            ["stream"],
            registry=registry,
        )
        self.stream_frames_sampled = Counter(
            "rvs_stream_frames_sampled", "Frames sampled from the stream and published.", ["stream"], registry=registry
        )
        self.stream_lag = Gauge(
            "rvs_stream_lag_seconds",
            "How far behind live the last sampled frame was handled.",
            ["stream"],
            registry=registry,
        )
        self.stream_segments = Counter(
            "rvs_stream_segments", "Segments (media items) of the stream closed.", ["stream"], registry=registry
        )
        self.stream_errors = Counter(
            "rvs_stream_errors",
            "Failed connections or reads of a stream, by reason.",
            ["stream", "reason"],
            registry=registry,
        )
