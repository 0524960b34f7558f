"""The watch list's use cases, independent of gRPC: add an entry from photos of a person, list, delete.

An edit is recorded as an index-wide event (`record`: on the bus, folded here at once), so every
embedder evaluates new faces against the same list and every query service lists it; a read answers
from this service's catalog.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from google.rpc import code_pb2

from rvs.core.api_errors import Reason
from rvs.core.bus import BusUnavailable
from rvs.core.catalog import Catalog
from rvs.core.clock import now_ms
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.media.errors import MediaError
from rvs.core.media.images import decode_image
from rvs.query.alerts.crops import face_jpeg, thumbnail
from rvs.query.errors import Failure
from rvs.query.people.directory import InvalidName, clean_name
from rvs.query.search import EmptyImage, NoFace, SearchEngine, check_deadline, describe_error
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

WATCH_ID = re.compile(r"[0-9a-f]{32}")
MAX_PHOTOS = 20


class WatchNotFound(LookupError):
    """No live watch entry with this id (NOT_FOUND, reason WATCH_NOT_FOUND)."""


class InvalidWatchRequest(ValueError):
    """A malformed id or a parameter out of range (INVALID_ARGUMENT, reason INVALID_PARAMETER)."""


def check_watch_id(watch_id: str) -> None:
    if not WATCH_ID.fullmatch(watch_id):
        raise InvalidWatchRequest(f"{watch_id[:100]!r} is not a watch id (32 hex digits)")


@dataclass
class WatchList:
    catalog: Catalog
    engine: SearchEngine  # its active model embeds the photos; its slots bound the costly steps
    record: Callable[[pb.MediaEvent], None]

    def add(self, request: pb.AddWatchRequest, deadline: float | None = None) -> pb.Watch:
        name = clean_name(request.name)
        if not name:
            raise InvalidName("a watch entry needs a name")
        if request.HasField("threshold") and not (math.isfinite(request.threshold) and -1 <= request.threshold <= 1):
            raise InvalidWatchRequest(f"threshold is {request.threshold}; cosine similarity lies in [-1, 1]")
        if request.kind not in pb.WatchKind.values():
            raise InvalidWatchRequest(f"kind is {request.kind}; it must be one of {sorted(pb.WatchKind.values())}")
        if not request.images:
            raise EmptyImage("send at least one photo of the person (images)")
        if len(request.images) > MAX_PHOTOS:
            raise InvalidWatchRequest(f"{len(request.images)} photos; at most {MAX_PHOTOS}")
        pipeline, _ = self.engine.active
        vectors, faces = [], []
        for n, image in enumerate(request.images, 1):
            vector, face = self._face(pipeline, image, n, deadline)
            vectors.append(vector)
            faces.append(face)
        mean = np.mean(vectors, axis=0)
        template = mean / (np.linalg.norm(mean) or 1.0)
        watch = pb.Watch(
            watch_id=uuid.uuid4().hex,
            name=name,
            kind=request.kind,
            created_at_ms=now_ms(),
            photos=len(faces),
            thumbnail=thumbnail(faces[0]),
            models=[pipeline.model_name],
        )
        if request.HasField("threshold"):
            watch.threshold = request.threshold
        added = pb.WatchAdded(
            watch=watch,
            templates=[pb.WatchTemplate(model=pipeline.model_name, vector=template.tolist())],
            faces=faces,
        )
        self.record(pb.MediaEvent(at_ms=watch.created_at_ms, watch_added=added))
        return self.catalog.watch(watch.watch_id) or watch

    def _face(self, pipeline: FacePipeline, image: bytes, n: int, deadline: float | None) -> tuple[np.ndarray, bytes]:
        """The vector of the photo's largest face and its crop."""
        if not image:
            raise EmptyImage(f"photo {n} is empty: send the photo's bytes")
        with self.engine.slot(deadline):
            try:
                rgb = decode_image(image, max_pixels=self.engine.settings.max_image_pixels)
            except MediaError as exc:
                raise type(exc)(f"photo {n}: {exc.detail}") from exc
            check_deadline(deadline, f"photo {n} took longer than the deadline to decode")
            found = pipeline.faces(rgb, 1)
            if not found:
                raise NoFace(f"no face found in photo {n}")
            vector = found[0].vector
        return vector, face_jpeg(rgb, found[0].detection.box)

    def add_model(self, pipeline: FacePipeline) -> int:
        """Give every entry without a template for `pipeline`'s model one, from its kept faces (a
        reindex into that model): recorded as the entry's WatchAdded again, so embedders match it
        once the index switches. The entries given one."""
        model, given = pipeline.model_name, 0
        for event in self.catalog.watch_events():
            added = event.watch_added
            if not event.HasField("watch_added") or model in {t.model for t in added.templates}:
                continue
            vectors: list[np.ndarray] = []
            for face in added.faces:
                try:
                    found = pipeline.faces(decode_image(face, max_pixels=self.engine.settings.max_image_pixels), 1)
                except MediaError:
                    continue
                vectors.extend(f.vector for f in found)
            if not vectors:
                log.warning(
                    "watch %s: no kept face is a face to %s; it matches nothing there", added.watch.watch_id, model
                )
                continue
            mean = np.mean(vectors, axis=0)
            added.templates.add(model=model, vector=(mean / (np.linalg.norm(mean) or 1.0)).tolist())
            added.watch.models.append(model)
            self.record(pb.MediaEvent(at_ms=now_ms(), watch_added=added))
            given += 1
        return given

    def list(self) -> pb.ListWatchesResponse:
        return pb.ListWatchesResponse(watches=self.catalog.watches())

    def delete(self, request: pb.DeleteWatchRequest) -> pb.DeleteWatchResponse:
        check_watch_id(request.watch_id)
        if self.catalog.watch(request.watch_id) is None:
            raise WatchNotFound(f"no watch entry with id {request.watch_id!r}")
        self.record(pb.MediaEvent(at_ms=now_ms(), watch_deleted=pb.WatchDeleted(watch_id=request.watch_id)))
        return pb.DeleteWatchResponse()


def describe_watch_error(exc: Exception) -> Failure | None:
    """(google.rpc code, reason, message) of a documented watch-list failure; None for anything else."""
    if isinstance(exc, WatchNotFound):
        return code_pb2.NOT_FOUND, Reason.WATCH_NOT_FOUND, str(exc)
    if isinstance(exc, InvalidWatchRequest):
        return code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, str(exc)
    if isinstance(exc, BusUnavailable):
        return code_pb2.UNAVAILABLE, Reason.BUS_UNAVAILABLE, f"the change was not recorded: {exc}"
    return describe_error(exc)  # the photos' failures are a query image's
