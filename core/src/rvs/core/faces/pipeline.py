"""Detection followed by embedding, on one device, for a batch of images."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from rvs.core.config import ModelSettings
from rvs.core.faces.detector import FaceDetector, FrameFaces, QualityGates
from rvs.core.faces.encoders import EncoderContext, FaceEncoder
from rvs.core.faces.model_files import ModelCache
from rvs.core.faces.registry import DETECTORS, MODELS, implementation
from rvs.core.faces.types import Detection, Face
from rvs.core.media.frames import fit_within

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# Pixels kept to embed a query face later: the box and half its size around it (dlib's aligned chip
# and FaceNet's margin lie within), at most this long side: twice the 150-160 px the encoders use.
CROP_MARGIN = 0.5
CROP_MAX_SIDE = 320


def face_crop(image: np.ndarray, det: Detection) -> tuple[np.ndarray, Detection]:
    """The pixels around one face, as a small image of its own, and the detection in its pixels."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = det.box
    mx, my = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(width, max(left + 1, int(x2 + mx) + 1)), min(height, max(top + 1, int(y2 + my) + 1))
    crop = image[top:bottom, left:right]
    w, h = fit_within(crop.shape[1], crop.shape[0], CROP_MAX_SIDE)
    scale = w / crop.shape[1]
    if scale < 1.0:
        crop = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BILINEAR))
    offset = np.array([left, top], np.float32)
    local = Detection(
        box=tuple(float(v) * scale for v in (x1 - left, y1 - top, x2 - left, y2 - top)),  # type: ignore[arg-type]
        score=det.score,
        landmarks=(det.landmarks - offset) * scale,
    )
    return np.array(crop), local  # a copy: the whole image need not stay in memory


def build_encoder(settings: ModelSettings, device: torch.device) -> FaceEncoder:
    spec = MODELS[settings.model]
    cache = ModelCache(settings.models_dir, settings.package_index_url)
    encoder = implementation(spec.encoder)(spec, EncoderContext(device, cache, settings.weights_path))
    assert isinstance(encoder, FaceEncoder)
    return encoder


def build_detector(settings: ModelSettings, device: torch.device) -> FaceDetector:
    spec = DETECTORS[settings.detector]
    gates = QualityGates(
        min_score=spec.default_min_score if settings.min_detection_score is None else settings.min_detection_score,
        min_face_px=settings.min_face_px,
        min_sharpness=settings.min_sharpness,
        max_yaw=settings.max_yaw,
    )
    detector = implementation(spec.detector).from_settings(settings, device, gates)
    assert isinstance(detector, FaceDetector)
    return detector


@dataclass
class Analysis:
    frames: list[FrameFaces] = field(default_factory=list)  # per image: indexed faces and rejections
    vectors: list[np.ndarray] = field(default_factory=list)  # per image: (n_faces, dim)
    detect_s: float = 0.0  # time spent detecting (on CPU it overlaps embedding)
    embed_s: float = 0.0


class FacePipeline:
    def __init__(self, settings: ModelSettings) -> None:
        self.device = resolve_device(settings.device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self.detector = build_detector(settings, self.device)
        self.encoder = build_encoder(settings, self.device)
        # On CPU, MTCNN's many small operations leave a core idle that the embedding network's large
        # convolutions would use: detecting the next chunk while this one is embedded fills it.
        self._overlap = ThreadPoolExecutor(1, thread_name_prefix="detect") if self.device.type == "cpu" else None

    @property
    def model_name(self) -> str:
        return self.encoder.name

    @property
    def pairing(self) -> str:
        """The model and the detector that finds its faces, as `rvs eval` names them: sface+yunet."""
        return f"{self.encoder.name}+{self.detector.name}"

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def load(self) -> None:
        """Load both models (idempotent). Raises ModelUnavailable with a clear message."""
        self.detector.load()
        self.encoder.load()
        log.info("models ready: %s + %s on %s", self.detector.name, self.encoder.name, self.device)

    def analyse(self, images: list[np.ndarray]) -> Analysis:
        """Detect and embed every face in a batch of images."""
        out = Analysis()
        if not images:
            return out
        if self._overlap is None:
            found, out.detect_s = self._detect(images)
            self._embed(images, found, out)
            return out
        step = self.detector.chunk
        chunks = [images[i : i + step] for i in range(0, len(images), step)]
        pending = self._overlap.submit(self._detect, chunks[0])
        for k, chunk in enumerate(chunks):
            found, seconds = pending.result()
            out.detect_s += seconds
            if k + 1 < len(chunks):
                pending = self._overlap.submit(self._detect, chunks[k + 1])
            self._embed(chunk, found, out)
        return out

    def _detect(self, images: list[np.ndarray]) -> tuple[list[FrameFaces], float]:
        started = time.perf_counter()
        return self.detector.analyse(images), time.perf_counter() - started

    def _embed(self, images: list[np.ndarray], found: list[FrameFaces], out: Analysis) -> None:
        started = time.perf_counter()
        out.vectors += self.encoder.encode(images, [f.faces for f in found])
        out.embed_s += time.perf_counter() - started
        out.frames += found

    def faces(self, image: np.ndarray, max_faces: int) -> list[Face]:
        """The largest `max_faces` faces of one photo, largest first, boxes in its pixels; each face is
        embedded when its vector is first read (a query photo's faces are shown, one is searched)."""
        detections = self.detector.detect([image])[0][:max_faces]
        return [Face(det, embed=self._embedding(image, det)) for det in detections]

    def _embedding(self, image: np.ndarray, det: Detection) -> Callable[[], np.ndarray]:
        crop, local = face_crop(image, det)
        return lambda: self.encoder.encode([crop], [[local]])[0][0]

    def process(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Every face in every image, largest first, boxes in the pixels of each image."""
        analysis = self.analyse(images)
        return [
            [Face(det, vec) for det, vec in zip(frame.faces, vecs, strict=True)]
            for frame, vecs in zip(analysis.frames, analysis.vectors, strict=True)
        ]
