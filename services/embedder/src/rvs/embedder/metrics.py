from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class EmbedderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.frames_consumed = Counter("rvs_frames_consumed", "Frames taken from the bus.", registry=registry)
        self.frames_embedded = Counter(
            "rvs_frames_embedded", "Frames whose faces are written to the index.", registry=registry
        )
        self.frames_failed = Counter(
            "rvs_frames_failed", "Frames that could not be processed.", ["reason"], registry=registry
        )
        self.faces_detected = Counter("rvs_faces_detected", "Faces found and indexed.", registry=registry)
        self.faces_rejected = Counter(
            "rvs_faces_rejected", "Faces detected but not indexed, by reason.", ["reason"], registry=registry
        )
        self.batch_size = Histogram(
            "rvs_embed_batch_frames",
            "Frames per embedder batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.detect_seconds = Histogram(
            "rvs_detect_seconds", "Face detection time per batch.", buckets=_LATENCY, registry=registry
        )
        self.embed_seconds = Histogram(
            "rvs_embed_seconds", "Face embedding time per batch.", buckets=_LATENCY, registry=registry
        )
        self.upsert_seconds = Histogram(
            "rvs_upsert_seconds", "Milvus upsert time per batch.", buckets=_LATENCY, registry=registry
        )
        self.upsert_errors = Counter("rvs_milvus_upsert_errors", "Failed Milvus upserts.", registry=registry)
        self.alerts_raised = Counter(
            "rvs_alerts_raised", "Alerts raised, by kind: watch, unknown.", ["kind"], registry=registry
        )
        self.consumer_lag = Gauge(
            "rvs_kafka_consumer_lag", "Frames waiting in each assigned partition.", ["partition"], registry=registry
        )

    def set_lag(self, lags: dict[int, int]) -> None:
        for partition, lag in lags.items():
            self.consumer_lag.labels(str(partition)).set(lag)
