"""deploy/: compose validates, and every command, flag and RVS_ variable in it exists in the code;
the Grafana dashboard only queries metrics the services export."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess

import pytest
from prometheus_client import CollectorRegistry

from rvs.core.catalog import Catalog, CatalogCollector
from rvs.embedder import main as embedder_main
from rvs.embedder.config import EmbedderSettings
from rvs.embedder.metrics import EmbedderMetrics
from rvs.query import main as query_main
from rvs.query.config import QuerySettings
from rvs.query.metrics import QueryMetrics
from rvs.sampler import main as sampler_main
from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics

from conftest import ROOT

SETTINGS = {"sampler": SamplerSettings, "embedder": EmbedderSettings, "query": QuerySettings}
PARSERS = {
    "sampler": sampler_main.build_parser,
    "embedder": embedder_main.build_parser,
    "query": query_main.build_parser,
}


LAYOUTS = {"standalone": ("compose.yml",), "milvus-cluster": ("compose.yml", "milvus-cluster.yml")}


def compose_config(files: tuple[str, ...] = LAYOUTS["standalone"], **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose config` of deploy/FILES. It answers in a second or two, yet now and then its
    plugin spins for good: then the whole process group is killed (the plugin holds the pipes) and it
    is asked again."""
    docker = shutil.which("docker")
    assert docker, "the docker client is needed to validate deploy/compose.yml (.ci/run installs compose)"
    cmd = [docker, "compose", *(f for name in files for f in ("-f", str(ROOT / "deploy" / name))), "config"]
    cmd += ["--format", "json"]
    for _ in range(3):
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "RVS_AUTH_TOKEN"} | env,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            continue
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    pytest.fail("docker compose config did not answer in three tries of 60 s")


@pytest.fixture(scope="module", params=list(LAYOUTS))
def compose(request: pytest.FixtureRequest) -> dict:  # type: ignore[type-arg]
    """The whole deployment, with Milvus standalone and with Milvus as a cluster."""
    out = compose_config(LAYOUTS[request.param], RVS_AUTH_TOKEN="a-token-for-this-test")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow  # docker compose (see conftest.SLOW_FIXTURES)
def test_the_milvus_cluster_is_milvus_s_own_distributed_mode_on_rvs_s_kafka() -> None:
    out = compose_config(LAYOUTS["milvus-cluster"], RVS_AUTH_TOKEN="a-token-for-this-test")
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    standalone = json.loads(compose_config(RVS_AUTH_TOKEN="t").stdout)["services"]["milvus"]
    components = {"milvus": "proxy", "rootcoord": "rootcoord", "querycoord": "querycoord", "datacoord": "datacoord"}
    components |= {"querynode": "querynode", "datanode": "datanode", "indexnode": "indexnode"}
    for name, role in components.items():
        svc = services[name]
        assert svc["image"] == standalone["image"] and svc["command"] == ["milvus", "run", role]
        assert svc["environment"]["ETCD_ENDPOINTS"] == standalone["environment"]["ETCD_ENDPOINTS"]
        assert svc["environment"]["MINIO_ADDRESS"] == standalone["environment"]["MINIO_ADDRESS"]
        mounts = {v["target"]: v["source"] for v in svc["volumes"]}
        assert mounts["/milvus/configs/user.yaml"] == str(ROOT / "deploy" / "milvus" / "cluster.yaml")
        assert "kafka" in svc["depends_on"] and not svc.get("ports")
    assert services["querynode"]["deploy"]["replicas"] >= 2 and "container_name" not in services["querynode"]
    # rvs reaches the proxy where it reached standalone; its collections spread writes over the data nodes.
    for name in ("embedder", "query"):
        assert services[name]["environment"]["RVS_MILVUS_URI"] == "http://milvus:19530"
        assert int(services[name]["environment"]["RVS_INDEX_SHARDS"]) == services["datanode"]["deploy"]["replicas"]
    # Milvus's write-ahead log goes to the Kafka that rvs's topics are on, at its advertised address.
    config = (ROOT / "deploy" / "milvus" / "cluster.yaml").read_text()
    broker = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    assert re.search(r"^mq:\n  type: kafka\b", config, re.M) and f"brokerList: {broker}\n" in config
    assert broker == services["embedder"]["environment"]["RVS_KAFKA_BOOTSTRAP"]


