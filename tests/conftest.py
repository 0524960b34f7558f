"""Fixtures: the shared real data, a real Milvus server, test clips made from real photos."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RVS_SHARED_DIR", ROOT.parent / "shared"))
LFW = SHARED / "faces" / "lfw" / "images"
MEDIA = SHARED / "media"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"test data {path} is missing: these tests read the real photos and clips in ../shared/ "
            f"(set RVS_SHARED_DIR to its location)",
            pytrace=False,
        )
    return path


def lfw(person: str, n: int) -> Path:
    return shared("faces", "lfw", "images", person, f"{person}_{n:04d}.jpg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Milvus server (the embedded standalone binary), once per test session."""
    from rvs.store.embedded_milvus import EmbeddedMilvus

    server = EmbeddedMilvus(tmp_path_factory.mktemp("milvus"), free_port())
    server.start()
    yield server.uri
    server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker (KRaft, jars from Maven Central) on loopback, once per session."""
    import subprocess

    script = ROOT / "deploy" / "kafka" / "kafka.sh"
    broker_dir = tmp_path_factory.mktemp("kafka")
    port = free_port()
    subprocess.run(
        ["bash", str(script), "start", str(broker_dir), str(port), str(free_port())], check=True, timeout=300
    )
    yield f"127.0.0.1:{port}"
    subprocess.run(["bash", str(script), "stop", str(broker_dir)], check=True, timeout=60)


@pytest.fixture
def collection_name(request: pytest.FixtureRequest) -> str:
    """A collection of its own for each test."""
    import re

    return "t_" + re.sub(r"\W", "_", request.node.name)[:60] + f"_{os.getpid()}"
