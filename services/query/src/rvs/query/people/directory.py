"""The People use cases, independent of gRPC: list, open, name, merge, and move faces between people.

Edits are recorded as index-wide events (`record`: on the bus, folded here at once), so every query
service and every restart sees the same people; a read answers from this service's catalog.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from google.rpc import code_pb2

from rvs.core.api_errors import Reason
from rvs.core.catalog import Catalog
from rvs.core.clock import now_ms
from rvs.core.store.faces import FaceStore, StoreUnavailable
from rvs.core.tracks import find
from rvs.query.errors import Failure
from rvs.query.grouping import Evidence, track_segment
from rvs.query.media import InvalidPageToken, page_offset
from rvs.query.people.units import UnitReader, person_id_for, placed, template
from rvs.query.timeline import stamp
from rvs.query.video_tracks import sample_interval_ms
from rvs.v1 import rvs_pb2 as pb

PERSON_ID = re.compile(r"person-[0-9a-f]{16}")
_UNIT_ID = re.compile(r"[0-9a-f]{64}:\d{1,15}:\d{1,5}")
MAX_NAME = 100
MAX_MOVED = 1000


class PersonNotFound(LookupError):
    """No person with this id or name (NOT_FOUND, reason PERSON_NOT_FOUND)."""


class UnitNotFound(LookupError):
    """A face or track id that is not a clustered unit of the index (NOT_FOUND, FACE_NOT_FOUND)."""


class InvalidPeopleRequest(ValueError):
    """A malformed id, page token or parameter (INVALID_ARGUMENT)."""


class InvalidName(ValueError):
    """A name that is too long or has control characters (INVALID_ARGUMENT, reason INVALID_NAME)."""


class NameTaken(Exception):
    """Another person has this name (FAILED_PRECONDITION, reason NAME_TAKEN)."""


def check_person_id(person_id: str) -> None:
    if not PERSON_ID.fullmatch(person_id):
        raise InvalidPeopleRequest(f"{person_id[:100]!r} is not a person id (person-<16 hex digits>)")


def clean_name(name: str) -> str:
    """The name as stored: trimmed; refused if too long or with control characters."""
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InvalidName(f"a name has at most {MAX_NAME} characters; this one has {len(name)}")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidName("a name must not contain control or invisible format characters")
    return name


@dataclass
class People:
    catalog: Catalog
    units: UnitReader
    store: Callable[[], FaceStore]  # the collection searches use, read at each call (a switch moves it)
    record: Callable[[pb.MediaEvent], None]
    min_score: Callable[[], float]  # the model's threshold searches use (for matching_samples)
    max_top_k: int = 1000

    def list(self, request: pb.ListPeopleRequest) -> pb.ListPeopleResponse:
        size = min(request.page_size or 100, 1000)
        offset = page_offset(request.page_token)
        people, total = self.catalog.people(offset, size, request.named_only, request.name_prefix)
        more = offset + len(people) < total
        return pb.ListPeopleResponse(
            people=people,
            next_page_token=str(offset + len(people)) if more else "",
            total=total,
            unclustered=self.catalog.unclustered(),
            model=self.catalog.clustered_model(),
        )

    def person(self, person_id: str) -> pb.Person:
        check_person_id(person_id)
        found = self.catalog.person(person_id)
        if found is None:
            raise PersonNotFound(f"no person with id {person_id!r}")
        return found

    def named(self, name: str) -> pb.Person:
        """The person of this name (case-insensitive); the first by id if several share it."""
        ids = self.catalog.people_named(clean_name(name))
        found = next((p for p in map(self.catalog.person, ids) if p is not None), None)
        if found is None:
            raise PersonNotFound(f"no person named {name[:100]!r}")
        return found

    def template(self, person: pb.Person) -> np.ndarray:
        """The direction a search for the person uses (its largest units' mean)."""
        units = self.catalog.person_units(person.person_id)
        vector = template(units, self.units.vectors(self.store(), units))
        if vector is None:
            raise PersonNotFound(f"person {person.person_id!r} has no faces left in the index")
        return vector

    def get(self, request: pb.GetPersonRequest) -> pb.GetPersonResponse:
        """Every photo and segment of the person, scored against its template, best first."""
        person = self.person(request.person_id)
        top_k = request.top_k or self.max_top_k
        if top_k > self.max_top_k:
            raise InvalidPeopleRequest(f"top_k is {top_k}; the largest allowed is {self.max_top_k}")
        store = self.store()
        units = self.catalog.person_units(person.person_id)
        vectors = self.units.vectors(store, units)
        vector = template(units, vectors)
        min_score = self.min_score()
        answer = pb.SearchResponse(model=store.model, min_score=min_score, matched=bool(units))
        # A member is shown whatever its score (its evidence is the clustering, or a user); its
        # matching samples are those at the threshold, as in a search.
        member = Evidence(min_score=min_score, min_samples=1, strong_margin=0.0)
        if vector is None:
            return pb.GetPersonResponse(person=person, answer=answer)
        entries = self.catalog.uris(sorted({u.media_id for u in units}))
        videos: dict[str, list[pb.Segment]] = defaultdict(list)
        for u in units:
            if u.unit_id not in vectors or u.media_id not in entries:
                continue
            entry = entries[u.media_id]
            if u.kind == pb.MEDIA_KIND_IMAGE:
                score = min(1.0, float(vectors[u.unit_id] @ vector))
                answer.images.add(media_id=u.media_id, uri=entry.uri, score=score, box=u.box, face_id=u.unit_id)
                continue
            track = find(self.units.video_tracks(store, u.media_id), u.unit_id)
            if track is not None:
                segment = track_segment(
                    track, vector, sample_interval_ms(entry), entry.duration_ms, member, always=True
                )
                if segment is not None:
                    videos[u.media_id].append(segment)
        images = sorted(answer.images, key=lambda i: (-i.score, i.uri))[:top_k]
        del answer.images[:]
        answer.images.extend(images)
        hits = []
        for media_id, segments in videos.items():
            entry = entries[media_id]
            segments.sort(key=lambda s: (s.start_ms, s.track_id))
            hits.append(
                stamp(
                    pb.VideoHit(
                        media_id=media_id,
                        uri=entry.uri,
                        duration_ms=entry.duration_ms,
                        best_score=max(s.best_score for s in segments),
                        track_score=max(s.track_score for s in segments),
                        segments=segments,
                    ),
                    entry,
                )
            )
        hits.sort(key=lambda v: (-v.track_score, v.uri))
        answer.videos.extend(hits[:top_k])
        return pb.GetPersonResponse(person=person, answer=answer)

    def rename(self, request: pb.UpdatePersonRequest) -> pb.Person:
        person = self.person(request.person_id)
        name = clean_name(request.name)
        self._check_free(name, person.person_id)
        self.record(
            pb.MediaEvent(at_ms=now_ms(), person_renamed=pb.PersonRenamed(person_id=person.person_id, name=name))
        )
        return self.person(person.person_id)

    def merge(self, request: pb.MergePeopleRequest) -> pb.Person:
        into = self.person(request.into)
        others = [self.person(p).person_id for p in dict.fromkeys(request.people)]
        others = [p for p in others if p != into.person_id]
        if not others:
            raise InvalidPeopleRequest("name at least one other person to merge into this one")
        self.record(pb.MediaEvent(at_ms=now_ms(), people_merged=pb.PeopleMerged(into=into.person_id, people=others)))
        return self.person(into.person_id)

    def move(self, request: pb.MoveToPersonRequest) -> pb.Person:
        """Faces and tracks to a person: by id, by name (a new person of that name if none has it),
        or a new person (a split). The units moved are pinned: clustering never moves them back."""
        ids = list(dict.fromkeys(request.unit_ids))
        if not ids:
            raise InvalidPeopleRequest("name at least one face or track to move (unit_ids)")
        if len(ids) > MAX_MOVED:
            raise InvalidPeopleRequest(f"{len(ids)} faces and tracks; at most {MAX_MOVED} at once")
        for unit_id in ids:
            if not _UNIT_ID.fullmatch(unit_id):
                raise InvalidPeopleRequest(f"{unit_id[:200]!r} is not a face or track id (media_id:time_ms:index)")
        target = request.WhichOneof("to")
        name = clean_name(request.name) if target == "name" else ""
        person_id = self.person(request.person_id).person_id if target == "person_id" else ""
        store = self.store()
        resolved = self.units.resolve(store, ids)
        units = self.catalog.units(resolved.values())
        missing = [i for i in ids if resolved.get(i) not in units]
        if missing:
            raise UnitNotFound(f"no clustered face or track with id {missing[0]!r} (its media may not be done yet)")
        if target == "name":
            named = self.catalog.people_named(name) if name else []
            person_id = named[0] if named else ""
        events = []
        at = now_ms()
        if not person_id:
            # A new person's id must not be one merged away before (the same units may have made it).
            person_id = person_id_for(f"moved at {at}", *units)
            if name:
                events.append(pb.PersonRenamed(person_id=person_id, name=name))
        moved = [placed(u, person_id, pinned=True) for u in units.values()]
        self.record(pb.MediaEvent(at_ms=at, people_assigned=pb.PeopleAssigned(model=store.model, units=moved)))
        for renamed in events:
            self.record(pb.MediaEvent(at_ms=at, person_renamed=renamed))
        return self.person(person_id)

    def _check_free(self, name: str, person_id: str) -> None:
        if not name:
            return
        holders = [p for p in self.catalog.people_named(name) if p != person_id and self.catalog.person(p)]
        if holders:
            raise NameTaken(f"{holders[0]} is already named {name!r}: merge the two people instead")


def describe_people_error(exc: Exception) -> Failure | None:
    """(google.rpc code, reason, message) of a documented People failure; None for anything else."""
    if isinstance(exc, PersonNotFound):
        return code_pb2.NOT_FOUND, Reason.PERSON_NOT_FOUND, str(exc)
    if isinstance(exc, UnitNotFound):
        return code_pb2.NOT_FOUND, Reason.FACE_NOT_FOUND, str(exc)
    if isinstance(exc, InvalidPageToken):
        return code_pb2.INVALID_ARGUMENT, Reason.INVALID_PAGE_TOKEN, str(exc)
    if isinstance(exc, InvalidName):
        return code_pb2.INVALID_ARGUMENT, Reason.INVALID_NAME, str(exc)
    if isinstance(exc, InvalidPeopleRequest):
        return code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, str(exc)
    if isinstance(exc, NameTaken):
        return code_pb2.FAILED_PRECONDITION, Reason.NAME_TAKEN, str(exc)
    if isinstance(exc, StoreUnavailable):
        return code_pb2.UNAVAILABLE, Reason.INDEX_UNAVAILABLE, f"the face index is unavailable: {exc}"
    return None
