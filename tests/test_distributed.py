"""Distributed mode as real processes: `rvs sampler`, several `rvs embedder` in one consumer
group, and `rvs query`, joined by a real Kafka broker and a real Milvus server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rvs.store.faces import FaceStore
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import free_port, lfw
from corpus import BLAIR, BUSH, build_corpus, near, search, segments

pytestmark = pytest.mark.e2e


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rvs", *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_sampler_two_embedders_and_query(tmp_path: Path, kafka_bootstrap: str, milvus_uri: str) -> None:
    tag = uuid.uuid4().hex[:8]
    watch = tmp_path / "watch"
    watch.mkdir()
    build_corpus(watch)
    env = {
        **os.environ,
        "RVS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RVS_MILVUS_URI": milvus_uri,
        "RVS_MODEL": "dlib-resnet",
        "RVS_COLLECTION": f"dist_{tag}",
        "RVS_FRAMES_TOPIC": f"frames-{tag}",
        "RVS_EVENTS_TOPIC": f"events-{tag}",
        "RVS_DEAD_LETTER_TOPIC": f"dlq-{tag}",
        "RVS_CONSUMER_GROUP": f"embedders-{tag}",
        "RVS_PARTITIONS": "4",
        "RVS_SETTLE_S": "0.2",
        "RVS_BATCH_SIZE": "4",
    }
    port, embed_ports = free_port(), [free_port(), free_port()]
    commands = {
        "query": ["query", "--port", str(port), "--metrics-port", str(free_port()), "--data-dir", str(tmp_path / "q")],
        "embedder-0": ["embedder", "--metrics-port", str(embed_ports[0])],
        "embedder-1": ["embedder", "--metrics-port", str(embed_ports[1])],
        "sampler": [
            "sampler",
            "--watch",
            str(watch),
            "--data-dir",
            str(tmp_path / "s"),
            "--metrics-port",
            str(free_port()),
        ],
    }
    procs = {name: spawn(args, env, tmp_path / f"{name}.log") for name, args in commands.items()}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rvs_pb2_grpc.SearchServiceStub(channel)
            deadline = time.monotonic() + 300
            media: list[pb.Media] = []
            while time.monotonic() < deadline:
                for name, p in procs.items():
                    assert p.poll() is None, f"{name} exited: {(tmp_path / (name + '.log')).read_text()[-3000:]}"
                try:
                    media = list(stub.ListMedia(pb.ListMediaRequest(), timeout=5).media)
                except grpc.RpcError:
                    media = []
                if len(media) == 6 and all(m.state in (pb.MEDIA_STATE_DONE, pb.MEDIA_STATE_FAILED) for m in media):
                    break
                time.sleep(1)
            states = {Path(m.uri).name: pb.MediaState.Name(m.state) for m in media}
            assert states == {
                "clip_a.mp4": "MEDIA_STATE_DONE",
                "clip_b.mp4": "MEDIA_STATE_DONE",
                "no_faces.mp4": "MEDIA_STATE_DONE",
                "rumsfeld.jpg": "MEDIA_STATE_DONE",
                "schroeder.jpg": "MEDIA_STATE_DONE",
                "broken.mp4": "MEDIA_STATE_FAILED",
            }

            segs = segments(search(stub, lfw(BUSH, 10)))
            assert near(segs["clip_a.mp4"], [(1000, 4000)]) and near(segs["clip_b.mp4"], [(2000, 6000)])
            assert set(segments(search(stub, lfw(BLAIR, 10)))) == {"clip_a.mp4"}

        # The index holds exactly the faces the status reports: none lost, none duplicated.
        store = FaceStore(milvus_uri, f"dist_{tag}", "dlib-resnet", 128, consistency="Strong")
        store.open()
        for m in media:
            keys = store.keys(m.media_id)
            assert len(keys) == len(set(keys)) == m.faces_found, m.uri
        store.close()
        # Both members of the group did part of the work.
        shares = [scrape(p).get("rvs_frames_embedded_total", 0) for p in embed_ports]
        assert all(s > 0 for s in shares), shares
        assert sum(shares) >= 12 + 10 + 6 + 2
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        codes = {name: p.wait(timeout=90) for name, p in procs.items()}
    assert codes == dict.fromkeys(procs, 0), {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in procs}
