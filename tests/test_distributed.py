"""Distributed mode as real processes: `rvs sampler`, several `rvs embedder` in one consumer
group and `rvs query`, joined by a real Kafka broker and a real Milvus server; with faults."""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, KafkaBroker, TcpProxy, scrape

from rvs.core.store.faces import FaceStore, collection_for
from rvs.v1 import rvs_pb2 as pb

from conftest import lfw, shared
from corpus import BLAIR, BUSH, build_corpus, search, segments
from exposition import convention_problems, missing, scrape_text
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video

pytestmark = pytest.mark.e2e

EXPECTED_STATES = {
    "clip_a.mp4": pb.MEDIA_STATE_DONE,
    "clip_b.mp4": pb.MEDIA_STATE_DONE,
    "no_faces.mp4": pb.MEDIA_STATE_DONE,
    "rumsfeld.jpg": pb.MEDIA_STATE_DONE,
    "schroeder.jpg": pb.MEDIA_STATE_DONE,
    "broken.mp4": pb.MEDIA_STATE_FAILED,
}


def states(media: list[pb.Media]) -> dict[str, int]:
    return {Path(m.uri).name: m.state for m in media}


@pytest.fixture
def watch(tmp_path: Path) -> Path:
    folder = tmp_path / "watch"
    folder.mkdir()
    build_corpus(folder)
    return folder


@pytest.fixture
def cluster(tmp_path: Path, watch: Path, kafka_bootstrap: str, milvus_uri: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, kafka_bootstrap, milvus_uri, watch)
    yield c
    c.stop()


def test_scale_out_three_embedders(cluster: Cluster) -> None:
    cluster.start(embedders=3)
    media = cluster.wait_done(6)
    assert states(media) == EXPECTED_STATES
    stub = cluster.stub()
    # Each clip's frames were spread over the partitions, so over the embedders: its faces still make
    # one track each, as in embedded mode (test_find_person), because tracks are linked at query time.
    answer = search(stub, lfw(BUSH, 10))
    assert segments(answer) == {"clip_a.mp4": [(1000, 4000)], "clip_b.mp4": [(2000, 6000)]}
    assert sorted(s.samples for v in answer.videos for s in v.segments) == [3, 4]
    assert set(segments(search(stub, lfw(BLAIR, 10)))) == {"clip_a.mp4"}
    cluster.assert_index_exact(media)

    # People are clustered by the query service and recorded on the events topic, folded back into
    # its catalog: Bush's track in clip_a (its frames embedded by several embedders) is a person.
    def bush_is_a_person() -> bool:
        people = stub.ListPeople(pb.ListPeopleRequest(), timeout=30).people
        answers = [stub.GetPerson(pb.GetPersonRequest(person_id=p.person_id), timeout=30).answer for p in people]
        bush = {s.track_id for v in answer.videos for s in v.segments}
        return any(bush & {s.track_id for v in a.videos for s in v.segments} for a in answers)

    cluster.wait_until(bush_is_a_person, 60, "Bush clustered into a person")
    # The query process serves the search page too, its status list from the events topic.
    page = f"http://127.0.0.1:{cluster.web_port}"
    assert b"/static/app.js" in urllib.request.urlopen(page, timeout=10).read()
    listed = json.loads(urllib.request.urlopen(f"{page}/api/media", timeout=10).read())["media"]
    assert sorted(m["mediaId"] for m in listed) == sorted(m.media_id for m in media)
    for name in ("sampler", "embedder-0", "query"):  # each service's own /metrics, parsed
        text = scrape_text(cluster.metrics_ports[name])
        assert missing(text, name.split("-")[0]) == set(), name
        assert convention_problems(text) == []
    shares = [cluster.embedded(f"embedder-{i}") for i in range(3)]
    assert all(s > 0 for s in shares), f"work not spread over the group: {shares}"
    assert sum(shares) >= sum(m.frames_sampled for m in media)  # at least once each
    assert cluster.stop() == dict.fromkeys(cluster.procs, 0)


def test_embedder_killed_mid_batch(cluster: Cluster) -> None:
    cluster.start(embedders=2)
    cluster.wait_until(lambda: cluster.embedded("embedder-1") >= 1, what="embedder-1 at work")
    cluster.kill("embedder-1")  # SIGKILL: no commit, no goodbye to the group
    media = cluster.wait_done(6)
    assert states(media) == EXPECTED_STATES
    cluster.assert_index_exact(media)
    codes = cluster.stop()
    assert codes.pop("embedder-1") == -signal.SIGKILL and set(codes.values()) == {0}


