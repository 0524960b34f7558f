"""MTCNN face detection (facenet-pytorch), batched over frames of equal size."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from rvs.faces.types import Detection
from rvs.media.frames import fit_within


class MtcnnDetector:
    def __init__(
        self,
        device: torch.device,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        min_score: float = 0.95,
        max_side: int = 1280,
    ) -> None:
        self.device = device
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.min_score = min_score
        self.max_side = max_side
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
        """Faces per image, largest first, boxes in the pixels of each given image."""
        assert self._mtcnn is not None, "load() first"
        results: list[list[Detection]] = [[] for _ in images]
        # MTCNN batches only images of one size; frames of one video share it.
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[img.shape[:2]].append(i)
        # On CPU, MTCNN is fastest on a few frames at a time (1280x720, frames/s: 5.0 at 1, 6.0 at 4,
        # 4.3 at 16: larger pyramids fall out of cache); a GPU wants the whole batch at once.
        chunk = 4 if self.device.type == "cpu" else 64
        for size, same_size in groups.items():
            for start in range(0, len(same_size), chunk):
                self._detect_group(images, size, same_size[start : start + chunk], results)
        return results

    def _detect_group(
        self, images: list[np.ndarray], size: tuple[int, int], members: list[int], results: list[list[Detection]]
    ) -> None:
        assert self._mtcnn is not None
        height, width = size
        w, h = fit_within(width, height, self.max_side)
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
            faces = [
                Detection(
                    box=tuple(float(v) * scale for v in box),  # type: ignore[arg-type]
                    score=float(prob),
                    landmarks=np.asarray(lm, dtype=np.float32) * scale,
                )
                for box, prob, lm in zip(b, p, pts, strict=True)
                if prob is not None and prob >= self.min_score
            ]
            faces.sort(key=lambda d: (-d.area, d.box))
            results[i] = faces
