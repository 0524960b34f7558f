"""End to end in embedded mode: video-seconds ingested per wall-second, and peak memory.

Runs `rvs up` (sampler, embedder and query service in one process, embedded Milvus server) on
60-s 720p talking-head clips made from five of the shared LivePortrait clips, from the moment the
files land in the watched folder until every one is searchable, once per model+detector pairing.
The baseline, in the same run, is MTCNN + dlib-resnet (`--baseline`); `--untuned` adds the
baseline's pipeline before tuning (detection at full frame size, batches of one frame). Resident
memory of the rvs process and of the Milvus server is sampled every 0.25 s.

    uv run python bench/e2e.py [--clips 5] [--seconds 60] [--pairings sface+yunet,facenet-casia+mtcnn]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from rvs.core.net import free_port
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from common import cpu_seconds, save, talking_head_clip, tree_rss_mib

SOURCES = ["d0", "d3", "d9", "d10", "d14", "d6"]


class MemorySampler(threading.Thread):
    """Peak RSS of a process and, separately, of its descendants (the Milvus server)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_main = self.peak_children = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            rss = tree_rss_mib(self.pid)
            self.peak_main = max(self.peak_main, rss.pop(self.pid, 0.0))
            self.peak_children = max(self.peak_children, sum(rss.values()))


def ready(health: health_pb2_grpc.HealthStub, serving: int) -> bool:
    """True once the query service reports SERVING (models and index loaded); not yet listening: False."""
    try:
        return bool(health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == serving)
    except grpc.RpcError:
        return False


def ingest(clips: list[Path], env_extra: dict[str, str], tmp: Path) -> dict[str, object]:
    inbox, data = tmp / "inbox", tmp / "data"
    inbox.mkdir()
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "RVS_MILVUS_PORT": str(free_port()),
        "RVS_METRICS_PORT": str(metrics_port),
        "RVS_WEB_PORT": str(free_port()),
        "RVS_LOG_LEVEL": "WARNING",
        **env_extra,
    }
    cmd = [sys.executable, "-m", "rvs.cli", "up", "--watch", str(inbox), "--data-dir", str(data), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    memory = MemorySampler(proc.pid)
    memory.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 180
        serving = health_pb2.HealthCheckResponse.SERVING
        while not ready(health, serving):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("rvs up did not become ready")
            time.sleep(0.5)
        idle_rss = memory.peak_main
        stub = rvs_pb2_grpc.SearchServiceStub(channel)
        others = [p for p in tree_rss_mib(proc.pid) if p != proc.pid]
        cpu_before = {p: cpu_seconds(p) for p in [proc.pid, *others]}
        started = time.monotonic()
        for clip in clips:
            shutil.copy(clip, inbox / clip.name)
        while True:
            media = list(stub.ListMedia(pb.ListMediaRequest()).media)
            if len(media) == len(clips) and all(m.state == pb.MEDIA_STATE_DONE for m in media):
                break
            if any(m.state == pb.MEDIA_STATE_FAILED for m in media):
                raise RuntimeError(f"ingest failed: {media}")
            time.sleep(0.25)
        wall = time.monotonic() - started
        cpu = {p: cpu_seconds(p) - c for p, c in cpu_before.items()}
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        sums = {
            s.name: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name.endswith(("_seconds_sum", "_seconds_count")) or s.name.startswith("rvs_embed_batch_frames")
        }
        video_s = sum(m.duration_ms for m in media) / 1000
        return {
            "settings": env_extra,
            "clips": len(clips),
            "video_seconds": video_s,
            "wall_seconds": wall,
            "realtime_factor": video_s / wall,
            "frames": sum(m.frames_embedded for m in media),
            "faces": sum(m.faces_found for m in media),
            "peak_rss_mib": {"rvs (all three services)": memory.peak_main, "milvus server": memory.peak_children},
            "rss_ready_mib": idle_rss,
            # Where the time went, from rvs's own histograms (sums over the run, seconds).
            "metrics": sums,
            # Share of the machine's CPU time each used while ingesting.
            "cpu_share": {
                "rvs": cpu.pop(proc.pid) / wall / (os.cpu_count() or 1),
                "milvus server": sum(cpu.values()) / wall / (os.cpu_count() or 1),
            },
        }
    finally:
        channel.close()
        memory.stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)


def pairing_env(pairing: str) -> dict[str, str]:
    model, _, detector = pairing.partition("+")
    return {"RVS_MODEL": model, "RVS_DETECTOR": detector or "mtcnn"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--pairings", default="sface+yunet,sface+mtcnn,facenet-casia+mtcnn", help="MODEL+DETECTOR,...")
    parser.add_argument("--baseline", default="dlib-resnet+mtcnn")
    parser.add_argument("--untuned", action="store_true", help="also the baseline before tuning")
    args = parser.parse_args()
    clips = [talking_head_clip(args.seconds, 1280, 720, 2.0, source=s) for s in SOURCES[: args.clips]]
    configs = [(p, pairing_env(p)) for p in [args.baseline, *args.pairings.split(",")]]
    if args.untuned:
        untuned = {"RVS_DETECT_MAX_SIDE": "1280", "RVS_BATCH_SIZE": "1"}
        configs.append((f"{args.baseline} untuned (detect 1280, batch 1)", {**pairing_env(args.baseline), **untuned}))
    rows = []
    for label, env in configs:
        with tempfile.TemporaryDirectory() as tmp:
            row = ingest(clips, env, Path(tmp))
        row["label"] = label
        rows.append(row)
        print(f"{label}: {row['realtime_factor']:.1f}x real time", flush=True)

    print(f"\n{args.clips} x {args.seconds} s 720p H.264 talking-head clips, 1 fps, embedded mode")
    print(
        f"{'model+detector':<44} {'video s':>8} {'wall s':>7} {'x real time':>11} {'vs base':>7} {'faces':>6}"
        f" {'rvs MiB':>8} {'milvus MiB':>10} {'CPU rvs':>7}"
    )
    base = rows[0]["realtime_factor"]
    for r in rows:
        rss = r["peak_rss_mib"]
        print(
            f"{r['label']:<44} {r['video_seconds']:8.0f} {r['wall_seconds']:7.1f} {r['realtime_factor']:10.1f}x"
            f" {r['realtime_factor'] / base:6.2f}x {r['faces']:6}"  # type: ignore[operator]
            f" {rss['rvs (all three services)']:8.0f} {rss['milvus server']:10.0f}"  # type: ignore[index]
            f" {r['cpu_share']['rvs']:7.0%}"  # type: ignore[index]
        )
    print(
        "wrote", save("e2e", {"baseline": args.baseline, "clip": "60 s 1280x720 H.264, GOP 2 s, 30 fps", "rows": rows})
    )


if __name__ == "__main__":
    main()