def test_broker_restart_during_ingest(tmp_path: Path, watch: Path, milvus_uri: str) -> None:
    broker = KafkaBroker(tmp_path / "broker")
    broker.start()
    cluster = Cluster(tmp_path, broker.bootstrap, milvus_uri, watch)
    try:
        cluster.start(embedders=1)
        cluster.wait_until(lambda: cluster.embedded("embedder-0") >= 1, what="first frames embedded")
        broker.stop()
        shutil.copy(lfw("Colin_Powell", 2), watch / "late.jpg")  # arrives while the broker is down
        time.sleep(10)
        broker.start()
        media = cluster.wait_done(7)
        assert states(media) == {**EXPECTED_STATES, "late.jpg": pb.MEDIA_STATE_DONE}
        cluster.assert_index_exact(media)
        assert cluster.stop() == dict.fromkeys(cluster.procs, 0)
    finally:
        cluster.stop()
        broker.stop()


def test_milvus_outage_during_ingest(tmp_path: Path, watch: Path, kafka_bootstrap: str, milvus_uri: str) -> None:
    # The embedders reach Milvus through a proxy that goes away for 20 s: to them Milvus is gone
    # (connections reset, new ones refused), and then back. The query service keeps a direct line.
    proxy = TcpProxy(int(milvus_uri.rsplit(":", 1)[1]))
    proxy.up()
    cluster = Cluster(tmp_path, kafka_bootstrap, milvus_uri, watch)
    cluster.env_for["embedder-0"] = {"RVS_MILVUS_URI": f"http://127.0.0.1:{proxy.port}"}
    try:
        cluster.start(embedders=1)
        cluster.wait_until(lambda: cluster.embedded("embedder-0") >= 1, what="first frames embedded")
        proxy.down()
        shutil.copy(lfw("Colin_Powell", 2), watch / "late.jpg")  # work that certainly needs Milvus
        errors = lambda: scrape(cluster.metrics_ports["embedder-0"]).get("rvs_milvus_upsert_errors_total", 0)  # noqa: E731
        cluster.wait_until(lambda: errors() > 0, 60, "upsert errors while Milvus is away")
        time.sleep(20)
        stalled = cluster.media()
        assert not all(m.state in (pb.MEDIA_STATE_DONE, pb.MEDIA_STATE_FAILED) for m in stalled)
        proxy.up()
        media = cluster.wait_done(7)
        assert states(media) == {**EXPECTED_STATES, "late.jpg": pb.MEDIA_STATE_DONE}
        cluster.assert_index_exact(media)
        assert cluster.stop() == dict.fromkeys(cluster.procs, 0)
    finally:
        cluster.stop()
        proxy.down()


def test_sampler_killed_mid_video_resumes_without_gaps_or_duplicates(cluster: Cluster, watch: Path) -> None:
    # 1080p with 10 s GOPs: every frame is decoded, so sampling takes seconds and can be cut short.
    # Named to sort first: the sampler takes it before the rest of the corpus.
    background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (1920, 1080))
    face = lfw(BLAIR, 2)
    appears = scene(background, [Appearance(face, 30, 36, x=900, y=400)], {face: load_rgb(face, (300, 300))})
    write_video(watch / "a_long.mp4", appears, cfr_times(60, 30), rate=30, gop=300, options={"preset": "ultrafast"})
    cluster.start(embedders=1)
    published = lambda: scrape(cluster.metrics_ports["sampler"]).get("rvs_frames_published_total", 0)  # noqa: E731
    cluster.wait_until(lambda: published() >= 12, what="the sampler into the long video")
    cluster.kill("sampler")  # SIGKILL mid-video: its frames so far are on the bus, the rest never sent
    cluster.spawn("sampler", "sampler", "--watch", str(watch), "--data-dir", str(cluster.tmp / "sampler"))
    media = cluster.wait_done(7)
    assert states(media) == {**EXPECTED_STATES, "a_long.mp4": pb.MEDIA_STATE_DONE}
    long = next(m for m in media if m.uri.endswith("a_long.mp4"))
    assert long.frames_sampled == long.frames_embedded == 60  # every second once: no gap
    assert long.faces_found == 6
    cluster.assert_index_exact(media)  # and no duplicate
    assert segments(search(cluster.stub(), lfw(BLAIR, 10)))["a_long.mp4"] == [
        (30000, 36000)
    ]  # the track: 30 s to its last sample + 1 s
    assert cluster.stop() == dict.fromkeys(cluster.procs, 0)


