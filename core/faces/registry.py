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
            0.5,
            "FaceNet's published LFW operating point",
        ),
        ModelSpec(
            "dlib-resnet",
            128,
            "mtcnn",
            0.92,
            "rvs eval: LFW folds 1-2 verification optimum 0.909-0.915, search best-F1 0.93; between, "
            "leaning to precision",
        ),
    )
}
