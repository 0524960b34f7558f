from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the analysed image
    score: float
    landmarks: np.ndarray  # (5, 2): eyes, nose, mouth corners

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class Face:
    detection: Detection
    vector: np.ndarray  # L2-normalised float32 embedding


class ModelUnavailable(RuntimeError):
    """The model's weights cannot be loaded (offline, missing file, wrong file)."""
