"""What rvs knows about each embedding model: its dimension, detector and default threshold, and
where that threshold came from (`rvs models` prints this)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dim: int
    detector: str
    default_min_score: float  # cosine similarity above which two faces are taken as one person
    threshold_source: str


MODELS = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "facenet-vggface2",
            512,
            "mtcnn",
            0.5,
            "FaceNet's published LFW operating point (not measured here: its weights come from GitHub)",
        ),
        ModelSpec(
            "facenet-casia",
            512,
            "mtcnn",
            0.47,
            "rvs eval: LFW folds 1-2 verification 97.1% at a cross-validated 0.382, search best-F1 at "
            "0.54 (P 0.927 / R 0.858); their midpoint, rounded up",
        ),
        ModelSpec(
            "dlib-resnet",
            128,
            "mtcnn",
            0.92,
            "rvs eval: LFW folds 1-2 verification 98.3% at a cross-validated 0.909, search best-F1 at "
            "0.93 (P 0.936 / R 0.891); their midpoint, rounded up",
        ),
    )
}
