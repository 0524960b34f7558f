"""How the parts are put together, without servers or models: a clean stop that logs no trouble."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.store.faces import FaceStore
from rvs.embedder.app import EmbedderService
from rvs.embedder.config import EmbedderSettings

from fake_pipeline import DIM, FakePipeline
from recorder import Recorder


def test_an_embedder_stopped_with_nothing_in_flight_logs_no_unfinished_drain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`rvs embedder` stops its service with drain_s=0 (the rest stays in Kafka); embedded mode
    drains. Neither is a drain that did not finish when nothing is in flight."""
    for drain_s in (0.0, 30.0):
        store = FaceStore("http://127.0.0.1:9", "unused", "dlib-resnet", DIM)  # never called: no frames
        settings = EmbedderSettings(model="dlib-resnet", max_wait_ms=50)
        service = EmbedderService(settings, MemoryFrameBus(), Recorder(), FakePipeline(), store, CollectorRegistry())  # type: ignore[arg-type]
        service.start()
        assert service.healthy()
        with caplog.at_level(logging.INFO):
            service.stop(drain_s=drain_s)
        assert not service.healthy()
        assert "drain did not finish" not in caplog.text, f"drain_s={drain_s}"
