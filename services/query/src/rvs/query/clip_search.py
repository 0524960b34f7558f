"""SearchByVideo: who is in this clip, and where else do they appear.

The clip is sampled like an indexed video, every face of every sample is embedded, the faces are
linked into tracks by the same rules as the index's videos, and each track is searched with its
template: one answer per person of the clip rather than per frame.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from google.rpc import code_pb2

from rvs.core.api_errors import Reason
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.media.errors import MediaError
from rvs.core.media.video import Sample, VideoSampler
from rvs.core.store.faces import FaceStore
from rvs.core.tracks import Track, TrackedFace, link
from rvs.query.config import QuerySettings
from rvs.query.errors import Failure
from rvs.query.search import InvalidQuery, ModelChanged, NoFace, SearchEngine, check_deadline, describe_error
from rvs.v1 import rvs_pb2 as pb

MAX_TRACKS = 64  # the most a request may ask for
_BATCH = 8  # samples detected and embedded together
_MAX_SIDE = 1280  # query frames are analysed at most this large, like the sampler's default


class EmptyVideo(ValueError):
    """The clip has no bytes (INVALID_ARGUMENT, reason EMPTY_VIDEO)."""


class VideoTooLarge(ValueError):
    """The clip is larger than max_query_video_bytes (INVALID_ARGUMENT, reason VIDEO_TOO_LARGE)."""


class VideoTooLong(ValueError):
    """The clip is longer than max_query_video_s (INVALID_ARGUMENT, reason VIDEO_TOO_LONG)."""


class UnreadableClip(ValueError):
    """The clip cannot be decoded (INVALID_ARGUMENT with the media error's reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"cannot read the query clip: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class ClipTracks:
    tracks: list[Track]  # longest first
    duration_ms: int
    samples: int
    interval_ms: int


def search_request(request: pb.SearchByVideoRequest) -> pb.SearchRequest:
    """The per-track search the clip request describes (threshold, filters, top_k)."""
    search = pb.SearchRequest(
        top_k=request.top_k,
        kinds=request.kinds,
        source_prefix=request.source_prefix,
        ingested_after_ms=request.ingested_after_ms,
        ingested_before_ms=request.ingested_before_ms,
    )
    if request.HasField("min_score"):
        search.min_score = request.min_score
    return search


@dataclass(frozen=True)
class QueryPerson:
    """One answered track of a query clip: where it is in the clip, and the vector it is searched with."""

    where: pb.QueryTrack  # start, end, samples, best time and box; no answer
    template: np.ndarray


@dataclass(frozen=True)
class AnalysedClip:
    """A query clip's tracks, ready to be searched, and searched again with other options (the
    search page keeps them, so a new threshold does not sample the clip again)."""

    people: list[QueryPerson]  # the tracks answered (max_tracks), longest first
    duration_ms: int
    samples: int
    tracks_found: int
    leave_out: str  # the clip's media id: the clip itself is not an answer, should it be indexed
    pipeline: FacePipeline  # the model whose vectors these are


class ClipSearch:
    def __init__(self, settings: QuerySettings, engine: SearchEngine) -> None:
        self.settings = settings
        self.engine = engine

    def search(self, request: pb.SearchByVideoRequest, deadline: float | None = None) -> pb.SearchByVideoResponse:
        search = search_request(request)
        self.engine.check(search)  # cheap checks before the costly sampling
        max_tracks = self.max_tracks(request.max_tracks)
        active = self.engine.active
        clip = self.analyse(request.video, max_tracks, deadline, active[0])
        return self.answer(clip, search, deadline, active)

    def max_tracks(self, asked: int) -> int:
        """The tracks to answer when a request asks for `asked` (0: the server default)."""
        max_tracks = asked or self.settings.max_query_tracks
        if max_tracks > MAX_TRACKS:
            raise InvalidQuery(f"max_tracks is {max_tracks}; the largest allowed is {MAX_TRACKS}")
        return max_tracks

    def analyse(
        self, video: bytes, max_tracks: int, deadline: float | None = None, pipeline: FacePipeline | None = None
    ) -> AnalysedClip:
        """The clip's `max_tracks` longest tracks, with the model searches use (or `pipeline`)."""
        pipeline = pipeline or self.engine.active[0]
        clip = self.tracks(video, pipeline, deadline)
        people = []
        for track in clip.tracks[:max_tracks]:
            best = track.best_detection()
            where = pb.QueryTrack(
                start_ms=track.start_ms,
                end_ms=track.end_ms(clip.interval_ms, clip.duration_ms),
                samples=len(track.faces),
                best_time_ms=best.time_ms,
                best_box=pb.Box(x1=best.box[0], y1=best.box[1], x2=best.box[2], y2=best.box[3]),
            )
            people.append(QueryPerson(where, track.template))
        leave_out = hashlib.sha256(video).hexdigest()
        return AnalysedClip(people, clip.duration_ms, clip.samples, len(clip.tracks), leave_out, pipeline)

    def answer(
        self,
        clip: AnalysedClip,
        search: pb.SearchRequest,
        deadline: float | None = None,
        active: tuple[FacePipeline, FaceStore] | None = None,
    ) -> pb.SearchByVideoResponse:
        """Each of the clip's people searched under `search` (threshold, filters, rejections)."""
        pipeline, store = active or self.engine.active
        if pipeline is not clip.pipeline:
            raise ModelChanged("the index switched models since this clip was analysed: send it again")
        response = pb.SearchByVideoResponse(
            duration_ms=clip.duration_ms,
            samples=clip.samples,
            tracks_found=clip.tracks_found,
            model=pipeline.model_name,
            min_score=self.engine.check(search, pipeline)[1],
        )
        for person in clip.people:
            track = response.tracks.add()
            track.CopyFrom(person.where)
            track.answer.CopyFrom(
                self.engine.answer(person.template, search, deadline, clip.leave_out, (pipeline, store))
            )
        return response

    def tracks(self, video: bytes, pipeline: FacePipeline, deadline: float | None) -> ClipTracks:
        """Sample the clip, embed every face, link them: the clip's tracks, longest first."""
        if not video:
            raise EmptyVideo("the clip is empty: send the video's bytes")
        if len(video) > self.settings.max_query_video_bytes:
            raise VideoTooLarge(
                f"the clip is {len(video)} bytes; the largest accepted is {self.settings.max_query_video_bytes}"
            )
        faces: list[TrackedFace] = []
        with self.engine.slot(deadline), tempfile.NamedTemporaryFile(prefix="rvs-query-clip-") as file:
            file.write(video)
            file.flush()
            try:
                with VideoSampler(file.name, fps=self.settings.query_video_fps, max_side=_MAX_SIDE) as sampler:
                    duration_ms, interval_ms = sampler.info.duration_ms, round(float(sampler.interval) * 1000)
                    self._check_length(duration_ms)
                    samples = 0
                    for batch in _batches(sampler, _BATCH):
                        check_deadline(deadline, "the query clip took longer than the deadline to analyse")
                        self._check_length(batch[-1].time_ms)  # a container that understates its length
                        samples += len(batch)
                        faces += _faces(pipeline, batch)
            except MediaError as exc:
                raise UnreadableClip(exc.reason, exc.detail) from exc
        if not faces:
            raise NoFace("no face found in any sample of the query clip")
        rules = self.engine.link_rules(interval_ms)
        tracks = sorted(link(faces, rules), key=lambda t: (-len(t.faces), t.start_ms, t.id))
        return ClipTracks(tracks, duration_ms, samples, interval_ms)

    def _check_length(self, ms: int) -> None:
        if ms > self.settings.max_query_video_s * 1000:
            raise VideoTooLong(f"the clip is longer than {self.settings.max_query_video_s:g} s: send a shorter excerpt")


def _batches(samples: VideoSampler, size: int) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _faces(pipeline: FacePipeline, batch: list[Sample]) -> list[TrackedFace]:
    """Every face of the samples, boxes in the clip's own pixels; keys number them in the clip."""
    found = []
    for sample, faces in zip(batch, pipeline.process([s.rgb for s in batch]), strict=True):
        for i, face in enumerate(faces):
            b = tuple(v * sample.scale for v in face.detection.box)
            box = (b[0], b[1], b[2], b[3])
            found.append(TrackedFace(f"{sample.time_ms}:{i}", sample.time_ms, box, face.detection.score, face.vector))
    return found


def describe_clip_error(exc: Exception) -> Failure | None:
    """(google.rpc code, reason, message) of a documented SearchByVideo failure; None: a bug."""
    if isinstance(exc, EmptyVideo):
        return code_pb2.INVALID_ARGUMENT, Reason.EMPTY_VIDEO, str(exc)
    if isinstance(exc, VideoTooLarge):
        return code_pb2.INVALID_ARGUMENT, Reason.VIDEO_TOO_LARGE, str(exc)
    if isinstance(exc, VideoTooLong):
        return code_pb2.INVALID_ARGUMENT, Reason.VIDEO_TOO_LONG, str(exc)
    if isinstance(exc, UnreadableClip):
        return code_pb2.INVALID_ARGUMENT, exc.reason, str(exc)
    return describe_error(exc)
