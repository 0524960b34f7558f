"""The search page against a real embedded-mode instance (dlib ResNet, a real Milvus, the shared
clips): its HTTP API over plain HTTP, and what a person does in headless Chromium driven by
Playwright. The browser tests save screenshots under test-artifacts/web/ (RVS_TEST_ARTIFACTS)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from google.protobuf import json_format
from PIL import Image
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from rvs.query.app import QueryService
from rvs.query.config import QuerySettings
from rvs.query.web.server import WebServer
from rvs.query.web.stills import StillCache, StillKey
from rvs.v1 import rvs_pb2 as pb

from conftest import ROOT, free_port, shared
from embedded_app import Running, settings, start, wait_done
from exposition import missing

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Request

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("RVS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "web"
CHROMIUM = Path(os.environ.get("RVS_CHROMIUM", "/usr/bin/chromium"))
# Headless in a closed network: no background connections, no sandbox (CI runs as root).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "web-t0ken-for-tests"
MAX_REJECTIONS = 2  # RVS_MAX_REJECTIONS of the instance the tests search


def media(*parts: str) -> Path:
    return shared("media", *parts)


HAMILTON = ("face_recognition", "examples", "short_hamilton_clip.mp4")
MIRANDA = ("face_recognition", "examples", "lin-manuel-miranda.png")  # Lin-Manuel Miranda, in the clip
D18 = ("liveportrait", "assets", "examples", "driving", "d18.mp4")
D19 = ("liveportrait", "assets", "examples", "driving", "d19.jpg")  # the man in d18.mp4
OBAMA = ("face_recognition", "examples", "obama.jpg")
OBAMA2 = ("face_recognition", "examples", "obama2.jpg")


@dataclass
class Web:
    running: Running
    url: str
    ids: dict[str, str]  # file name -> media id
    clustered: dict[str, set[str]] = field(default_factory=dict)  # file name -> its people, before any edit

    def get(self, path: str, **kw: Any) -> tuple[int, Message, bytes]:
        return fetch(self.url + path, **kw)

    def post(self, path: str, body: object) -> tuple[int, Any]:
        """POST a JSON body; the status and the JSON answer."""
        status, _, answer = self.get(path, data=json.dumps(body).encode(), method="POST")
        return status, json.loads(answer)


def fetch(
    url: str,
    data: bytes | None = None,
    method: str | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def reason(body: bytes) -> str:
    """The ErrorInfo reason of an error answer (Google's JSON error format)."""
    error = json.loads(body)["error"]
    assert error["details"][0]["domain"] == "rvs.v1"
    return str(error["details"][0]["reason"])


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> Iterator[Web]:
    watch = tmp_path_factory.mktemp("watch")
    for parts in (HAMILTON, D18, D19, OBAMA):
        shutil.copy(media(*parts), watch)
    (watch / "broken.mp4").write_text("not a video")
    port = free_port()
    s = settings(
        watch, tmp_path_factory.mktemp("data"), free_port(), free_port(), milvus_uri, f"web_{int(time.time())}", port
    )
    # Few rejections per query, so that the page meets the engine's limit; people clustered soon after ingest.
    query = s.query.model_dump() | {"max_rejections": MAX_REJECTIONS, "people_interval_s": 0.5}
    s = s.model_copy(update={"query": QuerySettings(**query)})
    running = start(s, watch)
    try:
        listed = wait_done(running.stub, expected=5)
        web = Web(running, f"http://127.0.0.1:{port}", {Path(m.uri).name: m.media_id for m in listed})
        web.clustered = wait_clustered(web, "d18.mp4", "d19.jpg")
        yield web
    finally:
        running.channel.close()
        running.app.stop()


def people_of_media(web: Web) -> dict[str, set[str]]:
    """File name -> the people its photo face or video tracks are in now."""
    status, _, body = web.get("/api/people?page_size=1000")
    assert status == 200, body
    names = {media_id: name for name, media_id in web.ids.items()}
    found: dict[str, set[str]] = {}
    for person in json.loads(body)["people"]:
        answer = person_json(web, person["personId"])["answer"]
        for hit in [*answer["images"], *answer["videos"]]:
            found.setdefault(names[hit["mediaId"]], set()).add(person["personId"])
    return found


def wait_clustered(web: Web, *names: str, timeout_s: float = 60) -> dict[str, set[str]]:
    """People of media once the clustering job has placed each of `names` in someone."""
    deadline = time.monotonic() + timeout_s
    while not set(names) <= set(found := people_of_media(web)):
        assert time.monotonic() < deadline, f"{names} not clustered after {timeout_s} s: {found}"
        time.sleep(0.3)
    return found


def person_json(web: Web, person_id: str) -> dict[str, Any]:
    status, _, body = web.get(f"/api/people/{person_id}")
    assert status == 200, body
    return dict(json.loads(body))


def search_json(web: Web, photo: Path, query: str = "") -> dict[str, Any]:
    status, _, body = web.get(f"/api/search{query}", data=photo.read_bytes(), method="POST")
    assert status == 200, body
    return dict(json.loads(body))


def covers(segment: dict[str, Any], start_ms: int, end_ms: int) -> bool:
    """The segment (a track: the person followed over consecutive samples) spans start..end."""
    return int(segment["startMs"]) <= start_ms and int(segment["endMs"]) >= end_ms


# -- the HTTP API ---------------------------------------------------------------------------------


def test_search_answers_what_the_grpc_api_answers(web: Web) -> None:
    """One code path: the page's answer is the Search RPC's, in the proto's canonical JSON."""
    photo = media(*MIRANDA)
    answer = search_json(web, photo)
    result = json_format.ParseDict(answer["result"], pb.SearchResponse())
    assert result == web.running.stub.Search(pb.SearchRequest(image=photo.read_bytes()), timeout=60)
    assert [Path(v.uri).name for v in result.videos] == ["short_hamilton_clip.mp4"]
    # Miranda sings, until the cut to the audience just before 8 s: his track stops there.
    assert any(covers(s, 3000, 7000) and int(s["endMs"]) <= 8100 for s in answer["result"]["videos"][0]["segments"])

    # Another threshold with the faces kept from the upload: no photo sent, the same answer as gRPC's.
    status, _, body = web.get(f"/api/search/{answer['queryId']}?min_score=0.85")
    assert status == 200, body
    again = json_format.ParseDict(json.loads(body)["result"], pb.SearchResponse())
    assert again == web.running.stub.Search(pb.SearchRequest(image=photo.read_bytes(), min_score=0.85), timeout=60)
    assert {Path(v.uri).name for v in again.videos} == {"short_hamilton_clip.mp4", "d18.mp4"}


def test_errors_carry_the_grpc_reasons(web: Web) -> None:
    no_face = shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg").read_bytes()
    miranda = media(*MIRANDA).read_bytes()
    cases = [
        ("/api/search", b"\x89PNG garbage", 400, "DECODE_ERROR"),
        ("/api/search", b"", 400, "EMPTY_IMAGE"),
        ("/api/search", no_face, 400, "NO_FACE"),
        ("/api/search?face_index=9", miranda, 400, "FACE_INDEX_OUT_OF_RANGE"),
        ("/api/search?min_score=2", miranda, 400, "INVALID_PARAMETER"),
        ("/api/search?min_score=abc", miranda, 400, "INVALID_PARAMETER"),
        ("/api/search?kinds=people", miranda, 400, "INVALID_PARAMETER"),
        ("/api/search?top_k=-1", miranda, 400, "INVALID_PARAMETER"),
    ]
    for path, image, status, expected in cases:
        got, headers, body = web.get(path, data=image, method="POST")
        assert (got, reason(body)) == (status, expected), (path, body)
        assert headers["content-type"] == "application/json" and json.loads(body)["error"]["message"]
    for path in ("/api/search/no-such-query", "/api/media/nope", "/api/media/nope/file", "/api/media/nope/frame"):
        got, _, body = web.get(path)
        assert got == 404, path
        assert reason(body) == ("QUERY_EXPIRED" if "search" in path else "MEDIA_NOT_FOUND")
    hamilton = web.ids["short_hamilton_clip.mp4"]
    for query in ("t_ms=-5", "side=100000", "box=1,2,3", "box=nan,1,2,3", "t_ms=later"):
        got, _, body = web.get(f"/api/media/{hamilton}/frame?{query}")
        assert (got, reason(body)) == (400, "INVALID_PARAMETER"), query
    got, _, body = web.get(f"/api/media/{hamilton}/frame?t_ms=600000")
    assert (got, reason(body)) == (404, "FRAME_NOT_FOUND")
    got, _, body = web.get(f"/api/media/{web.ids['broken.mp4']}/frame")
    assert (got, reason(body)) == (400, "DECODE_ERROR")

    # A body over RVS_MAX_MESSAGE_BYTES is refused from its declared length, before it is read.
    host, port = web.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/api/search", body=b"x" * 1024, headers={"Content-Length": str(30 * 1024 * 1024)})
    response = conn.getresponse()
    assert (response.status, reason(response.read())) == (413, "REQUEST_TOO_LARGE")
    conn.close()


def test_video_file_is_served_with_range_requests(web: Web) -> None:
    original = media(*HAMILTON).read_bytes()
    path = f"/api/media/{web.ids['short_hamilton_clip.mp4']}/file"
    status, headers, body = web.get(path)
    assert (status, body, headers["content-type"], headers["accept-ranges"]) == (200, original, "video/mp4", "bytes")
    status, headers, body = web.get(path, headers={"Range": "bytes=1000-1999"})
    assert (status, headers["content-range"], body) == (206, f"bytes 1000-1999/{len(original)}", original[1000:2000])
    status, headers, body = web.get(path, headers={"Range": "bytes=-500"})  # the last 500 bytes
    assert (status, body) == (206, original[-500:])
    status, headers, _ = web.get(path, headers={"Range": f"bytes={len(original) + 10}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(original)}"


def test_frames_are_made_on_demand_and_cached(web: Web) -> None:
    hamilton = web.ids["short_hamilton_clip.mp4"]
    path = f"/api/media/{hamilton}/frame?t_ms=5005&side=320&box=209,26,292,135"
    started = time.perf_counter()
    status, headers, first = web.get(path)
    miss_s = time.perf_counter() - started
    assert (status, headers["content-type"], headers["x-rvs-cache"]) == (200, "image/jpeg", "miss"), first
    started = time.perf_counter()
    status, headers, second = web.get(path)
    hit_s = time.perf_counter() - started
    assert (status, headers["x-rvs-cache"], second) == (200, "hit", first)
    assert "immutable" in headers["cache-control"]
    print(f"frame at 5.005 s: made {miss_s * 1000:.1f} ms, from the cache {hit_s * 1000:.1f} ms")

    frame = Image.open(io.BytesIO(first)).convert("RGB")
    assert frame.size == (320, 180)  # the 640x360 clip fitted in 320
    # The face box, drawn in the frame's scale (x 209 -> 104.5), in the highlight colour.
    r, g, b = frame.getpixel((105, 40))
    assert r > 200 and 150 < g < 230 and b < 90, (r, g, b)

    photo = Image.open(io.BytesIO(web.get(f"/api/media/{web.ids['obama.jpg']}/frame?side=200")[2]))
    assert max(photo.size) == 200

    text = urllib.request.urlopen(web.running.metrics_url, timeout=10).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("rvs_web_stills_total", (("cache", "hit"),))] >= 1
    assert samples[("rvs_web_stills_total", (("cache", "miss"),))] >= 2
    assert samples[("rvs_web_requests_total", (("code", "200"), ("route", "/api/media/{media_id}/frame")))] >= 3
    assert missing(text, "query") == set()


def test_status_lists_every_item_with_progress(web: Web) -> None:
    status, _, body = web.get("/api/media")
    assert status == 200
    listed = {Path(m["uri"]).name: m for m in json.loads(body)["media"]}
    assert set(listed) == {"short_hamilton_clip.mp4", "d18.mp4", "d19.jpg", "obama.jpg", "broken.mp4"}
    clip = listed["short_hamilton_clip.mp4"]
    assert (clip["state"], clip["framesEmbedded"], clip["framesExpected"]) == ("MEDIA_STATE_DONE", 10, 10)
    assert (listed["broken.mp4"]["state"], listed["broken.mp4"]["errorReason"]) == (
        "MEDIA_STATE_FAILED",
        "DECODE_ERROR",
    )
    status, _, body = web.get("/api/media?page_size=3")
    page = json.loads(body)
    assert len(page["media"]) == 3 and page["nextPageToken"] == "3"


def units_found(web: Web, photo: Path, min_score: float = 0.85) -> dict[str, list[str]]:
    """File name -> the face (photos) or tracks (videos' segments) a search with `photo` finds: ids to
    name and move, whatever people other tests made of them."""
    result = search_json(web, photo, f"?min_score={min_score}")["result"]
    names = {media_id: name for name, media_id in web.ids.items()}
    found = {names[i["mediaId"]]: [i["faceId"]] for i in result["images"]}
    found |= {names[v["mediaId"]]: [s["trackId"] for s in v["segments"]] for v in result["videos"]}
    return found


def unique(name: str) -> str:
    """A name of this test's own: other tests' names and merges leave it alone."""
    return f"{name} {uuid.uuid4().hex[:6]}"


def test_people_are_clustered_listed_and_opened(web: Web) -> None:
    # Right after ingest (the fixture looked before any test edits), the photo d19.jpg and the man's
    # track in d18.mp4 are one person.
    assert len(web.clustered["d19.jpg"]) == 1 and web.clustered["d19.jpg"] <= web.clustered["d18.mp4"]
    status, _, body = web.get("/api/people")
    assert status == 200, body
    listed = json.loads(body)
    assert listed["total"] == len(listed["people"]) >= 1 and listed["nextPageToken"] == ""
    for person in listed["people"]:
        assert person["personId"].startswith("person-") and person["faces"] >= 1 and person["mediaCount"] >= 1
        assert person["faceId"] and float(person["box"]["x2"]) > float(person["box"]["x1"])
    assert [p["faces"] for p in listed["people"]] == sorted((p["faces"] for p in listed["people"]), reverse=True)

    # One code path: the page's person is the GetPerson RPC's, in the proto's canonical JSON.
    person_id = listed["people"][0]["personId"]
    got = json_format.ParseDict(person_json(web, person_id), pb.GetPersonResponse())
    assert got == web.running.stub.GetPerson(pb.GetPersonRequest(person_id=person_id), timeout=60)
    assert got.answer.images or got.answer.videos

    unknown = "person-" + "0" * 16
    for path, expected in [
        (f"/api/people/{unknown}", (404, "PERSON_NOT_FOUND")),
        ("/api/people/someone", (400, "INVALID_PARAMETER")),
        ("/api/people?page_token=later", (400, "INVALID_PAGE_TOKEN")),
        ("/api/people?page_size=0", (400, "INVALID_PARAMETER")),
    ]:
        status, _, body = web.get(path)
        assert (status, reason(body)) == expected, path
    # Opening a person scores all of its faces: another site's page may not make the browser ask.
    status, _, body = web.get(f"/api/people/{person_id}", headers={"Sec-Fetch-Site": "cross-site"})
    assert (status, reason(body)) == (403, "CROSS_ORIGIN")


def test_people_are_named_split_merged_and_searched_over_http(web: Web) -> None:
    found = units_found(web, media(*D19))
    face, track = found["d19.jpg"][0], found["d18.mp4"][0]
    name, renamed = unique("Man"), unique("Renamed")

    # "This is <name>": a name nobody has makes a person of it; the same name again is that person.
    status, man = web.post("/api/people/move", {"unitIds": [face], "name": name})
    assert status == 200 and man["name"] == name and man["units"] == 1, man
    status, again = web.post("/api/people/move", {"unitIds": [track], "name": name.upper()})
    assert (status, again["personId"], again["units"], again["mediaCount"]) == (200, man["personId"], 2, 2)
    answer = person_json(web, man["personId"])["answer"]
    assert [i["faceId"] for i in answer["images"]] == [face]
    assert [s["trackId"] for v in answer["videos"] for s in v["segments"]] == [track]

    status, person = web.post(f"/api/people/{man['personId']}", {"name": renamed})
    assert (status, person["name"]) == (200, renamed)
    status, _, body = web.get(f"/api/people?named_only=true&name_prefix={urllib.parse.quote(renamed.lower())}")
    assert [p["personId"] for p in json.loads(body)["people"]] == [man["personId"]]

    # Searched by person, by id or by name: the Search RPC's answer.
    by_id = pb.SearchRequest(person_id=man["personId"])
    for query in (f"person_id={man['personId']}", f"person_name={urllib.parse.quote(renamed.upper())}"):
        status, _, body = web.get(f"/api/similar?{query}", data=b"", method="POST")
        assert status == 200, body
        result = json_format.ParseDict(json.loads(body)["result"], pb.SearchResponse())
        assert result == web.running.stub.Search(by_id, timeout=60), query
        assert {"d18.mp4", "d19.jpg"} <= {Path(h.uri).name for h in [*result.images, *result.videos]}

    # Split: the track to a new, unnamed person; which cannot take a name someone has.
    status, other = web.post("/api/people/move", {"unitIds": [track]})
    assert status == 200 and other["name"] == "" and other["personId"] != man["personId"], other
    status, error = web.post(f"/api/people/{other['personId']}", {"name": renamed.lower()})
    assert (status, error["error"]["details"][0]["reason"]) == (400, "NAME_TAKEN")
    assert "merge the two people instead" in error["error"]["message"]

    # Merged again: the other person is no longer listed; its id (a link to it) opens the one merged into.
    status, merged = web.post(f"/api/people/{man['personId']}/merge", {"people": [other["personId"]]})
    assert (status, merged["personId"], merged["name"], merged["mediaCount"]) == (200, man["personId"], renamed, 2)
    listed = json.loads(web.get("/api/people?page_size=1000")[2])["people"]
    assert other["personId"] not in {p["personId"] for p in listed}
    assert person_json(web, other["personId"])["person"]["personId"] == man["personId"]
    status, moved = web.post("/api/people/move", {"unitIds": [track], "personId": man["personId"]})
    assert (status, moved["personId"], moved["units"]) == (200, man["personId"], 2)


def test_people_edits_refused_with_their_reasons(web: Web) -> None:
    face = units_found(web, media(*D19))["d19.jpg"][0]
    unknown = "person-" + "0" * 16
    cases: list[tuple[str, object, tuple[int, str]]] = [
        ("/api/people/move", {"unitIds": ["f" * 64 + ":0:0"], "name": unique("Nobody")}, (404, "FACE_NOT_FOUND")),
        ("/api/people/move", {"unitIds": [face], "personId": unknown}, (404, "PERSON_NOT_FOUND")),
        ("/api/people/move", {"unitIds": [face], "personId": unknown, "name": "X"}, (400, "INVALID_PARAMETER")),
        ("/api/people/move", {"unitIds": [], "name": "X"}, (400, "INVALID_PARAMETER")),
        ("/api/people/move", {"unitIds": [face], "name": "a\x00b"}, (400, "INVALID_NAME")),
        ("/api/people/move", {"unitIds": face}, (400, "INVALID_PARAMETER")),
        (f"/api/people/{unknown}", {"name": "X"}, (404, "PERSON_NOT_FOUND")),
        (f"/api/people/{unknown}", {"nom": "X"}, (400, "INVALID_PARAMETER")),
        (f"/api/people/{unknown}", {}, (400, "INVALID_PARAMETER")),
        (f"/api/people/{unknown}/merge", {"people": [unknown]}, (404, "PERSON_NOT_FOUND")),
    ]
    for path, body, expected in cases:
        status, answer = web.post(path, body)
        assert (status, answer["error"]["details"][0]["reason"]) == expected, (path, body, answer)
    status, _, answer = web.get("/api/people/move", data=b"not json", method="POST")
    assert (status, reason(answer)) == (400, "INVALID_PARAMETER")
    for query in (f"person_name={urllib.parse.quote(unique('Nobody'))}", f"person_id={unknown}"):
        status, _, answer = web.get(f"/api/similar?{query}", data=b"", method="POST")
        assert (status, reason(answer)) == (404, "PERSON_NOT_FOUND"), query
    status, _, answer = web.get(f"/api/similar?person_id={unknown}&face_id={face}", data=b"", method="POST")
    assert (status, reason(answer)) == (400, "INVALID_PARAMETER")


@dataclass
class Secured:
    url: str
    client: ssl.SSLContext  # trusts the test CA


@pytest.fixture(scope="module")
def secured(web: Web, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A second query service on the same index and catalog, with RVS_AUTH_TOKEN and TLS files."""
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key, chain = tmp / "server.key", tmp / "chain.pem"
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(chain))
    app = web.running.app
    assert app.store is not None and app.query is not None
    port = free_port()
    settings = QuerySettings(
        **app.query.settings.model_dump()  # with the watched folder the embedded app added
        | {
            "port": 0,
            "web_port": port,
            "auth_token": TOKEN,
            "tls_cert_file": chain,
            "tls_key_file": key,
            "max_message_bytes": 256 * 1024,
            "max_query_video_bytes": 128 * 1024,
            "people_clustering": False,  # one clustering job per index: the first instance's
        }
    )
    service = QueryService(settings, app.query_pipeline, app.store, app.catalog, CollectorRegistry())
    service.start()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    yield Secured(f"https://127.0.0.1:{port}", client)
    service.stop(0)


def test_token_and_tls_as_the_grpc_api(web: Web, secured: Secured) -> None:
    """With RVS_AUTH_TOKEN and TLS files set, the page speaks HTTPS with the gRPC server's
    certificate and every API call needs the token: a bearer header, or the session cookie."""
    base, client = secured.url, secured.client
    port = int(base.rsplit(":", 1)[1])
    assert fetch(base + "/", context=client)[0] == 200  # the page itself holds no data
    assert json.loads(fetch(base + "/api/session", context=client)[2]) == {"authRequired": True}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Cookie": "rvs_session=forged"},
    ):
        status, _, body = fetch(base + "/api/media", headers=headers, context=client)
        assert (status, reason(body)) == (401, "UNAUTHENTICATED"), headers
    status, _, body = fetch(base + "/api/media", headers={"Authorization": f"Bearer {TOKEN}"}, context=client)
    assert status == 200 and len(json.loads(body)["media"]) == 5

    login = {"content-type": "application/json"}
    refused = fetch(base + "/api/session", json.dumps({"token": "wrong"}).encode(), "POST", login, client)
    assert (refused[0], reason(refused[2])) == (401, "UNAUTHENTICATED")
    status, headers, _ = fetch(base + "/api/session", json.dumps({"token": TOKEN}).encode(), "POST", login, client)
    cookie = headers["set-cookie"]
    assert status == 204 and TOKEN not in cookie
    assert {"HttpOnly", "Secure", "SameSite=strict"} <= {p.strip() for p in cookie.split(";")}
    session = {"Cookie": cookie.split(";")[0]}
    frame = f"/api/media/{web.ids['obama.jpg']}/frame"
    assert fetch(base + frame, headers=session, context=client)[0] == 200
    assert fetch(base + frame, context=client)[0] == 401

    # A streamed body over the limit (no Content-Length) is cut off as it is read.
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=client, timeout=30)
    conn.request(
        "POST",
        "/api/search",
        body=iter([b"x" * 300_000]),
        headers={"Authorization": f"Bearer {TOKEN}"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert (response.status, reason(response.read())) == (413, "REQUEST_TOO_LARGE")
    conn.close()
    with pytest.raises(ConnectionError):  # plain HTTP is not spoken: the server hangs up
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/media", timeout=10)


# -- in the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is not at {CHROMIUM}: the search page tests need it (apt-get install chromium, as .ci/run "
            "does), or set RVS_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright starts it headless with a fresh profile of its own.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, web: Web) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(web.url)
    yield page
    context.close()
    assert errors == [], f"the page's scripts failed: {errors}"


def uploads(page: Page) -> list[Request]:
    """Requests that send a photo or a clip, recorded from now on."""
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.method == "POST" and path_of(r.url) in UPLOADS else None)
    return sent


UPLOADS = ("/api/search", "/api/clip")


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_upload_shows_the_video_segment_and_plays_it(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    hamilton = web.ids["short_hamilton_clip.mp4"]
    ranges: list[int] = []
    page.on("response", lambda r: ranges.append(r.status) if r.url.endswith(f"/{hamilton}/file") else None)
    started = time.perf_counter()
    page.set_input_files("#file", str(media(*MIRANDA)))
    card = page.locator(f'.video[data-media-id="{hamilton}"]')
    expect(card).to_be_visible()
    print(f"upload to results shown: {time.perf_counter() - started:.2f} s")
    expect(page.locator(".video")).to_have_count(1)  # nobody else at the default threshold
    expect(page.locator("#summary")).to_contain_text("1 video")

    segments = card.locator(".segment")
    spans = [
        (int(s.get_attribute("data-start-ms") or 0), int(s.get_attribute("data-end-ms") or 0)) for s in segments.all()
    ]
    index = next(i for i, (a, b) in enumerate(spans) if a <= 3000 and b >= 7000)
    start_ms, _ = spans[index]
    segment, timeline = segments.nth(index), card.locator(".timeline")
    bar, track = segment.bounding_box(), timeline.bounding_box()
    assert bar is not None and track is not None
    duration = int(card.get_attribute("data-duration-ms") or 0)
    assert abs((bar["x"] - track["x"]) - track["width"] * start_ms / duration) < 3  # drawn where it happens

    segment.click()
    expect(segment).to_have_class(re.compile(r"\bactive\b"))
    position = page.wait_for_function(
        """(id) => {
            const v = document.querySelector(`.video[data-media-id="${id}"] video`);
            return v && v.readyState >= 2 && !v.seeking && v.currentTime > 0 && v.currentTime;
        }""",
        arg=hamilton,
    ).json_value()
    assert start_ms / 1000 - 0.05 <= position <= start_ms / 1000 + 3, position
    assert 206 in ranges  # the browser seeks with Range requests
    best = card.locator(".player figure.best img")
    expect(best).to_have_attribute("alt", "Best frame of short_hamilton_clip.mp4 at 0:05.0, the face boxed")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=best.element_handle())
    path = screenshot(page, "search.png")
    assert path.stat().st_size > 10_000


def test_threshold_slider_searches_again_without_uploading(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    sent = uploads(page)
    page.set_input_files("#file", str(media(*MIRANDA)))
    expect(page.locator(".video")).to_have_count(1)
    expect(page.locator("#threshold-value")).to_have_text("0.92")

    with page.expect_response(lambda r: "/api/search/" in r.url) as lower:
        page.locator("#threshold").fill("0.85")
    assert "min_score=0.85" in lower.value.url and lower.value.request.method == "GET"
    expect(page.locator(".video")).to_have_count(2)
    expect(page.locator(f'.video[data-media-id="{web.ids["d18.mp4"]}"]')).to_be_visible()

    with page.expect_response(lambda r: "/api/search/" in r.url):
        page.locator("#threshold").fill("0.99")
    expect(page.locator(".video")).to_have_count(0)
    expect(page.locator("#summary")).to_contain_text("No match")
    assert len(sent) == 1  # the photo went up once
    screenshot(page, "threshold.png")


def test_picking_another_face_of_the_query_photo(web: Web, page: Page, tmp_path: Path) -> None:
    # Lin-Manuel Miranda large on the left, the man of d18.mp4 smaller on the right.
    canvas = Image.new("RGB", (900, 520), (110, 110, 110))
    canvas.paste(Image.open(media(*MIRANDA)).convert("RGB").crop((230, 100, 560, 520)).resize((330, 420)), (40, 50))
    canvas.paste(Image.open(media(*D19)).convert("RGB").crop((150, 110, 560, 700)).resize((180, 259)), (620, 130))
    photo = tmp_path / "two.jpg"
    canvas.save(photo, quality=95)
    from playwright.sync_api import expect

    sent = uploads(page)
    page.set_input_files("#file", str(photo))
    faces = page.locator("#faces .face")
    expect(faces).to_have_count(2)
    expect(faces.nth(0)).to_have_attribute("aria-pressed", "true")
    hamilton, d18 = (f'.video[data-media-id="{web.ids[n]}"]' for n in ("short_hamilton_clip.mp4", "d18.mp4"))
    expect(page.locator(hamilton)).to_be_visible()
    expect(page.locator(d18)).to_have_count(0)

    faces.nth(1).click()
    expect(faces.nth(1)).to_have_attribute("aria-pressed", "true")
    expect(page.locator(d18)).to_be_visible()
    expect(page.locator(hamilton)).to_have_count(0)
    assert len(sent) == 1
    screenshot(page, "faces.png")


# A file dropped on the page or pasted into it, as the browser delivers it.
DELIVER = """([how, b64, type, name]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type }));
    const event = how === "drop"
        ? new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true })
        : new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
    document.getElementById("drop").dispatchEvent(event);
}"""
DASH = " \u2013 "  # between the times of a span, as the page writes it
LOADED = "(img) => img.complete && img.naturalWidth > 0"
# The video's position once it is playing where it was sent.
PLAYING = """(id) => {
    const v = document.querySelector(`.video[data-media-id="${id}"] video`);
    return v && v.readyState >= 2 && !v.seeking && v.currentTime > 0 && v.currentTime;
}"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def clock(ms: int | str) -> str:
    """A time as the page writes it: 0:05.0."""
    s = int(ms) / 1000
    m = int(s // 60)
    return f"{m}:{s - m * 60:04.1f}"


def boxed(jpeg: bytes, box: dict[str, float], scale: float) -> bool:
    """The picture has the face box drawn in the highlight colour (255, 204, 0, give or take JPEG's
    blur) on the left side of `box`: pixels of the original, `scale` of them to one of the picture."""
    picture = Image.open(io.BytesIO(jpeg)).convert("RGB")
    x = round(float(box["x1"]) / scale)
    y = round((float(box["y1"]) + float(box["y2"])) / 2 / scale)
    pixels = [picture.getpixel((x + dx, y)) for dx in (-1, 0, 1)]
    return any(r > 200 and 150 < g < 230 and b < 130 for r, g, b in pixels)


def test_drop_and_paste_a_photo(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    page.evaluate(DELIVER, ["drop", b64(media(*D19).read_bytes()), "image/jpeg", "query"])
    expect(page.locator(f'.video[data-media-id="{web.ids["d18.mp4"]}"]')).to_be_visible()

    page.evaluate(DELIVER, ["paste", b64(media(*OBAMA2).read_bytes()), "image/jpeg", "query"])
    photo = page.locator(f'.photo[data-media-id="{web.ids["obama.jpg"]}"] img')
    expect(photo).to_be_visible()
    expect(page.locator(".video")).to_have_count(0)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=photo.element_handle())


def lower_threshold(page: Page, value: str) -> dict[str, Any]:
    """Move the threshold; the answer of the search it makes."""
    with page.expect_response(lambda r: "/api/search/" in r.url or "/api/clip/" in r.url) as answered:
        page.locator("#threshold").fill(value)
    return dict(answered.value.json()["result"])


def test_each_segment_shows_its_best_frame_boxed_and_plays_its_track(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    hamilton = web.ids["short_hamilton_clip.mp4"]
    page.set_input_files("#file", str(media(*MIRANDA)))
    expect(page.locator(".video")).to_have_count(1)
    result = lower_threshold(page, "0.85")  # two tracks in the clip now
    (video,) = [v for v in result["videos"] if v["mediaId"] == hamilton]
    segments = video["segments"]
    assert len(segments) >= 2, segments
    card = page.locator(f'.video[data-media-id="{hamilton}"]')
    items = card.locator(".segment-item")
    expect(items).to_have_count(len(segments))
    for item, seg in zip(items.all(), segments, strict=True):
        assert item.get_attribute("data-track-id") == seg["trackId"]
        expect(item.locator(".when")).to_have_text(f"{clock(seg['startMs'])}{DASH}{clock(seg['endMs'])}")
        img = item.locator("button.thumb img")
        expect(img).to_have_attribute("alt", f"Best frame at {clock(seg['bestTimeMs'])}, the face boxed")
        page.wait_for_function(LOADED, arg=img.element_handle())
        # The picture shown is the segment's best frame, with its face boxed.
        src = str(img.evaluate("(img) => img.currentSrc"))
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(src).query)["t_ms"] == [seg["bestTimeMs"]]
        status, _, jpeg = fetch(src)
        assert status == 200 and boxed(jpeg, seg["bestBox"], scale=2), src  # 640x360 in 320

    # The later track plays from its own start, not from the video's.
    later = max(range(len(segments)), key=lambda i: int(segments[i]["startMs"]))
    start_s, end_s = int(segments[later]["startMs"]) / 1000, int(segments[later]["endMs"]) / 1000
    assert start_s > 5
    items.nth(later).get_by_role(
        "button", name=f"Play short_hamilton_clip.mp4 from {clock(segments[later]['startMs'])}"
    ).click()
    expect(card.locator(".timeline .segment").nth(later)).to_have_class(re.compile(r"\bactive\b"))
    position = page.wait_for_function(PLAYING, arg=hamilton).json_value()
    assert start_s - 0.05 <= position <= end_s + 0.5, position
    screenshot(page, "segments.png")


def test_more_like_this_searches_with_a_face_or_a_track_of_the_index(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    sent = uploads(page)
    page.set_input_files("#file", str(media(*MIRANDA)))
    expect(page.locator(".video")).to_have_count(1)
    lower_threshold(page, "0.85")  # the man of d18.mp4 scores 0.87 against Miranda
    hamilton, d18 = (
        page.locator(f'.video[data-media-id="{web.ids[n]}"]') for n in ("short_hamilton_clip.mp4", "d18.mp4")
    )
    d19 = page.locator(f'.photo[data-media-id="{web.ids["d19.jpg"]}"]')
    obama = page.locator(f'.photo[data-media-id="{web.ids["obama.jpg"]}"]')
    expect(d18).to_be_visible()
    expect(page.locator("#searched")).to_have_text("Searched with face 1 of 2 in lin-manuel-miranda.png.")

    # A video segment: its track.
    item = d18.locator(".segment-item").first
    track_id, label = item.get_attribute("data-track-id"), f"d18.mp4 {item.locator('.when').inner_text()}"
    with page.expect_request(lambda r: path_of(r.url) == "/api/similar") as asked:
        item.get_by_role("button", name=f"More like this: {label}", exact=True).click()
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(asked.value.url).query)["track_id"] == [track_id]
    expect(page.locator("#searched")).to_have_text(f"Searched with the person in {label} (more like this).")
    expect(page.locator("#query-img")).to_have_attribute("alt", f"The face searched with: {label}")
    expect(page.locator("#threshold-value")).to_have_text("0.92")  # a new query: the model's threshold
    expect(hamilton).to_have_count(0)  # Miranda is not the man of d18.mp4
    expect(d18).to_be_visible()
    expect(d19).to_be_visible()  # the same man, in a photo
    expect(obama).to_have_count(0)

    # A photo: its face.
    face_id = d19.get_attribute("data-face-id")
    with page.expect_request(lambda r: path_of(r.url) == "/api/similar") as asked:
        d19.get_by_role("button", name="More like this: d19.jpg", exact=True).click()
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(asked.value.url).query)["face_id"] == [face_id]
    expect(page.locator("#searched")).to_have_text("Searched with the face in d19.jpg (more like this).")
    expect(d19.locator(".score")).to_have_text("1.000")  # the very face
    expect(d18).to_be_visible()
    expect(hamilton).to_have_count(0)
    page.wait_for_function(LOADED, arg=page.locator("#query-img").element_handle())
    assert len(sent) == 1  # nothing uploaded but the first photo
    screenshot(page, "more-like-this.png")


