"""The Search use case, independent of gRPC: query image -> faces -> vector search -> grouped hits."""

from __future__ import annotations

import contextlib
import logging
import re
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
from rvs.core.instants import MAX_UNIX_MS
from rvs.core.media.errors import MediaError, TooLarge
from rvs.core.media.images import decode_image
from rvs.core.media.kinds import MEDIA_KIND_BY_FILTER
from rvs.core.store.faces import FaceHit, FaceStore, SearchFilter, StoreRejected, StoreUnavailable
from rvs.core.tracks import LinkRules, Track, find
from rvs.query.config import QuerySettings
from rvs.query.errors import Failure
from rvs.query.grouping import Evidence, Rejections, image_hits, video_hit
from rvs.query.people.directory import PERSON_ID, InvalidName, People, PersonNotFound
from rvs.query.timeline import Window, newest_first
from rvs.query.video_tracks import VideoTracks, media_of, sample_interval_ms
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)


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


class FaceNotFound(LookupError):
    """face_id names no face in the index (NOT_FOUND, reason FACE_NOT_FOUND)."""


class TrackNotFound(LookupError):
    """track_id names no track in the index (NOT_FOUND, reason TRACK_NOT_FOUND)."""


# A face id is `media_id:time_ms:face_index`, the media id a sha256 in hex (store.faces.face_key).
_FACE_ID = re.compile(r"[0-9a-f]{64}:\d{1,15}:\d{1,5}")
_INDEXED_QUERIES = ("face_id", "track_id", "person_id", "person_name")


