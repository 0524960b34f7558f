"""The search page's HTTP API and static files, as a Starlette app.

Search runs through the SearchEngine the gRPC API uses; errors carry the same ErrorInfo reasons, in
Google's JSON error format; answers are the proto messages in their canonical JSON mapping. The
query photo is analysed once: its faces are kept under a query id, so changing the threshold or the
face searches again without sending the photo again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import mimetypes
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from cachetools import TTLCache
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

from rvs.core.catalog import Catalog
from rvs.core.faces.types import Face
from rvs.core.media.errors import MediaError
from rvs.query.config import QuerySettings
from rvs.query.media import media_id_problem, media_page
from rvs.query.metrics import QueryMetrics
from rvs.query.search import ModelChanged, SearchEngine, describe_error
from rvs.query.web.files import MediaFiles, NotServed
from rvs.query.web.queries import RecentQueries
from rvs.query.web.stills import Box, NoFrame, StillCache, StillKey, render
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
ERROR_DOMAIN = "rvs.v1"  # as the gRPC API's ErrorInfo
SESSION_COOKIE = "rvs_session"
KINDS = {"all": pb.KIND_FILTER_ALL, "images": pb.KIND_FILTER_IMAGES, "videos": pb.KIND_FILTER_VIDEOS}
MOST_SESSIONS = 10_000  # logins kept at once; the least recently used goes first
# GETs that cost work (a search, decoding, hashing): like every other method, same origin only.
COSTLY_GETS = {"/api/search/{query_id}", "/api/media/{media_id}/frame", "/api/media/{media_id}/file"}
ANY_ADDRESS = {"", "0.0.0.0", "::"}

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

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob:; media-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.status = code, reason, message, status


def error_response(code: int, reason: str, message: str, status: int | None = None) -> JSONResponse:
    """`status` overrides the code's HTTP status (408 for a body that does not come)."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    status = status or HTTP_STATUS[code]
    body = {
        "error": {
            "code": status,
            "status": code_pb2.Code.Name(code),
            "message": message,
            "details": [json_format.MessageToDict(info)],
        }
    }
    return JSONResponse(body, status_code=status)


def proto_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _search_request(params: Mapping[str, str]) -> pb.SearchRequest:
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
            request.kinds = KINDS[params["kinds"]]
        request.source_prefix = params.get("source_prefix", "")
    except (ValueError, KeyError) as exc:
        raise ApiError(
            code_pb2.INVALID_ARGUMENT,
            "INVALID_PARAMETER",
            f"bad search option ({exc}): top_k and face_index are counts, min_score a number in [-1, 1], "
            f"kinds one of {', '.join(KINDS)}",
        ) from exc
    return request


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(name) or default)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            code_pb2.INVALID_ARGUMENT, "INVALID_PARAMETER", f"{name} must be a whole number in [{low}, {high}]"
        )
    return value


def _box_param(params: Mapping[str, str]) -> Box | None:
    if not params.get("box"):
        return None
    try:
        values = [float(v) for v in params["box"].split(",")]
        if len(values) != 4 or not all(math.isfinite(v) and abs(v) < 1e6 for v in values):
            raise ValueError
    except ValueError:
        raise ApiError(code_pb2.INVALID_ARGUMENT, "INVALID_PARAMETER", "box must be x1,y1,x2,y2 in pixels") from None
    x1, y1, x2, y2 = (round(v) for v in values)
    # Corners in any order: drawing needs the top left one first.
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def _not_served(exc: Exception) -> tuple[int, str, str] | None:
    return (exc.code, exc.reason, exc.message) if isinstance(exc, NotServed) else None