def test_not_this_person_drops_results_and_undo_brings_them_back(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    sent = uploads(page)
    page.set_input_files("#file", str(media(*MIRANDA)))
    expect(page.locator(".video")).to_have_count(1)
    lower_threshold(page, "0.85")
    hamilton, d18 = (
        page.locator(f'.video[data-media-id="{web.ids[n]}"]') for n in ("short_hamilton_clip.mp4", "d18.mp4")
    )
    d19, obama = (page.locator(f'.photo[data-media-id="{web.ids[n]}"]') for n in ("d19.jpg", "obama.jpg"))
    for shown in (hamilton, d18, d19, obama):
        expect(shown).to_be_visible()
    summary = page.locator("#rejections-summary")

    item = d18.locator(".segment-item").first
    track_id, label = item.get_attribute("data-track-id"), f"d18.mp4 {item.locator('.when').inner_text()}"
    with page.expect_request(lambda r: r.method == "POST" and "/api/search/" in r.url) as asked:
        item.get_by_role("button", name=f"Not this person: {label}", exact=True).click()
    assert json.loads(asked.value.post_data or "") == {"rejectedFaceIds": [], "rejectedTrackIds": [track_id]}
    expect(d18).to_have_count(0)
    expect(d19).to_have_count(0)  # the same man: more like the rejected track than like Miranda
    expect(hamilton).to_be_visible()
    expect(obama).to_be_visible()
    expect(summary).to_contain_text("Not this person: 1 result rejected")
    expect(page.locator("#rejected-list li")).to_have_text([f"{label}Undo"])
    expect(page.get_by_role("button", name=f"Undo: {label} may be this person", exact=True)).to_be_focused()

    # Searching again (another threshold) keeps the query's rejections.
    lower_threshold(page, "0.84")
    expect(d18).to_have_count(0)
    expect(hamilton).to_be_visible()

    obama.get_by_role("button", name="Not this person: obama.jpg", exact=True).click()
    expect(obama).to_have_count(0)
    expect(summary).to_contain_text("2 results rejected")
    expect(page.locator("#undo-all")).to_be_visible()

    # One more than the engine takes: its error, and nothing else changes.
    first = hamilton.locator(".segment-item").first
    third = f"short_hamilton_clip.mp4 {first.locator('.when').inner_text()}"
    first.get_by_role("button", name=f"Not this person: {third}", exact=True).click()
    expect(page.locator("#query-error")).to_have_text(
        f"{third} was not rejected: 3 rejected faces and tracks; at most {MAX_REJECTIONS} (INVALID_PARAMETER)"
    )
    expect(hamilton).to_be_visible()
    expect(summary).to_contain_text("2 results rejected")
    expect(page.locator("#rejected-list li")).to_have_count(2)

    page.get_by_role("button", name="Undo: obama.jpg may be this person", exact=True).click()
    expect(obama).to_be_visible()
    expect(d18).to_have_count(0)
    expect(summary).to_contain_text("1 result rejected")
    page.get_by_role("button", name=f"Undo: {label} may be this person", exact=True).click()
    expect(d18).to_be_visible()
    expect(d19).to_be_visible()
    expect(page.locator("#rejections")).to_be_hidden()
    assert len(sent) == 1
    screenshot(page, "not-this-person.png")


def query_clip(path: Path) -> Path:
    """A 10 s clip on a real background: Lin-Manuel Miranda from 0 to 4 s, then the man of d18.mp4
    from 5 to 9 s (the photos pasted in, as tests/corpus.py makes its clips)."""
    from media_factory import Appearance, cfr_times, load_rgb, scene, write_video

    background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (640, 360))
    photos = {media(*MIRANDA): load_rgb(media(*MIRANDA), (322, 280)), media(*D19): load_rgb(media(*D19), (280, 280))}
    shown = [Appearance(media(*MIRANDA), 0, 4, x=20, y=40), Appearance(media(*D19), 5, 9, x=340, y=40)]
    return write_video(path, scene(background, shown, photos), cfr_times(10, 25), gop=25)


