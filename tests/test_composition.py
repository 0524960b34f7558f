"""How the parts are put together, without servers or models: the ordered start and stop of
embedded mode's parts, the cross-checks of its settings, and a clean stop that logs no trouble."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.lifecycle import InOrder, Part
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


def test_parts_start_in_order_stop_in_reverse_and_a_failed_start_stops_what_started() -> None:
    calls: list[str] = []

    def part(name: str, fails: bool = False) -> Part:
        def start() -> None:
            calls.append(f"start {name}")
            if fails:
                raise RuntimeError(f"{name} cannot start")

        return Part(name, start, lambda: calls.append(f"stop {name}"))

    parts = InOrder([part("milvus"), part("query"), part("sampler")])
    parts.start()
    assert parts.healthy()
    parts.stop()
    parts.stop()  # a second stop has nothing left to stop
    assert calls == ["start milvus", "start query", "start sampler", "stop sampler", "stop query", "stop milvus"]
    assert not parts.healthy()

    calls.clear()
    failing = InOrder([part("milvus"), part("query", fails=True), part("sampler")])
    with pytest.raises(RuntimeError, match="query cannot start"):
        failing.start()
    # The part that failed is stopped too (a stop is safe after a failed start); the sampler never started.
    assert calls == ["start milvus", "start query", "stop query", "stop milvus"]


def test_a_part_that_fails_to_stop_does_not_keep_the_others_running(caplog: pytest.LogCaptureFixture) -> None:
    stopped: list[str] = []

    def broken() -> None:
        raise OSError("disk gone")

    parts = InOrder([Part("catalog", stop=lambda: stopped.append("catalog")), Part("store", stop=broken)])
    parts.start()
    parts.stop()
    assert stopped == ["catalog"] and "stopping store failed" in caplog.text


def embedded(**differences: dict[str, object]) -> object:
    """EmbeddedSettings whose parts agree, but for `differences` (part -> fields)."""
    from rvs.cli.embedded import EmbeddedSettings
    from rvs.query.config import QuerySettings
    from rvs.sampler.config import SamplerSettings

    common = {"data_dir": Path("/srv/rvs"), "metrics_port": 0}
    index = {**common, "model": "sface", "detector": "yunet", "milvus_uri": "http://milvus:19530"}
    return EmbeddedSettings(
        sampler=SamplerSettings(**common | differences.get("sampler", {})),  # type: ignore[arg-type]
        embedder=EmbedderSettings(**index | differences.get("embedder", {})),  # type: ignore[arg-type]
        query=QuerySettings(**index | differences.get("query", {})),  # type: ignore[arg-type]
    )


def test_embedded_settings_whose_parts_agree_are_accepted() -> None:
    settings = embedded(query={"max_image_pixels": 1000}, sampler={"max_image_pixels": 5})  # each service's own field
    assert settings.shared.model == "sface"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("differences", "field", "parts"),
    [
        (
            {"embedder": {"model": "dlib-resnet"}},
            "model",
            "embedder and query",
        ),  # the store opened with one, written with another
        ({"query": {"detector": "mtcnn"}}, "detector", "embedder and query"),
        ({"embedder": {"collection": "other"}}, "collection", "embedder and query"),
        ({"sampler": {"data_dir": Path("/elsewhere")}}, "data_dir", "sampler and embedder"),
        ({"sampler": {"max_frame_bytes": 50_000}}, "max_frame_bytes", "sampler and embedder"),
    ],
)
def test_embedded_settings_refuse_parts_that_disagree_on_a_shared_field(
    differences: dict[str, dict[str, object]], field: str, parts: str
) -> None:
    with pytest.raises(ValueError, match=f"the {parts} settings disagree on {field} "):
        embedded(**differences)


def test_a_disagreement_on_a_secret_does_not_show_it() -> None:
    with pytest.raises(ValueError, match="disagree on milvus_token") as caught:
        embedded(embedder={"milvus_token": SecretStr("root:hunter2")})
    assert "hunter2" not in str(caught.value)
