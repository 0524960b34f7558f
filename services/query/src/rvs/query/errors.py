"""A failure as both front ends answer it: a google.rpc.Status whose detail is an ErrorInfo in the
API's domain (rvs.core.api_errors); the gRPC API sends it in the trailers, the search page as
Google's JSON error format."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from rvs.core.api_errors import ERROR_DOMAIN

Failure = tuple[int, str, str]  # google.rpc code, ErrorInfo reason, message


def error_status(code: int, reason: str, message: str) -> status_pb2.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    return status_pb2.Status(code=code, message=message, details=[info])
