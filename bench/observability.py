"""Observability figures: the cost of metrics on embedder throughput, and how soon an object
uploaded to a bucket is searchable via event notifications vs via listing.

    uv run python bench/observability.py [--pairs 3] [--uploads 5]

Needs versitygw (see .ci/run; RVS_VERSITYGW or ~/go/bin). Writes bench/results/observability.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.media.frames import encode_jpeg
from rvs.core.media.video import VideoSampler
from rvs.core.metrics_http import MetricsEndpoint
from rvs.core.store.embedded_milvus import EmbeddedMilvus
from rvs.core.store.faces import open_face_store
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from common import SHARED, free_port, save, talking_head_clip

MODEL = "dlib-resnet"


class _NoMetrics:
    """Stands in for EmbedderMetrics: every instrument call does nothing."""

    def __getattr__(self, name: str) -> _NoMetrics:
        return self

    def __call__(self, *args: object, **kwargs: object) -> _NoMetrics:
        return self


class _Events:
    def publish(self, event: pb.MediaEvent) -> None:
        """Progress is not what this benchmark measures."""


def clip_frames(n: int) -> list[pb.Frame]:
    clip = talking_head_clip(60, 1280, 720, 2.0)
    with VideoSampler(clip, fps=1.0) as video:
        samples = [s for s, _ in zip(video, range(n), strict=False)]
    return [
        pb.Frame(
            media_id="bench",
            uri=str(clip),
            kind=pb.MEDIA_KIND_VIDEO,
            sample_index=s.index,
            time_ms=s.time_ms,
            image=encode_jpeg(s.rgb, 90),
            encoding=pb.FRAME_ENCODING_JPEG,
            width=s.rgb.shape[1],
            height=s.rgb.shape[0],
            scale=s.scale,
        )
        for s in samples
    ]


def metrics_overhead(milvus_uri: str, pairs: int, n_frames: int) -> dict[str, Any]:
    settings = EmbedderSettings(model=MODEL, metrics_port=0)
    pipeline = FacePipeline(settings)
    pipeline.load()
    store = open_face_store(settings, milvus_uri, pipeline.model_name, pipeline.dim)
    frames = clip_frames(n_frames)
    registry = CollectorRegistry()
    service = EmbedderService(settings, None, _Events(), pipeline, store, registry)  # type: ignore[arg-type]
    endpoint = MetricsEndpoint(registry, "127.0.0.1", free_port())
    endpoint.start()
    scraping = threading.Event()

    def scrape() -> None:  # as Prometheus would, but every second
        while not scraping.wait(1.0):
            urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics").read()

    threading.Thread(target=scrape, daemon=True).start()
    real = service.metrics
    batch = settings.batch_size

    def run() -> float:
        t0 = time.perf_counter()
        for i in range(0, len(frames), batch):
            service.process(frames[i : i + batch])
        return len(frames) / (time.perf_counter() - t0)

    run()  # warm-up
    with_m, without_m = [], []
    for _ in range(pairs):  # alternate, so drift hits both alike
        service.metrics = real
        with_m.append(run())
        service.metrics = _NoMetrics()  # type: ignore[assignment]
        without_m.append(run())
    scraping.set()
    endpoint.stop()

    # The instrument calls one batch makes, timed on their own.
    calls = 200_000
    t0 = time.perf_counter()
    for _ in range(calls):
        real.frames_consumed.inc(16)
        real.batch_size.observe(16)
        real.detect_seconds.observe(0.5)
        real.embed_seconds.observe(0.2)
        real.frames_embedded.inc(16)
        real.faces_detected.inc(16)
        real.upsert_seconds.observe(0.01)
    per_batch_us = (time.perf_counter() - t0) / calls * 1e6
    store.close()
    return {
        "frames": len(frames),
        "batch": batch,
        "frames_per_s_with_metrics": with_m,
        "frames_per_s_without_metrics": without_m,
        "ratio_with_over_without": statistics.median(with_m) / statistics.median(without_m),
        "metric_calls_per_batch_us": per_batch_us,
        "batch_seconds": batch / statistics.median(with_m),
    }


def start_versitygw(root: Path, webhook: str = "") -> tuple[subprocess.Popen[bytes], str]:
    import os

    binary = os.environ.get("RVS_VERSITYGW") or shutil.which("versitygw") or str(Path.home() / "go/bin/versitygw")
    port = free_port()
    args = [binary, "--access", "bench", "--secret", "bench-secret", "--port", f"127.0.0.1:{port}"]
    if webhook:
        args += ["--event-webhook-url", webhook]
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [*args, "posix", "--sidecar", str(root / "meta"), str(root / "data")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return proc, f"http://127.0.0.1:{port}"


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
        region_name="us-east-1",
    )


def upload_to_searchable(
    milvus_uri: str, tmp: Path, notifications: bool, list_interval_s: float, photos: list[Path]
) -> list[float]:
    """Seconds from the end of each upload until Search with that photo returns it."""
    root = tmp / f"s3-{notifications}-{list_interval_s}"
    plain, endpoint = start_versitygw(root)
    s3_client(endpoint).create_bucket(Bucket="inbox")
    hook_port = free_port() if notifications else 0
    port = free_port()
    common = {"data_dir": tmp / f"data-{notifications}-{list_interval_s}", "metrics_port": 0}
    s3 = {
        "bucket": "inbox",
        "s3_endpoint_url": endpoint,
        "s3_access_key_id": "bench",
        "s3_secret_access_key": "bench-secret",
        "bucket_list_interval_s": list_interval_s,
        "bucket_notify_port": hook_port,
    }
    settings = EmbeddedSettings(
        sampler=SamplerSettings(**common, **s3),  # type: ignore[arg-type]
        embedder=EmbedderSettings(**common, model=MODEL, milvus_uri=milvus_uri, collection=f"obs_{notifications}"),  # type: ignore[arg-type]
        query=QuerySettings(
            **common, model=MODEL, port=port, web_port=0, milvus_uri=milvus_uri, collection=f"obs_{notifications}"
        ),  # type: ignore[arg-type]
    )
    app = EmbeddedApp(settings)
    app.start()
    uploader, upload_endpoint = plain, endpoint
    if notifications:  # a second gateway on the same storage posts events to rvs
        uploader, upload_endpoint = start_versitygw(root, f"http://127.0.0.1:{hook_port}/")
    client = s3_client(upload_endpoint)
    latencies = []
    try:
        time.sleep(2.0)  # the first listing is done
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rvs_pb2_grpc.SearchServiceStub(channel)
            for i, photo in enumerate(photos):
                key = f"up/{i}-{photo.name}"
                client.upload_file(str(photo), "inbox", key)
                t0 = time.perf_counter()
                query = pb.SearchRequest(image=photo.read_bytes(), top_k=50, min_score=0.9)
                while True:
                    hits = stub.Search(query, timeout=30).images
                    if any(h.uri.endswith(key) for h in hits):
                        break
                    time.sleep(0.05)
                latencies.append(time.perf_counter() - t0)
                time.sleep(list_interval_s * 0.37)  # uploads land at different points of the listing cycle
    finally:
        app.stop()
        for proc in {plain, uploader}:
            proc.terminate()
            proc.wait(10)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--uploads", type=int, default=5)
    parser.add_argument("--list-interval", type=float, default=30.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rvs-bench-obs-"))
    milvus = EmbeddedMilvus(tmp / "milvus", free_port())
    milvus.start()
    try:
        overhead = metrics_overhead(milvus.uri, args.pairs, args.frames)
        people = sorted((SHARED / "faces" / "lfw" / "images").glob("*/*_0001.jpg"))[: 2 * args.uploads]
        via_notify = upload_to_searchable(milvus.uri, tmp, True, args.list_interval, people[: args.uploads])
        via_listing = upload_to_searchable(milvus.uri, tmp, False, args.list_interval, people[args.uploads :])
    finally:
        milvus.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nMetrics overhead ({MODEL}, {overhead['frames']} 720p frames, batch {overhead['batch']}, scraped every 1 s)"
    )
    print(f"  with metrics    frames/s {', '.join(f'{x:.2f}' for x in overhead['frames_per_s_with_metrics'])}")
    print(f"  without metrics frames/s {', '.join(f'{x:.2f}' for x in overhead['frames_per_s_without_metrics'])}")
    print(f"  ratio with/without (medians): {overhead['ratio_with_over_without']:.3f}")
    print(
        f"  the instrument calls of one batch: {overhead['metric_calls_per_batch_us']:.1f} us"
        f" of a {overhead['batch_seconds']:.2f} s batch"
    )
    print(f"\nUpload -> first searchable face ({args.uploads} uploads each, listing every {args.list_interval:g} s)")
    for name, values in (("notifications", via_notify), ("listing only", via_listing)):
        print(
            f"  {name:<14} median {statistics.median(values):6.2f} s   min {min(values):6.2f}   max {max(values):6.2f}"
        )
    path = save(
        "observability",
        {
            "metrics_overhead": overhead,
            "upload_to_searchable_s": {
                "list_interval_s": args.list_interval,
                "notifications": via_notify,
                "listing": via_listing,
                "median_ratio_listing_over_notifications": statistics.median(via_listing)
                / statistics.median(via_notify),
            },
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
