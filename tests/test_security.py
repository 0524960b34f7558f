"""The query service's limits and security: bearer-token auth, TLS (and mutual TLS), deadlines, the
concurrency limit, a restart under load, the metrics endpoint on its own interface, no secrets in logs."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image
from prometheus_client import CollectorRegistry

from rvs.core.catalog import Catalog
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.metrics_http import MetricsEndpoint
from rvs.core.store.faces import open_face_store
from rvs.query.app import QueryService
from rvs.query.config import QuerySettings
from rvs.query.search import FaceIndexOutOfRange
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import error_reason, free_port, lfw, lfw_people

TOKEN = "s3cr3t-t0ken-value"


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    p = FacePipeline(QuerySettings(model="dlib-resnet"))
    p.load()
    return p


Start = Callable[..., QueryService]


@pytest.fixture
def query(pipeline: FacePipeline, milvus_uri: str, collection_name: str) -> Iterator[Start]:
    started: list[QueryService] = []

    def start(catalog: Catalog | None = None, **kw: object) -> QueryService:
        fields: dict[str, object] = {
            "model": "dlib-resnet",
            "port": 0,
            "metrics_port": 0,
            "web_port": 0,
            "collection": collection_name,
        }
        settings = QuerySettings(**(fields | kw))  # type: ignore[arg-type]
        store = open_face_store(settings, milvus_uri, pipeline.model_name, pipeline.dim)
        service = QueryService(settings, pipeline, store, catalog, CollectorRegistry())
        service.start()
        service.ready()
        started.append(service)
        return service

    yield start
    for s in started:
        s.stop(0)


def photo() -> bytes:
    return lfw("Tony_Blair", 1).read_bytes()


def test_bearer_token_is_required_on_every_rpc_but_health(query: Start, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    service = query(auth_token=TOKEN)
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = rvs_pb2_grpc.SearchServiceStub(channel)
        for metadata, detail in (((), "missing credentials"), ((("authorization", "Bearer nope"),), "invalid token")):
            with pytest.raises(grpc.RpcError) as info:
                stub.Search(pb.SearchRequest(image=photo()), metadata=metadata, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and detail in info.value.details()
            assert error_reason(info.value) == "UNAUTHENTICATED"
        with pytest.raises(grpc.RpcError) as info:
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = stub.Search(
            pb.SearchRequest(image=photo()), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30
        )
        assert answer.model == "dlib-resnet"
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes need no token
    refused = service.servicer.metrics.rpcs.labels("Search", "UNAUTHENTICATED")._value.get()
    assert refused == 2
    assert TOKEN not in caplog.text


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_tls_and_mutual_tls(query: Start, ca: trustme.CA, tmp_path: Path) -> None:
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    service = query(tls_cert_file=cert, tls_key_file=key, auth_token=TOKEN)
    target = f"localhost:{service.port}"

    trusted = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    with grpc.secure_channel(target, trusted) as channel:
        answer = rvs_pb2_grpc.SearchServiceStub(channel).Search(
            pb.SearchRequest(image=photo()), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30
        )
        assert answer.model == "dlib-resnet"
    untrusted = grpc.ssl_channel_credentials(root_certificates=trustme.CA().cert_pem.bytes())
    for channel in (grpc.secure_channel(target, untrusted), grpc.insecure_channel(target)):
        with channel, pytest.raises(grpc.RpcError) as info:
            rvs_pb2_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(image=photo()), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails

    # The CLI's flags: --tls-ca and --token (or RVS_AUTH_TOKEN).
    cli = [sys.executable, "-m", "rvs.cli", "search", str(lfw("Tony_Blair", 2)), "--target", target]
    ok = subprocess.run([*cli, "--tls-ca", str(ca_file), "--token", TOKEN], capture_output=True, text=True)
    assert ok.returncode == 0 and "dlib-resnet" in ok.stdout, ok.stderr
    no_token = subprocess.run([*cli, "--tls-ca", str(ca_file)], capture_output=True, text=True)
    assert no_token.returncode == 1 and "UNAUTHENTICATED" in no_token.stderr

    # Mutual TLS: a client certificate signed by the configured CA is required.
    service.stop(0)
    mutual = query(tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=ca_file)
    target = f"localhost:{mutual.port}"
    client_cert = ca.issue_cert("client@example.com")
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem.bytes(),
        private_key=client_cert.private_key_pem.bytes(),
        certificate_chain=client_cert.cert_chain_pems[0].bytes(),
    )
    with grpc.secure_channel(target, with_cert) as channel:
        assert rvs_pb2_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(image=photo()), timeout=30).model
    with grpc.secure_channel(target, trusted) as channel, pytest.raises(grpc.RpcError) as info:
        rvs_pb2_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(image=photo()), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_settings_must_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both tls_cert_file and tls_key_file"):
        QuerySettings(tls_cert_file=tmp_path / "c.pem")


def big_photo() -> bytes:
    """A large photo with a face: slow enough to analyse that requests overlap."""
    canvas = Image.new("RGB", (4000, 3000), (90, 110, 120))
    canvas.paste(Image.open(lfw("Tony_Blair", 1)).resize((600, 600)), (1700, 1200))
    out = io.BytesIO()
    canvas.save(out, format="JPEG")
    return out.getvalue()


def test_deadline_and_concurrency_limit(query: Start) -> None:
    tight = query(rpc_deadline_s=0.001)
    with grpc.insecure_channel(f"127.0.0.1:{tight.port}") as channel, pytest.raises(grpc.RpcError) as info:
        rvs_pb2_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(image=photo()), timeout=30)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and error_reason(info.value) == "DEADLINE_EXCEEDED"

    limited = query(max_concurrent_rpcs=1, rpc_workers=4, detect_max_side=4000)
    image = big_photo()
    codes: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def call() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{limited.port}") as channel:
            try:
                rvs_pb2_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(image=image), timeout=60)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert grpc.StatusCode.OK in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_clients_see_unavailable_then_success_across_a_restart(query: Start) -> None:
    service = query()
    port = service.port
    codes: list[grpc.StatusCode] = []
    stop = threading.Event()

    def client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rvs_pb2_grpc.SearchServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.Search(pb.SearchRequest(image=photo()), timeout=5)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
                time.sleep(0.05)

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 30
    while grpc.StatusCode.OK not in codes and time.monotonic() < deadline:
        time.sleep(0.1)
    service.stop(1)
    time.sleep(1.0)
    restarted = query(port=port)
    assert restarted.port == port
    seen = len(codes)
    while codes[seen:].count(grpc.StatusCode.OK) < 3 and time.monotonic() < deadline + 30:
        time.sleep(0.1)
    stop.set()
    thread.join()
    first_down = codes.index(grpc.StatusCode.UNAVAILABLE)
    assert set(codes[:first_down]) == {grpc.StatusCode.OK}
    assert codes[-1] == grpc.StatusCode.OK
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, "only UNAVAILABLE while it was down"


def test_metrics_endpoint_binds_only_its_interface() -> None:
    port = free_port()
    endpoint = MetricsEndpoint(CollectorRegistry(), "127.0.0.2", port)
    endpoint.start()
    try:
        assert urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5).status == 200
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        endpoint.stop()


def test_a_bad_filter_is_invalid_argument_and_never_disturbs_other_searches(query: Start) -> None:
    """Out-of-range numbers are refused before Milvus sees them, and a refused request never closes
    the Milvus connection that every other search shares."""
    service = query()
    faces = service.engine.analyse(photo())
    failures: list[Exception] = []
    done = threading.Event()

    def innocent() -> None:
        for _ in range(50):  # bounded: at most 4 x 50 searches
            try:
                service.engine.search_faces(faces, pb.SearchRequest())
            except Exception as exc:
                failures.append(exc)
            if done.is_set():
                return

    threads = [threading.Thread(target=innocent) for _ in range(4)]
    for t in threads:
        t.start()
    bad = [
        {"ingested_after_ms": -(2**63)},
        {"ingested_before_ms": -(2**63)},
        {"ingested_after_ms": 2**63 - 1},
        {"ingested_before_ms": -1},
        {"kinds": 7},  # type: ignore[dict-item]
    ]
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = rvs_pb2_grpc.SearchServiceStub(channel)
        for fields in bad:
            with pytest.raises(grpc.RpcError) as info:
                stub.Search(pb.SearchRequest(image=photo(), **fields), timeout=30)  # type: ignore[arg-type]
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (fields, info.value.details())
            assert error_reason(info.value) == "INVALID_PARAMETER"
    done.set()
    for t in threads:
        t.join()
    assert failures == []


def crowd_photo(side: int = 10, cell: int = 64) -> bytes:
    """A 640x640 JPEG of side x side real LFW faces, one person each (about 90 are detected)."""
    people = sorted(p for p in lfw_people().iterdir() if p.is_dir())[: side * side]
    canvas = Image.new("RGB", (side * cell, side * cell), (120, 120, 120))
    for i, person in enumerate(people):
        with Image.open(min(person.glob("*.jpg"))) as img:
            face = img.crop((60, 50, 190, 200)).resize((cell, cell))  # LFW's faces sit in the middle
        canvas.paste(face, ((i % side) * cell, (i // side) * cell))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=92)
    return out.getvalue()


def test_a_crowded_photo_embeds_only_the_searched_face_within_the_deadline(query: Start) -> None:
    """Embedding every face of a crowd took ~0.13 s each (38 CPU-s for 256): only the searched one is,
    at most max_query_faces are reported, largest first, and the deadline holds."""
    service = query(rpc_deadline_s=8.0, max_query_faces=64)
    image = crowd_photo()
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        started = time.monotonic()
        answer = rvs_pb2_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(image=image), timeout=30)
        assert time.monotonic() - started < 8.0
    assert len(answer.query_faces) == 64 and answer.used_face_index == 0
    areas = [(f.box.x2 - f.box.x1) * (f.box.y2 - f.box.y1) for f in answer.query_faces]
    assert areas == sorted(areas, reverse=True)

    # The search page's way: analyse once, search one face, then another; each is embedded once.
    faces = service.engine.analyse(image)
    assert len(faces) == 64 and not any(f.embedded for f in faces)
    for _ in range(2):
        service.engine.search_faces(faces, pb.SearchRequest(face_index=5))
    assert [i for i, f in enumerate(faces) if f.embedded] == [5]
    service.engine.search_faces(faces, pb.SearchRequest(face_index=63))
    assert [i for i, f in enumerate(faces) if f.embedded] == [5, 63]
    with pytest.raises(FaceIndexOutOfRange, match="64 face"):
        service.engine.search_faces(faces, pb.SearchRequest(face_index=64))


def stall(channel: grpc.Channel, method: str, calls: int) -> tuple[threading.Event, list[grpc.Future]]:
    """`calls` real calls of a unary method whose request message never comes: the client sends the
    headers and then waits (until the event is set)."""
    release = threading.Event()

    def nothing() -> Iterator[bytes]:
        release.wait(60)
        yield from ()

    call = channel.stream_unary(method, request_serializer=bytes, response_deserializer=bytes)
    return release, [call.future(nothing(), timeout=60) for _ in range(calls)]


def test_stalled_calls_leave_health_and_cheap_rpcs_answerable(query: Start) -> None:
    service = query()  # RVS_RPC_WORKERS: 8
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        release, stalled = stall(channel, "/rvs.v1.SearchService/GetMedia", 12)
        try:
            time.sleep(1.0)  # the calls reach the server
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as info:
                rvs_pb2_grpc.SearchServiceStub(channel).GetMedia(pb.GetMediaRequest(media_id="nope"), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # answered: this service has no catalog
            assert not any(call.done() for call in stalled)
        finally:
            release.set()
            for call in stalled:
                call.cancel()


def test_a_stalled_call_ends_with_its_connection_age(query: Start) -> None:
    service = query(grpc_max_connection_age_s=1.0, grpc_max_connection_age_grace_s=1.0)
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        release, (call,) = stall(channel, "/rvs.v1.SearchService/GetMedia", 1)
        try:
            error = call.exception(timeout=15)
            assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE, error
        finally:
            release.set()


def test_media_ids_are_checked_and_never_echoed_whole(query: Start, tmp_path: Path) -> None:
    service = query(catalog=Catalog(tmp_path / "catalog.db"))
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = rvs_pb2_grpc.SearchServiceStub(channel)
        for call in (
            lambda media_id: stub.GetMedia(pb.GetMediaRequest(media_id=media_id), timeout=10),
            lambda media_id: stub.DeleteMedia(pb.DeleteMediaRequest(media_id=media_id), timeout=10),
        ):
            for media_id in ("a" * 100_000, "../../etc/passwd", 'x" or media_id != "', "é", ""):
                with pytest.raises(grpc.RpcError) as info:
                    call(media_id)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (media_id[:20], info.value.code())
                assert error_reason(info.value) == "INVALID_PARAMETER" and len(info.value.details()) < 200
            with pytest.raises(grpc.RpcError) as info:
                call("0" * 64)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND and "0" * 64 in info.value.details()
