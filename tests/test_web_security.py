"""The search page's defences, against the real Starlette app on the real uvicorn server over
loopback sockets, with a real catalog and photos made by the tests: no Milvus and no model (the
routes tested here never reach them), so these run in seconds."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rvs.core.catalog import Catalog
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.media.hashing import content_id
from rvs.core.store.faces import FaceStore
from rvs.query.config import QuerySettings
from rvs.query.metrics import QueryMetrics
from rvs.query.search import SearchEngine
from rvs.query.web.files import MediaFiles, NotServed
from rvs.query.web.page import SearchPage
from rvs.query.web.server import WebServer
from rvs.v1 import rvs_pb2 as pb

from conftest import free_port
from media_factory import write_photo

TOKEN = "web-t0ken-for-tests"
OBAMA, BIDEN = 1, 2  # the seeds of two photos


@dataclass
class Served:
    port: int
    watch: Path
    catalog: Catalog

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request with exactly these headers (Host defaults to 127.0.0.1:port)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in ({"Host": f"127.0.0.1:{self.port}"} | (headers or {})).items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body or b"")))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def add(self, path: Path, kind: int = pb.MEDIA_KIND_IMAGE) -> str:
        """Catalogue `path` as the sampler does: its media id is the sha256 of its content."""
        media_id = hashlib.sha256(path.read_bytes()).hexdigest()
        discovered = pb.MediaDiscovered(uri=str(path), kind=kind, size_bytes=path.stat().st_size, source="x")
        self.catalog.apply(pb.MediaEvent(media_id=media_id, discovered=discovered))
        return media_id


Serve = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Starts the search page with these settings; the watched folder `watch` is its media folder."""
    servers: list[WebServer] = []
    catalogs: list[Catalog] = []

    def start(**kw: object) -> Served:
        watch = tmp_path / "watch"
        watch.mkdir(exist_ok=True)
        port = free_port()
        fields = {"model": "dlib-resnet", "port": 0, "web_port": port, "web_media_dirs": [watch]}
        settings = QuerySettings(**(fields | kw))  # type: ignore[arg-type]
        catalog = Catalog(tmp_path / f"catalog-{port}.db")
        # A store that is never connected to and a model that is never loaded: no route here uses them.
        store = FaceStore("http://127.0.0.1:9", "unused", "dlib-resnet", 128)
        engine = SearchEngine(settings, FacePipeline(settings), store, catalog)
        page = SearchPage(settings, engine, catalog, QueryMetrics(CollectorRegistry()), tls=False)
        server = WebServer(settings, page.asgi, grace_s=1)
        server.start()
        servers.append(server)
        catalogs.append(catalog)
        return Served(port, watch, catalog)

    yield start
    for server in servers:
        server.stop()
    for catalog in catalogs:
        catalog.close()


