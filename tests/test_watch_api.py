"""The watch list and alerts through the gRPC API of an embedded instance (sface+yunet, embedded
Milvus): a watch added from an LFW photo (its template, face crops and thumbnail), listed, kept over a
restart and deleted; bad photos and parameters refused with their reasons; WatchAlerts streaming the
alerts an embedder raises (applied here as AlertRaised events) once each, replayed since a time, and
ending when the client cancels; and the `rvs watch` commands."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from test_find_person import grpcurl

from rvs.cli.embedded import EmbeddedSettings
from rvs.cli.main import main
from rvs.core.clock import now_ms
from rvs.v1 import rvs_pb2 as pb

from conftest import error_reason, free_port, lfw
from corpus import BUSH, POWELL
from embedded_app import Running, settings, start
from media_factory import write_photo

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(tmp_path: Path, milvus_uri: str) -> EmbeddedSettings:
    watch, data = tmp_path / "watch", tmp_path / "data"
    watch.mkdir()
    s = settings(watch, data, free_port(), free_port(), milvus_uri, f"watch_{int(time.time() * 1000)}")
    sface = {"model": "sface", "detector": "yunet"}
    return EmbeddedSettings(
        sampler=s.sampler,
        embedder=s.embedder.model_copy(update=sface),
        query=s.query.model_copy(update={**sface, "alert_poll_s": 0.05}),
    )


@pytest.fixture
def running(env: EmbeddedSettings) -> Iterator[Running]:
    r = start(env, env.sampler.watch_dir)  # type: ignore[arg-type]
    yield r
    r.channel.close()
    r.app.stop()


def rpc_error(call: object, request: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=60)  # type: ignore[operator]
    return err.value.code(), error_reason(err.value)


def alert(alert_id: str, watch: pb.Watch, at: int, source: str = "stream:door") -> pb.MediaEvent:
    """An AlertRaised as an embedder publishes it."""
    raised = pb.Alert(
        alert_id=alert_id,
        kind=pb.ALERT_KIND_WATCH,
        watch_id=watch.watch_id,
        name=watch.name,
        source=source,
        media_id="m" * 64,
        time_ms=3000,
        seen_at_ms=at - 100,
        score=0.71,
        box=pb.Box(x1=10, y1=20, x2=110, y2=140),
        still=b"\xff\xd8still",
        raised_at_ms=at,
        model="sface",
    )
    return pb.MediaEvent(at_ms=at, alert_raised=pb.AlertRaised(alert=raised))


def collect(stream: Iterator[pb.Alert], into: list[pb.Alert]) -> threading.Thread:
    def read() -> None:
        try:
            into.extend(stream)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                raise

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def wait_for(check: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def open_streams(r: Running) -> float:
    for line in urllib.request.urlopen(r.metrics_url, timeout=10).read().decode().splitlines():
        if line.startswith("rvs_alert_streams "):
            return float(line.split()[1])
    raise AssertionError("no rvs_alert_streams gauge")


def test_a_watch_is_added_from_photos_listed_kept_over_a_restart_and_deleted(env: EmbeddedSettings) -> None:
    r = start(env, env.sampler.watch_dir)  # type: ignore[arg-type]
    try:
        photos = [lfw(BUSH, 1).read_bytes(), lfw(BUSH, 2).read_bytes()]
        watch = r.stub.AddWatch(pb.AddWatchRequest(name=" George ", images=photos, threshold=0.5), timeout=120)
        assert len(watch.watch_id) == 32 and watch.name == "George"
        assert watch.kind == pb.WATCH_KIND_ALERT and watch.threshold == pytest.approx(0.5)
        assert watch.photos == 2 and list(watch.models) == ["sface"] and watch.created_at_ms > 0
        assert Image.open(io.BytesIO(watch.thumbnail)).format == "JPEG"
        mute = r.stub.AddWatch(
            pb.AddWatchRequest(name="Colin", images=[lfw(POWELL, 1).read_bytes()], kind=pb.WATCH_KIND_MUTE), timeout=120
        )
        assert not mute.HasField("threshold")
        listed = r.stub.ListWatches(pb.ListWatchesRequest()).watches
        assert [(w.watch_id, w.kind) for w in listed] == [
            (watch.watch_id, pb.WATCH_KIND_ALERT),
            (mute.watch_id, pb.WATCH_KIND_MUTE),
        ]

        # What embedders fold: the template (the photos' mean direction) and the faces to embed again.
        added = next(
            e.watch_added for e in r.app.catalog.watch_events() if e.watch_added.watch.watch_id == watch.watch_id
        )
        template = np.array(added.templates[0].vector)
        assert added.templates[0].model == "sface" and np.linalg.norm(template) == pytest.approx(1.0, abs=1e-5)
        assert len(added.faces) == 2
        pipeline = r.app.query_pipeline
        for face in added.faces:
            found = pipeline.faces(np.asarray(Image.open(io.BytesIO(face)).convert("RGB")), 1)
            assert found and float(found[0].vector @ template) > 0.7  # the crop is still his face
        powell = pipeline.faces(np.asarray(Image.open(lfw(POWELL, 2)).convert("RGB")), 1)[0].vector
        assert float(powell @ template) < 0.3
    finally:
        r.channel.close()
        r.app.stop()

    r = start(env, env.sampler.watch_dir)  # type: ignore[arg-type]
    try:
        assert [w.watch_id for w in r.stub.ListWatches(pb.ListWatchesRequest()).watches] == [
            watch.watch_id,
            mute.watch_id,
        ]
        r.stub.DeleteWatch(pb.DeleteWatchRequest(watch_id=watch.watch_id))
        assert [w.watch_id for w in r.stub.ListWatches(pb.ListWatchesRequest()).watches] == [mute.watch_id]
        assert rpc_error(r.stub.DeleteWatch, pb.DeleteWatchRequest(watch_id=watch.watch_id)) == (
            grpc.StatusCode.NOT_FOUND,
            "WATCH_NOT_FOUND",
        )
    finally:
        r.channel.close()
        r.app.stop()


def test_a_reindex_gives_every_watch_a_template_for_the_new_model_from_its_kept_faces(running: Running) -> None:
    from rvs.core.faces.pipeline import FacePipeline

    from media_factory import load_rgb

    photos = [lfw(BUSH, 1).read_bytes(), lfw(BUSH, 2).read_bytes()]
    watch = running.stub.AddWatch(pb.AddWatchRequest(name="Bush", images=photos), timeout=60)
    dlib = FacePipeline(running.app.settings.query.model_copy(update={"model": "dlib-resnet"}))
    dlib.load()
    watches = running.app.query.watches  # type: ignore[union-attr]
    assert watches is not None and watches.add_model(dlib) == 1
    assert list(running.stub.ListWatches(pb.ListWatchesRequest()).watches[0].models) == ["sface", "dlib-resnet"]
    added = next(e.watch_added for e in running.app.catalog.watch_events() if e.HasField("watch_added"))
    assert added.watch.watch_id == watch.watch_id
    template = np.array(next(t.vector for t in added.templates if t.model == "dlib-resnet"))

    def cosine(person: str) -> float:
        vector = dlib.faces(load_rgb(lfw(person, 3)), 1)[0].vector
        return float(template @ vector / np.linalg.norm(template) / np.linalg.norm(vector))

    assert cosine(BUSH) > cosine(POWELL) + 0.1  # his face, made again by the new model
    assert "dlib-resnet" in running.app.embedder.alerting.watches.models()  # type: ignore[union-attr]
    assert watches.add_model(dlib) == 0  # once


def test_bad_watches_are_refused_with_their_reasons(running: Running, tmp_path: Path) -> None:
    stub, bush = running.stub, lfw(BUSH, 1).read_bytes()
    faceless = write_photo(tmp_path / "faceless.jpg").read_bytes()
    cases = [
        (pb.AddWatchRequest(name="x", images=[bush, faceless]), grpc.StatusCode.FAILED_PRECONDITION, "NO_FACE"),
        (pb.AddWatchRequest(name="x", images=[bush, b""]), grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_IMAGE"),
        (pb.AddWatchRequest(name="x"), grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_IMAGE"),
        (pb.AddWatchRequest(name="x", images=[b"not a photo"]), grpc.StatusCode.INVALID_ARGUMENT, "DECODE_ERROR"),
        (
            pb.AddWatchRequest(name="x", images=[bush], threshold=2),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PARAMETER",
        ),
        (pb.AddWatchRequest(name="", images=[bush]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME"),
        (pb.AddWatchRequest(name="a\x00b", images=[bush]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME"),
    ]
    for request, code, reason in cases:
        assert rpc_error(stub.AddWatch, request) == (code, reason), request.name
    assert list(stub.ListWatches(pb.ListWatchesRequest()).watches) == []  # nothing half-added
    assert rpc_error(stub.DeleteWatch, pb.DeleteWatchRequest(watch_id="0" * 32)) == (
        grpc.StatusCode.NOT_FOUND,
        "WATCH_NOT_FOUND",
    )
    assert rpc_error(stub.DeleteWatch, pb.DeleteWatchRequest(watch_id="../x")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PARAMETER",
    )
    with pytest.raises(grpc.RpcError) as err:
        next(iter(stub.WatchAlerts(pb.WatchAlertsRequest(watch_ids=["nope"]), timeout=30)))
    assert (err.value.code(), error_reason(err.value)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PARAMETER")


def test_watch_alerts_streams_each_alert_once_replays_since_a_time_and_ends_on_cancel(running: Running) -> None:
    stub, events = running.stub, running.app.events
    watch = stub.AddWatch(pb.AddWatchRequest(name="George", images=[lfw(BUSH, 1).read_bytes()]), timeout=120)
    t0 = now_ms()
    events.publish(alert("past", watch, t0 - 60_000))
    events.publish(alert("a", watch, t0))
    live: list[pb.Alert] = []
    all_new = stub.WatchAlerts(pb.WatchAlertsRequest())
    new_only = collect(all_new, live)
    mine: list[pb.Alert] = []
    since = stub.WatchAlerts(pb.WatchAlertsRequest(since_ms=t0, watch_ids=[watch.watch_id], source_prefix="stream:"))
    replay = collect(since, mine)
    wait_for(lambda: [a.alert_id for a in mine] == ["a"] and open_streams(running) == 2)
    for event in (
        alert("b", watch, t0 + 1),
        alert("a", watch, t0),  # at least once: a replay
        alert("b", watch, t0 + 1),
        alert("file", watch, t0 + 2, source="/inbox"),
        alert("c", watch, t0 + 3),
    ):
        events.publish(event)
    wait_for(lambda: len(mine) == 3 and len(live) == 3)
    time.sleep(0.3)  # nothing more comes
    assert [a.alert_id for a in mine] == ["a", "b", "c"]
    assert [a.alert_id for a in live] == ["b", "file", "c"]
    got = mine[0]
    assert (got.source, got.score, got.box.x2, got.still, got.name) == (
        "stream:door",
        pytest.approx(0.71),
        110,
        b"\xff\xd8still",
        "George",
    )
    all_new.cancel()
    since.cancel()
    new_only.join(timeout=10)
    replay.join(timeout=10)
    assert not new_only.is_alive() and not replay.is_alive()
    wait_for(lambda: open_streams(running) == 0)


def cli(capsys: pytest.CaptureFixture[str], port: int, *argv: str) -> tuple[int, str, str]:
    """`rvs ARGV...` against the running service: exit status, stdout, stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([*argv, "--target", f"127.0.0.1:{port}", "--timeout", "120"])
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def test_the_watch_commands(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    port = running.app.query.port  # type: ignore[union-attr]
    code, out, _ = cli(
        capsys, port, "watch", "add", "George", str(lfw(BUSH, 1)), str(lfw(BUSH, 2)), "--threshold", "0.6"
    )
    assert code == 0 and "George: alert, threshold 0.60, 2 photo(s), models sface" in out
    watch_id = out.split()[0]
    code, out, _ = cli(capsys, port, "watch", "add", "Colin", str(lfw(POWELL, 1)), "--mute")
    assert code == 0 and "Colin: mute, the model's threshold, 1 photo(s)" in out
    code, out, _ = cli(capsys, port, "watch", "list")
    assert code == 0 and out.splitlines()[0] == "2 watch entries" and out.splitlines()[1].startswith(watch_id)

    # Alerts as they come, each once, until Ctrl-C.
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rvs.cli",
            "watch",
            "alerts",
            "--since",
            "1h",
            "--json",
            "--target",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        watch = running.app.catalog.watch(watch_id)
        assert watch is not None
        t0 = now_ms()
        running.app.events.publish(alert("before", watch, t0 - 60_000))
        running.app.events.publish(alert("old", watch, t0 - 7_200_000))  # before --since
        assert json.loads(follower.stdout.readline())["alertId"] == "before"  # type: ignore[union-attr]
        running.app.events.publish(alert("before", watch, t0 - 60_000))
        running.app.events.publish(alert("new", watch, t0))
        assert json.loads(follower.stdout.readline())["alertId"] == "new"  # type: ignore[union-attr]
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 130 and out == "", err

    code, out, _ = cli(capsys, port, "watch", "delete", watch_id)
    assert code == 0 and out == f"deleted {watch_id}\n"
    code, _, err = cli(capsys, port, "watch", "delete", watch_id)
    assert code == 1 and "NOT_FOUND [WATCH_NOT_FOUND]" in err
    code, _, err = cli(capsys, port, "watch", "add", "Nobody", "/no/such.jpg")
    assert code == 2 and "cannot read /no/such.jpg" in err


def test_grpcurl_follows_watch_alerts_by_reflection(running: Running) -> None:
    """The README's example: alerts since an hour ago from streams, as JSON, by reflection."""
    watch = running.stub.AddWatch(pb.AddWatchRequest(name="George", images=[lfw(BUSH, 1).read_bytes()]), timeout=120)
    running.app.events.publish(alert("from-a-stream", watch, now_ms() - 60_000))
    running.app.events.publish(alert("from-a-file", watch, now_ms() - 60_000, source="/inbox"))
    request = json.dumps({"sinceMs": str(now_ms() - 3_600_000), "sourcePrefix": "stream:"})
    address = f"127.0.0.1:{running.app.query.port}"  # type: ignore[union-attr]
    done = subprocess.run(
        [grpcurl(), "-plaintext", "-max-time", "3", "-d", request, address, "rvs.v1.SearchService/WatchAlerts"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "DeadlineExceeded" in done.stderr  # it followed until grpcurl's -max-time
    got = json.loads(done.stdout)  # grpcurl prints the proto's field names
    assert (got["alert_id"], got["watch_id"], got["still"]) == ("from-a-stream", watch.watch_id, "/9hzdGlsbA==")
