"""Distributed mode on this machine: frames/s embedded with 1, 2 and 3 `rvs embedder` processes
(one consumer group), the lag Kafka's own kafka-consumer-groups tool reports meanwhile, and the
seconds from a photo landing in the watched folder to its face being searchable.

Starts a real Kafka broker (deploy/kafka/kafka.sh) and the embedded Milvus server itself.
Writes bench/results/distributed.json.

    uv run python bench/distributed.py [--embedders 1,2,3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from rvs.core.net import free_port
from rvs.core.store.embedded_milvus import EmbeddedMilvus
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from common import ROOT, SHARED, peak_rss_mib, save, talking_head_clip

KAFKA = ROOT / "deploy" / "kafka" / "kafka.sh"


def embedded_total(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            continue
        total += sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "rvs_frames_embedded_total"
        )
    return total


def run(n: int, tmp: Path, bootstrap: str, milvus_uri: str, clips: list[Path], frames: int) -> dict[str, object]:
    tag = f"b{n}_{int(time.time())}"
    env = {
        **os.environ,
        "RVS_KAFKA_BOOTSTRAP": bootstrap,
        "RVS_MILVUS_URI": milvus_uri,
        "RVS_MODEL": "dlib-resnet",
        "RVS_COLLECTION": tag,
        "RVS_FRAMES_TOPIC": f"f-{tag}",
        "RVS_EVENTS_TOPIC": f"e-{tag}",
        "RVS_CONSUMER_GROUP": f"g-{tag}",
        "RVS_PARTITIONS": "6",
        "RVS_SETTLE_S": "0.2",
        "RVS_LOG_LEVEL": "WARNING",
    }
    watch = tmp / tag
    watch.mkdir()
    ports = [free_port() for _ in range(n)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rvs.cli", "embedder", "--metrics-port", str(p)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    query_port = free_port()
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rvs.cli",
                "query",
                "--port",
                str(query_port),
                "--metrics-port",
                "0",
                "--data-dir",
                str(tmp / f"q-{tag}"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    try:
        # Every embedder has loaded its model and joined the group before any frame arrives, so the
        # figure measures steady work, not start-up and rebalancing.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            members = subprocess.run(
                [
                    "bash",
                    str(KAFKA),
                    "consumer-groups",
                    "--bootstrap-server",
                    bootstrap,
                    "--describe",
                    "--members",
                    "--group",
                    f"g-{tag}",
                ],
                capture_output=True,
                text=True,
            ).stdout
            if sum(1 for line in members.splitlines() if "kafka-python" in line) >= n:
                break
            time.sleep(1)
        time.sleep(3)
        for clip in clips:
            shutil.copy(clip, watch / f"{clip.stem}-{tag}.mp4")
        sampler = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rvs.cli",
                "sampler",
                "--watch",
                str(watch),
                "--data-dir",
                str(tmp / f"s-{tag}"),
                "--metrics-port",
                "0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(sampler)
        start = None
        lag_report = ""
        while embedded_total(ports) < frames:
            if start is None and embedded_total(ports) > 0:
                start = time.monotonic()
            if start and not lag_report and time.monotonic() - start > 5:
                lag_report = subprocess.run(
                    [
                        "bash",
                        str(KAFKA),
                        "consumer-groups",
                        "--bootstrap-server",
                        bootstrap,
                        "--describe",
                        "--group",
                        f"g-{tag}",
                    ],
                    capture_output=True,
                    text=True,
                ).stdout
            time.sleep(0.2)
        elapsed = time.monotonic() - (start or time.monotonic())
        # End to end: a photo lands in the folder; how long until Search finds it?
        photo = SHARED / "faces/lfw/images/Colin_Powell/Colin_Powell_0001.jpg"
        query = (SHARED / "faces/lfw/images/Colin_Powell/Colin_Powell_0002.jpg").read_bytes()
        landed = time.monotonic()
        shutil.copy(photo, watch / f"powell-{tag}.jpg")
        with grpc.insecure_channel(f"127.0.0.1:{query_port}") as ch:
            stub = rvs_pb2_grpc.SearchServiceStub(ch)
            while not stub.Search(pb.SearchRequest(image=query, min_score=0.85)).images:
                time.sleep(0.1)
        # Peak resident memory of each service process over the whole run (the kernel's VmHWM).
        names = [f"embedder {i + 1}" for i in range(n)] + ["query", "sampler"]
        rss = {name: peak_rss_mib(p.pid) for name, p in zip(names, procs, strict=True)}
        return {
            "embedders": n,
            "peak_rss_mib": rss,
            "frames": frames,
            "seconds": elapsed,
            "frames_per_s": (frames - 1) / elapsed,
            "file_to_searchable_s": time.monotonic() - landed,
            "consumer_groups_describe": lag_report,
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--embedders", default="1,2,3")
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    clips = [talking_head_clip(args.seconds, 1280, 720, 2.0)]
    frames = args.seconds * len(clips)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        kafka_port = free_port()
        subprocess.run(["bash", str(KAFKA), "start", str(tmp / "kafka"), str(kafka_port), str(free_port())], check=True)
        milvus = EmbeddedMilvus(tmp / "milvus", free_port())
        milvus.start()
        try:
            for n in (int(x) for x in args.embedders.split(",")):
                rows.append(run(n, tmp, f"127.0.0.1:{kafka_port}", milvus.uri, clips, frames))
                print(
                    f"{n} embedder(s): {rows[-1]['frames_per_s']:.2f} frames/s, "
                    f"file to searchable {rows[-1]['file_to_searchable_s']:.1f} s, peak RSS {rows[-1]['peak_rss_mib']}",
                    flush=True,
                )
        finally:
            milvus.stop()
            subprocess.run(["bash", str(KAFKA), "stop", str(tmp / "kafka")], check=True)
    base = rows[0]["frames_per_s"]
    print(f"\n{'embedders':>9} {'frames/s':>9} {'vs 1':>6} {'file->searchable s':>19}")
    for r in rows:
        print(
            f"{r['embedders']:>9} {r['frames_per_s']:9.2f} {r['frames_per_s'] / base:5.2f}x"  # type: ignore[operator]
            f" {r['file_to_searchable_s']:19.1f}"
        )
    print("\npeak RSS per service process, MiB (VmHWM)")
    for r in rows:
        print(f"{r['embedders']} embedder(s): " + ", ".join(f"{k} {v:.0f}" for k, v in r["peak_rss_mib"].items()))  # type: ignore[attr-defined]
    for r in rows:
        if r["consumer_groups_describe"]:
            print(
                f"\nkafka-consumer-groups --describe, {r['embedders']} embedder(s), mid-run:\n"
                f"{r['consumer_groups_describe']}"
            )
    print("wrote", save("distributed", {"rows": rows, "clip": "60 s 720p H.264 talking head, 1 fps"}))


if __name__ == "__main__":
    main()
