"""End to end in embedded mode with the real offline model (dlib ResNet) and a real Milvus:
clips built from real photos at known times are dropped into a watched folder; Search over gRPC
with *different* photos of each person must return the right photos, videos and time ranges."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from rvs.cli.embedded import EmbeddedSettings
from rvs.v1 import rvs_pb2 as pb

from conftest import error_reason, lfw, shared
from corpus import BLAIR, BUSH, POWELL, RUMSFELD, STRANGERS, near, search, segments
from embedded_app import Running, corpus_env, ingested, start
from exposition import missing

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> tuple[EmbeddedSettings, Path]:
    return corpus_env(tmp_path_factory, milvus_uri, "e2e")


@pytest.fixture(scope="module")
def running(env: tuple[EmbeddedSettings, Path]) -> Iterator[Running]:
    """The corpus ingested once, shared by the tests that only query it (and add a duplicate)."""
    yield from ingested(env)


@pytest.fixture
def own_env(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> tuple[EmbeddedSettings, Path]:
    return corpus_env(tmp_path_factory, milvus_uri, "e2e_own")


@pytest.fixture
def own(own_env: tuple[EmbeddedSettings, Path]) -> Iterator[Running]:
    """The corpus ingested for one test alone: one that stops rvs and deletes from the index."""
    yield from ingested(own_env)


def test_ingest_status_is_exact(running: Running) -> None:
    media = {Path(m.uri).name: m for m in running.stub.ListMedia(pb.ListMediaRequest()).media}
    assert set(media) == {"clip_a.mp4", "clip_b.mp4", "no_faces.mp4", "rumsfeld.jpg", "schroeder.jpg", "broken.mp4"}
    a = media["clip_a.mp4"]
    assert (a.state, a.frames_sampled, a.frames_embedded, a.sampling_complete) == (pb.MEDIA_STATE_DONE, 12, 12, True)
    # Bush at 1, 2, 3 s; Blair at 7, 8, 9 s, and the man beside him in that photo.
    assert a.faces_found == 9
    assert media["clip_b.mp4"].faces_found >= 8  # Powell and Bush at 2, 3, 4, 5 s
    store = running.app.store
    assert store is not None
    for m in media.values():  # the status agrees with the index exactly
        assert m.faces_found == store.count(m.media_id), m.uri
    assert media["no_faces.mp4"].state == pb.MEDIA_STATE_DONE and media["no_faces.mp4"].faces_found == 0
    assert media["rumsfeld.jpg"].kind == pb.MEDIA_KIND_IMAGE and media["rumsfeld.jpg"].faces_found == 1
    broken = media["broken.mp4"]
    assert broken.state == pb.MEDIA_STATE_FAILED and broken.error_reason == "DECODE_ERROR" and broken.error_detail
    got = running.stub.GetMedia(pb.GetMediaRequest(media_id=a.media_id))
    assert got == a


def test_person_found_in_videos_with_time_ranges(running: Running) -> None:
    resp = search(running.stub, lfw(BUSH, 10))
    segs = segments(resp)
    assert set(segs) == {"clip_a.mp4", "clip_b.mp4"}
    assert near(segs["clip_a.mp4"], [(1000, 4000)])
    assert near(segs["clip_b.mp4"], [(2000, 6000)])
    assert resp.images == []
    best = resp.videos[0].segments[0]
    assert best.best_box.x2 > best.best_box.x1 and best.best_score >= resp.min_score

    segs = segments(search(running.stub, lfw(BLAIR, 10)))
    assert set(segs) == {"clip_a.mp4"} and near(segs["clip_a.mp4"], [(7000, 10000)])

    segs = segments(search(running.stub, lfw(POWELL, 10)))
    assert set(segs) == {"clip_b.mp4"} and near(segs["clip_b.mp4"], [(2000, 6000)])


def test_person_found_in_photos(running: Running) -> None:
    resp = search(running.stub, lfw(RUMSFELD, 5))
    assert [Path(i.uri).name for i in resp.images] == ["rumsfeld.jpg"] and resp.matched
    assert resp.videos == []
    assert search(running.stub, lfw(RUMSFELD, 5), kinds=pb.KIND_FILTER_VIDEOS).images == []


@pytest.mark.parametrize(("person", "n"), STRANGERS)
def test_people_not_in_the_index_are_not_matched(running: Running, person: str, n: int) -> None:
    resp = search(running.stub, lfw(person, n))
    assert (list(resp.images), list(resp.videos)) == ([], []), f"{person} matched {resp}"
    assert not resp.matched  # said explicitly: no match


def test_query_errors_have_documented_codes(running: Running) -> None:
    no_face = shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg")
    cases = [
        (no_face.read_bytes(), {}, grpc.StatusCode.FAILED_PRECONDITION, "NO_FACE"),
        (b"\x89PNG garbage", {}, grpc.StatusCode.INVALID_ARGUMENT, "DECODE_ERROR"),
        (b"", {}, grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_IMAGE"),
        (lfw(BUSH, 10).read_bytes(), {"top_k": 10**6}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PARAMETER"),
        (lfw(BUSH, 10).read_bytes(), {"min_score": 3.0}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PARAMETER"),
        (lfw(BUSH, 10).read_bytes(), {"face_index": 5}, grpc.StatusCode.FAILED_PRECONDITION, "FACE_INDEX_OUT_OF_RANGE"),
    ]
    for image, kw, code, reason in cases:
        with pytest.raises(grpc.RpcError) as info:
            running.stub.Search(pb.SearchRequest(image=image, **kw), timeout=30)  # type: ignore[arg-type]
        assert info.value.code() == code, (reason, info.value.details())
        assert error_reason(info.value) == reason
        assert info.value.details()
    with pytest.raises(grpc.RpcError) as info:  # over the request size limit: gRPC's own check
        running.stub.Search(pb.SearchRequest(image=b"\0" * (21 * 1024 * 1024)), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    import io

    from PIL import Image

    huge = io.BytesIO()
    Image.new("1", (8000, 8000)).save(huge, format="PNG")  # 64 Mpx in a small file
    with pytest.raises(grpc.RpcError) as info:
        running.stub.Search(pb.SearchRequest(image=huge.getvalue()), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_reason(info.value) == "IMAGE_TOO_LARGE"
    assert "50000000" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        running.stub.GetMedia(pb.GetMediaRequest(media_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_awkward_but_valid_queries(running: Running, tmp_path: Path) -> None:
    """Huge payloads and headers are refused cleanly; odd but valid requests are answered."""
    import io

    from PIL import Image

    with pytest.raises(grpc.RpcError) as info:  # a 50 MB "image"
        running.stub.Search(pb.SearchRequest(image=b"\xff" * (50 * 1024 * 1024)), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    header = io.BytesIO()
    Image.new("1", (20000, 20000)).save(header, format="PNG")  # 400 Mpx declared, a few kB sent
    with pytest.raises(grpc.RpcError) as info:
        running.stub.Search(pb.SearchRequest(image=header.getvalue()), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_reason(info.value) == "IMAGE_TOO_LARGE"

    gray = io.BytesIO()
    Image.open(lfw(BUSH, 10)).convert("L").save(gray, format="JPEG")
    answer = running.stub.Search(pb.SearchRequest(image=gray.getvalue(), top_k=0), timeout=30)
    assert "clip_a.mp4" in segments(answer)  # grayscale works; top_k 0 means the server's default

    crowd = Image.new("RGB", (6 * 160, 5 * 200), (128, 128, 128))  # 30 people in one photo
    people = sorted((lfw(BUSH, 1).parent.parent).glob("*/*_0001.jpg"))[:30]
    for i, photo in enumerate(people):
        crowd.paste(Image.open(photo).crop((60, 40, 190, 200)), ((i % 6) * 160 + 15, (i // 6) * 200 + 20))
    buf = io.BytesIO()
    crowd.save(buf, format="JPEG", quality=95)
    answer = running.stub.Search(pb.SearchRequest(image=buf.getvalue()), timeout=60)
    assert len(answer.query_faces) >= 28 and answer.used_face_index == 0
    last = running.stub.Search(pb.SearchRequest(image=buf.getvalue(), face_index=len(answer.query_faces) - 1))
    assert last.used_face_index == len(answer.query_faces) - 1

    everyone = running.stub.Search(pb.SearchRequest(image=lfw(BUSH, 10).read_bytes(), min_score=-0.5), timeout=30)
    assert (len(everyone.images), len(everyone.videos)) == (2, 2)  # every photo and video with a face
    with pytest.raises(grpc.RpcError) as info:
        running.stub.Search(pb.SearchRequest(image=lfw(BUSH, 10).read_bytes(), min_score=-1.5), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_reason(info.value) == "INVALID_PARAMETER"


def test_several_query_faces_can_be_chosen(running: Running, tmp_path: Path) -> None:
    from PIL import Image

    def face_only(path: Path, size: int) -> Image.Image:
        # LFW photos often show a second person at the edge: keep the centred face only.
        return Image.open(path).crop((60, 40, 190, 200)).resize((size, size * 160 // 130))

    canvas = Image.new("RGB", (600, 300), (90, 90, 90))
    canvas.paste(face_only(lfw(BLAIR, 10), 110), (20, 60))  # smaller face
    canvas.paste(face_only(lfw(POWELL, 10), 180), (320, 20))  # larger face
    photo = tmp_path / "two.jpg"
    canvas.save(photo)
    default = search(running.stub, photo)
    assert len(default.query_faces) == 2 and default.used_face_index == 0
    assert set(segments(default)) == {"clip_b.mp4"}  # the largest face: Powell
    chosen = search(running.stub, photo, face_index=1)
    assert set(segments(chosen)) == {"clip_a.mp4"}  # Blair


def test_health_reflection_and_metrics(running: Running) -> None:
    search(running.stub, lfw(BUSH, 10))  # a Search of its own to count, whichever tests ran before
    health = health_pb2_grpc.HealthStub(running.channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest(service="rvs.v1.SearchService")).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    refl = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    reply = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    services = {s.name for s in reply.list_services_response.service}
    assert {"rvs.v1.SearchService", "grpc.health.v1.Health"} <= services
    text = urllib.request.urlopen(running.metrics_url, timeout=10).read().decode()
    values = {
        s.name + str(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    assert values["rvs_frames_embedded_total[]"] >= 12 + 10 + 6 + 2
    assert values["rvs_faces_detected_total[]"] >= 9 + 8 + 2
    assert values["rvs_index_faces[]"] >= 19
    assert values["rvs_media_failed_total[('reason', 'DECODE_ERROR')]"] == 1
    assert values["rvs_index_media[('state', 'done')]"] == 5
    assert any(k.startswith("rvs_rpcs_total") and "Search" in k for k in values)
    assert missing(text, "sampler", "embedder", "query") == set()  # embedded: one endpoint serves it all


def test_duplicate_content_is_not_indexed_twice(running: Running) -> None:
    shutil.copy(lfw(RUMSFELD, 1), running.watch / "rumsfeld-copy.jpg")
    time.sleep(2)
    names = [Path(m.uri).name for m in running.stub.ListMedia(pb.ListMediaRequest()).media]
    assert "rumsfeld-copy.jpg" not in names and len(names) == 6
    assert len(search(running.stub, lfw(RUMSFELD, 5)).images) == 1


def test_restart_reingests_nothing_and_answers_the_same(own: Running, own_env: tuple[EmbeddedSettings, Path]) -> None:
    before = {p: segments(search(own.stub, lfw(p, 10))) for p in (BUSH, BLAIR)}
    listing = {m.media_id: m for m in own.stub.ListMedia(pb.ListMediaRequest()).media}
    own.channel.close()
    own.app.stop()

    s, watch = own_env
    again = start(s, watch)
    try:
        time.sleep(3)  # several scans
        after = {m.media_id: m for m in again.stub.ListMedia(pb.ListMediaRequest()).media}
        assert {k: (m.state, m.frames_embedded, m.faces_found) for k, m in after.items()} == {
            k: (m.state, m.frames_embedded, m.faces_found) for k, m in listing.items()
        }
        text = urllib.request.urlopen(again.metrics_url, timeout=10).read().decode()
        discovered = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "rvs_media_discovered_total"
        )
        assert discovered == 0
        assert {p: segments(search(again.stub, lfw(p, 10))) for p in (BUSH, BLAIR)} == before

        # Deleting a media item removes its faces from the answers.
        clip_b = next(m for m in after.values() if m.uri.endswith("clip_b.mp4"))
        removed = again.stub.DeleteMedia(pb.DeleteMediaRequest(media_id=clip_b.media_id))
        assert removed.faces_removed == clip_b.faces_found >= 8
        assert set(segments(search(again.stub, lfw(POWELL, 10)))) == set()
        assert again.stub.GetMedia(pb.GetMediaRequest(media_id=clip_b.media_id)).state == pb.MEDIA_STATE_DELETED
    finally:
        again.channel.close()
        again.app.stop()
        own.app = again.app  # the fixture's teardown stops it again: harmless
