"""`rvs up` as a user runs it: a real process, the CLI clients, and a clean SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import free_port, lfw

pytestmark = pytest.mark.e2e


def rvs(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rvs", *args], capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


def wait_serving(target: str, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, "rvs up exited early"
            with contextlib.suppress(grpc.RpcError):  # not listening yet: ask again shortly
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.5)
    raise AssertionError("rvs up never became SERVING")


def test_up_search_status_and_sigterm(tmp_path: Path, milvus_uri: str, collection_name: str) -> None:
    watch, data = tmp_path / "inbox", tmp_path / "data"
    port = free_port()
    env = {**os.environ, "RVS_SETTLE_S": "0.2", "RVS_COLLECTION": collection_name}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rvs",
            "up",
            "--watch",
            str(watch),
            "--data-dir",
            str(data),
            "--model",
            "dlib-resnet",
            "--milvus-uri",
            milvus_uri,
            "--port",
            str(port),
            "--metrics-port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    target = f"127.0.0.1:{port}"
    try:
        wait_serving(target, proc)
        shutil.copy(lfw("Colin_Powell", 1), watch / "powell.jpg")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = rvs("status", "--json", "--target", target)
            assert status.returncode == 0, status.stderr
            media = json.loads(status.stdout)
            if media and media[0]["state"] == "MEDIA_STATE_DONE":
                break
            time.sleep(0.5)
        assert media[0]["faces_found"] == 1

        found = rvs("search", str(lfw("Colin_Powell", 2)), "--json", "--target", target, "--min-score", "0.85")
        assert found.returncode == 0, found.stderr
        answer = json.loads(found.stdout)
        assert [Path(i["uri"]).name for i in answer["images"]] == ["powell.jpg"]
        table = rvs("search", str(lfw("Colin_Powell", 2)), "--target", target, "--min-score", "0.85")
        assert "powell.jpg" in table.stdout and "Photos (1)" in table.stdout
        human = rvs("status", "--target", target)
        assert "done" in human.stdout and "powell.jpg" in human.stdout

        no_face = tmp_path / "blank.png"
        from PIL import Image

        Image.new("RGB", (64, 64), (200, 200, 200)).save(no_face)
        failed = rvs("search", str(no_face), "--target", target)
        assert failed.returncode == 1 and "FAILED_PRECONDITION [NO_FACE]" in failed.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "stopped" in out
