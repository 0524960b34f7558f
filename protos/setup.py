"""Build hook: generate the gRPC/protobuf modules from rvs/v1/*.proto into src/rvs/v1/.

Everything else about the package lives in pyproject.toml; this file exists only because the
stubs are build outputs, not sources (they are not committed).
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
PROTO_ROOT = ROOT
OUT = ROOT / "src" / "rvs" / "v1"


def generate_stubs() -> None:
    import tempfile

    from grpc_tools import protoc

    protos = sorted(str(p) for p in (PROTO_ROOT / "rvs").rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on " + " ".join(protos))
        for generated in (Path(tmp) / "rvs" / "v1").iterdir():
            (OUT / generated.name).write_bytes(generated.read_bytes())


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
