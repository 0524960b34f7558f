"""Model loading paths and the batched pipeline, with real weights where a package ships them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rvs.core.config import ModelSettings
from rvs.core.faces.pipeline import FacePipeline, build_encoder
from rvs.core.faces.types import ModelUnavailable
from rvs.core.media.images import decode_image

from conftest import lfw
from media_factory import load_rgb

pytestmark = pytest.mark.slow  # real model weights


@pytest.fixture(scope="module")
def random_facenet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real InceptionResnetV1 state_dict (random initialisation), saved like the published files."""
    from facenet_pytorch import InceptionResnetV1  # 8 s of torchvision: not at the fast tier's collection

    path = tmp_path_factory.mktemp("weights") / "facenet-random.pt"
    torch.manual_seed(0)
    torch.save(InceptionResnetV1(pretrained=None).state_dict(), path)
    return path


def photos(*people: tuple[str, int]) -> list[np.ndarray]:
    return [decode_image(lfw(p, n).read_bytes()) for p, n in people]


def test_dlib_model_tells_people_apart() -> None:
    pipeline = FacePipeline(ModelSettings(model="dlib-resnet"))
    pipeline.load()
    pipeline.load()  # idempotent
    faces = pipeline.process(photos(("George_W_Bush", 1), ("George_W_Bush", 10), ("Colin_Powell", 1)))
    vecs = [f[0].vector for f in faces]
    assert vecs[0].shape == (128,)
    assert np.linalg.norm(vecs[0]) == pytest.approx(1.0, abs=1e-5)
    same, other = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert same > other + 0.05


def test_facenet_from_local_weights_file(random_facenet_weights: Path) -> None:
    pipeline = FacePipeline(ModelSettings(model="facenet-vggface2", weights_path=random_facenet_weights))
    pipeline.load()
    faces = pipeline.process(photos(("Tony_Blair", 1), ("Tony_Blair", 2)))
    assert [len(f) for f in faces] == [1, 1]
    assert faces[0][0].vector.shape == (512,)
    assert np.linalg.norm(faces[0][0].vector) == pytest.approx(1.0, abs=1e-5)


def test_facenet_offline_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached download
    with pytest.raises(ModelUnavailable, match="RVS_WEIGHTS_PATH"):
        build_encoder(ModelSettings(model="facenet-vggface2"), torch.device("cpu")).load()


def test_facenet_wrong_weights_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(ModelUnavailable, match=r"bad\.pt"):
        build_encoder(ModelSettings(model="facenet-vggface2", weights_path=bad), torch.device("cpu")).load()


def test_batch_of_mixed_sizes_matches_one_by_one() -> None:
    pipeline = FacePipeline(ModelSettings(model="dlib-resnet"))
    pipeline.load()
    big = np.zeros((400, 700, 3), np.uint8)
    small = photos(("Colin_Powell", 1))[0]
    big[50 : 50 + small.shape[0], 100 : 100 + small.shape[1]] = small
    batch = pipeline.process([small, big, small])
    single = [pipeline.process([img])[0] for img in (small, big)]
    assert [len(f) for f in batch] == [1, 1, 1]
    assert float(batch[1][0].vector @ single[1][0].vector) == pytest.approx(1.0, abs=1e-3)
    x1, y1, _, _ = batch[1][0].detection.box
    sx1, sy1, _, _ = single[0][0].detection.box
    assert (x1 - sx1, y1 - sy1) == pytest.approx((100, 50), abs=3)  # boxes in each image's own pixels


def test_tiny_images_have_no_face_and_do_not_sink_the_batch() -> None:
    """Below the smallest face looked for, MTCNN's image pyramid is empty (it raised `torch.cat():
    expected a non-empty list of Tensors` and took the whole batch down with it)."""
    pipeline = FacePipeline(ModelSettings(model="dlib-resnet"))  # min_face_size 20
    pipeline.load()
    path = lfw("Colin_Powell", 1)
    tiny = [load_rgb(path, size) for size in ((1, 1), (19, 19), (400, 5))]
    faces = pipeline.process([*tiny, load_rgb(path)])
    assert [len(f) for f in faces] == [0, 0, 0, 1]