def reason(body: bytes) -> str:
    """The ErrorInfo reason of an error answer; the body's start for anything else."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"not an error answer: {body[:40]!r}"
    assert error["details"][0]["domain"] == "rvs.v1" and error["message"]
    return str(error["details"][0]["reason"])


def photo(served: Served, seed: int = OBAMA, name: str = "obama.jpg") -> tuple[Path, str]:
    path = write_photo(served.watch / name, seed)
    return path, served.add(path)


# -- 9: slow clients ------------------------------------------------------------------------------


def half_open(port: int, count: int, head: bytes) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if head:
            s.sendall(head)
        socks.append(s)
    return socks


def closed_by_server(s: socket.socket, within_s: float) -> bool:
    """True if the server hangs up (EOF or reset) within `within_s`, whatever it sent before."""
    s.settimeout(within_s)
    try:
        while s.recv(65536):
            continue  # what it sent before hanging up
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True  # a reset is a hang-up too
    return True


@pytest.mark.slow  # waits out the server's timeouts
def test_connections_that_send_no_whole_request_neither_block_nor_stay(serve: Serve) -> None:
    served = serve(max_concurrent_rpcs=8, web_idle_timeout_s=1, rpc_deadline_s=2)
    head = f"GET /api/media HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n".encode()  # no blank line
    socks = half_open(served.port, 70, head) + half_open(served.port, 10, b"")
    try:
        started = time.monotonic()
        for _ in range(5):  # real requests are answered while 80 connections idle
            status, _, body = served.request("GET", "/api/session")
            assert status == 200, body
        assert time.monotonic() - started < 5

        # An answered connection then sending half a request head is closed like a new one.
        keep = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        keep.sendall(f"GET /api/session HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        assert b"200 OK" in keep.recv(65536)
        keep.sendall(b"GET /api/session HTTP/1.1\r\n")
        socks.append(keep)
        assert all(closed_by_server(s, within_s=5) for s in socks)

        # A request whose body never comes ends when the deadline does: 408, the connection closed.
        body_never = half_open(
            served.port, 1, b"POST /api/search HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n"
        )
        reply = b""  # the head and the body may come in separate segments
        while b'"REQUEST_TIMEOUT"' not in reply and (chunk := body_never[0].recv(65536)):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert b'"REQUEST_TIMEOUT"' in reply
        assert closed_by_server(body_never[0], within_s=5)
    finally:
        for s in socks:
            s.close()


# -- 10: only the indexed files, from the media folders -------------------------------------------


def test_files_are_served_only_while_they_are_what_was_indexed(serve: Serve, tmp_path: Path) -> None:
    served = serve()
    path, media_id = photo(served)
    original = path.read_bytes()
    for route in ("file", "frame"):
        status, _, body = served.request("GET", f"/api/media/{media_id}/{route}")
        assert status == 200, body
    assert served.request("GET", f"/api/media/{media_id}/file")[2] == original

    def refused(expected_status: int, expected_reason: str) -> None:
        for route in ("file", "frame"):
            status, _, body = served.request("GET", f"/api/media/{media_id}/{route}")
            assert (status, reason(body)) == (expected_status, expected_reason), (route, body)

    path.unlink()
    path.symlink_to("/etc/passwd")  # swapped after ingest
    refused(404, "MEDIA_FILE_CHANGED")
    path.unlink()
    (served.watch / "same.jpg").write_bytes(original)
    path.symlink_to(served.watch / "same.jpg")  # a link, even to the same bytes inside the folder
    refused(404, "MEDIA_FILE_CHANGED")
    path.unlink()
    write_photo(path, BIDEN)  # other content at the indexed path
    refused(404, "MEDIA_FILE_CHANGED")
    path.write_bytes(original)  # the indexed content back: served again
    assert served.request("GET", f"/api/media/{media_id}/file")[:3:2] == (200, original)

    # A parent folder swapped for a link out of the media folders.
    sub = served.watch / "sub"
    sub.mkdir()
    inner, inner_id = photo(served, BIDEN, "sub/biden.jpg")
    outside = tmp_path / "outside"
    sub.rename(outside)
    sub.symlink_to(outside)
    status, _, body = served.request("GET", f"/api/media/{inner_id}/file")
    assert (status, reason(body)) == (403, "MEDIA_OUTSIDE_SOURCES")
    assert inner.read_bytes()  # the file itself is intact: only where it lies changed

    # A catalogued file outside every media folder (RVS_WEB_MEDIA_DIRS).
    elsewhere = tmp_path / "elsewhere.jpg"
    write_photo(elsewhere, OBAMA)
    other = serve(web_media_dirs=[])
    other_id = other.add(elsewhere)
    status, _, body = other.request("GET", f"/api/media/{other_id}/file")
    assert (status, reason(body)) == (403, "MEDIA_OUTSIDE_SOURCES")


# -- 11: Host and Origin ----------------------------------------------------------------------------


def test_other_host_names_are_refused(serve: Serve) -> None:
    served = serve()
    _, media_id = photo(served)
    for host in ("attacker.example", f"attacker.example:{served.port}", "127.0.0.2", "localhost.attacker.example"):
        for path in ("/api/media", f"/api/media/{media_id}/file", "/"):
            status, _, body = served.request("GET", path, {"Host": host})
            assert (status, reason(body)) == (400, "HOST_NOT_ALLOWED"), (host, path)
    for host in (f"127.0.0.1:{served.port}", "localhost", f"LOCALHOST:{served.port}", f"[::1]:{served.port}"):
        assert served.request("GET", "/api/media", {"Host": host})[0] == 200, host

    named = serve(web_allowed_hosts=["rvs.example"])
    assert named.request("GET", "/api/media", {"Host": "rvs.example:8080"})[0] == 200
    assert named.request("GET", "/api/media", {"Host": "localhost"})[0] == 400
    assert serve(web_allowed_hosts=["*"]).request("GET", "/api/media", {"Host": "any.example"})[0] == 200


def test_cross_origin_calls_are_refused(serve: Serve) -> None:
    served = serve()
    _, media_id = photo(served)
    own = f"http://127.0.0.1:{served.port}"
    costly = [
        ("POST", "/api/search", 400, "EMPTY_IMAGE"),  # reached the engine: an empty photo
        ("GET", "/api/search/some-query", 404, "QUERY_EXPIRED"),
        ("POST", "/api/search/some-query", 404, "QUERY_EXPIRED"),
        ("POST", "/api/similar", 400, "INVALID_PARAMETER"),  # reached the handler: no face or track named
        ("POST", "/api/clip", 400, "EMPTY_VIDEO"),
        ("GET", "/api/clip/some-query", 404, "QUERY_EXPIRED"),
        ("GET", f"/api/media/{media_id}/frame", 200, ""),
        ("POST", "/api/session", 204, ""),  # no token set: nothing to log in to
        ("DELETE", "/api/session", 204, ""),
    ]
    cross = [
        {"Origin": "http://attacker.example", "Content-Type": "text/plain"},
        {"Origin": "null"},
        {"Origin": f"https://127.0.0.1:{served.port}"},  # another scheme is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": own, "Sec-Fetch-Site": "cross-site"},
    ]
    for method, path, status, expected in costly:
        for headers in cross:
            got, _, body = served.request(method, path, headers)
            assert (got, reason(body)) == (403, "CROSS_ORIGIN"), (method, path, headers)
        for headers in ({}, {"Origin": own, "Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}):
            got, _, body = served.request(method, path, headers)
            assert got == status and (not expected or reason(body) == expected), (method, path, headers, body)


# -- clips, "more like this" and rejections: sizes and checks -------------------------------------


def test_a_clip_up_to_its_limit_is_read_and_not_a_byte_more(serve: Serve) -> None:
    """A query clip may be max_query_video_bytes, not max_message_bytes; a photo keeps its limit."""
    limit = 64 * 1024
    served = serve(max_query_video_bytes=limit, max_message_bytes=256 * 1024)
    # Exactly the limit: read and decoded (garbage, hence DECODE_ERROR), not refused for its size.
    status, _, body = served.request("POST", "/api/clip", body=b"\0" * limit)
    assert (status, reason(body)) == (400, "DECODE_ERROR"), body
    status, _, body = served.request("POST", "/api/clip", body=b"\0" * (limit + 1))
    assert (status, reason(body)) == (413, "VIDEO_TOO_LARGE")
    message = json.loads(body)["error"]["message"]
    assert (
        message == f"the clip is {limit + 1} bytes or more; the largest accepted is {limit} (RVS_MAX_QUERY_VIDEO_BYTES)"
    )
    status, _, body = served.request("POST", "/api/clip", body=b"")
    assert (status, reason(body)) == (400, "EMPTY_VIDEO")

    # Streamed without a length: cut off as it is read.
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.request("POST", "/api/clip", body=iter([b"x" * 40_000, b"x" * 40_000]), encode_chunked=True)
    response = conn.getresponse()
    assert (response.status, reason(response.read())) == (413, "VIDEO_TOO_LARGE")
    conn.close()

    # A photo over the clip's limit but within max_message_bytes is read.
    status, _, body = served.request("POST", "/api/search", body=b"\0" * (limit * 2))
    assert (status, reason(body)) == (400, "DECODE_ERROR")
    status, _, body = served.request("POST", "/api/search", body=b"\0" * (256 * 1024 + 1))
    assert (status, reason(body)) == (413, "REQUEST_TOO_LARGE")

    status, _, body = served.request("GET", "/api/limits")
    assert status == 200
    assert json.loads(body) == {
        "maxMessageBytes": 256 * 1024,
        "maxQueryVideoBytes": limit,
        "maxQueryVideoS": 300.0,
        "maxRejections": 256,
    }


def test_more_like_this_and_rejections_are_checked_before_any_search(serve: Serve) -> None:
    """Bad ids, bad bodies and too many rejections are refused with the engine's limits, before the
    index (not reachable here) is asked."""
    served = serve(max_rejections=2)
    face = "a" * 64 + ":1000:0"
    json_body = {"Content-Type": "application/json"}

    def post(path: str, data: object = None, raw: bytes | None = None) -> tuple[int, str, str]:
        body = raw if raw is not None else (b"" if data is None else json.dumps(data).encode())
        status, _, answer = served.request("POST", path, json_body, body)
        return status, reason(answer), json.loads(answer)["error"]["message"]

    for query in ("", f"?face_id={face}&track_id={face}"):
        assert post(f"/api/similar{query}")[:2] == (400, "INVALID_PARAMETER"), query
    status, why, message = post("/api/similar?face_id=nonsense")
    assert (status, why) == (400, "INVALID_PARAMETER") and "'nonsense' is not a face or track id" in message
    status, why, message = post(
        f"/api/similar?track_id={face}", {"rejectedFaceIds": [face, face], "rejectedTrackIds": [face]}
    )
    assert (status, why, message) == (400, "INVALID_PARAMETER", "3 rejected faces and tracks; at most 2")
    for bad in (
        b"not json",
        b"[]",
        b'{"rejectedFaceIds": "x"}',
        b'{"rejectedFaceIds": [1]}',
        b'{"other": []}',
        b"\xff",
    ):
        status, why, message = post(f"/api/similar?face_id={face}", raw=bad)
        assert (status, why) == (400, "INVALID_PARAMETER") and "rejectedFaceIds" in message, bad
    status, why, _ = post(f"/api/similar?face_id={face}", {"rejectedTrackIds": ["not-an-id"]})
    assert (status, why) == (400, "INVALID_PARAMETER")
    # A body of rejections larger than max_rejections ids could be is not read.
    status, why, _ = post(f"/api/similar?face_id={face}", {"rejectedFaceIds": [face] * 100})
    assert (status, why) == (413, "REQUEST_TOO_LARGE")

    assert post("/api/search/gone", {"rejectedFaceIds": [face]})[:2] == (404, "QUERY_EXPIRED")
    assert post("/api/clip/gone", {"rejectedFaceIds": [face]})[:2] == (404, "QUERY_EXPIRED")
    status, _, body = served.request("GET", "/api/clip/gone/frames/0")
    assert (status, reason(body)) == (404, "QUERY_EXPIRED")


# -- 13: sessions -----------------------------------------------------------------------------------


def login(served: Served, body: bytes) -> tuple[int, str, bytes]:
    status, headers, answer = served.request("POST", "/api/session", {"Content-Type": "application/json"}, body)
    return status, headers.get("set-cookie", ""), answer


def test_bad_credentials_are_refused_not_crashed(serve: Serve) -> None:
    served = serve(auth_token=TOKEN)
    for cookie in ("rvs_session=\xe9", "rvs_session=caf\xe9\xe9", "rvs_session="):
        status, _, body = served.request("GET", "/api/media", {"Cookie": cookie})
        assert (status, reason(body)) == (401, "UNAUTHENTICATED"), cookie
    status, _, body = served.request("GET", "/api/media", {"Authorization": "Bearer caf\xe9"})
    assert (status, reason(body)) == (401, "UNAUTHENTICATED")
    for bad in (b'{"token":"\\ud800"}', b'{"token":"\xe9"}', b"[]", b'{"token": 5}', b"\xff"):
        status, _, body = login(served, bad)
        assert (status, reason(body)) == (400, "INVALID_PARAMETER"), bad
    status, _, body = login(served, json.dumps({"token": "caf\u00e9"}).encode())
    assert (status, reason(body)) == (401, "UNAUTHENTICATED")


def test_sessions_are_random_expire_and_end_at_logout(serve: Serve) -> None:
    served = serve(auth_token=TOKEN, web_session_ttl_s=2)
    token = json.dumps({"token": TOKEN}).encode()
    cookies = []
    for _ in range(2):
        status, cookie, _ = login(served, token)
        assert status == 204 and "Max-Age=2" in cookie and TOKEN not in cookie
        cookies.append(cookie.split(";")[0])
    assert cookies[0] != cookies[1]  # random, not derived from the token
    for cookie in cookies:
        assert served.request("GET", "/api/media", {"Cookie": cookie})[0] == 200

    status, headers, _ = served.request("DELETE", "/api/session", {"Cookie": cookies[0]})
    assert status == 204 and "Max-Age=0" in headers["set-cookie"]
    status, _, body = served.request("GET", "/api/media", {"Cookie": cookies[0]})
    assert (status, reason(body)) == (401, "UNAUTHENTICATED")  # logged out: at once
    assert served.request("GET", "/api/media", {"Cookie": cookies[1]})[0] == 200  # the other one lives

    time.sleep(2.5)
    status, _, body = served.request("GET", "/api/media", {"Cookie": cookies[1]})
    assert (status, reason(body)) == (401, "UNAUTHENTICATED")  # expired


# -- 14: frame boxes --------------------------------------------------------------------------------


@pytest.mark.parametrize("box", ["100,100,0,0", "0,100,100,0", "50,50,50,50", "-20,-20,-10,-10", "5,5,99999,99999"])
def test_any_box_of_four_numbers_draws_or_is_refused_never_500(serve: Serve, box: str) -> None:
    served = serve()
    _, media_id = photo(served)
    status, headers, body = served.request("GET", f"/api/media/{media_id}/frame?box={box}")
    assert (status, headers["content-type"]) == (200, "image/jpeg"), body


def test_a_file_is_hashed_once_per_version(tmp_path: Path) -> None:
    """The range requests of a playing video cost a stat() each, not a read of the whole video: the
    hash is remembered per (device, inode, size, mtime, ctime), and a new version is hashed again."""
    video = tmp_path / "long.mp4"
    with video.open("wb") as f:
        f.truncate(256 * 1024 * 1024)
    media_id = content_id(video)
    files = MediaFiles([tmp_path])

    def timed() -> float:
        started = time.perf_counter()
        assert files.verified(str(video), media_id) == video
        return time.perf_counter() - started

    first, again = timed(), timed()
    assert again < first / 20, (first, again)
    before = video.stat()
    with video.open("r+b") as f:  # one byte changed; size and mtime as they were: only ctime tells
        f.write(b"x")
    os.utime(video, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(NotServed, match="no longer what was indexed"):
        files.verified(str(video), media_id)


# -- 14: ids --------------------------------------------------------------------------------------


def test_media_ids_are_checked_and_never_echoed_whole(serve: Serve) -> None:
    served = serve()
    long_id = "a" * 8000
    for path in (f"/api/media/{long_id}", f"/api/media/{long_id}/file", "/api/media/x%20y/frame"):
        status, _, body = served.request("GET", path)
        assert (status, reason(body)) == (400, "INVALID_PARAMETER"), path[:40]
        assert len(body) < 600, body[:100]
    status, _, body = served.request("GET", "/api/media/" + "0" * 64)
    assert (status, reason(body)) == (404, "MEDIA_NOT_FOUND")
