"""Alerts delivered, without models or servers: the watch list's checks before any photo is analysed,
WatchAlerts' follower (the past since a time, then each new alert once, filtered, ending when its
client goes or the service stops, bounded), and the webhook against a real HTTP server (signature,
a retry after a 500, no second delivery after a restart)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rvs.cli.watch import since_ms
from rvs.core.catalog import Catalog
from rvs.core.retry import Backoff
from rvs.query.alerts.feed import AlertFeed, TooManyStreams, alert_filter
from rvs.query.alerts.watches import InvalidWatchRequest, WatchList, WatchNotFound
from rvs.query.alerts.webhook import AlertWebhook
from rvs.query.config import QuerySettings
from rvs.query.people.directory import InvalidName
from rvs.query.search import EmptyImage
from rvs.v1 import rvs_pb2 as pb

W1, W2 = "1" * 32, "2" * 32
SECRET = b"shared secret"


def raised(alert_id: str, watch_id: str = W1, at: int = 1000, source: str = "stream:door") -> pb.MediaEvent:
    alert = pb.Alert(alert_id=alert_id, watch_id=watch_id, source=source, raised_at_ms=at, still=b"\xff\xd8jpeg")
    return pb.MediaEvent(at_ms=at, alert_raised=pb.AlertRaised(alert=alert))


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    c = Catalog(tmp_path / "catalog.db")
    yield c
    c.close()


# --- the watch list's checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (pb.AddWatchRequest(name="", images=[b"x"]), InvalidName),
        (pb.AddWatchRequest(name="a\u200bb", images=[b"x"]), InvalidName),
        (pb.AddWatchRequest(name="x" * 101, images=[b"x"]), InvalidName),
        (pb.AddWatchRequest(name="Alice"), EmptyImage),
        (pb.AddWatchRequest(name="Alice", images=[b"x"] * 21), InvalidWatchRequest),
        (pb.AddWatchRequest(name="Alice", images=[b"x"], threshold=1.5), InvalidWatchRequest),
        (pb.AddWatchRequest(name="Alice", images=[b"x"], threshold=float("nan")), InvalidWatchRequest),
        (pb.AddWatchRequest(name="Alice", images=[b"x"], kind=7), InvalidWatchRequest),  # type: ignore[arg-type]
    ],
)
def test_a_bad_watch_is_refused_before_any_photo_is_analysed(
    catalog: Catalog, request_: pb.AddWatchRequest, error: type[Exception]
) -> None:
    recorded: list[pb.MediaEvent] = []
    watches = WatchList(catalog, None, recorded.append)  # type: ignore[arg-type]  # never reached
    with pytest.raises(error):
        watches.add(request_)
    assert recorded == []


def test_deleting_a_watch_checks_its_id_and_records_the_deletion(catalog: Catalog) -> None:
    watches = WatchList(catalog, None, catalog.apply)  # type: ignore[arg-type]
    with pytest.raises(InvalidWatchRequest):
        watches.delete(pb.DeleteWatchRequest(watch_id="nope"))
    with pytest.raises(WatchNotFound):
        watches.delete(pb.DeleteWatchRequest(watch_id=W1))
    catalog.apply(pb.MediaEvent(watch_added=pb.WatchAdded(watch=pb.Watch(watch_id=W1, name="Alice"))))
    assert [w.name for w in watches.list().watches] == ["Alice"]
    watches.delete(pb.DeleteWatchRequest(watch_id=W1))
    assert list(watches.list().watches) == []
    with pytest.raises(WatchNotFound):
        watches.delete(pb.DeleteWatchRequest(watch_id=W1))


# --- the follower ------------------------------------------------------------------------------


def feed(catalog: Catalog, **settings: object) -> AlertFeed:
    return AlertFeed(QuerySettings(alert_poll_s=0.05, **settings), catalog, CollectorRegistry())  # type: ignore[arg-type]


def collect(alerts: Iterator[pb.Alert], into: list[pb.Alert]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(alerts), daemon=True)
    thread.start()
    return thread


def wait_for(check: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_follower_gets_the_past_since_a_time_then_each_new_alert_once(catalog: Catalog) -> None:
    alerts = feed(catalog)
    for event in (raised("old", at=500), raised("a", at=1000), raised("other", watch_id=W2, at=1100)):
        catalog.apply(event)
    got: list[pb.Alert] = []
    client_there = threading.Event()
    client_there.set()
    wanted = alert_filter(pb.WatchAlertsRequest(since_ms=1000, watch_ids=[W1], source_prefix="stream:"))
    thread = collect(alerts.follow(1000, wanted, client_there.is_set), got)
    wait_for(lambda: len(got) == 1)
    for event in (raised("b", at=2000), raised("a", at=1000), raised("file", source="/inbox"), raised("c", at=3000)):
        catalog.apply(event)  # "a" again: a replay
    wait_for(lambda: len(got) == 3)
    client_there.clear()  # the client cancels
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert [a.alert_id for a in got] == ["a", "b", "c"]


def test_a_follower_without_since_gets_new_alerts_only_and_ends_when_the_service_stops(catalog: Catalog) -> None:
    alerts = feed(catalog)
    catalog.apply(raised("old"))
    got: list[pb.Alert] = []
    thread = collect(alerts.follow(0, alert_filter(pb.WatchAlertsRequest()), lambda: True), got)
    time.sleep(0.2)
    catalog.apply(raised("new", at=900))
    wait_for(lambda: len(got) == 1)
    alerts.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert [a.alert_id for a in got] == ["new"]


def test_followers_are_bounded(catalog: Catalog) -> None:
    alerts = feed(catalog, max_alert_streams=1)
    first = alerts.follow(0, lambda a: True, lambda: True)
    thread = collect(first, [])
    wait_for(lambda: alerts._open == 1)
    with pytest.raises(TooManyStreams):
        next(alerts.follow(0, lambda a: True, lambda: True))
    alerts.stop()
    thread.join(timeout=5)
    assert alerts._open == 0


@pytest.mark.parametrize(
    "request_",
    [
        pb.WatchAlertsRequest(since_ms=-1),
        pb.WatchAlertsRequest(since_ms=10**15),
        pb.WatchAlertsRequest(watch_ids=["not-an-id"]),
        pb.WatchAlertsRequest(watch_ids=[W1] * 1001),
    ],
)
def test_a_bad_follow_request_is_refused(request_: pb.WatchAlertsRequest) -> None:
    with pytest.raises(InvalidWatchRequest):
        alert_filter(request_)


def test_old_alerts_leave_the_catalog(catalog: Catalog) -> None:
    now = int(time.time() * 1000)
    for n, at in enumerate((now - 40 * 86_400_000, now - 1000, now)):
        catalog.apply(raised(f"a{n}", at=at))
    assert feed(catalog, alerts_kept_days=30).prune() == 1
    assert [a.alert_id for _, a in catalog.alerts()] == ["a1", "a2"]


# --- the webhook -------------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """Takes POSTs, answering the codes queued (then 200); keeps what it took."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.posts: list[tuple[dict[str, str], bytes, int]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        code = self.server.codes.pop(0) if self.server.codes else 200
        self.server.posts.append((dict(self.headers), body, code))
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def webhook(url: str, catalog: Catalog, registry: CollectorRegistry | None = None) -> AlertWebhook:
    return AlertWebhook(
        url, SECRET, catalog, registry or CollectorRegistry(), poll_s=0.05, backoff=Backoff(first_s=0.05, max_s=0.1)
    )


