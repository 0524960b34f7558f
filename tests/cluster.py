"""Distributed mode as real processes, for the scale-out and fault tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from rvs.core.store.faces import FaceStore, collection_for
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import ROOT, free_port


class KafkaBroker:
    """A broker of a test's own, so it can be stopped and started again on the same data."""

    script = ROOT / "deploy" / "kafka" / "kafka.sh"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port, self.controller_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run(
            ["bash", str(self.script), "start", str(self.directory), str(self.port), str(self.controller_port)],
            check=True,
            timeout=300,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(["bash", str(self.script), "stop", str(self.directory)], check=True, timeout=60)


def scrape(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


class Cluster:
    def __init__(self, tmp_path: Path, kafka_bootstrap: str, milvus_uri: str, watch: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tmp = tmp_path
        self.watch = watch
        self.milvus_uri = milvus_uri
        self.collection = f"dist_{tag}"
        self.env = {
            **os.environ,
            "RVS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "RVS_MILVUS_URI": milvus_uri,
            "RVS_MODEL": "dlib-resnet",
            "RVS_COLLECTION": self.collection,
            "RVS_FRAMES_TOPIC": f"frames-{tag}",
            "RVS_EVENTS_TOPIC": f"events-{tag}",
            "RVS_DEAD_LETTER_TOPIC": f"dlq-{tag}",
            "RVS_CONSUMER_GROUP": f"embedders-{tag}",
            "RVS_PARTITIONS": "6",
            "RVS_SETTLE_S": "0.2",
            "RVS_BATCH_SIZE": "4",
            "RVS_RETRY_MAX_S": "2",
        }
        self.port = free_port()
        self.web_port = free_port()
        self.env_for: dict[str, dict[str, str]] = {}  # per-process overrides
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_ports: dict[str, int] = {}

    def spawn(self, name: str, *args: str) -> None:
        self.metrics_ports[name] = free_port()
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "rvs.cli", *args, "--metrics-port", str(self.metrics_ports[name])],
            env={**self.env, **self.env_for.get(name, {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def spawn_query(self) -> None:
        """The query service, on the same ports and catalog at every (re)start."""
        port, web_port, data = str(self.port), str(self.web_port), str(self.tmp / "query")
        self.spawn("query", "query", "--port", port, "--web-port", web_port, "--data-dir", data)

    def start(self, embedders: int) -> None:
        self.spawn_query()
        for i in range(embedders):
            self.spawn(f"embedder-{i}", "embedder")
        # Every embedder has joined the group before the first frame, so each gets a share.
        names = [f"embedder-{i}" for i in range(embedders)]
        joined = re.compile(r"assigned partitions \[\d")  # a share of the partitions, not an empty one
        self.wait_until(lambda: all(joined.search(self.log(n)) for n in names), 180, "the group")
        time.sleep(2)
        self.spawn("sampler", "sampler", "--watch", str(self.watch), "--data-dir", str(self.tmp / "sampler"))

    def log(self, name: str, tail: int = 20_000) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-tail:]

    def stub(self) -> rvs_pb2_grpc.SearchServiceStub:
        return rvs_pb2_grpc.SearchServiceStub(grpc.insecure_channel(f"127.0.0.1:{self.port}"))

    def media(self) -> list[pb.Media]:
        try:
            return list(self.stub().ListMedia(pb.ListMediaRequest(), timeout=5).media)
        except grpc.RpcError:
            return []

    def embedded(self, name: str) -> float:
        return scrape(self.metrics_ports[name]).get("rvs_frames_embedded_total", 0.0)

    def wait_until(self, check, timeout_s: float = 300, what: str = "") -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None and p.returncode != -signal.SIGKILL:
                    raise AssertionError(f"{name} exited with {p.returncode}:\n{self.log(name)}")
            if check():
                return
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}: {self.media()}")

    def wait_done(self, count: int, timeout_s: float = 300) -> list[pb.Media]:
        finished = (pb.MEDIA_STATE_DONE, pb.MEDIA_STATE_FAILED)
        self.wait_until(
            lambda: len(m := self.media()) == count and all(x.state in finished for x in m),
            timeout_s,
            f"{count} media done",
        )
        return self.media()

    def assert_index_exact(self, media: list[pb.Media]) -> None:
        """Every media's faces are in the index exactly once: none lost, none duplicated."""
        store = FaceStore(
            self.milvus_uri, collection_for(self.collection, "dlib-resnet"), "dlib-resnet", 128, consistency="Strong"
        )
        store.open()
        try:
            for m in media:
                keys = store.keys(m.media_id)
                assert len(keys) == len(set(keys)) == m.faces_found, m.uri
                if m.state == pb.MEDIA_STATE_DONE:
                    assert m.frames_embedded == m.frames_sampled, m.uri
        finally:
            store.close()

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait(30)

    def stop(self) -> dict[str, int]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        return {name: p.wait(timeout=90) for name, p in self.procs.items()}


class TcpProxy:
    """A loopback TCP proxy that can be taken down and brought back on the same port: to its clients
    the server behind it is gone (connections reset, new ones refused) and then back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone would not.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # taken down
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):  # either side went away: the pipe is done
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