def test_delete_media_is_an_event_every_service_folds(cluster: Cluster, watch: Path) -> None:
    """DeleteMedia during an ingest: the sampler stops it, the embedder writes none of it, and the
    query service, the sampler and a new copy behave after restarts as a careful operator expects."""
    background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (1920, 1080))
    face = lfw(BUSH, 2)
    appears = scene(background, [Appearance(face, 0, 90, x=900, y=400)], {face: load_rgb(face, (300, 300))})
    write_video(watch / "a_long.mp4", appears, cfr_times(90, 30), rate=30, gop=300, options={"preset": "ultrafast"})
    cluster.start(embedders=1)
    stub = cluster.stub()
    by_name = lambda: {Path(m.uri).name: m for m in cluster.media()}  # noqa: E731
    cluster.wait_until(lambda: by_name().get("a_long.mp4", pb.Media()).frames_embedded >= 1, what="a_long embedded")
    long = by_name()["a_long.mp4"]
    stub.DeleteMedia(pb.DeleteMediaRequest(media_id=long.media_id), timeout=30)
    assert stub.GetMedia(pb.GetMediaRequest(media_id=long.media_id)).state == pb.MEDIA_STATE_DELETED
    finished = (pb.MEDIA_STATE_DONE, pb.MEDIA_STATE_FAILED, pb.MEDIA_STATE_DELETED)
    cluster.wait_until(lambda: len(m := cluster.media()) == 7 and all(x.state in finished for x in m), 300, "ingest")
    photo = by_name()["rumsfeld.jpg"]
    assert stub.DeleteMedia(pb.DeleteMediaRequest(media_id=photo.media_id), timeout=30).faces_removed == 1
    assert "stopped sampling" in cluster.log("sampler") and "a_long.mp4: it was removed" in cluster.log("sampler")
    store = FaceStore(
        cluster.milvus_uri, collection_for(cluster.collection, "dlib-resnet"), "dlib-resnet", 128, consistency="Strong"
    )
    store.open()
    try:
        time.sleep(3)  # frames the embedder held when the removal came are deleted again
        assert store.count(long.media_id) == 0 and store.count(photo.media_id) == 0

        cluster.procs["query"].send_signal(signal.SIGTERM)  # restarts replay the events topic
        assert cluster.procs["query"].wait(60) == 0
        cluster.spawn_query()
        sampler_log = len(cluster.log("sampler", tail=10**9))
        cluster.procs["sampler"].send_signal(signal.SIGTERM)
        assert cluster.procs["sampler"].wait(60) == 0
        cluster.spawn("sampler", "sampler", "--watch", str(watch), "--data-dir", str(cluster.tmp / "sampler"))
        cluster.wait_until(lambda: len(cluster.media()) == 7, 120, "the query service back")
        media = by_name()
        assert media["a_long.mp4"].state == media["rumsfeld.jpg"].state == pb.MEDIA_STATE_DELETED
        assert {n: m.state for n, m in media.items() if n not in ("a_long.mp4", "rumsfeld.jpg")} == {
            n: s for n, s in EXPECTED_STATES.items() if n != "rumsfeld.jpg"
        }
        cluster.wait_until(lambda: scrape(cluster.metrics_ports["sampler"]) != {}, 120, "the sampler back")
        time.sleep(5)  # the restarted sampler's scans: nothing resumed, nothing found again
        assert "resuming" not in cluster.log("sampler", tail=10**9)[sampler_log:]
        assert scrape(cluster.metrics_ports["sampler"]).get("rvs_frames_published_total") == 0

        shutil.copy(watch / "rumsfeld.jpg", watch / "rumsfeld-again.jpg")  # a new copy: a new ingest
        again = lambda: stub.GetMedia(pb.GetMediaRequest(media_id=photo.media_id))  # noqa: E731
        cluster.wait_until(lambda: again().state == pb.MEDIA_STATE_DONE, 120, "the new copy ingested")
        assert (Path(again().uri).name, again().faces_found, store.count(photo.media_id)) == (
            "rumsfeld-again.jpg",
            1,
            1,
        )
        assert store.count(long.media_id) == 0
    finally:
        store.close()
    cluster.assert_index_exact(cluster.media())
    assert cluster.stop() == dict.fromkeys(cluster.procs, 0)
