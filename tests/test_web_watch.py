"""The search page's watch list and live alerts, against an embedded instance (sface+yunet, no media):
its HTTP API (add from base64 photos, list, delete, the reasons of bad input, alerts polled by seq,
each once), and in headless Chromium the Watch list view: a person added from a photo and shown with
its thumbnail, alerts appearing live, once each, and the entry deleted."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_web import CHROMIUM, CHROMIUM_FLAGS, fetch, reason, screenshot

from rvs.cli.embedded import EmbeddedSettings
from rvs.core.clock import now_ms
from rvs.v1 import rvs_pb2 as pb

from conftest import free_port, lfw
from corpus import BUSH
from embedded_app import Running, settings, start
from media_factory import write_photo

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e


class Instance:
    def __init__(self, running: Running, url: str) -> None:
        self.running = running
        self.url = url

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        status, _, answer = fetch(self.url + path, data=data, method=method)
        return status, json.loads(answer)

    def raise_alert(self, alert_id: str, watch_id: str, name: str) -> None:
        """An AlertRaised as an embedder publishes it."""
        alert = pb.Alert(
            alert_id=alert_id,
            kind=pb.ALERT_KIND_WATCH,
            watch_id=watch_id,
            name=name,
            source="stream:door",
            uri="stream:door/segment-7.mp4",
            time_ms=4000,
            seen_at_ms=now_ms(),
            score=0.68,
            still=lfw(BUSH, 3).read_bytes(),
            raised_at_ms=now_ms(),
        )
        self.running.app.events.publish(pb.MediaEvent(alert_raised=pb.AlertRaised(alert=alert)))


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> Iterator[Instance]:
    watch, data = tmp_path_factory.mktemp("watch"), tmp_path_factory.mktemp("data")
    port = free_port()
    s = settings(watch, data, free_port(), free_port(), milvus_uri, f"web_watch_{int(time.time())}", port)
    sface = {"model": "sface", "detector": "yunet"}
    s = EmbeddedSettings(
        sampler=s.sampler, embedder=s.embedder.model_copy(update=sface), query=s.query.model_copy(update=sface)
    )
    running = start(s, watch)
    try:
        yield Instance(running, f"http://127.0.0.1:{port}")
    finally:
        running.channel.close()
        running.app.stop()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_the_watch_list_and_alerts_over_http(instance: Instance, tmp_path: Path) -> None:
    status, watch = instance.call(
        "POST", "/api/watches", {"name": "George", "images": [b64(lfw(BUSH, 1))], "threshold": 0.55}
    )
    assert status == 200, watch
    assert watch["name"] == "George" and watch["threshold"] == pytest.approx(0.55) and watch["photos"] == 1
    status, listed = instance.call("GET", "/api/watches")
    assert status == 200 and watch["watchId"] in [w["watchId"] for w in listed["watches"]]

    faceless = b64(write_photo(tmp_path / "faceless.jpg"))
    for body, code, why in (
        ({"name": "x", "images": [faceless]}, 400, "NO_FACE"),
        ({"name": "x", "images": []}, 400, "EMPTY_IMAGE"),
        ({"name": "x", "images": ["not base64!"]}, 400, "INVALID_PARAMETER"),
        ({"name": "x", "pictures": []}, 400, "INVALID_PARAMETER"),
        ({"name": "x", "images": [b64(lfw(BUSH, 1))], "threshold": 3}, 400, "INVALID_PARAMETER"),
    ):
        status, answer = instance.call("POST", "/api/watches", body)
        assert (status, reason(json.dumps(answer).encode())) == (code, why), body
    status, _, answer = fetch(instance.url + "/api/watches", data=b"\xff{", method="POST")
    assert (status, reason(answer)) == (400, "INVALID_PARAMETER")
    status, answer = instance.call("DELETE", f"/api/watches/{'0' * 32}")
    assert (status, reason(json.dumps(answer).encode())) == (404, "WATCH_NOT_FOUND")

    status, start_at = instance.call("GET", "/api/alerts")
    assert status == 200 and start_at["alerts"] == []
    instance.raise_alert("http-1", watch["watchId"], "George")
    instance.raise_alert("http-1", watch["watchId"], "George")  # a replay
    instance.raise_alert("http-2", watch["watchId"], "George")
    status, page = instance.call("GET", f"/api/alerts?after={start_at['next']}")
    assert [a["alertId"] for a in page["alerts"]] == ["http-1", "http-2"]
    assert page["alerts"][0]["still"] == b64(lfw(BUSH, 3))
    status, later = instance.call("GET", f"/api/alerts?after={page['next']}")
    assert later == {"alerts": [], "next": page["next"]}
    status, since = instance.call("GET", f"/api/alerts?since_ms={now_ms() - 60_000}")
    assert {"http-1", "http-2"} <= {a["alertId"] for a in since["alerts"]}
    status, answer = instance.call("GET", "/api/alerts?after=-1")
    assert (status, reason(json.dumps(answer).encode())) == (400, "INVALID_PARAMETER")

    assert instance.call("DELETE", f"/api/watches/{watch['watchId']}") == (200, {})
    status, listed = instance.call("GET", "/api/watches")
    assert watch["watchId"] not in [w["watchId"] for w in listed["watches"]]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is not at {CHROMIUM}: set RVS_CHROMIUM to a Chromium binary", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, instance: Instance) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(instance.url + "/#/watch")
    yield page
    context.close()
    assert errors == [], f"the page's scripts failed: {errors}"


def test_the_watch_list_view_adds_shows_alerts_live_and_deletes(instance: Instance, page: Page) -> None:
    from playwright.sync_api import expect

    page.fill("#watch-name", "Mr. Bush")
    page.set_input_files("#watch-photos", [str(lfw(BUSH, 1)), str(lfw(BUSH, 2))])
    page.fill("#watch-threshold", "0.6")
    page.click("#watch-form button[type=submit]")
    expect(page.locator("#watch-status")).to_have_text("Mr. Bush is on the watch list.", timeout=60_000)
    entry = page.locator(".watch", has_text="Mr. Bush")
    expect(entry).to_contain_text("alert, threshold 0.600, 2 photo(s)")
    thumbnail = entry.locator("img")
    expect(thumbnail).to_have_js_property("complete", True)
    assert thumbnail.evaluate("img => img.naturalWidth") > 0
    watch_id = entry.get_attribute("data-watch-id")
    assert watch_id and instance.running.app.catalog.watch(watch_id) is not None

    instance.raise_alert("page-1", watch_id, "Mr. Bush")
    alert = page.locator('.alert[data-alert-id="page-1"]')
    expect(alert).to_contain_text("Mr. Bush", timeout=10_000)
    expect(alert).to_contain_text("score 0.680 · stream:door · segment-7.mp4 at 0:04.0")
    instance.raise_alert("page-1", watch_id, "Mr. Bush")  # a replay: still shown once
    instance.raise_alert("page-2", watch_id, "Mr. Bush")
    expect(page.locator('.alert[data-alert-id="page-2"]')).to_have_count(1, timeout=10_000)
    expect(page.locator('.alert[data-alert-id="page-1"]')).to_have_count(1)
    assert page.locator(".alert").first.get_attribute("data-alert-id") == "page-2"  # newest first
    screenshot(page, "watch-list.png")

    entry.get_by_role("button", name="Delete").click()
    expect(page.locator("#watch-status")).to_have_text("Mr. Bush is off the watch list.")
    expect(page.locator(".watch", has_text="Mr. Bush")).to_have_count(0)
    assert instance.running.app.catalog.watch(watch_id) is None
