"""The Search use case, independent of gRPC: query image -> faces -> vector search -> grouped hits."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from google.rpc import code_pb2

from rvs.core.api_errors import Reason
from rvs.core.catalog import Catalog
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.faces.types import Face
from rvs.core.media.errors import MediaError, TooLarge
from rvs.core.media.images import decode_image
from rvs.core.media.kinds import MEDIA_KIND_BY_FILTER
from rvs.core.store.faces import FaceHit, FaceStore, SearchFilter, StoreRejected, StoreUnavailable
from rvs.query.config import QuerySettings
from rvs.query.errors import Failure
from rvs.query.grouping import group_hits
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

# Ingest times a filter may name: unix milliseconds from 1970 to the end of year 9999.
MAX_UNIX_MS = 253_402_300_799_999


class EmptyImage(ValueError):
    """The query image has no bytes (INVALID_ARGUMENT, reason EMPTY_IMAGE)."""


class InvalidQuery(ValueError):
    """A request parameter is out of range (INVALID_ARGUMENT)."""


class NoFace(Exception):
    """No face was found in the query image (FAILED_PRECONDITION, reason NO_FACE)."""


class DeadlineExceeded(Exception):
    """The search ran past its deadline (DEADLINE_EXCEEDED)."""


class ModelChanged(Exception):
    """Faces kept from an earlier query were embedded by a model the index no longer uses (it
    switched): the photo must be analysed again (the search page answers QUERY_EXPIRED)."""


class FaceIndexOutOfRange(Exception):
    """face_index names a face that is not there (FAILED_PRECONDITION, reason FACE_INDEX_OUT_OF_RANGE)."""


@dataclass
class SearchEngine:
    settings: QuerySettings
    pipeline: FacePipeline
    store: FaceStore
    catalog: Catalog | None = None
    # Costly steps (decoding, detection, embedding) run at most rpc_workers at once, for every front
    # end: requests beyond wait here, not in a thread that health checks and cheap calls need.
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.settings.rpc_workers)
        # The model and its collection as one value, replaced at once by a switch: a search reads it
        # once, so its query is never embedded by one model and searched in another's collection.
        self._active = (self.pipeline, self.store)
        self._analysed_by: weakref.WeakKeyDictionary[Face, FacePipeline] = weakref.WeakKeyDictionary()

    def use(self, pipeline: FacePipeline, store: FaceStore) -> None:
        """Search with another model and its collection from now on (the index switched)."""
        self._active = (pipeline, store)
        self.pipeline, self.store = pipeline, store
        log.info("searches now use model %s (collection %s)", store.model, store.collection)

    def delete_media(self, media_id: str) -> int:
        """Delete a media item's faces from the collection searches use; the faces removed."""
        return self._active[1].delete_media(media_id)

    @property
    def default_min_score(self) -> float:
        return self._min_score(self._active[0])

    def _min_score(self, pipeline: FacePipeline) -> float:
        if self.settings.min_score is not None:
            return self.settings.min_score
        return pipeline.encoder.default_min_score

    def search(self, request: pb.SearchRequest, deadline: float | None = None) -> pb.SearchResponse:
        """`deadline` (time.monotonic()) is checked between costly steps; Milvus gets what is left."""
        self._check(request)  # cheap checks before the costly analysis of the image
        active = self._active
        return self._search_faces(self._analyse(active[0], request.image, deadline), request, deadline, active)

    def analyse(self, image: bytes, deadline: float | None = None) -> list[Face]:
        """The largest max_query_faces faces of the query image, largest first, with their boxes; a
        face is embedded when a search first uses it. Raises NoFace when there is none."""
        return self._analyse(self._active[0], image, deadline)

    def _analyse(self, pipeline: FacePipeline, image: bytes, deadline: float | None) -> list[Face]:
        if not image:
            raise EmptyImage("the image is empty: send the photo's bytes")
        with self._slot(deadline):
            rgb = decode_image(image, max_pixels=self.settings.max_image_pixels)
            _check_deadline(deadline, "the query image took longer than the deadline to decode")
            faces = pipeline.faces(rgb, self.settings.max_query_faces)
        _check_deadline(deadline, "the query image took longer than the deadline to analyse")
        if not faces:
            raise NoFace("no face found in the query image")
        for face in faces:
            self._analysed_by[face] = pipeline
        return faces

    def search_faces(
        self, faces: list[Face], request: pb.SearchRequest, deadline: float | None = None
    ) -> pb.SearchResponse:
        """Search with one of the faces `analyse` found (request.face_index), embedding it if no search
        has yet; request.image is not read."""
        return self._search_faces(faces, request, deadline, self._active)

    def _search_faces(
        self,
        faces: list[Face],
        request: pb.SearchRequest,
        deadline: float | None,
        active: tuple[FacePipeline, FaceStore],
    ) -> pb.SearchResponse:
        pipeline, store = active
        if any(self._analysed_by.get(face, pipeline) is not pipeline for face in faces):
            raise ModelChanged("the index switched models since this photo was analysed: send it again")
        top_k, min_score = self._check(request, pipeline)
        chosen = self._chosen(request, len(faces))
        vector = self._vector(faces[chosen], deadline)
        _check_deadline(deadline, "the search ran past its deadline")
        where = SearchFilter(
            kind=MEDIA_KIND_BY_FILTER[request.kinds],
            source_prefix=request.source_prefix,
            ingested_after_ms=request.ingested_after_ms,
            ingested_before_ms=request.ingested_before_ms,
        )
        remaining = None if deadline is None else deadline - time.monotonic()
        hits = store.search(vector, min_score, self.settings.search_candidates, where, remaining)
        return self._response(faces, chosen, hits, top_k, min_score, pipeline.model_name)

    def _vector(self, face: Face, deadline: float | None) -> np.ndarray:
        """The face's vector; embedding it (once, then kept with the face) takes a slot."""
        if face.embedded:
            return face.vector
        with self._slot(deadline):
            return face.vector

    @contextlib.contextmanager
    def _slot(self, deadline: float | None) -> Iterator[None]:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._slots.acquire(timeout=timeout):
            raise DeadlineExceeded("the query service was busy with other searches until the deadline")
        try:
            yield
        finally:
            self._slots.release()

    @staticmethod
    def _chosen(request: pb.SearchRequest, faces: int) -> int:
        chosen = request.face_index if request.HasField("face_index") else 0
        if chosen >= faces:
            raise FaceIndexOutOfRange(f"face_index {chosen} is out of range: the image has {faces} face(s)")
        return chosen

    def _response(
        self, faces: list[Face], chosen: int, hits: list[FaceHit], top_k: int, min_score: float, model: str
    ) -> pb.SearchResponse:
        catalog = self.catalog.uris(sorted({h.media_id for h in hits})) if self.catalog else {}
        # Media deleted from the catalog but not yet from the index are never shown.
        hits = [h for h in hits if h.media_id not in catalog or catalog[h.media_id].state != pb.MEDIA_STATE_DELETED]
        images, videos = group_hits(hits, top_k, self.settings.segment_max_gap_ms, catalog)
        return pb.SearchResponse(
            query_faces=[
                pb.QueryFace(
                    box=pb.Box(x1=d.box[0], y1=d.box[1], x2=d.box[2], y2=d.box[3]),
                    detection_score=d.score,
                )
                for d in (f.detection for f in faces)
            ],
            used_face_index=chosen,
            images=images,
            videos=videos,
            matched=bool(images or videos),
            model=model,
            min_score=min_score,
        )

    def _check(self, request: pb.SearchRequest, pipeline: FacePipeline | None = None) -> tuple[int, float]:
        """top_k and min_score to use; raises InvalidQuery for parameters out of range."""
        top_k = request.top_k or self.settings.default_top_k
        if top_k > self.settings.max_top_k:
            raise InvalidQuery(f"top_k is {top_k}; the largest allowed is {self.settings.max_top_k}")
        default = self._min_score(pipeline or self._active[0])
        min_score = request.min_score if request.HasField("min_score") else default
        if not -1.0 <= min_score <= 1.0:
            raise InvalidQuery(f"min_score is {min_score}; cosine similarity lies in [-1, 1]")
        if request.kinds not in MEDIA_KIND_BY_FILTER:
            raise InvalidQuery(f"kinds is {request.kinds}; it must be one of {sorted(MEDIA_KIND_BY_FILTER)}")
        for name in ("ingested_after_ms", "ingested_before_ms"):
            value = getattr(request, name)
            if not 0 <= value <= MAX_UNIX_MS:
                raise InvalidQuery(
                    f"{name} is {value}; it must be unix milliseconds in [0, {MAX_UNIX_MS}] (0: no limit)"
                )
        if request.ingested_before_ms and request.ingested_after_ms >= request.ingested_before_ms:
            raise InvalidQuery("ingested_after_ms must be earlier than ingested_before_ms")
        if "%" in request.source_prefix:
            raise InvalidQuery("source_prefix must not contain '%'")
        return top_k, min_score


