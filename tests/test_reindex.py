"""Changing the model without losing the index: `Reindex` re-reads every catalogued item into the new
model's collection while searches keep answering from the current one, survives a stop mid-way,
reports items whose source is gone, and switches when complete. Real Milvus, real dlib-resnet and
facenet-casia models, real clips and photos from ../shared."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from cluster import Cluster, scrape

from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
from rvs.core.index_view import ModelMismatch
from rvs.core.store.faces import FaceStore, collection_for
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import error_reason, free_port, lfw, shared
from corpus import BUSH, POWELL, search
from embedded_app import settings, start, wait_done
from recorder import wait_for

pytestmark = pytest.mark.e2e

OLD, NEW = "dlib-resnet", "facenet-casia"


def with_model(s: EmbeddedSettings, model: str) -> EmbeddedSettings:
    return EmbeddedSettings(
        sampler=s.sampler,
        embedder=s.embedder.model_copy(update={"model": model}),
        query=s.query.model_copy(update={"model": model}),
    )


def reindex(stub: rvs_pb2_grpc.SearchServiceStub) -> pb.ReindexStatus:
    return stub.GetReindex(pb.GetReindexRequest(), timeout=10)


def names(resp: pb.SearchResponse) -> set[str]:
    return {Path(h.uri).name for h in (*resp.images, *resp.videos)}


def person_in(stub: rvs_pb2_grpc.SearchServiceStub, name: str) -> str | None:
    """The person whose videos include the file `name`, once clustered."""
    for person in stub.ListPeople(pb.ListPeopleRequest(), timeout=30).people:
        answer = stub.GetPerson(pb.GetPersonRequest(person_id=person.person_id), timeout=30).answer
        if name in {Path(v.uri).name for v in answer.videos}:
            return person.person_id
    return None


def test_embedded_reindex_to_another_model(tmp_path: Path, milvus_uri: str) -> None:
    watch, data = tmp_path / "watch", tmp_path / "data"
    watch.mkdir()
    driving = shared("media", "liveportrait", "assets", "examples", "driving")
    shutil.copy(driving / "d18.mp4", watch / "d18.mp4")  # 7 s: 8 samples of one speaker
    shutil.copy(lfw(POWELL, 1), watch / "powell.jpg")
    shutil.copy(lfw(BUSH, 1), watch / "bush.jpg")
    base = f"reidx_{int(time.time())}"
    s = settings(watch, data, free_port(), free_port(), milvus_uri, base)
    speaker = driving / "d19.jpg"  # another shot of the d18 speaker

    r = start(s, watch)
    try:
        ingested = {Path(m.uri).name: m for m in wait_done(r.stub, 3)}
        before = search(r.stub, lfw(POWELL, 2))
        assert (before.model, names(before)) == (OLD, {"powell.jpg"})
        assert names(search(r.stub, speaker)) == {"d18.mp4"}
        assert reindex(r.stub).active_model == OLD
        wait_for(lambda: person_in(r.stub, "d18.mp4") is not None, 60)
        speaker_id = person_in(r.stub, "d18.mp4")
        assert speaker_id is not None
        r.stub.UpdatePerson(pb.UpdatePersonRequest(person_id=speaker_id, name="The speaker"), timeout=30)
        (watch / "bush.jpg").unlink()  # its source goes; the item stays catalogued

        with pytest.raises(grpc.RpcError) as unknown:
            r.stub.Reindex(pb.ReindexRequest(model="resnet-9000"), timeout=30)
        assert error_reason(unknown.value) == "UNKNOWN_MODEL"
        started = r.stub.Reindex(pb.ReindexRequest(model=NEW), timeout=120)
        assert (started.active_model, started.target_model, started.items_total) == (OLD, NEW, 3)
        # Searches keep answering from the current model's collection meanwhile.
        during = search(r.stub, lfw(POWELL, 2))
        assert (during.model, names(during)) == (OLD, {"powell.jpg"})
        with pytest.raises(grpc.RpcError) as busy:
            r.stub.Reindex(pb.ReindexRequest(model="facenet-vggface2"), timeout=30)
        assert error_reason(busy.value) == "REINDEX_RUNNING"
    finally:
        r.channel.close()
        r.app.stop()  # what SIGTERM does: the reindex is not lost

    # A restart with the model the index still uses resumes the reindex and completes it.
    r = start(s, watch)
    try:
        resumed = reindex(r.stub)
        assert (resumed.active_model, resumed.target_model) == (OLD, NEW)
        wait_for(lambda: reindex(r.stub).active_model == NEW, 300)
        wait_for(lambda: search(r.stub, lfw(POWELL, 2)).model == NEW, 30)  # the switch is being made
        done = reindex(r.stub)
        assert (done.target_model, done.last_model, done.items_total, done.items_done) == ("", NEW, 3, 2)
        assert [(Path(m.uri).name, m.reason) for m in done.missing] == [("bush.jpg", "SOURCE_GONE")]
        assert sorted(done.models) == [OLD, NEW]
        # People are clustered again with the new model's vectors; the speaker keeps their name.
        wait_for(lambda: r.stub.ListPeople(pb.ListPeopleRequest(), timeout=30).model == NEW, 60)
        assert person_in(r.stub, "d18.mp4") == speaker_id
        named = r.stub.ListPeople(pb.ListPeopleRequest(named_only=True), timeout=30).people
        assert [(p.person_id, p.name) for p in named] == [(speaker_id, "The speaker")]
        after = search(r.stub, lfw(POWELL, 2))
        assert (after.model, names(after)) == (NEW, {"powell.jpg"})
        clip = search(r.stub, speaker)
        assert (clip.model, names(clip)) == (NEW, {"d18.mp4"})
        media = {Path(m.uri).name: m for m in r.stub.ListMedia(pb.ListMediaRequest()).media}
        # Faces found are the new model's now: the same detector finds the same faces.
        assert media["d18.mp4"].faces_found == ingested["d18.mp4"].faces_found >= 7
        assert media["powell.jpg"].faces_found == 1
        # A photo that lands after the switch is indexed with the new model only.
        shutil.copy(lfw(POWELL, 3), watch / "powell-3.jpg")
        media = {Path(m.uri).name: m for m in wait_done(r.stub, 4)}
        assert names(search(r.stub, lfw(POWELL, 2))) == {"powell.jpg", "powell-3.jpg"}
    finally:
        r.channel.close()
        r.app.stop()

    # The old collection is kept (switching back is another reindex); each refuses the other model.
    old = FaceStore(milvus_uri, collection_for(base, OLD), OLD, 128, consistency="Strong")
    old.open()
    new = FaceStore(milvus_uri, collection_for(base, NEW), NEW, 512, consistency="Strong")
    new.open()
    try:
        faces = lambda store, name: store.count(media[name].media_id)  # noqa: E731
        assert [faces(old, n) for n in ("d18.mp4", "powell.jpg", "bush.jpg", "powell-3.jpg")] == [
            ingested["d18.mp4"].faces_found,
            1,
            1,
            0,
        ]
        assert [faces(new, n) for n in ("d18.mp4", "powell.jpg", "bush.jpg", "powell-3.jpg")] == [
            ingested["d18.mp4"].faces_found,
            1,
            0,  # its source was gone
            1,
        ]
    finally:
        old.close()
        new.close()

    # Started again with the model of before, rvs says what to do instead of starting an empty index.
    app = EmbeddedApp(s)
    with pytest.raises(ModelMismatch, match=f"rvs reindex --model {OLD}"):
        app.start()
    app.stop()


def test_distributed_reindex_with_kafka_and_milvus_server(
    tmp_path: Path, kafka_bootstrap: str, milvus_uri: str
) -> None:
    """The same in distributed mode, kept short: `rvs reindex`, a sampler stopped mid-way, the
    embedder serving both models, every query replica's catalog from the events topic."""
    watch = tmp_path / "watch"
    watch.mkdir()
    driving = shared("media", "liveportrait", "assets", "examples", "driving")
    shutil.copy(driving / "d18.mp4", watch / "d18.mp4")
    shutil.copy(lfw(POWELL, 1), watch / "powell.jpg")
    shutil.copy(lfw(BUSH, 1), watch / "bush.jpg")
    cluster = Cluster(tmp_path, kafka_bootstrap, milvus_uri, watch)
    try:
        cluster.start(embedders=1)
        ingested = {Path(m.uri).name: m for m in cluster.wait_done(3)}
        stub = cluster.stub()
        assert search(stub, lfw(POWELL, 2)).model == OLD
        (watch / "bush.jpg").unlink()
        cli = subprocess.run(
            [sys.executable, "-m", "rvs.cli", "reindex", "--model", NEW, "--target", f"127.0.0.1:{cluster.port}"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert cli.returncode == 0, cli.stderr
        assert f"reindex into {NEW}: 0/3 items" in cli.stdout
        during = search(stub, lfw(POWELL, 2))
        assert (during.model, names(during)) == (OLD, {"powell.jpg"})
        # Stopped mid-reindex: at the restart it re-reads only what it had not (its state says which).
        cluster.procs["sampler"].send_signal(signal.SIGTERM)
        assert cluster.procs["sampler"].wait(60) == 0
        cluster.spawn("sampler", "sampler", "--watch", str(watch), "--data-dir", str(cluster.tmp / "sampler"))
        cluster.wait_until(lambda: scrape(cluster.metrics_ports["sampler"]) != {}, 120, "the sampler back")
        cluster.wait_until(lambda: reindex(stub).active_model == NEW, 300, "the switch")
        wait_for(lambda: search(stub, lfw(POWELL, 2)).model == NEW, 30)
        done = reindex(stub)
        assert (done.items_total, done.items_done) == (3, 2)
        assert [(Path(m.uri).name, m.reason) for m in done.missing] == [("bush.jpg", "SOURCE_GONE")]
        assert names(search(stub, lfw(POWELL, 2))) == {"powell.jpg"}
        assert names(search(stub, driving / "d19.jpg")) == {"d18.mp4"}
        status = subprocess.run(
            [sys.executable, "-m", "rvs.cli", "status", "--once", "--target", f"127.0.0.1:{cluster.port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert f"index: model {NEW}; last reindex into {NEW}: 2/3 items" in status.stdout
        assert "missing: " in status.stdout and "bush.jpg" in status.stdout
        new = FaceStore(milvus_uri, collection_for(cluster.collection, NEW), NEW, 512, consistency="Strong")
        new.open()
        try:
            assert new.count(ingested["d18.mp4"].media_id) == ingested["d18.mp4"].faces_found
            assert new.count(ingested["bush.jpg"].media_id) == 0
        finally:
            new.close()
        # Every item re-read once across the restart (SIGTERM may come before, during or after them).
        rereads = cluster.log("sampler", tail=10**9)
        rereads = rereads[rereads.index(f"reindex into {NEW}") :]
        assert sorted(Path(p).name for p in re.findall(r"sampled (\S+): \d+ frames", rereads)) == [
            "d18.mp4",
            "powell.jpg",
        ]
        assert cluster.stop() == dict.fromkeys(cluster.procs, 0)
    finally:
        cluster.stop()