class SearchPage:
    """The routes; `asgi` is the app to serve (auth, security headers and metrics around them)."""

    def __init__(
        self,
        settings: QuerySettings,
        engine: SearchEngine,
        catalog: Catalog | None,
        metrics: QueryMetrics,
        tls: bool,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.catalog = catalog
        self.metrics = metrics
        self.tls = tls
        self.stills = StillCache(settings.web_cache_bytes)
        self.files = MediaFiles(settings.web_media_dirs)
        self.queries = RecentQueries()
        self._limiter: anyio.CapacityLimiter | None = None
        self.app = Starlette(
            routes=[
                Route("/", self.index),
                Route("/api/session", self.session, methods=["GET"]),
                Route("/api/session", self.login, methods=["POST"]),
                Route("/api/session", self.logout, methods=["DELETE"]),
                Route("/api/search", self.search, methods=["POST"]),
                Route("/api/search/{query_id}", self.search_again),
                Route("/api/media", self.list_media),
                Route("/api/media/{media_id}", self.get_media),
                Route("/api/media/{media_id}/file", self.media_file),
                Route("/api/media/{media_id}/frame", self.frame),
                Mount("/static", StaticFiles(directory=STATIC)),
            ],
            exception_handlers={ApiError: self._on_api_error},
        )
        self.asgi = Guard(self.app, metrics, settings)

    @staticmethod
    async def _on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.code, exc.reason, exc.message, exc.status)

    async def _blocking(
        self,
        fn: Callable[[], T],
        describe: Callable[[Exception], tuple[int, str, str] | None] = describe_error,
    ) -> T:
        """Run costly work (models, decoding, Milvus) on a worker thread, at most rpc_workers at once."""
        if self._limiter is None:  # made in the server's event loop
            self._limiter = anyio.CapacityLimiter(self.settings.rpc_workers)
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        except ApiError:
            raise
        except Exception as exc:
            described = describe(exc)
            if described is None:
                log.exception("search page request failed")
                raise ApiError(code_pb2.INTERNAL, "INTERNAL", "internal error; see the query service's log") from exc
            raise ApiError(*described) from exc

    async def _body(self, request: Request, limit: int) -> bytes:
        """The body, up to `limit` bytes, within the request deadline: a client that stops sending
        does not keep its connection for good."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(int(declared), limit)
        chunks, size = [], 0
        try:
            with anyio.fail_after(self.settings.rpc_deadline_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise self._too_large(size, limit)
                    chunks.append(chunk)
        except TimeoutError:
            message = f"the request body did not arrive within {self.settings.rpc_deadline_s:g} s (RVS_RPC_DEADLINE_S)"
            raise ApiError(code_pb2.DEADLINE_EXCEEDED, "REQUEST_TIMEOUT", message, status=408) from None
        return b"".join(chunks)

    @staticmethod
    def _too_large(size: int, limit: int) -> ApiError:
        message = f"the request is {size} bytes or more; the limit is {limit}"
        return ApiError(code_pb2.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE", message)

    # -- page and session ------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def session(self, request: Request) -> Response:
        """Whether the API needs the token (open, so the page knows to offer logging out)."""
        return JSONResponse({"authRequired": self.asgi.token is not None})

    async def login(self, request: Request) -> Response:
        """Exchanges the token for an HttpOnly, SameSite=Strict session cookie, which <img> and
        <video> requests carry as well."""
        if self.asgi.token is None:
            return Response(status_code=204)
        try:
            given = json.loads(await self._body(request, 4096))["token"]
            if not isinstance(given, str):
                raise TypeError
            given_bytes = given.encode()  # a lone surrogate (\ud800) does not encode: a bad body
        except (ValueError, KeyError, TypeError):
            raise ApiError(code_pb2.INVALID_ARGUMENT, "INVALID_PARAMETER", 'send {"token": "<token>"}') from None
        if not hmac.compare_digest(given_bytes, self.asgi.token):
            log.warning("refused a search page login: invalid token")
            raise ApiError(code_pb2.UNAUTHENTICATED, "UNAUTHENTICATED", "invalid token")
        response = Response(status_code=204)
        response.set_cookie(
            SESSION_COOKIE,
            self.asgi.sessions.open(),
            max_age=int(self.settings.web_session_ttl_s),
            httponly=True,
            samesite="strict",
            secure=self.tls,
        )
        return response

    async def logout(self, request: Request) -> Response:
        """Ends the session at once: its cookie is refused from now on, wherever it was copied."""
        session = request.cookies.get(SESSION_COOKIE)
        if session is not None:
            self.asgi.sessions.close(session)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=self.tls)
        return response

    # -- search ----------------------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        """POST the photo's bytes; options in the query string (top_k, min_score, face_index, kinds,
        source_prefix). Answers {"queryId", "result": SearchResponse}."""
        search = _search_request(request.query_params)
        image = await self._body(request, self.settings.max_message_bytes)
        deadline = time.monotonic() + self.settings.rpc_deadline_s

        def run() -> tuple[list[Face], pb.SearchResponse]:
            try:
                faces = self.engine.analyse(image, deadline)
                return faces, self.engine.search_faces(faces, search, deadline)
            except ModelChanged:  # the index switched models between the two steps: once more
                faces = self.engine.analyse(image, deadline)
                return faces, self.engine.search_faces(faces, search, deadline)

        faces, response = await self._blocking(run)
        return self._answer(self.queries.keep(faces), response)

    async def search_again(self, request: Request) -> Response:
        """The photo of an earlier POST, searched with other options: no upload, no face detection."""
        query_id = request.path_params["query_id"]
        faces = self.queries.get(query_id)
        if faces is None:
            raise ApiError(code_pb2.NOT_FOUND, "QUERY_EXPIRED", "this query is no longer kept: send the photo again")
        search = _search_request(request.query_params)
        deadline = time.monotonic() + self.settings.rpc_deadline_s
        try:
            response = await self._blocking(lambda: self.engine.search_faces(faces, search, deadline))
        except ModelChanged as exc:  # kept faces of the model of before a reindex's switch
            self.queries.forget(query_id)
            raise ApiError(code_pb2.NOT_FOUND, "QUERY_EXPIRED", f"this query is no longer kept: {exc}") from exc
        return self._answer(query_id, response)

    def _answer(self, query_id: str, response: pb.SearchResponse) -> Response:
        self.metrics.search_hits.observe(len(response.images) + sum(len(v.segments) for v in response.videos))
        return JSONResponse({"queryId": query_id, "result": proto_json(response)})

    # -- media -----------------------------------------------------------------------------------

    def _catalog(self) -> Catalog:
        if self.catalog is None:
            raise ApiError(code_pb2.UNIMPLEMENTED, "NO_CATALOG", "this query service has no media catalog")
        return self.catalog

    def list_media(self, request: Request) -> Response:
        """The ingest status of every item, paged as ListMedia is."""
        size = _int_param(request.query_params, "page_size", 500, 1, 1000)
        offset = _int_param(request.query_params, "page_token", 0, 0, 1 << 62)
        return JSONResponse(proto_json(media_page(self._catalog(), offset, size)))

    def _media(self, media_id: str) -> pb.Media:
        problem = media_id_problem(media_id)
        if problem is not None:
            raise ApiError(code_pb2.INVALID_ARGUMENT, "INVALID_PARAMETER", problem)
        media = self._catalog().get(media_id)
        if media is None or media.state == pb.MEDIA_STATE_DELETED:
            raise ApiError(code_pb2.NOT_FOUND, "MEDIA_NOT_FOUND", f"no media with id {media_id!r}")
        return media

    def get_media(self, request: Request) -> Response:
        return JSONResponse(proto_json(self._media(request.path_params["media_id"])))

    async def _local_file(self, media_id: str) -> tuple[pb.Media, Path]:
        """The original file of a media item the catalog knows (never a path the client names), while
        it is still what was indexed (hashing it is costly work, hence the limiter)."""
        media = await run_in_threadpool(self._media, media_id)
        if "://" in media.uri:
            raise ApiError(
                code_pb2.UNIMPLEMENTED,
                "MEDIA_NOT_LOCAL",
                f"{media.uri} is not a file on this machine: the page shows frames and plays videos of files only",
            )
        path = await self._blocking(lambda: self.files.verified(media.uri, media.media_id), _not_served)
        return media, path

    async def media_file(self, request: Request) -> Response:
        """The original photo or video, with Range requests (a video seeks without loading it all)."""
        _, path = await self._local_file(request.path_params["media_id"])
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, headers={"cache-control": "private, max-age=3600"})

    async def frame(self, request: Request) -> Response:
        """A JPEG of the photo, or of the video's frame at t_ms, at most `side` pixels on its long
        side, with the face `box` drawn; made on demand and cached."""
        params = request.query_params
        time_ms = _int_param(params, "t_ms", 0, 0, 1 << 40)
        side = _int_param(params, "side", 320, 32, 1920)
        box = _box_param(params)
        media, path = await self._local_file(request.path_params["media_id"])
        is_video = media.kind == pb.MEDIA_KIND_VIDEO
        key = StillKey(media.media_id, time_ms if is_video else 0, box, side)
        data = self.stills.get(key)
        cache = "hit" if data is not None else "miss"
        if data is None:

            def unreadable(exc: Exception) -> tuple[int, str, str] | None:
                if isinstance(exc, NoFrame):
                    return code_pb2.NOT_FOUND, "FRAME_NOT_FOUND", str(exc)
                if isinstance(exc, MediaError):
                    return code_pb2.FAILED_PRECONDITION, exc.reason, f"cannot read {media.uri}: {exc.detail}"
                return None

            data = await self._blocking(lambda: render(path, is_video, time_ms, box, side), unreadable)
            self.stills.put(key, data)
        self.metrics.web_stills.labels(cache).inc()
        # The media id is a content hash: this picture never changes.
        headers = {"cache-control": "private, max-age=86400, immutable", "x-rvs-cache": cache}
        return Response(data, media_type="image/jpeg", headers=headers)


class Sessions:
    """Logins of the page: random ids, kept here (only their hashes) until they expire or log out."""

    def __init__(self, ttl_s: float) -> None:
        self._live: TTLCache[str, bool] = TTLCache(maxsize=MOST_SESSIONS, ttl=ttl_s, timer=time.monotonic)

    @staticmethod
    def _key(session: str) -> str:
        # Any str a header can carry (latin-1) encodes; the hash makes the lookup leak nothing of a key.
        return hashlib.sha256(session.encode()).hexdigest()

    def open(self) -> str:
        session = secrets.token_urlsafe(32)
        self._live[self._key(session)] = True
        return session

    def valid(self, session: str) -> bool:
        return self._key(session) in self._live

    def close(self, session: str) -> None:
        self._live.pop(self._key(session), None)


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


Refusal = tuple[int, str, str]  # google.rpc code, reason, message


class Guard:
    """Around every request: the Host header (against DNS rebinding), the origin of calls that
    change state or cost work (against cross-site requests), the token (bearer header or session
    cookie) on /api/ when one is set, security headers, and the request metrics. The page and its
    scripts hold no data: they need no token."""

    def __init__(self, app: Starlette, metrics: QueryMetrics, settings: QuerySettings) -> None:
        self.app = app
        self.metrics = metrics
        self.token = settings.auth_token.get_secret_value().encode() if settings.auth_token else None
        self.sessions = Sessions(settings.web_session_ttl_s)
        self.hosts = allowed_hosts(settings)

    def _route(self, scope: Scope) -> str:
        """The route's template: a bounded metric label."""
        for route in self.app.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return str(getattr(route, "path", "other"))
        return "other"

    def _wrong_host(self, headers: Headers) -> Refusal | None:
        if "*" in self.hosts or host_name(headers.get("host", "")) in self.hosts:
            return None
        message = "this host name is not one the search page answers to (RVS_WEB_ALLOWED_HOSTS)"
        return code_pb2.INVALID_ARGUMENT, "HOST_NOT_ALLOWED", message

    @staticmethod
    def _cross_origin(scope: Scope, route: str, headers: Headers) -> Refusal | None:
        """Browsers say where a request comes from (Sec-Fetch-Site, Origin); clients that say
        nothing are not browsers, and pass."""
        if scope["method"] in ("GET", "HEAD") and route not in COSTLY_GETS:
            return None
        site = headers.get("sec-fetch-site", "same-origin")
        origin = headers.get("origin")
        own = f"{scope['scheme']}://{headers.get('host', '')}".lower()
        if site in ("same-origin", "none") and (origin is None or origin.lower() == own):
            return None
        return code_pb2.PERMISSION_DENIED, "CROSS_ORIGIN", "the search page's API answers its own pages only"

    def _unauthenticated(self, scope: Scope, headers: Headers) -> Refusal | None:
        path = scope["path"]
        if self.token is None or not path.startswith("/api/") or path == "/api/session":
            return None
        given = headers.get("authorization")
        if given is not None:
            if not given.startswith("Bearer "):
                why = "the Authorization header must read `Bearer <token>`"
            elif hmac.compare_digest(given.removeprefix("Bearer ").encode(), self.token):
                return None
            else:
                why = "invalid token"
        else:
            cookie = HTTPConnection(scope).cookies.get(SESSION_COOKIE)
            if cookie is not None:
                if self.sessions.valid(cookie):
                    return None
                why = "invalid, expired or ended session: log in again"
            else:
                why = "missing credentials: log in on the page, or send `Authorization: Bearer <token>`"
        return code_pb2.UNAUTHENTICATED, "UNAUTHENTICATED", why

    def _refusal(self, scope: Scope, route: str) -> Refusal | None:
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

        async def send_with_headers(message: AsgiMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if route != "/api/media/{media_id}/frame" and route != "/api/media/{media_id}/file":
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
