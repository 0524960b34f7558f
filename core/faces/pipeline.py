"""Detection followed by embedding, on one device, for a batch of images."""

from __future__ import annotations

import logging

import numpy as np
import torch

from rvs.config import ModelSettings
from rvs.faces.detector import MtcnnDetector, QualityGates
from rvs.faces.encoders import DlibEncoder, FaceEncoder, FacenetEncoder
from rvs.faces.types import Face

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_encoder(settings: ModelSettings, device: torch.device) -> FaceEncoder:
    if settings.model == "dlib-resnet":
        return DlibEncoder()
    return FacenetEncoder(settings.model, device, settings.weights_path)


class FacePipeline:
    def __init__(self, settings: ModelSettings) -> None:
        self.device = resolve_device(settings.device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self.detector = MtcnnDetector(
            self.device,
            min_face_size=settings.min_face_size,
            thresholds=settings.detect_thresholds,
            max_side=settings.detect_max_side,
            gates=QualityGates(
                min_score=settings.min_detection_score,
                min_face_px=settings.min_face_px,
                min_sharpness=settings.min_sharpness,
                max_yaw=settings.max_yaw,
            ),
        )
        self.encoder = build_encoder(settings, self.device)

    @property
    def model_name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def load(self) -> None:
        """Load both models (idempotent). Raises ModelUnavailable with a clear message."""
        self.detector.load()
        self.encoder.load()
        log.info("models ready: MTCNN + %s on %s", self.encoder.name, self.device)

    def process(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Every face in every image, largest first, boxes in the pixels of each image."""
        detections = self.detector.detect(images)
        vectors = self.encoder.encode(images, detections)
        return [
            [Face(det, vec) for det, vec in zip(dets, vecs, strict=True)]
            for dets, vecs in zip(detections, vectors, strict=True)
        ]
