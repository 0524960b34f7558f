"""The API's error reasons, one list for every front end and client: the gRPC API and the search page
answer a google.rpc code with an ErrorInfo in ERROR_DOMAIN whose reason a client branches on (the
README's error tables). Undecodable media also answer the MediaError's own reason (rvs.core.media.errors:
DECODE_ERROR, UNSUPPORTED_TYPE, ...)."""

from __future__ import annotations

from enum import StrEnum

ERROR_DOMAIN = "rvs.v1"


class Reason(StrEnum):
    # The gRPC API and the search page alike.
    EMPTY_IMAGE = "EMPTY_IMAGE"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    NO_FACE = "NO_FACE"
    FACE_INDEX_OUT_OF_RANGE = "FACE_INDEX_OUT_OF_RANGE"
    MEDIA_NOT_FOUND = "MEDIA_NOT_FOUND"
    FACE_NOT_FOUND = "FACE_NOT_FOUND"
    TRACK_NOT_FOUND = "TRACK_NOT_FOUND"
    PERSON_NOT_FOUND = "PERSON_NOT_FOUND"
    INVALID_NAME = "INVALID_NAME"
    NAME_TAKEN = "NAME_TAKEN"
    EMPTY_VIDEO = "EMPTY_VIDEO"
    VIDEO_TOO_LARGE = "VIDEO_TOO_LARGE"
    VIDEO_TOO_LONG = "VIDEO_TOO_LONG"
    INDEX_UNAVAILABLE = "INDEX_UNAVAILABLE"
    NO_CATALOG = "NO_CATALOG"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"
    # The gRPC API only: paging, deletion, reindexing.
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    BUS_UNAVAILABLE = "BUS_UNAVAILABLE"
    NO_BUS = "NO_BUS"
    UNKNOWN_MODEL = "UNKNOWN_MODEL"
    REINDEX_RUNNING = "REINDEX_RUNNING"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    # The gRPC API and the search page: the watch list and its alerts.
    WATCH_NOT_FOUND = "WATCH_NOT_FOUND"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    # The search page only: its requests, kept queries, original files and frames, and defences.
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    QUERY_EXPIRED = "QUERY_EXPIRED"
    MEDIA_NOT_LOCAL = "MEDIA_NOT_LOCAL"
    MEDIA_FILE_MISSING = "MEDIA_FILE_MISSING"
    MEDIA_FILE_CHANGED = "MEDIA_FILE_CHANGED"
    MEDIA_OUTSIDE_SOURCES = "MEDIA_OUTSIDE_SOURCES"
    FRAME_NOT_FOUND = "FRAME_NOT_FOUND"
    HOST_NOT_ALLOWED = "HOST_NOT_ALLOWED"
    CROSS_ORIGIN = "CROSS_ORIGIN"
