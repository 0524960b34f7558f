"""The Search use case, independent of gRPC: query image -> faces -> vector search -> grouped hits."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from rvs.catalog import Catalog
from rvs.faces.pipeline import FacePipeline
from rvs.media.images import decode_image
from rvs.query.config import QuerySettings
from rvs.query.grouping import group_hits
from rvs.store.faces import KIND_BY_FILTER, FaceStore, SearchFilter
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


class InvalidQuery(ValueError):
    """A request parameter is out of range (INVALID_ARGUMENT)."""


class NoFace(Exception):
    """No face was found in the query image (FAILED_PRECONDITION, reason NO_FACE)."""


class DeadlineExceeded(Exception):
    """The search ran past its deadline (DEADLINE_EXCEEDED)."""


class FaceIndexOutOfRange(Exception):
    """face_index names a face that is not there (FAILED_PRECONDITION, reason FACE_INDEX_OUT_OF_RANGE)."""


@dataclass
class SearchEngine:
    settings: QuerySettings
    pipeline: FacePipeline
    store: FaceStore
    catalog: Catalog | None = None

    @property
    def default_min_score(self) -> float:
        if self.settings.min_score is not None:
            return self.settings.min_score
        return self.pipeline.encoder.default_min_score

    def search(self, request: pb.SearchRequest, deadline: float | None = None) -> pb.SearchResponse:
        """`deadline` (time.monotonic()) is checked after each costly step; Milvus gets what is left."""
        top_k = request.top_k or self.settings.default_top_k
        if top_k > self.settings.max_top_k:
            raise InvalidQuery(f"top_k is {top_k}; the largest allowed is {self.settings.max_top_k}")
        min_score = request.min_score if request.HasField("min_score") else self.default_min_score
        if not -1.0 <= min_score <= 1.0:
            raise InvalidQuery(f"min_score is {min_score}; cosine similarity lies in [-1, 1]")
        if request.ingested_before_ms and request.ingested_after_ms >= request.ingested_before_ms:
            raise InvalidQuery("ingested_after_ms must be earlier than ingested_before_ms")
        if "%" in request.source_prefix:
            raise InvalidQuery("source_prefix must not contain '%'")

        image = decode_image(request.image, max_pixels=self.settings.max_image_pixels)
        faces = self.pipeline.process([image])[0]
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("the query image took longer than the deadline to analyse")
        if not faces:
            raise NoFace("no face found in the query image")
        chosen = request.face_index if request.HasField("face_index") else 0
        if chosen >= len(faces):
            raise FaceIndexOutOfRange(f"face_index {chosen} is out of range: the image has {len(faces)} face(s)")

        where = SearchFilter(
            kind=KIND_BY_FILTER.get(request.kinds, 0),
            source_prefix=request.source_prefix,
            ingested_after_ms=request.ingested_after_ms,
            ingested_before_ms=request.ingested_before_ms,
        )
        hits = self.store.search(faces[chosen].vector, min_score, self.settings.search_candidates, where, remaining)
        catalog = self.catalog.uris(sorted({h.media_id for h in hits})) if self.catalog else {}
        # Media deleted from the catalog but not yet from the index are never shown.
        hits = [h for h in hits if h.media_id not in catalog or catalog[h.media_id].state != pb.MEDIA_STATE_DELETED]
        images, videos = group_hits(hits, top_k, self.settings.segment_max_gap_ms, catalog)
        return pb.SearchResponse(
            query_faces=[
                pb.QueryFace(
                    box=pb.Box(
                        x1=f.detection.box[0], y1=f.detection.box[1], x2=f.detection.box[2], y2=f.detection.box[3]
                    ),
                    detection_score=f.detection.score,
                )
                for f in faces
            ],
            used_face_index=chosen,
            images=images,
            videos=videos,
            matched=bool(images or videos),
            model=self.pipeline.model_name,
            min_score=min_score,
        )
