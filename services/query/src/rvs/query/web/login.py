"""Who may call the page's API when RVS_AUTH_TOKEN is set: a request with `Authorization: Bearer
<token>`, or with a session cookie that the token was exchanged for at login (HttpOnly,
SameSite=Strict, which <img> and <video> requests carry as well)."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time

from cachetools import TTLCache
from google.rpc import code_pb2
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from rvs.core.api_errors import Reason
from rvs.core.auth import Credentials, Token
from rvs.query.config import QuerySettings
from rvs.query.web.errors import ApiError
from rvs.query.web.parsing import read_body

log = logging.getLogger(__name__)

SESSION_COOKIE = "rvs_session"
MOST_SESSIONS = 10_000  # logins kept at once; the least recently used goes first


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


class Login:
    """The token check and the session routes (GET, POST and DELETE /api/session)."""

    def __init__(self, settings: QuerySettings, tls: bool) -> None:
        self.token = Token(settings.auth_token.get_secret_value()) if settings.auth_token else None
        self.sessions = Sessions(settings.web_session_ttl_s)
        self.settings = settings
        self.tls = tls

    def refusal(self, scope: Scope, headers: Headers) -> str | None:
        """None if the request may call the API, else why not."""
        if self.token is None:
            return None
        credentials = self.token.check(headers.get("authorization"))
        if credentials is Credentials.VALID:
            return None
        if credentials is Credentials.MALFORMED:
            return "the Authorization header must read `Bearer <token>`"
        if credentials is Credentials.INVALID:
            return "invalid token"
        cookie = HTTPConnection(scope).cookies.get(SESSION_COOKIE)
        if cookie is None:
            return "missing credentials: log in on the page, or send `Authorization: Bearer <token>`"
        if self.sessions.valid(cookie):
            return None
        return "invalid, expired or ended session: log in again"

    async def session(self, request: Request) -> Response:
        """Whether the API needs the token (open, so the page knows to offer logging out)."""
        return JSONResponse({"authRequired": self.token is not None})

    async def login(self, request: Request) -> Response:
        """Exchanges the token for a session cookie."""
        if self.token is None:
            return Response(status_code=204)
        try:
            given = json.loads(await read_body(request, 4096, self.settings.rpc_deadline_s))["token"]
            if not isinstance(given, str):
                raise TypeError
            given_bytes = given.encode()  # a lone surrogate (\ud800) does not encode: a bad body
        except (ValueError, KeyError, TypeError):
            message = 'send {"token": "<token>"}'
            raise ApiError(code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, message) from None
        if not self.token.matches(given_bytes):
            log.warning("refused a search page login: invalid token")
            raise ApiError(code_pb2.UNAUTHENTICATED, Reason.UNAUTHENTICATED, "invalid token")
        response = Response(status_code=204)
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.open(),
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
            self.sessions.close(session)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=self.tls)
        return response
