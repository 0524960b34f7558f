"""Fixtures: the shared real data, a real Milvus server, test clips made from real photos; and the
two tiers of the suite.

The fast tier, `uv run pytest -m "not slow"`, needs no server, no model and no ../shared/. A test is
slow when it or its module is marked `slow` (or `e2e`), and, whatever it is marked, when it uses a
fixture that starts a server (SLOW_FIXTURES, followed through the fixtures it builds on). A test
that is not slow and reaches for ../shared/ (shared(), lfw()) or loads a face model fails, saying so.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

if TYPE_CHECKING:
    from rvs.core.bus.memory import MemoryFrameBus
    from rvs.core.store.embedded_milvus import EmbeddedMilvus
    from rvs.sampler.app import SamplerService

    from recorder import Recorder

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RVS_SHARED_DIR", ROOT.parent / "shared"))

# Fixtures that start a real server, or run a tool that can take minutes: a test whose fixtures reach
# one of them is slow (the Milvus server and the Kafka broker here, test_bucket_source.py's S3
# server, test_deploy.py's `docker compose config`, which now and then spins for minutes).
SLOW_FIXTURES = frozenset({"milvus_server", "kafka_bootstrap", "s3", "compose"})

_running: pytest.Item | None = None  # the test being set up, run or torn down


def is_slow(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses = SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if (uses or item.get_closest_marker("e2e")) and not is_slow(item):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    global _running
    _running = item
    try:
        return (yield)
    finally:
        _running = None


def _ordinary_scheduling(when: str) -> None:
    """Seen in CI: the test process's main thread under SCHED_FIFO 99 (SVT-AV1's encoder does that;
    write_video undoes it). Children inherit it, and one that spins (docker compose's plugin, once)
    holds both cores and starves everything else, timeouts included. Whatever else does it: set it
    back, and say where."""
    if sys.platform == "linux" and os.sched_getscheduler(0) != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        sys.stderr.write(f"\nreal-time scheduling found {when}; set back to SCHED_OTHER\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    _ordinary_scheduling(f"before the setup of {item.nodeid}")
    try:
        return (yield)
    finally:
        _ordinary_scheduling(f"after the setup of {item.nodeid}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        _ordinary_scheduling(f"after {item.nodeid}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        _ordinary_scheduling(f"after the teardown of {item.nodeid}")


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that runs `rvs` sets up logging to its captured stderr, which pytest closes after it:
    the root logger's handlers are put back, so later tests' threads do not log to a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _fast_tests_load_no_model(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A fast test sees an empty model cache, and loading a face pipeline fails it."""
    if is_slow(request.node):
        return
    monkeypatch.setenv("RVS_MODELS_DIR", str(tmp_path_factory.getbasetemp() / "no-models-in-the-fast-tier"))
    if "rvs.core.faces.pipeline" in sys.modules:
        from rvs.core.faces.pipeline import FacePipeline

        def refuse(self: object) -> None:
            pytest.fail(f"{request.node.nodeid} loads a face model: mark it slow", pytrace=False)

        monkeypatch.setattr(FacePipeline, "load", refuse)


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if _running is None or not is_slow(_running):
        who = _running.nodeid if _running is not None else "a test module, at import"
        pytest.fail(
            f"{who} reads {path}: only slow tests read ../shared/ (mark it slow, or make the data in "
            f"the test: media_factory.synthetic_photo, write_video)",
            pytrace=False,
        )
    if not path.exists():
        pytest.fail(
            f"test data {path} is missing: these tests read the real photos and clips in ../shared/ "
            f"(set RVS_SHARED_DIR to its location)",
            pytrace=False,
        )
    return path


def lfw(person: str, n: int) -> Path:
    return shared("faces", "lfw", "images", person, f"{person}_{n:04d}.jpg")


def lfw_people() -> Path:
    """The folder of LFW's people (one folder of photos each)."""
    return shared("faces", "lfw", "images")


def error_reason(exc: grpc.RpcError) -> str:
    """The ErrorInfo reason rvs attaches to an error status."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"no status details on {exc}"
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return info.reason


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMilvus]:
    """A real Milvus server (the embedded standalone binary), once per test session; a fault test
    may stop and start it again (on the same data and port)."""
    from rvs.core.store.embedded_milvus import EmbeddedMilvus

    server = EmbeddedMilvus(tmp_path_factory.mktemp("milvus"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def milvus_uri(milvus_server: EmbeddedMilvus) -> str:
    return milvus_server.uri


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


@pytest.fixture
def sampler(tmp_path: Path) -> Iterator[Callable[..., tuple[SamplerService, MemoryFrameBus, Recorder]]]:
    """Starts a sampler service on tmp_path/watch with the in-memory bus; stopped after the test."""
    from prometheus_client import CollectorRegistry

    from rvs.core.bus.memory import MemoryFrameBus
    from rvs.sampler.app import SamplerService
    from rvs.sampler.config import SamplerSettings

    from recorder import Recorder

    started: list[SamplerService] = []

    def make(**kw: object) -> tuple[SamplerService, MemoryFrameBus, Recorder]:
        (tmp_path / "watch").mkdir(exist_ok=True)
        fields: dict[str, object] = {"settle_s": 0.3, "scan_interval_s": 0.1} | kw
        settings = SamplerSettings(watch_dir=tmp_path / "watch", data_dir=tmp_path / "data", **fields)  # type: ignore[arg-type]
        bus, events = MemoryFrameBus(capacity=1000), Recorder()
        service = SamplerService(settings, bus, events, CollectorRegistry())
        service.start()
        started.append(service)
        return service, bus, events

    yield make
    for s in started:
        s.stop()
