"""Face detection: what every detector shares. Frames are grouped by size and downscaled to at
most `max_side` before detection; boxes and landmarks come back in each frame's own pixels, and
a detected face that is not indexed is counted under the reason the quality gates rejected it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from rvs.core.faces.types import Detection
from rvs.core.media.frames import fit_within

if TYPE_CHECKING:
    import torch

    from rvs.core.config import ModelSettings

LOW_CONFIDENCE, TOO_SMALL, BLURRY, POSE = "LOW_CONFIDENCE", "TOO_SMALL", "BLURRY", "POSE"


@dataclass(frozen=True)
class QualityGates:
    min_score: float = 0.95  # detection probability
    min_face_px: int = 0  # shorter side of the box, in pixels of the image given to the detector
    min_sharpness: float = 0.0  # variance of the Laplacian of the face, grey, at 64x64
    max_yaw: float = 0.0  # |nose offset from the eyes' midpoint| / eye distance; 0: off


@dataclass
class FrameFaces:
    faces: list[Detection] = field(default_factory=list)  # indexed, largest first
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> faces


def sharpness(rgb: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian of the face crop, grey, resized to 64x64: low means blurred."""
    x1, y1, x2, y2 = (round(v) for v in box)
    h, w = rgb.shape[:2]
    crop = rgb[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]
    if crop.size == 0:
        return 0.0
    grey = np.asarray(Image.fromarray(crop).convert("L").resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


def yaw(landmarks: np.ndarray) -> float:
    """How far the nose sits from the eyes' midpoint, in eye distances: ~0 frontal, ~0.5+ profile."""
    left, right, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_dist = float(np.linalg.norm(right - left))
    if eye_dist < 1e-6:
        return float("inf")
    return abs(float(nose[0] - (left[0] + right[0]) / 2)) / eye_dist


def reject_reason(rgb: np.ndarray, det: Detection, gates: QualityGates) -> str | None:
    if det.score < gates.min_score:
        return LOW_CONFIDENCE
    x1, y1, x2, y2 = det.box
    if gates.min_face_px and min(x2 - x1, y2 - y1) < gates.min_face_px:
        return TOO_SMALL
    if gates.max_yaw and yaw(det.landmarks) > gates.max_yaw:
        return POSE
    if gates.min_sharpness and sharpness(rgb, det.box) < gates.min_sharpness:
        return BLURRY
    return None


# One face as a detector reports it, in the pixels of the image it was given: box, score, landmarks.
RawFace = tuple[tuple[float, float, float, float], float, np.ndarray]


class FaceDetector(ABC):
    """Life cycle: `load()` once (idempotent, may raise ModelUnavailable), then `analyse()`."""

    name: str
    chunk: int = 4  # frames per detector call (and per overlapped embedding step)

    def __init__(self, min_face_size: int = 20, max_side: int = 640, gates: QualityGates | None = None) -> None:
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.gates = gates or QualityGates()

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: ModelSettings, device: torch.device, gates: QualityGates) -> FaceDetector:
        """The detector the settings ask for, on `device` where it runs on torch."""

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def _detect(self, batch: np.ndarray) -> list[list[RawFace]]:
        """Faces of each image of an (n, h, w, 3) RGB batch, in its pixels."""

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces per image that pass the quality gates, largest first, in the pixels of each image."""
        return [frame.faces for frame in self.analyse(images)]

    def analyse(self, images: list[np.ndarray]) -> list[FrameFaces]:
        """Per image: the faces that pass the quality gates, and the count of those that did not."""
        results: list[FrameFaces] = [FrameFaces() for _ in images]
        # Detectors batch only images of one size; frames of one video share it.
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[img.shape[:2]].append(i)
        for size, same_size in groups.items():
            for start in range(0, len(same_size), self.chunk):
                self._analyse_group(images, size, same_size[start : start + self.chunk], results)
        return results

    def _analyse_group(
        self, images: list[np.ndarray], size: tuple[int, int], members: list[int], results: list[FrameFaces]
    ) -> None:
        height, width = size
        w, h = fit_within(width, height, self.max_side)
        if min(w, h) < self.min_face_size:
            return  # smaller than the smallest face looked for: no face
        scale = width / w
        if scale != 1.0:
            # OpenCV's area filter: ~30x faster than PIL's bilinear here, and no aliasing.
            batch = np.stack([cv2.resize(images[i], (w, h), interpolation=cv2.INTER_AREA) for i in members])
        else:
            batch = np.stack([images[i] for i in members])
        for i, found in zip(members, self._detect(batch), strict=True):
            frame = results[i]
            for box, score, landmarks in found:
                det = Detection(
                    box=tuple(float(v) * scale for v in box),  # type: ignore[arg-type]
                    score=float(score),
                    landmarks=np.asarray(landmarks, dtype=np.float32) * scale,
                )
                reason = reject_reason(images[i], det, self.gates)
                if reason is None:
                    frame.faces.append(det)
                else:
                    frame.rejected[reason] += 1
            frame.faces.sort(key=lambda d: (-d.area, d.box))
