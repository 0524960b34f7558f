"""The generated stubs, the settings and the command line agree with each other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.sampler.config import SamplerSettings

from conftest import ROOT


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    """The build generates rvs.v1 from protos/; a stale build is caught here."""
    from grpc_tools import protoc

    from rvs.v1 import rvs_pb2, rvs_pb2_grpc

    proto_include = Path(protoc.__file__).parent / "_proto"
    assert (
        protoc.main(
            [
                "protoc",
                f"-I{ROOT / 'protos'}",
                f"-I{proto_include}",
                f"--python_out={tmp_path}",
                str(ROOT / "protos" / "rvs" / "v1" / "rvs.proto"),
            ]
        )
        == 0
    )
    fresh = (tmp_path / "rvs" / "v1" / "rvs_pb2.py").read_text()
    assert Path(rvs_pb2.__file__).read_text() == fresh, "stubs are stale: run `uv sync --reinstall-package rvs-api`"
    assert hasattr(rvs_pb2_grpc, "SearchServiceStub")
    assert rvs_pb2.DESCRIPTOR.package == "rvs.v1"


def test_settings_come_from_rvs_env_and_reject_unknown_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RVS_MODEL", "dlib-resnet")
    monkeypatch.setenv("RVS_BATCH_SIZE", "32")
    monkeypatch.setenv("RVS_MILVUS_URI", "http://milvus:19530")
    s = EmbedderSettings()
    assert (s.model, s.batch_size, s.milvus_uri) == ("dlib-resnet", 32, "http://milvus:19530")
    assert QuerySettings().model == "dlib-resnet"  # one variable, every service
    with pytest.raises(ValidationError):
        SamplerSettings(no_such_setting=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        EmbedderSettings(model="resnet-9000")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SamplerSettings(fps=0)


def test_help_shows_env_fallbacks() -> None:
    out = subprocess.run([sys.executable, "-m", "rvs.cli", "up", "--help"], capture_output=True, text=True, check=True)
    for env in ("RVS_WATCH_DIR", "RVS_MODEL", "RVS_DATA_DIR", "RVS_PORT", "RVS_MILVUS_URI"):
        assert env in out.stdout
    for field in ("watch_dir", "model", "data_dir", "port", "milvus_uri", "weights_path", "metrics_port"):
        owner = SamplerSettings if field == "watch_dir" else QuerySettings
        assert field in owner.model_fields


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for cls in (SamplerSettings, EmbedderSettings, QuerySettings):
        for name, field in cls.model_fields.items():
            assert f"RVS_{name.upper()}" in readme, f"RVS_{name.upper()} is not in the README's table"
            assert field.description, f"{cls.__name__}.{name} has no description"
