"""Live alerts: from a face appearing on a live stream to its alert reaching a WatchAlerts client.

A clip with a watched LFW face shown for 3 s of every 10 is published in real time into a local
nginx-rtmp (ffmpeg), and `rvs up` (embedded: sampler, embedder and query service in one process,
sface + yunet on this CPU, an embedded Milvus) samples it at 1 fps. With RVS_ALERT_GAP_S=2 each
appearance is a new track, so each raises one alert. For each alert:

- latency: when the client received it, minus when the face first appeared on the publisher's clock
  (ffmpeg's start + the clip's timing): what a user waits, transport and sampling included;
- time error: the alert's seen_at_ms minus that appearance (how right its wall-clock time is).

Baseline in the same run: one sampled frame's own cost (decode + detect + embed in-process, no bus,
no stream) and the sampling interval (a face is first sampled up to 1/fps after it appears), the
floor of any 1-fps pipeline. Writes bench/results/alerts.json.

    uv run python bench/alerts.py [--loops 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
from rvs.core.faces.pipeline import FacePipeline
from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from common import ROOT, SHARED, machine, save

sys.path.insert(0, str(ROOT / "tests"))
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video
from stream_server import available, free_port, rtmp_server

LOOP_S, SHOWN = 10, (4.0, 7.0)
FACE = SHARED / "faces" / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg"
WATCHED_FROM = SHARED / "faces" / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0010.jpg"
BACKGROUND = SHARED / "media" / "dlib" / "examples" / "video_frames" / "frame_000100.jpg"


def _settings(data: Path, url: str) -> EmbeddedSettings:
    common = dict(data_dir=data, model="sface", detector="yunet", metrics_port=0)
    return EmbeddedSettings(
        sampler=SamplerSettings(data_dir=data, metrics_port=0, streams=[f"cam1={url}"]),
        embedder=EmbedderSettings(**common, alert_gap_s=2),  # type: ignore[arg-type]
        query=QuerySettings(**common, port=free_port()),  # type: ignore[arg-type]
    )


def frame_cost_s(settings: EmbedderSettings, frame: object, runs: int = 10) -> float:
    """Detect + embed of one sampled frame, in-process: the embedder's floor per frame."""
    pipeline = FacePipeline(settings)
    pipeline.load()
    pipeline.analyse([frame])  # warm
    t0 = time.perf_counter()
    for _ in range(runs):
        pipeline.analyse([frame])
    return (time.perf_counter() - t0) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loops", type=int, default=8, help="appearances measured")
    args = parser.parse_args()
    if why := available():
        raise SystemExit(why)
    background = load_rgb(BACKGROUND, (1280, 720))
    draw = scene(background, [Appearance(FACE, *SHOWN, x=500, y=200)], {FACE: load_rgb(FACE)})
    with tempfile.TemporaryDirectory() as tmp, rtmp_server(Path(tmp) / "nginx") as server:
        clip = write_video(Path(tmp) / "loop.mp4", draw, cfr_times(LOOP_S, 25), gop=25)
        s = _settings(Path(tmp) / "data", server.url("cam1"))
        cost = frame_cost_s(s.embedder, draw(SHOWN[0]))
        app = EmbeddedApp(s)
        app.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{s.query.port}")
        stub = rvs_pb2_grpc.SearchServiceStub(channel)
        got: list[tuple[pb.Alert, float]] = []
        try:
            stub.AddWatch(pb.AddWatchRequest(name="Bush", images=[WATCHED_FROM.read_bytes()]))
            call = stub.WatchAlerts(pb.WatchAlertsRequest())

            def read() -> None:
                try:
                    for alert in call:
                        got.append((alert, time.time() * 1000))
                except grpc.RpcError:
                    pass

            threading.Thread(target=read, daemon=True).start()
            published_at = server.publish("cam1", clip)
            time.sleep(LOOP_S * (args.loops + 1) + 5)
            call.cancel()
        finally:
            channel.close()
            app.stop()
    rows = []
    for alert, arrived in got:
        loop = int((alert.seen_at_ms - published_at) // (LOOP_S * 1000))
        appeared = published_at + (loop * LOOP_S + SHOWN[0]) * 1000
        rows.append({"latency_s": (arrived - appeared) / 1000, "time_error_s": (alert.seen_at_ms - appeared) / 1000})
    rows = rows[1:]  # the first appearance may come before the stream was opened
    if not rows:
        raise SystemExit(f"no alerts measured ({len(got)} raised)")
    latencies = [r["latency_s"] for r in rows]
    errors = [r["time_error_s"] for r in rows]
    result = {
        "machine": machine(),
        "setup": "720p H.264 30 fps over local nginx-rtmp, 1 fps, sface + yunet on CPU, rvs up (embedded)",
        "alerts": len(got),
        "appearances_measured": len(rows),
        "latency_s": {"median": statistics.median(latencies), "max": max(latencies), "min": min(latencies)},
        "time_error_s": {"median": statistics.median(errors), "max": max(errors, key=abs)},
        "baseline": {"frame_detect_embed_s": cost, "sampling_interval_s": 1.0},
    }
    print(
        f"{len(rows)} appearances, one alert each: latency median {result['latency_s']['median']:.2f} s, "  # type: ignore[index]
        f"max {max(latencies):.2f} s; alert time off by median {statistics.median(errors):+.2f} s "
        f"(worst {max(errors, key=abs):+.2f} s)\n"
        f"baseline: one frame's detect + embed {cost * 1000:.0f} ms, sampling interval 1.00 s"
    )
    print(f"wrote {save('alerts', result)}")


if __name__ == "__main__":
    main()
