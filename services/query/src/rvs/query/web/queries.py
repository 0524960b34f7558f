"""Recent queries, kept under a random query id: changing the threshold, the face or the rejections
searches again without sending the photo or clip again, and without analysing it again. A photo
query keeps its faces; a clip query keeps its people's templates and best frames (KeptClip)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Generic, TypeVar

from rvs.query.clip_search import AnalysedClip
from rvs.query.web.caches import SharedLRU

KEPT_QUERIES = 256  # the most recent query photos stay searchable (the README says so)
KEPT_CLIPS = 32  # and the most recent query clips (each holds a JPEG per person of the clip)

T = TypeVar("T")


@dataclass(frozen=True)
class KeptClip:
    clip: AnalysedClip
    frames: list[bytes | None]  # per person of the clip: its best frame (JPEG, face boxed); None: unreadable


class RecentQueries(Generic[T]):
    def __init__(self, kept: int = KEPT_QUERIES) -> None:
        self._kept: SharedLRU[str, T] = SharedLRU(kept)

    def keep(self, query: T) -> str:
        """The new query's id."""
        query_id = secrets.token_urlsafe(16)
        self._kept.put(query_id, query)
        return query_id

    def get(self, query_id: str) -> T | None:
        return self._kept.get(query_id)

    def forget(self, query_id: str) -> None:
        self._kept.pop(query_id)