def test_the_webhook_posts_each_new_alert_signed_retries_and_never_again_after_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.apply(raised("before"))  # folded before the webhook was configured: not posted
    registry = CollectorRegistry()
    hook = webhook(receiver.url, catalog, registry)
    hook.start()
    receiver.codes += [500, 200, 404]  # the first alert fails once, then is taken; the second refused
    for event in (raised("a", at=2000), raised("b", at=3000), raised("a", at=2000), raised("c", at=4000)):
        catalog.apply(event)
    wait_for(lambda: len(receiver.posts) == 4)
    hook.stop()
    ids = [headers["X-Rvs-Alert-Id"] for headers, _, _ in receiver.posts]
    assert ids == ["a", "a", "b", "c"]
    assert [code for _, _, code in receiver.posts] == [500, 200, 404, 200]
    for headers, body, _ in receiver.posts:
        assert headers["X-Rvs-Signature"] == "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert headers["Content-Type"] == "application/json"
    payload = json.loads(receiver.posts[-1][1])
    assert payload["alertId"] == "c" and payload["watchId"] == W1 and payload["still"] == "/9hqcGVn"
    deliveries = {
        o: registry.get_sample_value("rvs_alert_webhook_deliveries_total", {"outcome": o})
        for o in ("delivered", "failed", "refused")
    }
    assert deliveries == {"delivered": 2.0, "failed": 1.0, "refused": 1.0}
    catalog.close()

    again = Catalog(tmp_path / "catalog.db")  # a restart
    hook = webhook(receiver.url, again)
    hook.start()
    again.apply(raised("c", at=4000))  # replayed
    again.apply(raised("d", at=5000))
    wait_for(lambda: len(receiver.posts) == 5)
    time.sleep(0.3)
    hook.stop()
    again.close()
    assert [headers["X-Rvs-Alert-Id"] for headers, _, _ in receiver.posts[4:]] == ["d"]


def test_the_webhook_waits_for_a_receiver_that_is_away(tmp_path: Path, receiver: Receiver) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    port = receiver.server_address[1]
    receiver.shutdown()
    receiver.server_close()  # nobody listens on the port now
    registry = CollectorRegistry()
    hook = webhook(f"http://127.0.0.1:{port}/hook", catalog, registry)
    hook.start()
    catalog.apply(raised("a"))
    wait_for(lambda: (registry.get_sample_value("rvs_alert_webhook_deliveries_total", {"outcome": "failed"}) or 0) >= 3)
    hook.stop()  # ends while retrying
    assert catalog.alert_cursor("webhook") == 0  # still to deliver at the next start
    catalog.close()


def test_the_cli_reads_since_as_a_time_ago_an_iso_time_or_unix_ms() -> None:
    now = 1_700_000_000_000
    assert since_ms("90s", now) == now - 90_000
    assert since_ms("10m", now) == now - 600_000
    assert since_ms("1.5h", now) == now - 5_400_000
    assert since_ms("2d", now) == now - 172_800_000
    assert since_ms("1699999999000", now) == 1_699_999_999_000
    assert since_ms("2023-11-14T22:13:20", now) == now  # UTC unless it says
    assert since_ms("2023-11-14T23:13:20+01:00", now) == now
    with pytest.raises(ValueError):
        since_ms("yesterday", now)