@dataclass
class SearchEngine:
    settings: QuerySettings
    pipeline: FacePipeline
    store: FaceStore
    catalog: Catalog | None = None
    people: People | None = None  # search by person (None: no catalog of people here)
    # Costly steps (decoding, detection, embedding) run at most rpc_workers at once, for every front
    # end: requests beyond wait here, not in a thread that health checks and cheap calls need.
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)
    tracks: VideoTracks = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.settings.rpc_workers)
        self.tracks = VideoTracks(self.link_rules, self.settings.track_cache_faces)
        # The model and its collection as one value, replaced at once by a switch: a search reads it
        # once, so its query is never embedded by one model and searched in another's collection.
        self._active = (self.pipeline, self.store)
        self._analysed_by: weakref.WeakKeyDictionary[Face, FacePipeline] = weakref.WeakKeyDictionary()

    def use(self, pipeline: FacePipeline, store: FaceStore) -> None:
        """Search with another model and its collection from now on (the index switched)."""
        self._active = (pipeline, store)
        self.pipeline, self.store = pipeline, store
        log.info("searches now use model %s (collection %s)", store.model, store.collection)

    @property
    def active(self) -> tuple[FacePipeline, FaceStore]:
        """The model searches use and its collection, read at once (a switch replaces both)."""
        return self._active

    def delete_media(self, media_id: str) -> int:
        """Delete a media item's faces from the collection searches use; the faces removed."""
        return self._active[1].delete_media(media_id)

    def link_rules(self, interval_ms: int) -> LinkRules:
        """How faces of consecutive samples (`interval_ms` apart) are linked into tracks, for the
        model searches use."""
        link = self.settings.track_link_min_score
        if link is None:
            link = self._active[0].encoder.default_min_score
        return LinkRules(
            interval_ms=interval_ms,
            min_score=link,
            min_score_overlapping=link - self.settings.track_link_overlap_margin * (1.0 - link),
            max_missed=self.settings.track_max_missed,
        )

    @property
    def default_min_score(self) -> float:
        return self._min_score(self._active[0])

    def _min_score(self, pipeline: FacePipeline) -> float:
        if self.settings.min_score is not None:
            return self.settings.min_score
        return pipeline.encoder.default_min_score

    def search(self, request: pb.SearchRequest, deadline: float | None = None) -> pb.SearchResponse:
        """`deadline` (time.monotonic()) is checked between costly steps; Milvus gets what is left."""
        self.check(request)  # cheap checks before the costly analysis of the image
        active = self._active
        if request.WhichOneof("query") in _INDEXED_QUERIES:
            return self.answer(self._indexed_query(request, active[1]), request, deadline, active=active)
        return self._search_faces(self._analyse(active[0], request.image, deadline), request, deadline, active)

    def analyse(self, image: bytes, deadline: float | None = None) -> list[Face]:
        """The largest max_query_faces faces of the query image, largest first, with their boxes; a
        face is embedded when a search first uses it. Raises NoFace when there is none."""
        return self._analyse(self._active[0], image, deadline)

    def _analyse(self, pipeline: FacePipeline, image: bytes, deadline: float | None) -> list[Face]:
        if not image:
            raise EmptyImage("the image is empty: send the photo's bytes")
        with self.slot(deadline):
            rgb = decode_image(image, max_pixels=self.settings.max_image_pixels)
            check_deadline(deadline, "the query image took longer than the deadline to decode")
            faces = pipeline.faces(rgb, self.settings.max_query_faces)
        check_deadline(deadline, "the query image took longer than the deadline to analyse")
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
        if any(self._analysed_by.get(face, active[0]) is not active[0] for face in faces):
            raise ModelChanged("the index switched models since this photo was analysed: send it again")
        self.check(request, active[0])
        chosen = self._chosen(request, len(faces))
        response = self.answer(self._vector(faces[chosen], deadline), request, deadline, active=active)
        response.query_faces.extend(
            pb.QueryFace(box=pb.Box(x1=d.box[0], y1=d.box[1], x2=d.box[2], y2=d.box[3]), detection_score=d.score)
            for d in (f.detection for f in faces)
        )
        response.used_face_index = chosen
        return response

    def answer(
        self,
        vector: np.ndarray,
        request: pb.SearchRequest,
        deadline: float | None = None,
        leave_out: str = "",
        active: tuple[FacePipeline, FaceStore] | None = None,
    ) -> pb.SearchResponse:
        """The photos and videos of the person whose face `vector` is (of the model searches use),
        under the request's threshold, filters and rejections; `leave_out`: a media id not to answer
        (a query clip that is itself indexed)."""
        pipeline, store = active or self._active
        top_k, min_score = self.check(request, pipeline)
        window = Window(request.seen_after_ms, request.seen_before_ms)
        newest = request.order == pb.SEARCH_ORDER_NEWEST
        where = SearchFilter(
            kind=MEDIA_KIND_BY_FILTER[request.kinds],
            source_prefix=request.source_prefix,
            ingested_after_ms=request.ingested_after_ms,
            ingested_before_ms=request.ingested_before_ms,
            seen_after_ms=window.after_ms,
            seen_before_ms=window.before_ms,
            longest_video_ms=self.catalog.longest_video_ms() if self.catalog and window.after_ms else None,
        )
        rejected = self._rejections(request, store)
        check_deadline(deadline, "the search ran past its deadline")
        remaining = None if deadline is None else deadline - time.monotonic()
        floor = (
            max(-1.0, min_score - self.settings.track_candidate_margin)
            if where.kind != pb.MEDIA_KIND_IMAGE
            else min_score
        )
        hits = store.search(vector, floor, self.settings.search_candidates, where, remaining)
        catalog = self.catalog.uris(sorted({h.media_id for h in hits})) if self.catalog else {}
        # Media deleted from the catalog but not yet from the index are never shown.
        hits = [
            h
            for h in hits
            if h.media_id != leave_out
            and (h.media_id not in catalog or catalog[h.media_id].state != pb.MEDIA_STATE_DELETED)
        ]
        photos = [h for h in self._unrejected(hits, rejected, store, min_score) if window.holds(h.ingested_at_ms)]
        images = image_hits(photos, top_k, catalog, min_score, newest)
        evidence = Evidence(min_score, self.settings.track_min_samples, self.settings.strong_match_margin)
        videos = self._videos(hits, vector, top_k, evidence, rejected, catalog, store, deadline, window, newest)
        return pb.SearchResponse(
            images=images,
            videos=videos,
            matched=bool(images or videos),
            model=pipeline.model_name,
            min_score=min_score,
        )

    def _unrejected(
        self, hits: list[FaceHit], rejected: Rejections, store: FaceStore, min_score: float
    ) -> list[FaceHit]:
        """Photo hits without the rejected faces and those closer to a rejected example."""
        photos = [
            h for h in hits if h.kind == pb.MEDIA_KIND_IMAGE and h.score >= min_score and h.key not in rejected.face_ids
        ]
        if not rejected:
            return photos
        vectors = {f.key: f.vector for f in store.faces([h.key for h in photos])}
        return [h for h in photos if h.key in vectors and not rejected.closer(vectors[h.key], h.score)]

    def _videos(
        self,
        hits: list[FaceHit],
        vector: np.ndarray,
        top_k: int,
        evidence: Evidence,
        rejected: Rejections,
        catalog: dict[str, pb.Media],
        store: FaceStore,
        deadline: float | None,
        window: Window,
        newest: bool,
    ) -> list[pb.VideoHit]:
        """The top videos: each candidate video (a face near the threshold) judged by its tracks, with
        only the segments seen in the window; best first, or `newest` first."""
        candidates = sorted(
            {h.media_id: h for h in hits if h.kind == pb.MEDIA_KIND_VIDEO}.values(), key=lambda h: h.media_id
        )
        videos: list[pb.VideoHit] = []
        for h in candidates:
            check_deadline(deadline, "the search ran past its deadline while reading video tracks")
            entry = catalog.get(h.media_id) or pb.Media(
                media_id=h.media_id, uri=h.uri, kind=h.kind, discovered_at_ms=h.ingested_at_ms
            )
            tracks = self.tracks.get(store, h.media_id, catalog.get(h.media_id))
            hit = video_hit(entry, tracks, vector, sample_interval_ms(entry), evidence, rejected)
            if hit is not None and (hit := window.clip(hit)) is not None:
                videos.append(hit)
        if newest:
            videos = newest_first(videos)
        else:
            videos.sort(key=lambda v: (-v.track_score, v.uri))
        return videos[:top_k]

    def _rejections(self, request: pb.SearchRequest, store: FaceStore) -> Rejections:
        face_ids, track_ids = list(request.rejected_face_ids), list(request.rejected_track_ids)
        if not face_ids and not track_ids:
            return Rejections()
        # Rejected examples that are gone from the index (their media deleted) no longer count.
        vectors = [f.vector for f in store.faces(face_ids)]
        for track_id in track_ids:
            track = self._track(track_id, store)
            if track is not None:
                vectors.append(track.template)
        return Rejections(vectors, face_ids, track_ids)

    def _track(self, track_id: str, store: FaceStore) -> Track | None:
        media_id = media_of(track_id)
        entry = self.catalog.get(media_id) if self.catalog else None
        return find(self.tracks.get(store, media_id, entry), track_id)

    def _indexed_query(self, request: pb.SearchRequest, store: FaceStore) -> np.ndarray:
        """The vector of "find this person": an indexed face's, a track's or a person's template."""
        which = request.WhichOneof("query")
        if which in ("person_id", "person_name"):
            if self.people is None:
                raise InvalidQuery("this query service has no catalog of people: search by a face or track id")
            named = request.person_name
            person = self.people.named(named) if which == "person_name" else self.people.person(request.person_id)
            return self.people.template(person)
        if which == "face_id":
            found = store.faces([request.face_id])
            if not found:
                raise FaceNotFound(f"no face with id {request.face_id!r} in the index")
            return found[0].vector
        track = self._track(request.track_id, store)
        if track is None:
            raise TrackNotFound(f"no track with id {request.track_id!r} in the index")
        return track.template

    def _vector(self, face: Face, deadline: float | None) -> np.ndarray:
        """The face's vector; embedding it (once, then kept with the face) takes a slot."""
        if face.embedded:
            return face.vector
        with self.slot(deadline):
            return face.vector

    @contextlib.contextmanager
    def slot(self, deadline: float | None) -> Iterator[None]:
        """One of the rpc_workers slots for a costly step, waited for until the deadline."""
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

    def check(self, request: pb.SearchRequest, pipeline: FacePipeline | None = None) -> tuple[int, float]:
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
        for name in ("ingested_after_ms", "ingested_before_ms", "seen_after_ms", "seen_before_ms"):
            value = getattr(request, name)
            if not 0 <= value <= MAX_UNIX_MS:
                raise InvalidQuery(
                    f"{name} is {value}; it must be unix milliseconds in [0, {MAX_UNIX_MS}] (0: no limit)"
                )
        if request.ingested_before_ms and request.ingested_after_ms >= request.ingested_before_ms:
            raise InvalidQuery("ingested_after_ms must be earlier than ingested_before_ms")
        if request.seen_before_ms and request.seen_after_ms >= request.seen_before_ms:
            raise InvalidQuery(
                f"seen_after_ms ({request.seen_after_ms}) must be earlier than seen_before_ms"
                f" ({request.seen_before_ms}): the window [after, before) would be empty"
            )
        if request.order not in pb.SearchOrder.values():
            raise InvalidQuery(f"order is {request.order}; it must be one of {sorted(pb.SearchOrder.values())}")
        if "%" in request.source_prefix:
            raise InvalidQuery("source_prefix must not contain '%'")
        rejections = len(request.rejected_face_ids) + len(request.rejected_track_ids)
        if rejections > self.settings.max_rejections:
            raise InvalidQuery(f"{rejections} rejected faces and tracks; at most {self.settings.max_rejections}")
        which = request.WhichOneof("query")
        if which == "person_id" and not PERSON_ID.fullmatch(request.person_id):
            raise InvalidQuery(f"{request.person_id[:100]!r} is not a person id (person-<16 hex digits>)")
        if which == "person_name" and not request.person_name.strip():
            raise InvalidQuery("person_name is empty")
        named = [getattr(request, which)] if which in ("face_id", "track_id") else []
        for face_id in [*named, *request.rejected_face_ids, *request.rejected_track_ids]:
            if not _FACE_ID.fullmatch(face_id):
                raise InvalidQuery(f"{face_id[:200]!r} is not a face or track id (media_id:time_ms:face_index)")
        return top_k, min_score


def check_deadline(deadline: float | None, message: str) -> None:
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
    if isinstance(exc, FaceNotFound):
        return code_pb2.NOT_FOUND, Reason.FACE_NOT_FOUND, str(exc)
    if isinstance(exc, TrackNotFound):
        return code_pb2.NOT_FOUND, Reason.TRACK_NOT_FOUND, str(exc)
    if isinstance(exc, PersonNotFound):
        return code_pb2.NOT_FOUND, Reason.PERSON_NOT_FOUND, str(exc)
    if isinstance(exc, InvalidName):
        return code_pb2.INVALID_ARGUMENT, Reason.INVALID_NAME, str(exc)
    if isinstance(exc, StoreUnavailable):
        return code_pb2.UNAVAILABLE, Reason.INDEX_UNAVAILABLE, f"the face index is unavailable: {exc}"
    return None
