"""The FaceNet path end to end (watched folder → MTCNN + InceptionResnetV1 → Milvus → Search).

The published weights cannot be downloaded here, so the real local-weights loading path gets a
randomly initialised InceptionResnetV1 state_dict: identities are meaningless, the plumbing is real.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import grpc
import pytest
import torch
from facenet_pytorch import InceptionResnetV1

from rvs.embedded import EmbeddedApp, EmbeddedSettings
from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.sampler.config import SamplerSettings
from rvs.store.faces import FaceStore, IndexModelMismatch
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import free_port, lfw, shared
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video

pytestmark = pytest.mark.e2e


def test_facenet_pipeline_end_to_end(tmp_path: Path, milvus_uri: str, collection_name: str) -> None:
    weights = tmp_path / "vggface2-random.pt"
    torch.manual_seed(0)
    torch.save(InceptionResnetV1(pretrained=None).state_dict(), weights)
    watch, data = tmp_path / "watch", tmp_path / "data"
    watch.mkdir()
    background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (480, 270))
    photo = lfw("Tony_Blair", 1)
    centre = load_rgb(photo)[15:140, 20:130]  # the photo's own face only, not a neighbour at its edge
    write_video(
        watch / "clip.mp4", scene(background, [Appearance(photo, 1, 3)], {photo: centre}), cfr_times(4, 25), gop=25
    )
    shutil.copy(lfw("Colin_Powell", 1), watch / "powell.jpg")

    common = dict(
        data_dir=data,
        model="facenet-vggface2",
        weights_path=weights,
        milvus_uri=milvus_uri,
        collection=collection_name,
        metrics_port=0,
    )
    app = EmbeddedApp(
        EmbeddedSettings(
            sampler=SamplerSettings(watch_dir=watch, data_dir=data, settle_s=0.2, scan_interval_s=0.2, metrics_port=0),
            embedder=EmbedderSettings(**common),  # type: ignore[arg-type]
            query=QuerySettings(**common, port=free_port(), web_port=0),  # type: ignore[arg-type]
        )
    )
    app.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.query.port}") as channel:  # type: ignore[union-attr]
            stub = rvs_pb2_grpc.SearchServiceStub(channel)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                media = stub.ListMedia(pb.ListMediaRequest()).media
                if len(media) == 2 and all(m.state == pb.MEDIA_STATE_DONE for m in media):
                    break
                time.sleep(0.5)
            faces = {Path(m.uri).name: m.faces_found for m in media}
            assert faces == {"clip.mp4": 2, "powell.jpg": 1}

            resp = stub.Search(pb.SearchRequest(image=lfw("Tony_Blair", 2).read_bytes(), min_score=-1.0))
            assert resp.model == "facenet-vggface2"
            assert {Path(i.uri).name for i in resp.images} == {"powell.jpg"}
            assert [Path(v.uri).name for v in resp.videos] == ["clip.mp4"]
            assert [(s.start_ms, s.end_ms) for s in resp.videos[0].segments] == [(1000, 2000)]
        assert app.store is not None
        hits = app.store.search(app.query_pipeline.process([centre])[0][0].vector, -1.0, 10)
        assert len(hits) == 3
    finally:
        app.stop()

    # The collection now belongs to facenet-vggface2: another model may not write into it.
    with pytest.raises(IndexModelMismatch, match="facenet-vggface2"):
        FaceStore(milvus_uri, collection_name, "dlib-resnet", 128).open()
