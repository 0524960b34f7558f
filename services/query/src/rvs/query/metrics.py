from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class QueryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rpc_seconds = Histogram(
            "rvs_rpc_seconds",
            "gRPC request latency.",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.rpcs = Counter(
            "rvs_rpcs", "gRPC requests by method and status code.", ["method", "code"], registry=registry
        )
        self.search_hits = Histogram(
            "rvs_search_face_hits",
            "Faces above the threshold per search.",
            buckets=(0, 1, 10, 100, 1000, 4096, 16384),
            registry=registry,
        )
        self.web_seconds = Histogram(
            "rvs_web_request_seconds",
            "Search page HTTP request latency.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.web_requests = Counter(
            "rvs_web_requests",
            "Search page HTTP requests by route and status code.",
            ["route", "code"],
            registry=registry,
        )
        self.web_stills = Counter(
            "rvs_web_stills",
            "Thumbnails and video frames the search page served, by whether the cache had them.",
            ["cache"],
            registry=registry,
        )
        self.people_units = Counter(
            "rvs_people_units",
            "Photo faces and video tracks clustered, by outcome: joined a person, formed a new one, or loose.",
            ["outcome"],
            registry=registry,
        )
        self.people_pass_seconds = Histogram(
            "rvs_people_pass_seconds",
            "Time of one clustering pass over newly finished media.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.retention_removed = Counter(
            "rvs_retention_removed",
            "Media items removed by retention (older than their source's limit).",
            registry=registry,
        )
        self.retention_purged = Counter(
            "rvs_retention_purged",
            "Removed media items forgotten by the catalog (removed longer ago than their source's limit).",
            registry=registry,
        )
        self.retention_pass_seconds = Histogram(
            "rvs_retention_pass_seconds",
            "Time of one retention pass.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
