"""Receives bucket event notifications (the S3 event JSON that MinIO, versitygw and Ceph post to a
webhook) and hands each (bucket, key, event name) to the bucket source."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import BaseModel, Field, ValidationError

from rvs.core.auth import Credentials, Token

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 20


class _Bucket(BaseModel):
    name: str


class _Object(BaseModel):
    key: str


class _S3(BaseModel):
    bucket: _Bucket
    object_: _Object = Field(alias="object")


class _Record(BaseModel):
    event_name: str = Field(alias="eventName")
    s3: _S3


class S3EventNotification(BaseModel):
    """The part of an S3 event notification rvs reads; test events carry no records."""

    records: list[_Record] = Field(default_factory=list, alias="Records")


OnEvent = Callable[[str, str, str], None]  # (bucket, key as sent, event name)


class NotificationReceiver:
    def __init__(self, host: str, port: int, token: str | None, on_event: OnEvent) -> None:
        self.host = host
        self._token = Token(token) if token is not None else None
        self._on_event = on_event
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # MinIO checks that its target is up
                self._reply(HTTPStatus.OK)

            def do_GET(self) -> None:
                self._reply(HTTPStatus.OK)

            def do_POST(self) -> None:
                self._reply(receiver.handle(self.headers.get("Authorization"), self._body()))

            def _body(self) -> bytes | None:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if 0 <= length <= _MAX_BODY else None

            def _reply(self, status: HTTPStatus) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                log.debug("notification: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="bucket-notify", daemon=True)
        self._thread.start()
        log.info("bucket notifications on http://%s:%d/", self.host, self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _authorized(self, header: str | None) -> bool:
        return self._token is None or self._token.check(header) is Credentials.VALID

    def handle(self, authorization: str | None, body: bytes | None) -> HTTPStatus:
        if not self._authorized(authorization):
            log.warning("bucket notification refused: wrong or missing token")
            return HTTPStatus.UNAUTHORIZED
        if body is None:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        try:
            note = S3EventNotification.model_validate_json(body)
        except ValidationError as exc:
            log.warning("unreadable bucket notification: %s", exc.errors()[0]["msg"])
            return HTTPStatus.BAD_REQUEST
        for record in note.records:
            self._on_event(record.s3.bucket.name, record.s3.object_.key, record.event_name)
        return HTTPStatus.OK