@pytest.mark.slow  # docker compose (see conftest.SLOW_FIXTURES)
def test_published_services_need_a_token() -> None:
    out = compose_config()
    assert out.returncode != 0 and "set RVS_AUTH_TOKEN" in out.stderr, out.stderr


def test_only_the_query_service_is_published_beyond_loopback(compose: dict) -> None:  # type: ignore[type-arg]
    published = {
        (name, p.get("host_ip", "")) for name, svc in compose["services"].items() for p in svc.get("ports", [])
    }
    assert {name for name, ip in published if ip != "127.0.0.1"} == {"query"}, published
    assert compose["services"]["query"]["environment"]["RVS_AUTH_TOKEN"] == "a-token-for-this-test"


def test_rvs_services_use_real_commands_flags_and_settings(compose: dict) -> None:  # type: ignore[type-arg]
    built = {name: svc for name, svc in compose["services"].items() if "build" in svc}
    assert set(built) == {"sampler", "embedder", "query"}
    for name, svc in built.items():
        assert svc["build"]["target"] == name  # the image of that service's member only
        PARSERS[name]().parse_args(svc.get("command") or [])  # unknown flags exit here
        fields = SETTINGS[name].model_fields
        for var in svc["environment"]:
            if var.startswith("RVS_"):
                assert var[4:].lower() in fields, f"{name}: {var} is not a setting of {SETTINGS[name].__name__}"
        with pytest.MonkeyPatch.context() as env:  # as the container gets them: environment variables
            for var, value in svc["environment"].items():
                env.setenv(var, value)
            SETTINGS[name]()


@pytest.mark.slow  # docker compose (see conftest.SLOW_FIXTURES)
def test_cameras_are_given_to_the_sampler_and_their_recordings_served() -> None:
    camera = "door=rtsp://viewer:secret@192.168.1.20:554/stream1"
    out = compose_config(RVS_AUTH_TOKEN="a-token-for-this-test", RVS_STREAMS=camera)
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    sampler, query = services["sampler"], services["query"]
    with pytest.MonkeyPatch.context() as env:
        for var, value in sampler["environment"].items():
            env.setenv(var, value)
        settings = SamplerSettings()
    assert settings.streams["door"].get_secret_value() == camera.partition("=")[2]
    recordings = str(settings.recording_dir)
    assert recordings in json.loads(query["environment"]["RVS_WEB_MEDIA_DIRS"])
    mounted = {name: {v["target"]: v["source"] for v in services[name]["volumes"]} for name in ("sampler", "query")}
    assert mounted["sampler"][recordings] == mounted["query"][recordings]


def test_each_service_image_installs_its_member_only() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for name in SETTINGS:
        stage = dockerfile.split(f"AS {name}\n", 1)[1].split("\nFROM ", 1)[0]
        assert f"--package rvs-{name}\n" in stage, stage
        assert f'ENTRYPOINT ["rvs-{name}"]' in stage, stage


def test_embedder_reserves_a_gpu_and_can_scale(compose: dict) -> None:  # type: ignore[type-arg]
    embedder = compose["services"]["embedder"]
    devices = embedder["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "container_name" not in embedder and not embedder.get("ports")  # replicas must not collide


def test_dashboard_queries_only_exported_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    SamplerMetrics(registry)
    EmbedderMetrics(registry)
    QueryMetrics(registry)
    registry.register(CatalogCollector(Catalog(tmp_path / "c.db")))
    names = {"rvs_index_faces"} | {family.name for family in registry.collect()}
    exported = {n + suffix for n in names for suffix in ("", "_total", "_bucket", "_sum", "_count")}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "rvs.json").read_text())
    used = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"\brvs_[a-z_]+", t["expr"])}
    assert used, "the dashboard queries nothing"
    assert used <= exported, f"dashboard queries unknown metrics: {sorted(used - exported)}"
