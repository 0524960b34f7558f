"""The units people are made of, read from the index: each face of a photo, each track of a video,
with its vector (a track's template) and its most confident face (for thumbnails)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from rvs.core.catalog import Catalog
from rvs.core.clustering import Unit
from rvs.core.store.faces import FaceStore, StoredFace
from rvs.core.tracks import Track, find
from rvs.query.video_tracks import VideoTracks, media_of
from rvs.v1 import rvs_pb2 as pb

# Units a person's template is the weighted mean of: its largest ones (a search reads no more).
TEMPLATE_UNITS = 64


def person_id_for(*unit_ids: str) -> str:
    """A new person's id, from the units it was first made of: the same on every replay."""
    return "person-" + hashlib.sha256("\n".join(sorted(unit_ids)).encode()).hexdigest()[:16]


def _box(b: tuple[float, float, float, float]) -> pb.Box:
    return pb.Box(x1=b[0], y1=b[1], x2=b[2], y2=b[3])


def photo_unit(face: StoredFace) -> pb.PersonUnit:
    return pb.PersonUnit(
        unit_id=face.key,
        media_id=face.media_id,
        kind=pb.MEDIA_KIND_IMAGE,
        faces=1,
        time_ms=face.time_ms,
        box=_box(face.box),
        detection_score=face.det_score,
    )


def track_unit(media_id: str, track: Track) -> pb.PersonUnit:
    best = max(track.faces, key=lambda f: (f.det_score, f.key))
    return pb.PersonUnit(
        unit_id=track.id,
        media_id=media_id,
        kind=pb.MEDIA_KIND_VIDEO,
        faces=len(track.faces),
        time_ms=best.time_ms,
        box=_box(best.box),
        detection_score=best.det_score,
    )


class UnitReader:
    """Units and their vectors, from the collection searches use and the videos' tracks."""

    def __init__(self, tracks: VideoTracks, catalog: Catalog | None) -> None:
        self.tracks = tracks
        self.catalog = catalog

    def video_tracks(self, store: FaceStore, media_id: str) -> list[Track]:
        entry = self.catalog.get(media_id) if self.catalog else None
        return self.tracks.get(store, media_id, entry)

    def of_media(self, store: FaceStore, media_id: str, kind: int) -> list[tuple[pb.PersonUnit, np.ndarray]]:
        """A media item's units: a photo's faces, a video's tracks."""
        if kind == pb.MEDIA_KIND_VIDEO:
            return [(track_unit(media_id, t), t.template) for t in self.video_tracks(store, media_id)]
        return [(photo_unit(f), f.vector) for f in store.faces_of(media_id)]

    def vectors(self, store: FaceStore, units: Iterable[pb.PersonUnit]) -> dict[str, np.ndarray]:
        """unit id -> vector of the units still in the index."""
        photos: list[str] = []
        videos: dict[str, list[str]] = defaultdict(list)
        for u in units:
            if u.kind == pb.MEDIA_KIND_VIDEO:
                videos[u.media_id].append(u.unit_id)
            else:
                photos.append(u.unit_id)
        found = {f.key: f.vector for f in store.faces(photos)}
        for media_id, ids in sorted(videos.items()):
            tracks = self.video_tracks(store, media_id)
            for unit_id in ids:
                track = find(tracks, unit_id)
                if track is not None and track.id == unit_id:
                    found[unit_id] = track.template
        return found

    def resolve(self, store: FaceStore, ids: Iterable[str]) -> dict[str, str]:
        """id given -> unit id: a photo's face or a track is its own unit; any face of a video
        stands for its track."""
        resolved: dict[str, str] = {}
        for given in ids:
            entry = self.catalog.get(media_of(given)) if self.catalog else None
            if entry is not None and entry.kind == pb.MEDIA_KIND_VIDEO:
                track = find(self.video_tracks(store, entry.media_id), given)
                if track is not None:
                    resolved[given] = track.id
            else:
                resolved[given] = given
        return resolved


def template(units: list[pb.PersonUnit], vectors: dict[str, np.ndarray]) -> np.ndarray | None:
    """A person's direction: its largest units' vectors, weighted by the faces each stands for."""
    kept = [u for u in sorted(units, key=lambda u: (-u.faces, u.unit_id)) if u.unit_id in vectors][:TEMPLATE_UNITS]
    if not kept:
        return None
    total = np.sum([u.faces * vectors[u.unit_id] for u in kept], axis=0)
    norm = float(np.linalg.norm(total))
    return (total / norm).astype(np.float32) if norm > 0 else None


def placed(unit: pb.PersonUnit, person_id: str, pinned: bool = False) -> pb.PersonUnit:
    """The unit given to `person_id` ("": to nobody); pinned: by a user, so clustering never moves it."""
    copy = pb.PersonUnit()
    copy.CopyFrom(unit)
    copy.person_id, copy.pinned = person_id, pinned
    return copy


def as_unit(unit: pb.PersonUnit, vector: np.ndarray) -> Unit:
    return Unit(unit.unit_id, vector, max(1, unit.faces))
