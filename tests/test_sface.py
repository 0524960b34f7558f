"""SFace and YuNet (OpenCV Zoo) with their real, sha256-pinned files, each with either detector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rvs.core.config import ModelSettings
from rvs.core.faces.detector import FaceDetector
from rvs.core.faces.encoders import FaceEncoder
from rvs.core.faces.model_files import SFACE, YUNET
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.faces.registry import DETECTORS, MODELS, implementation
from rvs.core.media.images import decode_image

from conftest import lfw, shared

pytestmark = pytest.mark.slow  # the model files rvs fetches

PEOPLE = [("George_W_Bush", 1), ("George_W_Bush", 10), ("Colin_Powell", 1), ("Colin_Powell", 2)]


def photos(people: list[tuple[str, int]]) -> list[np.ndarray]:
    return [decode_image(lfw(p, n).read_bytes()) for p, n in people]


@pytest.fixture(scope="module", params=["mtcnn", "yunet"])
def sface(request: pytest.FixtureRequest) -> FacePipeline:
    pipeline = FacePipeline(ModelSettings(model="sface", detector=request.param))
    pipeline.load()
    return pipeline


def test_every_registry_entry_names_its_implementation() -> None:
    for spec in MODELS.values():
        assert issubclass(implementation(spec.encoder), FaceEncoder), spec.name
        assert spec.files or spec.weights_elsewhere, f"{spec.name}: where do its weights come from?"
    for detector in DETECTORS.values():
        assert issubclass(implementation(detector.detector), FaceDetector), detector.name
    assert MODELS["sface"].files == (SFACE,) and DETECTORS["yunet"].files == (YUNET,)


def test_unknown_model_or_detector_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown model 'arcface': one of sface, "):
        ModelSettings(model="arcface")
    with pytest.raises(ValueError, match="unknown detector 'retina': one of mtcnn, yunet"):
        ModelSettings(detector="retina")


def test_sface_tells_people_apart_at_its_default_threshold(sface: FacePipeline) -> None:
    faces = sface.process(photos(PEOPLE))
    assert [len(f) for f in faces] == [1, 1, 1, 1]
    v = [f[0].vector for f in faces]
    assert v[0].shape == (128,) and np.linalg.norm(v[0]) == pytest.approx(1.0, abs=1e-5)
    threshold = MODELS["sface"].default_min_score
    same = [float(v[0] @ v[1]), float(v[2] @ v[3])]
    other = [float(v[i] @ v[j]) for i in (0, 1) for j in (2, 3)]
    assert min(same) > threshold > max(other), (same, other)


def test_sface_vectors_are_opencv_zoos_own(sface: FacePipeline) -> None:
    """The reference pipeline of OpenCV Zoo's demo (BGR in, alignCrop on its own detection, feature):
    a wrong colour order, landmark order or alignment would not give the same vector."""
    path = lfw("Colin_Powell", 1)
    bgr = cv2.imread(str(path))
    yunet = cv2.FaceDetectorYN.create(str(YUNET.path(ModelSettings().models_dir)), "", bgr.shape[1::-1])
    recogniser = cv2.FaceRecognizerSF.create(str(SFACE.path(ModelSettings().models_dir)), "")
    _, rows = yunet.detect(bgr)
    reference = recogniser.feature(recogniser.alignCrop(bgr, rows[0])).reshape(-1)
    reference /= np.linalg.norm(reference)
    ours = sface.process([decode_image(path.read_bytes())])[0][0].vector
    floor = 0.9999 if sface.detector.name == "yunet" else 0.95  # MTCNN's landmarks differ by a pixel or two
    assert float(ours @ reference) >= floor


def test_yunet_landmarks_are_in_mtcnns_order() -> None:
    images = photos(PEOPLE)
    found = {}
    for name in ("mtcnn", "yunet"):
        pipeline = FacePipeline(ModelSettings(model="sface", detector=name))
        pipeline.load()
        found[name] = [faces[0] for faces in pipeline.detector.detect(images)]
    for m, y in zip(found["mtcnn"], found["yunet"], strict=True):
        eye_distance = float(np.linalg.norm(m.landmarks[1] - m.landmarks[0]))
        assert np.abs(m.landmarks - y.landmarks).max() < 0.25 * eye_distance


def test_yunet_finds_no_face_where_there_is_none_and_survives_tiny_images() -> None:
    pipeline = FacePipeline(ModelSettings(model="sface", detector="yunet"))
    pipeline.load()
    no_face = decode_image(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg").read_bytes())
    tiny = [np.zeros((1, 1, 3), np.uint8), np.full((19, 19, 3), 128, np.uint8)]
    assert pipeline.process([no_face, *tiny]) == [[], [], []]


def test_yunet_counts_low_confidence_faces_instead_of_indexing_them() -> None:
    strict = FacePipeline(ModelSettings(model="sface", detector="yunet", min_detection_score=0.999))
    strict.load()
    frames = strict.detector.analyse(photos(PEOPLE))
    assert sum(len(f.faces) for f in frames) < len(PEOPLE)
    assert sum(f.rejected["LOW_CONFIDENCE"] for f in frames) == len(PEOPLE) - sum(len(f.faces) for f in frames)


def test_a_query_face_cropped_from_a_large_frame_embeds_as_in_the_frame(sface: FacePipeline) -> None:
    """Query photos are embedded from a crop around the face (the landmarks move with it)."""
    small = photos([("Colin_Powell", 1)])[0]
    big = np.zeros((720, 1280, 3), np.uint8)
    big[300 : 300 + small.shape[0], 900 : 900 + small.shape[1]] = small
    in_frame = sface.process([big])[0][0].vector
    query = sface.faces(big, max_faces=1)[0].vector
    assert float(in_frame @ query) > 0.98
