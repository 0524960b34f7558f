"""The faces of recent query photos, kept under a random query id: changing the threshold or the
face searches again without sending the photo again, and without detecting its faces again."""

from __future__ import annotations

import secrets

from rvs.core.faces.types import Face
from rvs.query.web.caches import SharedLRU

KEPT_QUERIES = 256  # the most recent query photos stay searchable (the README says so)


class RecentQueries:
    def __init__(self, kept: int = KEPT_QUERIES) -> None:
        self._faces: SharedLRU[str, list[Face]] = SharedLRU(kept)

    def keep(self, faces: list[Face]) -> str:
        """The new query's id."""
        query_id = secrets.token_urlsafe(16)
        self._faces.put(query_id, faces)
        return query_id

    def get(self, query_id: str) -> list[Face] | None:
        return self._faces.get(query_id)

    def forget(self, query_id: str) -> None:
        self._faces.pop(query_id)
