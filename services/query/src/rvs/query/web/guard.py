"""Around every request to the page: the Host header (against DNS rebinding), the origin of calls
that change state or cost work (against cross-site requests), the credentials on /api/ when a token
is set (rvs.query.web.login), security headers, and the request metrics. The page and its scripts
hold no data: they need no token."""

from __future__ import annotations

import logging
import time

from google.rpc import code_pb2
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from rvs.core.api_errors import Reason
from rvs.query.config import QuerySettings
from rvs.query.errors import Failure
from rvs.query.metrics import QueryMetrics
from rvs.query.web.errors import error_response
from rvs.query.web.login import Login

log = logging.getLogger(__name__)

# GETs that cost work (a search, decoding, hashing): like every other method, same origin only.
COSTLY_GETS = {
    "/api/search/{query_id}",
    "/api/clip/{query_id}",
    "/api/media/{media_id}/frame",
    "/api/media/{media_id}/file",
    "/api/people/{person_id}",  # scores every face of the person
}
# Answers that set their own caching (original files and frames never change); the others are not cached.
CACHED = {"/api/media/{media_id}/frame", "/api/media/{media_id}/file", "/api/clip/{query_id}/frames/{index}"}
ANY_ADDRESS = {"", "0.0.0.0", "::"}

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob:; media-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def allowed_hosts(settings: QuerySettings) -> frozenset[str]:
    """Host names (lower case, IPv6 in brackets) the page answers to; "*" among them: any."""
    hosts = {host.lower() for host in settings.web_allowed_hosts}
    if settings.web_host not in ANY_ADDRESS:
        hosts.add(f"[{settings.web_host}]" if ":" in settings.web_host else settings.web_host.lower())
    return frozenset(hosts)


def host_name(host: str) -> str:
    """The Host header without its port: `[::1]:8080` -> `[::1]`, `LocalHost:80` -> `localhost`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]  # "" when unclosed: refused
    return host.partition(":")[0]


class Guard:
    def __init__(self, app: Starlette, metrics: QueryMetrics, settings: QuerySettings, login: Login) -> None:
        self.app = app
        self.metrics = metrics
        self.login = login
        self.hosts = allowed_hosts(settings)

    def _route(self, scope: Scope) -> str:
        """The route's template: a bounded metric label."""
        for route in self.app.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return str(getattr(route, "path", "other"))
        return "other"

    def _wrong_host(self, headers: Headers) -> Failure | None:
        if "*" in self.hosts or host_name(headers.get("host", "")) in self.hosts:
            return None
        message = "this host name is not one the search page answers to (RVS_WEB_ALLOWED_HOSTS)"
        return code_pb2.INVALID_ARGUMENT, Reason.HOST_NOT_ALLOWED, message

    @staticmethod
    def _cross_origin(scope: Scope, route: str, headers: Headers) -> Failure | None:
        """Browsers say where a request comes from (Sec-Fetch-Site, Origin); clients that say
        nothing are not browsers, and pass."""
        if scope["method"] in ("GET", "HEAD") and route not in COSTLY_GETS:
            return None
        site = headers.get("sec-fetch-site", "same-origin")
        origin = headers.get("origin")
        own = f"{scope['scheme']}://{headers.get('host', '')}".lower()
        if site in ("same-origin", "none") and (origin is None or origin.lower() == own):
            return None
        return code_pb2.PERMISSION_DENIED, Reason.CROSS_ORIGIN, "the search page's API answers its own pages only"

    def _unauthenticated(self, scope: Scope, headers: Headers) -> Failure | None:
        path = scope["path"]
        if not path.startswith("/api/") or path == "/api/session":  # logging in needs no session
            return None
        why = self.login.refusal(scope, headers)
        return None if why is None else (code_pb2.UNAUTHENTICATED, Reason.UNAUTHENTICATED, why)

    def _refusal(self, scope: Scope, route: str) -> Failure | None:
        """None if the request may pass, else why not."""
        headers = Headers(scope=scope)
        return (
            self._wrong_host(headers)
            or self._cross_origin(scope, route, headers)
            or self._unauthenticated(scope, headers)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route(scope)
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if route not in CACHED:
                    headers.setdefault("cache-control", "no-cache")
            await send(message)

        try:
            refusal = self._refusal(scope, route)
            if refusal is None:
                await self.app(scope, receive, send_with_headers)
            else:
                log.warning("refused %s %s: %s", scope["method"], scope["path"], refusal[2])
                await error_response(*refusal)(scope, receive, send_with_headers)
        finally:
            self.metrics.web_seconds.labels(route).observe(time.perf_counter() - started)
            self.metrics.web_requests.labels(route, str(status)).inc()
