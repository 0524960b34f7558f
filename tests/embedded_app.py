"""Embedded mode in the test process: settings for the test corpus, start, wait until ingested."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
from rvs.core.clock import Clock, now_ms
from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import free_port
from corpus import build_corpus


def settings(
    watch: Path, data: Path, port: int, metrics_port: int, milvus_uri: str, collection: str, web_port: int = 0
) -> EmbeddedSettings:
    """`web_port` 0: no search page (the product's default port is left alone)."""
    common = dict(
        data_dir=data, model="dlib-resnet", milvus_uri=milvus_uri, collection=collection, metrics_port=metrics_port
    )
    return EmbeddedSettings(
        sampler=SamplerSettings(
            watch_dir=watch, settle_s=0.2, scan_interval_s=0.2, data_dir=data, metrics_port=metrics_port
        ),
        embedder=EmbedderSettings(**common, batch_size=8),  # type: ignore[arg-type]
        query=QuerySettings(**common, port=port, web_port=web_port),  # type: ignore[arg-type]
    )


@dataclass
class Running:
    app: EmbeddedApp
    stub: rvs_pb2_grpc.SearchServiceStub
    channel: grpc.Channel
    metrics_url: str
    watch: Path


def wait_done(stub: rvs_pb2_grpc.SearchServiceStub, expected: int, timeout_s: float = 300) -> list[pb.Media]:
    deadline = time.monotonic() + timeout_s
    media: list[pb.Media] = []
    while time.monotonic() < deadline:
        media = list(stub.ListMedia(pb.ListMediaRequest()).media)
        finished = [m for m in media if m.state in (pb.MEDIA_STATE_DONE, pb.MEDIA_STATE_FAILED)]
        if len(media) >= expected and len(finished) == len(media):
            return media
        time.sleep(0.5)
    raise AssertionError(f"ingest did not finish: {media}")


def start(s: EmbeddedSettings, watch: Path, clock: Clock = now_ms) -> Running:
    """`clock`: the time retention measures ages from."""
    app = EmbeddedApp(s, clock)
    app.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{app.query.port}")  # type: ignore[union-attr]
    return Running(
        app, rvs_pb2_grpc.SearchServiceStub(channel), channel, f"http://127.0.0.1:{s.query.metrics_port}/metrics", watch
    )


def corpus_env(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str, name: str) -> tuple[EmbeddedSettings, Path]:
    """The corpus in a watched folder of its own, with a state directory and a collection of its own."""
    watch = tmp_path_factory.mktemp("watch")
    data = tmp_path_factory.mktemp("data")
    build_corpus(watch)
    return settings(watch, data, free_port(), free_port(), milvus_uri, f"{name}_{int(time.time())}"), watch


def ingested(env: tuple[EmbeddedSettings, Path]) -> Iterator[Running]:
    s, watch = env
    r = start(s, watch)
    wait_done(r.stub, expected=6)
    yield r
    r.channel.close()
    r.app.stop()