def test_a_dropped_clip_shows_each_of_its_people_with_where_they_appear(web: Web, page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    clip = query_clip(tmp_path / "query.mp4")
    sent = uploads(page)
    with page.expect_response(lambda r: path_of(r.url) == "/api/clip") as answered:
        page.evaluate(DELIVER, ["drop", b64(clip.read_bytes()), "video/mp4", "query.mp4"])
    result = answered.value.json()["result"]
    # One code path: the SearchByVideo RPC answers the same.
    grpc_answer = web.running.stub.SearchByVideo(pb.SearchByVideoRequest(video=clip.read_bytes()), timeout=60)
    assert json_format.ParseDict(result, pb.SearchByVideoResponse()) == grpc_answer
    tracks = result["tracks"]
    spans = [(int(t["startMs"]), int(t["endMs"])) for t in tracks]
    assert len(spans) == 2 and abs(spans[0][0]) <= 1000 and abs(spans[1][0] - 5000) <= 1000, spans
    people = page.locator("#people .person")
    expect(people).to_have_count(2)
    expect(page.locator("#searched")).to_have_text(
        f"Searched with the clip query.mp4 ({clock(result['durationMs'])}, {result['samples']} samples): 2 people."
    )
    for i, (person, track) in enumerate(zip(people.all(), tracks, strict=True)):
        caption = f"Person {i + 1} · {clock(track['startMs'])}{DASH}{clock(track['endMs'])} in the clip"
        expect(person.locator("figcaption")).to_contain_text(caption)
        img = person.locator(".person-frame img")
        expect(img).to_have_attribute(
            "alt", f"Person {i + 1} in the clip at {clock(track['bestTimeMs'])}, the face boxed"
        )
        page.wait_for_function(LOADED, arg=img.element_handle())
        status, _, jpeg = fetch(str(img.evaluate("(img) => img.currentSrc")))
        assert status == 200 and boxed(jpeg, track["bestBox"], scale=2)  # the query clip's own frame

    miranda, man = people.nth(0), people.nth(1)
    expect(miranda.locator(f'.video[data-media-id="{web.ids["short_hamilton_clip.mp4"]}"]')).to_be_visible()
    expect(miranda.locator(".video, .photo")).to_have_count(1)
    expect(man.locator(f'.video[data-media-id="{web.ids["d18.mp4"]}"]')).to_be_visible()
    expect(man.locator(f'.photo[data-media-id="{web.ids["d19.jpg"]}"]')).to_be_visible()
    expect(man.locator(".video, .photo")).to_have_count(2)
    expect(page.locator("#summary")).to_have_text(
        "2 people in the clip; 2 of them found in the index at a score of 0.92 or more."
    )

    # The threshold searches the people kept from the upload again: the clip is not sent again.
    again = lower_threshold(page, "0.99")  # Hamilton scores 0.98; the man's photo 0.99 and more
    assert [t["answer"]["matched"] for t in again["tracks"]] == [False, True]
    expect(miranda.locator(".no-match")).to_have_text("No match: nobody in the index scores 0.99 or more.")
    expect(man.locator(f'.photo[data-media-id="{web.ids["d19.jpg"]}"]')).to_be_visible()
    assert len(sent) == 1
    screenshot(page, "clip.png")


def test_a_clip_too_large_or_undecodable_is_refused_clearly(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    error = page.locator("#query-error")
    sent = uploads(page)
    page.evaluate(DELIVER, ["drop", b64(b"not a video at all"), "video/mp4", "broken.mp4"])
    expect(error).to_contain_text("cannot read the query clip:")
    expect(error).to_contain_text("(DECODE_ERROR)")
    expect(page.locator("#people .person")).to_have_count(0)
    assert len(sent) == 1

    # Over RVS_MAX_QUERY_VIDEO_BYTES: the page says so without sending it...
    limit = web.running.app.query.settings.max_query_video_bytes  # type: ignore[union-attr]
    too_large = """([size, name]) => {
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(size)], name, { type: "video/mp4" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
    }"""
    page.evaluate(too_large, [limit + 1, "long.mp4"])
    expect(error).to_have_text(
        f"long.mp4 is {limit + 1} bytes; the largest clip accepted is {limit} bytes (RVS_MAX_QUERY_VIDEO_BYTES): "
        "nothing was sent. (VIDEO_TOO_LARGE)"
    )
    assert len(sent) == 1
    # ...and a page that could not ask for the limits is answered so by the server.
    page.route("**/api/limits", lambda route: route.abort())
    page.reload()
    expect(page.locator("#status-list .item")).to_have_count(5)
    with page.expect_response(lambda r: path_of(r.url) == "/api/clip") as answered:
        page.evaluate(too_large, [limit + 1, "long.mp4"])
    assert answered.value.status == 413
    expect(error).to_have_text(
        f"the clip is {limit + 1} bytes or more; the largest accepted is {limit} (RVS_MAX_QUERY_VIDEO_BYTES) "
        "(VIDEO_TOO_LARGE)"
    )


def person_card(page: Page, person_id: str) -> Locator:
    return page.locator(f'#people-list .person-card[data-person-id="{person_id}"]')


def loaded(page: Page, img: Locator) -> None:
    img.scroll_into_view_if_needed()  # lazy images load once in view
    page.wait_for_function(LOADED, arg=img.element_handle())


def test_people_view_shows_a_face_of_each_and_renames_one(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    # People of this test's own: obama.jpg's face (alone, clustering leaves it in nobody) and a
    # track of Miranda's, each moved to a new person.
    face = units_found(web, media(*OBAMA2))["obama.jpg"][0]
    track = units_found(web, media(*MIRANDA))["short_hamilton_clip.mp4"][0]
    (_, obama), (_, miranda) = (web.post("/api/people/move", {"unitIds": [unit]}) for unit in (face, track))
    page.get_by_role("link", name="People", exact=True).click()
    expect(page.get_by_role("link", name="People", exact=True)).to_have_attribute("aria-current", "page")
    expect(page.locator("#search-view")).to_be_hidden()
    card = person_card(page, obama["personId"])
    expect(card.locator(".person-name")).to_have_text("Unnamed")
    expect(card.locator(".counts")).to_have_text("1 face in 1 photo or video")
    expect(page.locator("#people-summary")).to_contain_text("most faces first")
    thumbnail = card.locator(".person-open img")
    assert f"/api/media/{web.ids['obama.jpg']}/frame?" in str(thumbnail.get_attribute("src"))
    for img in page.locator("#people-list .person-open img").all():
        loaded(page, img)

    label, name = f"Unnamed person {obama['personId'][-6:]}", unique("Barack Obama")
    card.get_by_role("button", name=f"Rename {label}", exact=True).click()
    field = card.get_by_role("textbox", name=f"New name for {label} (empty: unnamed)")
    expect(field).to_be_focused()
    field.fill(name)
    field.press("Enter")
    expect(page.locator("#people-status")).to_have_text(f"{label} is now {name}.")
    expect(card.locator(".person-name")).to_have_text(name)
    expect(card.locator(".person-open")).to_be_focused()
    expect(page.locator(f'#people-names option[value="{name}"]')).to_have_count(1)

    # Another person may not take the name: the form says why, and stays open.
    other, other_label = person_card(page, miranda["personId"]), f"Unnamed person {miranda['personId'][-6:]}"
    other.get_by_role("button", name=f"Rename {other_label}", exact=True).click()
    other.get_by_role("textbox", name=f"New name for {other_label} (empty: unnamed)").fill(name.upper())
    other.get_by_role("button", name="Save").click()
    expect(other.locator(".inline-form .error")).to_contain_text("merge the two people instead (NAME_TAKEN)")
    expect(other.locator(".person-name")).to_have_text("Unnamed")
    page.keyboard.press("Escape")
    expect(other.locator(".inline-form")).to_be_hidden()
    screenshot(page, "people.png")


def test_an_opened_person_shows_its_photo_and_segment_and_splits_merges_and_searches(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    found = units_found(web, media(*D19))
    face, track = found["d19.jpg"][0], found["d18.mp4"][0]
    name, split = unique("The man of d18"), unique("Split")
    _, man = web.post("/api/people/move", {"unitIds": [face, track], "name": name})
    page.goto(f"{web.url}/#/people/{man['personId']}")
    panel = page.locator("#person-panel")
    expect(page.locator("#person-title")).to_have_text(name)
    expect(page.locator("#people-panel")).to_be_hidden()
    # Drawn as a search answer is: the photo, the video's timeline and its segment with its best frame.
    photo = panel.locator(f'.photo[data-media-id="{web.ids["d19.jpg"]}"]')
    video = panel.locator(f'.video[data-media-id="{web.ids["d18.mp4"]}"]')
    segment = video.locator(f'.segment-item[data-track-id="{track}"]')
    expect(panel.locator(".photo, .segment-item")).to_have_count(2)
    expect(video.locator(".timeline .segment")).to_have_count(1)
    loaded(page, photo.locator("img"))
    loaded(page, segment.locator("button.thumb img"))
    screenshot(page, "person.png")

    # Split: the segment to a new person, named as it goes.
    segment.get_by_role("checkbox", name=re.compile(r"^Select d18\.mp4 .* to move$")).check()
    page.get_by_label("Move the selected photos and segments to").fill(split)
    page.get_by_role("button", name="Move", exact=True).click()
    expect(page.locator("#person-status")).to_have_text(f"Moved 1 photo or segment to {split}.")
    expect(segment).to_have_count(0)
    expect(photo).to_be_visible()
    page.locator("#person-status a").click()
    expect(page.locator("#person-title")).to_have_text(split)
    expect(segment).to_be_visible()
    split_id = page.url.rsplit("/", 1)[1]

    # Merged back from the list: into the one with more faces (the track's), which keeps its name.
    page.get_by_role("link", name="← All people").click()
    for label in (name, split):
        page.get_by_role("checkbox", name=f"Select {label} to merge", exact=True).check()
    page.get_by_role("button", name="Merge 2 people", exact=True).click()
    expect(page.locator("#people-status")).to_have_text(f"Merged 2 people into {split}.")
    expect(person_card(page, man["personId"])).to_have_count(0)
    expect(person_card(page, split_id).locator(".counts")).to_contain_text("in 2 photos and videos")

    # Searched for by person: the search view's answer.
    person_card(page, split_id).locator(".person-open").click()
    expect(panel.locator(".photo, .segment-item")).to_have_count(2)
    page.get_by_role("button", name="Search for this person").click()
    expect(page.locator("#searched")).to_have_text(f"Searched with {split}, a person of the index.")
    expect(page.locator(f'#photos .photo[data-media-id="{web.ids["d19.jpg"]}"]')).to_be_visible()
    expect(page.locator(f'#videos .video[data-media-id="{web.ids["d18.mp4"]}"]')).to_be_visible()


def test_this_is_from_a_search_result_names_who_is_in_it(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    obama_name, miranda_name = unique("Obama"), unique("Lin-Manuel Miranda")
    page.set_input_files("#file", str(media(*OBAMA2)))
    obama = page.locator(f'.photo[data-media-id="{web.ids["obama.jpg"]}"]')
    obama.get_by_role("button", name="This is…: name the person in obama.jpg", exact=True).click()
    field = obama.get_by_role("combobox", name="Who is in obama.jpg?")
    expect(field).to_be_focused()
    field.fill(obama_name)
    with page.expect_request(lambda r: path_of(r.url) == "/api/people/move") as moved:
        field.press("Enter")
    assert moved.value.post_data_json == {"unitIds": [obama.get_attribute("data-face-id")], "name": obama_name}
    expect(obama.locator(".named")).to_have_text(f"This is {obama_name}.")
    expect(page.locator(f'#people-names option[value="{obama_name}"]')).to_have_count(1)

    # A segment: its track.
    page.set_input_files("#file", str(media(*MIRANDA)))
    item = page.locator(f'.video[data-media-id="{web.ids["short_hamilton_clip.mp4"]}"] .segment-item').first
    label = f"short_hamilton_clip.mp4 {item.locator('.when').inner_text()}"
    item.get_by_role("button", name=f"This is…: name the person in {label}", exact=True).click()
    item.get_by_role("combobox", name=f"Who is in {label}?").fill(miranda_name)
    with page.expect_request(lambda r: path_of(r.url) == "/api/people/move") as moved:
        item.get_by_role("button", name="Save").click()
    assert moved.value.post_data_json == {"unitIds": [item.get_attribute("data-track-id")], "name": miranda_name}
    expect(item.locator(".named")).to_have_text(f"This is {miranda_name}.")
    screenshot(page, "this-is.png")

    # Both in the People view, with their names and faces.
    page.get_by_role("link", name="People", exact=True).click()
    for shown in (obama_name, miranda_name):
        card = page.locator("#people-list .person-card", has=page.locator(".person-name", has_text=shown))
        expect(card).to_have_count(1)
        loaded(page, card.locator(".person-open img"))


def test_status_list_shows_every_item(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    items = page.locator("#status-list .item")
    expect(items).to_have_count(5)
    clip = page.locator(f'#status-list .item[data-media-id="{web.ids["short_hamilton_clip.mp4"]}"]')
    expect(clip.locator(".badge")).to_have_text("done")
    expect(clip).to_contain_text("10/10 frames")
    broken = page.locator(f'#status-list .item[data-media-id="{web.ids["broken.mp4"]}"]')
    expect(broken.locator(".badge")).to_have_text("failed")
    expect(broken).to_contain_text("DECODE_ERROR")
    expect(page.locator("#status-summary")).to_have_text("4 done, 1 failed")


def test_login_form_then_search_over_https(web: Web, secured: Secured, browser: Browser) -> None:
    """The token typed once into the page's form: the session cookie then carries <img> requests too."""
    from playwright.sync_api import expect

    context = browser.new_context(ignore_https_errors=True)  # the test CA is not the browser's
    page = context.new_page()
    try:
        page.goto(secured.url)
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        page.fill("#token", "wrong")
        page.click("#login-form button")
        expect(page.locator("#login-error")).to_have_text("invalid token")
        page.fill("#token", TOKEN)
        page.click("#login-form button")
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator("#status-list .item")).to_have_count(5)
        expect(page.locator("#logout")).to_be_visible()
        (cookie,) = context.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (
            "rvs_session",
            True,
            True,
            "Strict",
        )
        page.set_input_files("#file", str(media(*OBAMA2)))
        photo = page.locator(f'.photo[data-media-id="{web.ids["obama.jpg"]}"] img')
        expect(photo).to_be_visible()
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=photo.element_handle())
    finally:
        context.close()


# -- without an instance --------------------------------------------------------------------------


def test_still_cache_keeps_the_most_recent_within_its_bytes() -> None:
    cache = StillCache(capacity_bytes=250)
    keys = [StillKey("m", t, None, 320) for t in range(4)]
    for key in keys[:2]:
        cache.put(key, b"x" * 100)
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[2], b"y" * 100)  # over 250 bytes: the least recently used (keys[1]) goes
    assert (cache.get(keys[1]), cache.size) == (None, 200)
    assert cache.get(keys[0]) == b"x" * 100 and cache.get(keys[2]) == b"y" * 100
    cache.put(keys[3], b"z" * 300)  # larger than the whole cache: not kept, nothing evicted
    assert cache.get(keys[3]) is None and cache.size == 200


def test_a_taken_port_fails_start_clearly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = WebServer(QuerySettings(web_port=port), Starlette())
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port} for the search page"):
            server.start()
