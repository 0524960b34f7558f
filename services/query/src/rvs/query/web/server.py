"""Serves the search page with uvicorn on a thread of the query service, over TLS when the gRPC
server has it (the same certificate, and client certificates when it asks for them)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from rvs.query.config import QuerySettings

log = logging.getLogger(__name__)


def _listen(host: str, port: int) -> socket.socket:
    """Bind here, not in uvicorn, so a port in use fails `start()` with a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {host}:{port} for the search page: {exc.strerror}") from exc
    return sock


class IdleTimeoutProtocol(H11Protocol):
    """HTTP/1.1 that closes a connection with no request in progress once it has been so for the
    keep-alive timeout: new, between requests, or half-way through a request head. uvicorn's own
    keep-alive timer stops at the first byte and does not run before the first request, so a client
    sending half a head would hold its connection for good."""

    _idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._restart_idle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._restart_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        super().connection_lost(exc)

    def _restart_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.loop.call_later(self.timeout_keep_alive, self._close_if_idle)

    def _close_if_idle(self) -> None:
        # A request in progress (its body read with a deadline, its answer sent) is left alone.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


class WebServer:
    def __init__(self, settings: QuerySettings, app: ASGIApp, grace_s: float = 5.0) -> None:
        self.host = settings.web_host
        self.port = settings.web_port
        self.tls = settings.tls_cert_file is not None
        self.config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            lifespan="off",
            log_config=None,  # rvs's own logging set-up
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            # No limit_concurrency: uvicorn counts idle connections in it. Costly work has its own
            # limit (the page's limiter, rpc_workers) and idle connections are closed.
            http=IdleTimeoutProtocol,
            timeout_keep_alive=settings.web_idle_timeout_s,
            timeout_graceful_shutdown=int(grace_s),
            ssl_certfile=settings.tls_cert_file,
            ssl_keyfile=settings.tls_key_file,
            ssl_ca_certs=settings.tls_client_ca_file,
            ssl_cert_reqs=ssl.CERT_REQUIRED if settings.tls_client_ca_file else ssl.CERT_NONE,
        )
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self, timeout_s: float = 10.0) -> None:
        try:
            self.config.load()
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the TLS files for the search page: {exc}") from exc
        sock = _listen(self.host, self.port)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the search page did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        log.info("search page on %s", self.url)

    def stop(self) -> None:
        """Stops taking connections; open ones get the grace period to finish."""
        if self._thread is None:
            return
        self.server.should_exit = True
        self._thread.join()
        self._thread = None
