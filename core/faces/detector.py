"""MTCNN face detection (facenet-pytorch), batched over frames of equal size, with quality gates:
a detected face that is not indexed is counted under the reason it was rejected."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from rvs.faces.types import Detection
from rvs.media.frames import fit_within

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


class MtcnnDetector:
    def __init__(
        self,
        device: torch.device,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        max_side: int = 1280,
        gates: QualityGates | None = None,
    ) -> None:
        self.device = device
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.gates = gates or QualityGates()
        self.max_side = max_side
        # On CPU, MTCNN is fastest on a few frames at a time (1280x720, frames/s: 5.0 at 1, 6.0 at 4,
        # 4.3 at 16: larger pyramids fall out of cache); a GPU wants the whole batch at once.
        self.chunk = 4 if device.type == "cpu" else 64
        self._mtcnn: MTCNN | None = None

    def load(self) -> None:
        if self._mtcnn is None:
            # Weights ship inside the facenet-pytorch wheel: nothing is downloaded here.
            self._mtcnn = MTCNN(
                keep_all=True,
                min_face_size=self.min_face_size,
                thresholds=list(self.thresholds),
                device=self.device,
            ).eval()

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces per image that pass the quality gates, largest first, in the pixels of each image."""
        return [frame.faces for frame in self.analyse(images)]

    def analyse(self, images: list[np.ndarray]) -> list[FrameFaces]:
        """Per image: the faces that pass the quality gates, and the count of those that did not."""
        assert self._mtcnn is not None, "load() first"
        results: list[FrameFaces] = [FrameFaces() for _ in images]
        # MTCNN batches only images of one size; frames of one video share it.
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[img.shape[:2]].append(i)
        for size, same_size in groups.items():
            for start in range(0, len(same_size), self.chunk):
                self._detect_group(images, size, same_size[start : start + self.chunk], results)
        return results

    def _detect_group(
        self, images: list[np.ndarray], size: tuple[int, int], members: list[int], results: list[FrameFaces]
    ) -> None:
        assert self._mtcnn is not None
        height, width = size
        w, h = fit_within(width, height, self.max_side)
        if min(w, h) * (12.0 / self.min_face_size) < 12.0:
            # Smaller than the smallest face looked for (MTCNN's own pyramid test): its image pyramid
            # would be empty and it raises (torch.cat of nothing). Such an image simply has no face.
            return
        scale = width / w
        if scale != 1.0:
            batch = np.stack(
                [np.asarray(Image.fromarray(images[i]).resize((w, h), Image.Resampling.BILINEAR)) for i in members]
            )
        else:
            batch = np.stack([images[i] for i in members])
        with torch.inference_mode():
            boxes, probs, points = self._mtcnn.detect(batch, landmarks=True)
        for i, b, p, pts in zip(members, boxes, probs, points, strict=True):
            if b is None:
                continue
            frame = results[i]
            for box, prob, lm in zip(b, p, pts, strict=True):
                if prob is None:
                    continue
                det = Detection(
                    box=tuple(float(v) * scale for v in box),  # type: ignore[arg-type]
                    score=float(prob),
                    landmarks=np.asarray(lm, dtype=np.float32) * scale,
                )
                reason = reject_reason(images[i], det, self.gates)
                if reason is None:
                    frame.faces.append(det)
                else:
                    frame.rejected[reason] += 1
            frame.faces.sort(key=lambda d: (-d.area, d.box))
