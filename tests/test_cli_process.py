"""`rvs up` as a user runs it: a real process, the CLI clients, and a clean SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import free_port, lfw, shared
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video

pytestmark = pytest.mark.e2e


def rvs(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rvs.cli", *args], capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


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


def run_in_terminal(args: list[str], timeout_s: float = 120) -> tuple[int, str]:
    """Run an rvs command with a pseudo-terminal as its stdout, as a person at a terminal would."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvs.cli", *args], stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "160"}
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode(errors="replace")


def test_up_search_status_and_sigterm(tmp_path: Path, milvus_uri: str, collection_name: str) -> None:
    watch, data = tmp_path / "inbox", tmp_path / "data"
    port, web_port = free_port(), free_port()
    env = {**os.environ, "RVS_SETTLE_S": "0.2", "RVS_COLLECTION": collection_name, "RVS_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rvs.cli",
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
            "--web-port",
            str(web_port),
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
        page = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/media", timeout=10)
        assert [m["uri"] for m in json.loads(page.read())["media"]] == [media[0]["uri"]]  # `rvs up` serves the page

        found = rvs("search", str(lfw("Colin_Powell", 2)), "--json", "--target", target, "--min-score", "0.85")
        assert found.returncode == 0, found.stderr
        answer = json.loads(found.stdout)
        assert [Path(i["uri"]).name for i in answer["images"]] == ["powell.jpg"]
        table = rvs("search", str(lfw("Colin_Powell", 2)), "--target", target, "--min-score", "0.85")
        assert "powell.jpg" in table.stdout and "Photos (1)" in table.stdout
        face_id = answer["images"][0]["face_id"]
        assert f"[{face_id}]" in table.stdout  # what --face-id takes
        again = rvs("search", "--face-id", face_id, "--json", "--target", target)
        assert [Path(i["uri"]).name for i in json.loads(again.stdout)["images"]] == ["powell.jpg"], again.stderr
        assert rvs("search", "--target", target).returncode == 2  # nothing to search with
        human = rvs("status", "--target", target)
        assert "done" in human.stdout and "powell.jpg" in human.stdout

        no_face = tmp_path / "blank.png"
        from PIL import Image

        Image.new("RGB", (64, 64), (200, 200, 200)).save(no_face)
        failed = rvs("search", str(no_face), "--target", target)
        assert failed.returncode == 1 and "FAILED_PRECONDITION [NO_FACE]" in failed.stderr

        # A video that takes a while: `rvs status` on a terminal redraws its progress bar until it is done.
        background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (640, 360))
        face = lfw("Tony_Blair", 1)
        clip = tmp_path / "clip.mp4"
        write_video(clip, scene(background, [Appearance(face, 0, 30)], {face: load_rgb(face)}), cfr_times(30, 5))
        shutil.copy(clip, watch / "clip.mp4")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(json.loads(rvs("status", "--json", "--target", target).stdout)) < 2:
            time.sleep(0.2)
        code, screen = run_in_terminal(["status", "--target", target, "--interval", "0.3"])
        assert code == 0, screen
        assert "━" in screen and "clip.mp4" in screen and "\x1b[1A" in screen  # bars, redrawn in place
        assert "2 media: 2 done" in screen
        # The clip as a query: Blair and the face beside him in his photo, found nowhere else (the
        # clip itself is left out).
        person = rvs("search", str(clip), "--target", target)
        assert person.returncode == 0 and "2 person(s) in the clip" in person.stdout, person.stderr
        assert person.stdout.count("No match") == 2
        piped = rvs("status", "--target", target)
        assert "━" not in piped.stdout and "\x1b" not in piped.stdout and "2 media: 2 done" in piped.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len(out.splitlines()), "every log line is a JSON object"
    about_media = [e for e in lines if "powell.jpg" in e["msg"] or "clip.mp4" in e["msg"]]
    assert len(about_media) >= 4 and all(len(e.get("media_id", "")) == 64 for e in about_media), about_media
    assert any(e["msg"] == "stopped" for e in lines)
    assert any(e["msg"] == f"search page on http://127.0.0.1:{web_port}/" for e in lines)


def test_up_once_ingests_the_folder_then_stops(tmp_path: Path, milvus_uri: str, collection_name: str) -> None:
    from rvs.core.catalog import Catalog
    from rvs.v1 import rvs_pb2 as pb

    watch, data = tmp_path / "inbox", tmp_path / "data"
    watch.mkdir()
    shutil.copy(lfw("Colin_Powell", 1), watch / "powell.jpg")
    env = {**os.environ, "RVS_SETTLE_S": "0.2", "RVS_COLLECTION": collection_name}
    up = rvs(
        "up", "--once", "--watch", str(watch), "--data-dir", str(data), "--model", "dlib-resnet",
        "--milvus-uri", milvus_uri, "--port", str(free_port()), "--metrics-port", "0", "--web-port", "0",
        env=env,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert "everything in the sources is ingested: stopping (--once)" in up.stderr
    assert "drain did not finish" not in up.stderr and "stopped" in up.stderr
    catalog = Catalog(data / "catalog.db")
    try:
        [media] = catalog.list_media()
    finally:
        catalog.close()
    assert (Path(media.uri).name, media.state, media.faces_found) == ("powell.jpg", pb.MEDIA_STATE_DONE, 1)