def _check_deadline(deadline: float | None, message: str) -> None:
    if deadline is not None and deadline <= time.monotonic():
        raise DeadlineExceeded(message)


def describe_error(exc: Exception) -> Failure | None:
    """(google.rpc code, ErrorInfo reason, message) of a documented Search failure, for every
    front end alike (gRPC, the search page); None for anything else, which is a bug."""
    if isinstance(exc, EmptyImage):
        return code_pb2.INVALID_ARGUMENT, Reason.EMPTY_IMAGE, str(exc)
    if isinstance(exc, DeadlineExceeded):
        return code_pb2.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED, str(exc)
    if isinstance(exc, TooLarge):
        return code_pb2.INVALID_ARGUMENT, Reason.IMAGE_TOO_LARGE, exc.detail
    if isinstance(exc, MediaError):
        return code_pb2.INVALID_ARGUMENT, exc.reason, f"cannot read the query image: {exc.detail}"
    if isinstance(exc, InvalidQuery):
        return code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, str(exc)
    if isinstance(exc, StoreRejected):  # a request the checks above let through, refused by Milvus
        return code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, f"the index refused the search: {exc}"
    if isinstance(exc, NoFace):
        return code_pb2.FAILED_PRECONDITION, Reason.NO_FACE, str(exc)
    if isinstance(exc, FaceIndexOutOfRange):
        return code_pb2.FAILED_PRECONDITION, Reason.FACE_INDEX_OUT_OF_RANGE, str(exc)
    if isinstance(exc, StoreUnavailable):
        return code_pb2.UNAVAILABLE, Reason.INDEX_UNAVAILABLE, f"the face index is unavailable: {exc}"
    return None
