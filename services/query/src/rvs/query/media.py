"""The media catalog as both front ends read it: media ids checked before use, and pages (ListMedia's,
ListPeople's)."""

from __future__ import annotations

import re

from rvs.core.catalog import Catalog
from rvs.v1 import rvs_pb2 as pb

_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def media_id_problem(media_id: str) -> str | None:
    """Why `media_id` cannot be a media id (None if it can), echoing only its start: a long id in an
    error would exceed a gRPC client's metadata limit."""
    if _MEDIA_ID.fullmatch(media_id):
        return None
    shown = media_id[:16] + ("..." if len(media_id) > 16 else "")
    return f"media_id {shown!r} ({len(media_id)} characters) is not a media id: 1-64 letters, digits, '-', '_'"


class InvalidPageToken(ValueError):
    """A page token this server did not give (INVALID_ARGUMENT, reason INVALID_PAGE_TOKEN)."""


def page_offset(token: str) -> int:
    """The offset a page token stands for ("": the first page)."""
    try:
        offset = int(token or "0")
    except ValueError:
        offset = -1
    if offset < 0:
        raise InvalidPageToken("page_token is not one this server gave")
    return offset


def media_page(catalog: Catalog, offset: int, size: int, state: int = 0) -> pb.ListMediaResponse:
    """`size` items from `offset` on, in discovery order; a page token is the next page's offset
    ("" after the last page)."""
    media = catalog.list_media(state=state, offset=offset, limit=size + 1)
    next_token = str(offset + size) if len(media) > size else ""
    return pb.ListMediaResponse(media=media[:size], next_page_token=next_token)
