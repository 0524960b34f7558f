"""Stand-ins for FacePipeline and FaceStore where a test is about the embedder's own logic (delivery,
retries, dead letters), and the bus frames it is fed: photo-like pictures made here, JPEG as the
sampler sends."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from rvs.core.faces.detector import FrameFaces
from rvs.core.faces.pipeline import Analysis
from rvs.core.faces.types import Detection
from rvs.core.media.frames import encode_jpeg
from rvs.core.store.faces import FaceRow, StoreRejected, StoreUnavailable
from rvs.v1 import rvs_pb2 as pb

from media_factory import synthetic_photo

DIM = 16


def tiny(image: np.ndarray) -> bool:
    """What MTCNN choked on before the detector checked: an image under 20 px on a side."""
    return min(image.shape[:2]) < 20


class FakePipeline:
    """The FacePipeline method the embedder calls. `faces` faces per image, each with a vector made
    from the image's pixels; the first `fail_first` calls raise, and so does any call whose batch
    holds an image that `poison` picks. `sizes`: the images of each call, in order."""

    def __init__(
        self, faces: int = 0, fail_first: int = 0, poison: Callable[[np.ndarray], bool] = lambda _: False
    ) -> None:
        self.faces = faces
        self.fail_first = fail_first
        self.poison = poison
        self.calls = 0
        self.sizes: list[int] = []

    def analyse(self, images: list[np.ndarray]) -> Analysis:
        self.calls += 1
        self.sizes.append(len(images))
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


class MemoryFaceStore:
    """The FaceStore methods the embedder calls, over a dict of rows by key (an upsert of a key
    overwrites it, as in Milvus). The first `unavailable` upserts raise StoreUnavailable; an upsert
    holding a row that `refuse` picks raises StoreRejected, as Milvus refuses the whole request.
    `upserts`: the rows of each upsert tried, in order."""

    def __init__(
        self,
        model: str = "fake",
        unavailable: int = 0,
        refuse: Callable[[FaceRow], bool] = lambda _: False,
    ) -> None:
        self.model, self.dim = model, DIM
        self.unavailable = unavailable
        self.refuse = refuse
        self.rows: dict[str, FaceRow] = {}
        self.upserts: list[int] = []

    def upsert(self, rows: Sequence[FaceRow]) -> None:
        self.upserts.append(len(rows))
        if self.unavailable:
            self.unavailable -= 1
            raise StoreUnavailable("cannot connect to Milvus")
        if refused := next((r for r in rows if self.refuse(r)), None):
            raise StoreRejected(f"invalid parameter: the row of {refused.media_id}")
        self.rows.update((r.key, r) for r in rows)

    def delete_media(self, media_id: str) -> int:
        gone = self.keys(media_id)
        for key in gone:
            del self.rows[key]
        return len(gone)

    def count(self, media_id: str | None = None) -> int:
        return len(self.keys(media_id)) if media_id else len(self.rows)

    def keys(self, media_id: str) -> list[str]:
        return sorted(k for k, r in self.rows.items() if r.media_id == media_id)

    def close(self) -> None:
        """Nothing to let go of."""


def photo_jpeg(size: tuple[int, int] = (250, 250), seed: int = 0) -> bytes:
    """A photo-like picture of `size` (width, height) as JPEG."""
    return encode_jpeg(synthetic_photo(seed, size), 90)


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
