"""A watched bucket on a real S3-compatible server (versitygw on loopback): objects present at start,
new, overwritten and deleted objects, event notifications, a multipart upload streamed to disk,
restarts, and wrong credentials."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from boto3.s3.transfer import TransferConfig
from prometheus_client import CollectorRegistry

from rvs.core.bus.memory import MemoryFrameBus
from rvs.sampler.app import SamplerService
from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics
from rvs.sampler.sources.bucket import BucketSource
from rvs.sampler.sources.notify import NotificationReceiver

from conftest import free_port, lfw
from media_factory import cfr_times, write_video
from recorder import Recorder, wait_for
from s3server import SECRET_KEY, S3Server

BUCKET = "inbox"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3")
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


Started = tuple[SamplerService, MemoryFrameBus, Recorder, CollectorRegistry]


@pytest.fixture
def sampler(tmp_path: Path, s3: S3Server) -> Iterator[Callable[..., Started]]:
    started: list[SamplerService] = []

    def make(**kw: object) -> Started:
        fields: dict[str, object] = {"bucket": BUCKET, "data_dir": tmp_path / "data", "bucket_list_interval_s": 0.3}
        fields |= s3.settings() | kw
        settings = SamplerSettings(**fields)  # type: ignore[arg-type]
        bus, events, registry = MemoryFrameBus(capacity=1000), Recorder(), CollectorRegistry()
        service = SamplerService(settings, bus, events, registry)
        service.start()
        started.append(service)
        return service, bus, events, registry

    yield make
    for s in started:
        s.stop()


def put(s3: S3Server, key: str, path: Path) -> None:
    s3.client().upload_file(str(path), BUCKET, key)


def test_bucket_objects_are_ingested_once_with_s3_uris(sampler, s3: S3Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = tmp_path / "clip.mp4"
    write_video(clip, lambda t: np.zeros((120, 160, 3), np.uint8), cfr_times(3, 10))
    put(s3, "in/blair.jpg", lfw("Tony_Blair", 1))  # present before rvs starts
    put(s3, "in/sub/clip.mp4", clip)
    put(s3, "elsewhere/powell.jpg", lfw("Colin_Powell", 1))  # outside the prefix
    service, bus, events, _ = sampler(bucket_prefix="in/", remove_deleted=True)

    wait_for(lambda: len(events.of("sampled")) == 2)
    frames = bus.poll(100, 0.1)
    assert sorted({f.uri for f in frames}) == ["s3://inbox/in/blair.jpg", "s3://inbox/in/sub/clip.mp4"]
    assert len(frames) == 4 and {e.discovered.source for e in events.of("discovered")} == {"s3://inbox/in/"}
    blair_id = hashlib.sha256(lfw("Tony_Blair", 1).read_bytes()).hexdigest()
    assert blair_id in {e.media_id for e in events.of("sampled")}  # content identity, as for files

    put(s3, "in/new.jpg", lfw("Colin_Powell", 2))  # a new object
    put(s3, "in/blair.jpg", lfw("Tony_Blair", 2))  # overwritten with other content
    s3.client().delete_object(Bucket=BUCKET, Key="in/sub/clip.mp4")
    wait_for(lambda: len(events.of("sampled")) == 4 and len(events.of("removed")) == 2)
    assert {e.media_id for e in events.of("removed")} >= {blair_id}
    # Nothing left on disk once sampled (each spool file goes right after its item's last event).
    wait_for(lambda: list((tmp_path / "data" / "spool").iterdir()) == [], timeout_s=10)

    service.stop()
    _, bus2, events2, _ = sampler(bucket_prefix="in/", remove_deleted=True)  # restart on the same state
    wait_for(lambda: bus2.pending() == 0)
    time.sleep(1.0)  # several listings
    assert events2.events == [] and bus2.poll(10, 0.1) == []


def test_notifications_make_objects_searchable_without_waiting_for_a_listing(  # type: ignore[no-untyped-def]
    sampler, s3: S3Server
) -> None:
    hook_port = free_port()
    _, bus, events, registry = sampler(bucket_list_interval_s=3600, bucket_notify_port=hook_port, remove_deleted=True)
    wait_for(lambda: (registry.get_sample_value("rvs_source_scans_total", {"source": "bucket"}) or 0) >= 1)
    # A second gateway on the same storage posts its events to rvs (it checks the webhook at start).
    notifying = S3Server(s3.root, webhook_url=f"http://127.0.0.1:{hook_port}/events")
    notifying.start()
    s3 = notifying
    put(s3, "a b+c.jpg", lfw("Tony_Blair", 3))  # a key that event encodings spell differently
    wait_for(lambda: len(events.of("sampled")) == 1, timeout_s=10)  # the next listing is an hour away
    assert bus.poll(10, 0.1)[0].uri == "s3://inbox/a b+c.jpg"
    s3.client().delete_object(Bucket=BUCKET, Key="a b+c.jpg")
    wait_for(lambda: len(events.of("removed")) == 1, timeout_s=10)
    assert registry.get_sample_value("rvs_bucket_notifications_total", {"event": "created"}) == 1
    assert registry.get_sample_value("rvs_bucket_notifications_total", {"event": "removed"}) == 1
    notifying.stop()


def test_wrong_credentials_give_a_clear_error_and_are_retried(  # type: ignore[no-untyped-def]
    sampler, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    service, _, events, registry = sampler(s3_secret_access_key="not-the-secret")

    def errors() -> float:
        return sum(
            registry.get_sample_value("rvs_source_errors_total", {"source": "bucket", "reason": r}) or 0
            for r in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied")
        )

    wait_for(lambda: errors() >= 2, timeout_s=15)  # tried again, not given up
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1, "one clear error, not one per retry"
    assert "cannot list s3://inbox/" in failures[0].getMessage()
    assert "not-the-secret" not in caplog.text and SECRET_KEY not in caplog.text
    assert all(t.is_alive() for t in service._threads) and events.events == []


def test_multipart_upload_is_streamed_to_disk_in_bounded_memory(s3: S3Server, tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    with open(big, "wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
    s3.client().upload_file(
        str(big), BUCKET, "big.mp4", Config=TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
    )
    head = s3.client().head_object(Bucket=BUCKET, Key="big.mp4")
    assert "-" in head["ETag"]  # a multipart ETag, not an MD5
    settings = SamplerSettings(bucket=BUCKET, data_dir=tmp_path / "data", **s3.settings())  # type: ignore[arg-type]
    source = BucketSource(settings, SamplerMetrics(CollectorRegistry()))
    entry = source.scan({}).ready[0]

    tracemalloc.start()
    fetched = source.fetch(entry)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    assert fetched.media_id == expected and fetched.path.stat().st_size == 48 << 20
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB held in memory for a 48 MiB object"

    # Resuming after a restart: fetched again when the spool file is gone, refused if the content changed.
    source.release(fetched.media_id)
    assert source.local_path(entry.uri, expected).stat().st_size == 48 << 20
    source.release(expected)
    s3.client().put_object(Bucket=BUCKET, Key="big.mp4", Body=b"other content")
    with pytest.raises(FileNotFoundError, match="changed"):
        source.local_path(entry.uri, expected)
    assert list((tmp_path / "data" / "spool").iterdir()) == []


def test_notification_webhook_checks_its_token_and_input() -> None:
    seen: list[tuple[str, str, str]] = []
    receiver = NotificationReceiver("127.0.0.1", 0, "s3cret", lambda *a: seen.append(a))
    receiver.start()
    url = f"http://127.0.0.1:{receiver.port}/"

    def post(body: bytes, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=5).status
        except urllib.error.HTTPError as exc:
            return exc.code

    event = b'{"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k%20x"}}}]}'
    try:
        assert post(event, None) == 401
        assert post(event, "wrong") == 401
        assert post(b"not json", "s3cret") == 400
        assert post(b'{"Records":[{"eventName":"x"}]}', "s3cret") == 400
        assert post(b'{"Event":"s3:TestEvent"}', "s3cret") == 200 and seen == []
        assert post(event, "s3cret") == 200
        assert seen == [("b", "k%20x", "s3:ObjectCreated:Put")]
    finally:
        receiver.stop()


def test_the_webhook_wants_the_bearer_scheme_not_a_bare_token() -> None:
    """`Authorization: s3cret` is not `Bearer s3cret`: refused, as the gRPC API and the page refuse it."""
    seen: list[tuple[str, str, str]] = []
    receiver = NotificationReceiver("127.0.0.1", 0, "s3cret", lambda *a: seen.append(a))
    receiver.start()
    try:
        test_event = b'{"Event":"s3:TestEvent"}'
        assert receiver.handle("Bearer s3cret", test_event) == 200
        for header in ("s3cret", "Bearer  s3cret", "Bearer", "", None):
            assert receiver.handle(header, test_event) == 401, header
    finally:
        receiver.stop()
