"""The tree shows the architecture: each workspace member's folder is its import path, and each
service installs only what it uses (the import direction itself is import-linter's, in CI)."""

from __future__ import annotations

import tomllib

import pytest

from conftest import ROOT

MEMBERS = {
    "rvs-api": ("protos", "rvs.v1"),
    "rvs-core": ("core", "rvs.core"),
    "rvs-sampler": ("services/sampler", "rvs.sampler"),
    "rvs-embedder": ("services/embedder", "rvs.embedder"),
    "rvs-query": ("services/query", "rvs.query"),
    "rvs-cli": ("cli", "rvs.cli"),
}


def installs(member: str) -> set[str]:
    """Every distribution `uv sync --package member` installs, from the lock file."""
    packages = {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(member, ())]
    while todo:
        name, extras = todo.pop()
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        todo += [(d["name"], tuple(d.get("extra", ()))) for d in deps]
    return {key.split("[")[0] for key in seen}


def test_the_workspace_is_these_members() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert sorted(root["tool"]["uv"]["workspace"]["members"]) == sorted(folder for folder, _ in MEMBERS.values())


@pytest.mark.parametrize("member", MEMBERS)
def test_a_members_folder_is_its_import_path(member: str) -> None:
    folder, package = MEMBERS[member]
    project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())
    assert project["project"]["name"] == member
    assert project["tool"]["setuptools"]["packages"]["find"] == {"where": ["src"], "include": [package + "*"]}
    source = ROOT / folder / "src" / package.replace(".", "/")
    assert (source / "__init__.py").is_file()
    assert not (ROOT / folder / "src" / "rvs" / "__init__.py").exists(), "rvs is a namespace shared by the members"


def test_the_sampler_installs_no_torch_and_no_milvus() -> None:
    sampler = installs("rvs-sampler")
    assert "rvs-core" in sampler and "kafka-python" in sampler and "av" in sampler
    assert not {"torch", "torchvision", "facenet-pytorch", "dlib-bin", "pymilvus", "milvus"} & sampler


def test_only_the_cli_installs_every_service() -> None:
    services = {"rvs-sampler", "rvs-embedder", "rvs-query"}
    for member in services:
        assert installs(member) & services == {member}
    assert services <= installs("rvs-cli")
    assert "torch" in installs("rvs-embedder") and "starlette" not in installs("rvs-embedder")
