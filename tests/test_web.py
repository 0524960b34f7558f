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
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
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
    from playwright.sync_api import Browser, Page, Request

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

    def get(self, path: str, **kw: Any) -> tuple[int, Message, bytes]:
        return fetch(self.url + path, **kw)


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
    for parts in (HAMILTON, D18, OBAMA):
        shutil.copy(media(*parts), watch)
    (watch / "broken.mp4").write_text("not a video")
    port = free_port()
    s = settings(
        watch, tmp_path_factory.mktemp("data"), free_port(), free_port(), milvus_uri, f"web_{int(time.time())}", port
    )
    running = start(s, watch)
    try:
        listed = wait_done(running.stub, expected=4)
        yield Web(running, f"http://127.0.0.1:{port}", {Path(m.uri).name: m.media_id for m in listed})
    finally:
        running.channel.close()
        running.app.stop()


def search_json(web: Web, photo: Path, query: str = "") -> dict[str, Any]:
    status, _, body = web.get(f"/api/search{query}", data=photo.read_bytes(), method="POST")
    assert status == 200, body
    return dict(json.loads(body))


def near(segment: dict[str, Any], start_ms: int, end_ms: int, tol_ms: int = 1000) -> bool:
    return abs(int(segment["startMs"]) - start_ms) <= tol_ms and abs(int(segment["endMs"]) - end_ms) <= tol_ms


# -- the HTTP API ---------------------------------------------------------------------------------


def test_search_answers_what_the_grpc_api_answers(web: Web) -> None:
    """One code path: the page's answer is the Search RPC's, in the proto's canonical JSON."""
    photo = media(*MIRANDA)
    answer = search_json(web, photo)
    result = json_format.ParseDict(answer["result"], pb.SearchResponse())
    assert result == web.running.stub.Search(pb.SearchRequest(image=photo.read_bytes()), timeout=60)
    assert [Path(v.uri).name for v in result.videos] == ["short_hamilton_clip.mp4"]
    assert any(near(s, 3000, 7000) for s in answer["result"]["videos"][0]["segments"])

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
    assert set(listed) == {"short_hamilton_clip.mp4", "d18.mp4", "obama.jpg", "broken.mp4"}
    clip = listed["short_hamilton_clip.mp4"]
    assert (clip["state"], clip["framesEmbedded"], clip["framesExpected"]) == ("MEDIA_STATE_DONE", 10, 10)
    assert (listed["broken.mp4"]["state"], listed["broken.mp4"]["errorReason"]) == (
        "MEDIA_STATE_FAILED",
        "DECODE_ERROR",
    )
    status, _, body = web.get("/api/media?page_size=3")
    page = json.loads(body)
    assert len(page["media"]) == 3 and page["nextPageToken"] == "3"


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
    assert status == 200 and len(json.loads(body)["media"]) == 4

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
    """Requests that send a photo, recorded from now on."""
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.method == "POST" and "/api/search" in r.url else None)
    return sent


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
    index = next(i for i, (a, b) in enumerate(spans) if abs(a - 3000) <= 1000 and abs(b - 7000) <= 1000)
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


def test_drop_and_paste_a_photo(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    deliver = """([how, b64, type]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "query", { type }));
        const event = how === "drop"
            ? new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true })
            : new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
        document.getElementById("drop").dispatchEvent(event);
    }"""
    d19 = base64.b64encode(media(*D19).read_bytes()).decode()
    page.evaluate(deliver, ["drop", d19, "image/jpeg"])
    expect(page.locator(f'.video[data-media-id="{web.ids["d18.mp4"]}"]')).to_be_visible()

    obama2 = base64.b64encode(media(*OBAMA2).read_bytes()).decode()
    page.evaluate(deliver, ["paste", obama2, "image/jpeg"])
    photo = page.locator(f'.photo[data-media-id="{web.ids["obama.jpg"]}"] img')
    expect(photo).to_be_visible()
    expect(page.locator(".video")).to_have_count(0)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=photo.element_handle())


def test_status_list_shows_every_item(web: Web, page: Page) -> None:
    from playwright.sync_api import expect

    items = page.locator("#status-list .item")
    expect(items).to_have_count(4)
    clip = page.locator(f'#status-list .item[data-media-id="{web.ids["short_hamilton_clip.mp4"]}"]')
    expect(clip.locator(".badge")).to_have_text("done")
    expect(clip).to_contain_text("10/10 frames")
    broken = page.locator(f'#status-list .item[data-media-id="{web.ids["broken.mp4"]}"]')
    expect(broken.locator(".badge")).to_have_text("failed")
    expect(broken).to_contain_text("DECODE_ERROR")
    expect(page.locator("#status-summary")).to_have_text("3 done, 1 failed")


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
        expect(page.locator("#status-list .item")).to_have_count(4)
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
