"""The page's failures as HTTP answers: Google's JSON error format, with the gRPC API's google.rpc
codes and ErrorInfo reasons (rvs.query.errors) and Google's mapping of codes to HTTP statuses."""

from __future__ import annotations

from google.protobuf import json_format
from google.rpc import code_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rvs.query.errors import error_status

# google.rpc codes as HTTP statuses (Google's mapping; a request body over the limit is 413).
HTTP_STATUS = {
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.NOT_FOUND: 404,
    code_pb2.RESOURCE_EXHAUSTED: 413,
    code_pb2.INTERNAL: 500,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DEADLINE_EXCEEDED: 504,
}


class ApiError(Exception):
    """Raised anywhere in a handler (or its worker thread): the answer is this error."""

    def __init__(self, code: int, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.status = code, reason, message, status


def error_response(code: int, reason: str, message: str, status: int | None = None) -> JSONResponse:
    """`status` overrides the code's HTTP status (408 for a body that does not come)."""
    error = error_status(code, reason, message)
    status = status or HTTP_STATUS[code]
    body = {
        "error": {
            "code": status,
            "status": code_pb2.Code.Name(code),
            "message": message,
            "details": [json_format.MessageToDict(detail) for detail in error.details],
        }
    }
    return JSONResponse(body, status_code=status)


async def on_api_error(request: Request, exc: Exception) -> Response:
    """The app's handler of ApiError."""
    assert isinstance(exc, ApiError)
    return error_response(exc.code, exc.reason, exc.message, exc.status)
