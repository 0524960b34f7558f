"""Metric names follow Prometheus conventions and each service registers the metrics it must expose."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rvs.core.catalog import Catalog, CatalogCollector
from rvs.embedder.metrics import EmbedderMetrics
from rvs.query.metrics import QueryMetrics
from rvs.sampler.metrics import SamplerMetrics

from exposition import REQUIRED, convention_problems, missing


def exposition(service: str, tmp_path: Path) -> str:
    registry = CollectorRegistry()
    if service == "sampler":
        SamplerMetrics(registry)
    elif service == "embedder":
        EmbedderMetrics(registry)
    else:
        from prometheus_client import Gauge

        QueryMetrics(registry)
        Gauge("rvs_index_faces", "Faces in the index.", registry=registry)  # QueryService adds it over a store
        registry.register(CatalogCollector(Catalog(tmp_path / "c.db")))
    return generate_latest(registry).decode()


@pytest.mark.parametrize("service", sorted(REQUIRED))
def test_service_metrics_are_complete_and_well_named(service: str, tmp_path: Path) -> None:
    text = exposition(service, tmp_path)
    assert missing(text, service) == set()
    assert convention_problems(text) == []


def test_convention_check_catches_bad_names() -> None:
    bad = (
        "# HELP rvs_upsert_ms upsert time\n# TYPE rvs_upsert_ms gauge\nrvs_upsert_ms 1\n"
        "# HELP rvs_seconds_spent x\n# TYPE rvs_seconds_spent gauge\nrvs_seconds_spent 1\n"
        "# TYPE rvs_nohelp gauge\nrvs_nohelp 1\n"
    )
    problems = convention_problems(bad)
    assert any("rvs_upsert_ms" in p for p in problems)
    assert any("rvs_seconds_spent" in p for p in problems)
    assert any("rvs_nohelp: no help" in p for p in problems)
