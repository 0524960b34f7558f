"""Transport security of the gRPC server: TLS credentials and bearer-token authentication."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import code_pb2

from rvs.core.api_errors import Reason
from rvs.core.auth import Credentials, Token
from rvs.query.config import QuerySettings

log = logging.getLogger(__name__)

# Load balancers and orchestrators probe health without credentials; it reveals nothing else.
EXEMPT = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
# Why a request is refused (VALID is not here: it passes).
REFUSALS = {
    Credentials.MISSING: "missing credentials: send the metadata `authorization: Bearer <token>`",
    Credentials.MALFORMED: "the authorization metadata must read `Bearer <token>`",
    Credentials.INVALID: "invalid token",
}


def server_credentials(settings: QuerySettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    try:
        key = settings.tls_key_file.read_bytes()
        chain = settings.tls_cert_file.read_bytes()
        client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    except OSError as exc:
        raise ValueError(f"cannot read the TLS files: {exc}") from exc
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class BearerAuth(grpc.ServerInterceptor):
    """Refuses every RPC (but health checks) without `authorization: Bearer <token>`."""

    def __init__(self, token: str, on_refused: Callable[[str], None], abort: Callable[..., None]) -> None:
        self._token = Token(token)
        self._on_refused = on_refused
        self._abort = abort

    def _allowed(self, metadata: Any) -> str | None:
        """None if allowed, else why not."""
        given = next((v for k, v in metadata or () if k == "authorization"), None)
        return REFUSALS.get(self._token.check(given))

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if details.method in EXEMPT:
            return continuation(details)
        why = self._allowed(details.invocation_metadata)
        if why is None:
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        self._on_refused(method)
        log.warning("refused %s: %s", method, why)

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            self._abort(context, code_pb2.UNAUTHENTICATED, Reason.UNAUTHENTICATED, why)

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                deny, handler.request_deserializer, handler.response_serializer
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
