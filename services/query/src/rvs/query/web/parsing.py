"""What a request to the page's API sends: search options and other parameters in the query string,
and a body read within its size limit and deadline. A bad value is INVALID_PARAMETER."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from google.rpc import code_pb2
from starlette.requests import Request

from rvs.core.api_errors import Reason
from rvs.core.instants import parse_instant
from rvs.core.media.kinds import KIND_FILTERS
from rvs.query.web.errors import ApiError
from rvs.query.web.stills import Box
from rvs.v1 import rvs_pb2 as pb


def search_request(params: Mapping[str, str]) -> pb.SearchRequest:
    """Search options from the query string; the image travels in the body (or was sent before)."""
    request = pb.SearchRequest()
    try:
        if params.get("top_k"):
            request.top_k = int(params["top_k"])
        if params.get("min_score"):
            request.min_score = float(params["min_score"])
        if params.get("face_index"):
            request.face_index = int(params["face_index"])
        if params.get("kinds"):
            request.kinds = KIND_FILTERS[params["kinds"]]
        request.source_prefix = params.get("source_prefix", "")
        if params.get("order"):
            request.order = SEARCH_ORDERS[params["order"]]
    except (ValueError, KeyError) as exc:
        raise ApiError(
            code_pb2.INVALID_ARGUMENT,
            Reason.INVALID_PARAMETER,
            f"bad search option ({exc}): top_k and face_index are counts, min_score a number in [-1, 1], "
            f"kinds one of {', '.join(KIND_FILTERS)}, order one of {', '.join(SEARCH_ORDERS)}",
        ) from exc
    for name in ("seen_after", "seen_before"):
        if params.get(name):
            try:
                setattr(request, f"{name}_ms", parse_instant(params[name]))
            except ValueError as exc:
                raise ApiError(code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, f"{name}: {exc}") from None
    return request


SEARCH_ORDERS = {"score": pb.SEARCH_ORDER_SCORE, "newest": pb.SEARCH_ORDER_NEWEST}


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(name) or default)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, f"{name} must be a whole number in [{low}, {high}]"
        )
    return value


def box_param(params: Mapping[str, str]) -> Box | None:
    if not params.get("box"):
        return None
    try:
        values = [float(v) for v in params["box"].split(",")]
        if len(values) != 4 or not all(math.isfinite(v) and abs(v) < 1e6 for v in values):
            raise ValueError
    except ValueError:
        message = "box must be x1,y1,x2,y2 in pixels"
        raise ApiError(code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, message) from None
    x1, y1, x2, y2 = (round(v) for v in values)
    # Corners in any order: drawing needs the top left one first.
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


# The indexed queries of "more like this" (SearchRequest's query oneof): one of them names what to search with.
SIMILAR_QUERIES = ("face_id", "track_id", "person_id", "person_name")


def similar_request(params: Mapping[str, str]) -> pb.SearchRequest:
    """ "More like this": the search options, and the indexed face (face_id), track (track_id) or
    person (person_id, person_name) to search with instead of a photo."""
    request = search_request(params)
    named = [name for name in SIMILAR_QUERIES if params.get(name)]
    if len(named) != 1:
        message = (
            "name the face (face_id), track (track_id) or person (person_id, person_name) to search with, one of them"
        )
        raise ApiError(code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, message)
    setattr(request, named[0], params[named[0]])
    return request


REJECTION_FIELDS = {"rejectedFaceIds": "rejected_face_ids", "rejectedTrackIds": "rejected_track_ids"}


def ids_limit(count: int) -> int:
    """The largest body of `count` ids worth reading (rejections, faces to move): an id is under 100
    characters."""
    return 1024 + 128 * count


def json_fields(body: bytes, fields: Mapping[str, type], shape: str) -> dict[str, Any]:
    """A JSON object of the body, with only these fields (each of its type; lists of strings where the
    type is list); `shape` is what the error says the body must be."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not set(data) <= set(fields):
            raise ValueError
        for name, value in data.items():
            if not isinstance(value, fields[name]) or (
                isinstance(value, list) and not all(isinstance(v, str) for v in value)
            ):
                raise ValueError
    except ValueError:  # JSONDecodeError and UnicodeDecodeError among them
        raise ApiError(code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, f"the body must be JSON: {shape}") from None
    return data


def add_rejections(body: bytes, request: pb.SearchRequest) -> None:
    """ "Not this person": the body's {"rejectedFaceIds": [...], "rejectedTrackIds": [...]} (either
    may be left out; an empty body rejects nothing) into the request. How many, and whether they
    are ids, the engine checks (max_rejections)."""
    if not body.strip():
        return
    shape = '{"rejectedFaceIds": [face ids], "rejectedTrackIds": [track ids]}'
    for name, ids in json_fields(body, dict.fromkeys(REJECTION_FIELDS, list), shape).items():
        getattr(request, REJECTION_FIELDS[name]).extend(ids)


def too_large(size: int, limit: int) -> ApiError:
    message = f"the request is {size} bytes or more; the limit is {limit}"
    return ApiError(code_pb2.RESOURCE_EXHAUSTED, Reason.REQUEST_TOO_LARGE, message)


def clip_too_large(size: int, limit: int) -> ApiError:
    """A query clip over RVS_MAX_QUERY_VIDEO_BYTES: SearchByVideo's reason, as a 413."""
    message = f"the clip is {size} bytes or more; the largest accepted is {limit} (RVS_MAX_QUERY_VIDEO_BYTES)"
    return ApiError(code_pb2.INVALID_ARGUMENT, Reason.VIDEO_TOO_LARGE, message, status=413)


async def read_body(
    request: Request, limit: int, deadline_s: float, refuse: Callable[[int, int], ApiError] = too_large
) -> bytes:
    """The body, up to `limit` bytes, within `deadline_s` (RVS_RPC_DEADLINE_S): a client that stops
    sending does not keep its connection for good. `refuse` makes the error of a body too large."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refuse(int(declared), limit)
    chunks, size = [], 0
    try:
        with anyio.fail_after(deadline_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise refuse(size, limit)
                chunks.append(chunk)
    except TimeoutError:
        message = f"the request body did not arrive within {deadline_s:g} s (RVS_RPC_DEADLINE_S)"
        raise ApiError(code_pb2.DEADLINE_EXCEEDED, Reason.REQUEST_TIMEOUT, message, status=408) from None
    return b"".join(chunks)
