"""A stand-in for FacePipeline where a test is about the embedder's own logic (delivery, retries,
dead letters), and the bus frames it is fed: real photos from ../shared, JPEG as the sampler sends."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from rvs.core.faces.detector import FrameFaces
from rvs.core.faces.pipeline import Analysis
from rvs.core.faces.types import Detection
from rvs.core.media.frames import encode_jpeg
from rvs.v1 import rvs_pb2 as pb

from conftest import lfw
from media_factory import load_rgb

DIM = 16


def tiny(image: np.ndarray) -> bool:
    """What MTCNN choked on before the detector checked: an image under 20 px on a side."""
    return min(image.shape[:2]) < 20


class FakePipeline:
    """The FacePipeline method the embedder calls. `faces` faces per image, each with a vector made
    from the image's pixels; the first `fail_first` calls raise, and so does any call whose batch
    holds an image that `poison` picks."""

    def __init__(
        self, faces: int = 0, fail_first: int = 0, poison: Callable[[np.ndarray], bool] = lambda _: False
    ) -> None:
        self.faces = faces
        self.fail_first = fail_first
        self.poison = poison
        self.calls = 0

    def analyse(self, images: list[np.ndarray]) -> Analysis:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("CUDA out of memory")
        if any(self.poison(image) for image in images):
            raise ValueError("torch.cat(): expected a non-empty list of Tensors")
        out = Analysis()
        for image in images:
            h, w = image.shape[:2]
            det = Detection(box=(0.0, 0.0, float(w), float(h)), score=0.99, landmarks=np.zeros((5, 2), np.float32))
            out.frames.append(FrameFaces(faces=[det] * self.faces))
            vec = np.resize(image.astype(np.float32).ravel(), DIM) + 1.0
            out.vectors.append(np.stack([vec / np.linalg.norm(vec)] * self.faces) if self.faces else np.zeros((0, DIM)))
        return out


def photo_jpeg(size: tuple[int, int] | None = None, person: str = "George_W_Bush", n: int = 1) -> bytes:
    """A real LFW photo as JPEG, resized to `size` (width, height) if given."""
    return encode_jpeg(load_rgb(lfw(person, n), size), 90)


def frame(media_id: str, index: int, image: bytes, uri: str = "") -> pb.Frame:
    with Image.open(io.BytesIO(image)) as img:
        width, height = img.size
    return pb.Frame(
        media_id=media_id,
        uri=uri or f"/inbox/{media_id}.mp4",
        kind=pb.MEDIA_KIND_VIDEO,
        sample_index=index,
        time_ms=index * 1000,
        image=image,
        encoding=pb.FRAME_ENCODING_JPEG,
        width=width,
        height=height,
        scale=1.0,
        source="/inbox",
        ingested_at_ms=1,
    )


def reported(events: list[pb.MediaEvent], media_id: str) -> dict[int, tuple[int, str]]:
    """sample index -> (faces, failure) of every frame the embedder reported for a media item."""
    out = {}
    for e in events:
        if e.media_id == media_id and e.HasField("embedded"):
            emb = e.embedded
            failures = list(emb.failures) or [""] * len(emb.sample_indices)
            for index, faces, failure in zip(emb.sample_indices, emb.face_counts, failures, strict=True):
                out[index] = (faces, failure)
    return out
