from __future__ import annotations

import threading
from collections.abc import Callable
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


class Face:
    """A detected face and its L2-normalised float32 embedding, given or computed on first read
    (`embed`): every face of a query photo is boxed, but usually only one is searched."""

    def __init__(
        self, detection: Detection, vector: np.ndarray | None = None, embed: Callable[[], np.ndarray] | None = None
    ) -> None:
        if (vector is None) == (embed is None):
            raise ValueError("a Face needs either its vector or a way to compute it")
        self.detection = detection
        self._vector = vector
        self._embed = embed
        self._lock = threading.Lock()

    @property
    def embedded(self) -> bool:
        return self._vector is not None

    @property
    def vector(self) -> np.ndarray:
        with self._lock:  # concurrent searches with one kept face embed it once
            if self._vector is None:
                assert self._embed is not None
                self._vector = self._embed()
                self._embed = None  # frees the pixels it kept
            return self._vector


class ModelUnavailable(RuntimeError):
    """The model's weights cannot be loaded (offline, missing file, wrong file)."""
