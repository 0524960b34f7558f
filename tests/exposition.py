"""The metrics each service must expose, checked on a real scrape with prometheus-client's parser."""

from __future__ import annotations

import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# (family name as the parser reports it, type). Counters are exposed with a _total suffix.
REQUIRED: dict[str, set[tuple[str, str]]] = {
    "sampler": {
        ("rvs_media_discovered", "counter"),
        ("rvs_media_sampled", "counter"),
        ("rvs_media_failed", "counter"),
        ("rvs_frames_published", "counter"),
        ("rvs_frame_payload_bytes", "histogram"),
        ("rvs_sampling_seconds_per_video_second", "histogram"),
        ("rvs_source_scans", "counter"),
        ("rvs_source_errors", "counter"),
        ("rvs_bucket_notifications", "counter"),
        ("rvs_bucket_downloaded_bytes", "counter"),
        ("rvs_stream_up", "gauge"),
        ("rvs_stream_reconnects", "counter"),
        ("rvs_stream_gaps", "counter"),
        ("rvs_stream_gap_seconds", "counter"),
        ("rvs_stream_frames_sampled", "counter"),
        ("rvs_stream_lag_seconds", "gauge"),
        ("rvs_stream_segments", "counter"),
        ("rvs_stream_errors", "counter"),
    },
    "embedder": {
        ("rvs_frames_consumed", "counter"),
        ("rvs_frames_embedded", "counter"),
        ("rvs_frames_failed", "counter"),
        ("rvs_faces_detected", "counter"),
        ("rvs_faces_rejected", "counter"),
        ("rvs_embed_batch_frames", "histogram"),
        ("rvs_detect_seconds", "histogram"),
        ("rvs_embed_seconds", "histogram"),
        ("rvs_upsert_seconds", "histogram"),
        ("rvs_milvus_upsert_errors", "counter"),
        ("rvs_kafka_consumer_lag", "gauge"),
        ("rvs_alerts_raised", "counter"),
    },
    "query": {
        ("rvs_rpc_seconds", "histogram"),
        ("rvs_rpcs", "counter"),
        ("rvs_search_face_hits", "histogram"),
        ("rvs_index_faces", "gauge"),
        ("rvs_index_media", "gauge"),
        ("rvs_web_requests", "counter"),
        ("rvs_web_request_seconds", "histogram"),
        ("rvs_web_stills", "counter"),
    },
}


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def scrape_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def missing(text: str, *services: str) -> set[tuple[str, str]]:
    """Required (name, type) pairs of these services that the exposition lacks."""
    found = set(families(text).items())
    return set().union(*(REQUIRED[s] for s in services)) - found


def convention_problems(text: str) -> list[str]:
    """Prometheus naming: rvs_ prefix, snake case, base units as suffixes, help on everything."""
    problems = []
    for f in text_string_to_metric_families(text):
        if not f.name.startswith("rvs_") or f.name.endswith("_created"):
            continue  # process_*, python_* and *_created series come from the client library
        if not re.fullmatch(r"rvs_[a-z][a-z0-9_]*", f.name):
            problems.append(f"{f.name}: not snake case")
        if not f.documentation:
            problems.append(f"{f.name}: no help text")
        if re.search(r"_(ms|milliseconds|kb|mb|minutes)(_|$)", f.name):
            problems.append(f"{f.name}: not a base unit")
        if ("seconds" in f.name or "bytes" in f.name) and not re.search(r"_(seconds|bytes)(_per_[a-z_]+)?$", f.name):
            problems.append(f"{f.name}: the unit must be the suffix")
        if f.type == "counter" and any(s.name.endswith("_total_total") for s in f.samples):
            problems.append(f"{f.name}: counter named with _total")
    return problems
