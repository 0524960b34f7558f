"""Each offline model end to end with its real weights (watched folder → detector + encoder → Milvus →
Search): the design's MTCNN + FaceNet InceptionResnetV1 (facenet-casia, converted from FaceNet's
graph into the models cache that `rvs models fetch` fills) and YuNet + SFace."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import grpc
import pytest

from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
from rvs.core.store.faces import FaceStore, IndexModelMismatch, collection_for
from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import free_port, lfw, shared
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("model", "detector", "same_dim"),
    [("facenet-casia", "mtcnn", "facenet-vggface2"), ("sface", "yunet", "dlib-resnet")],
)
def test_pipeline_end_to_end(
    tmp_path: Path, milvus_uri: str, collection_name: str, model: str, detector: str, same_dim: str
) -> None:
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
        model=model,
        detector=detector,
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

            query = lfw("Tony_Blair", 2).read_bytes()  # another photo of him than the one in the clip
            resp = stub.Search(pb.SearchRequest(image=query))
            assert resp.model == model
            assert [Path(v.uri).name for v in resp.videos] == ["clip.mp4"]  # at the default threshold
            assert [(s.start_ms, s.end_ms) for s in resp.videos[0].segments] == [
                (1000, 3000)
            ]  # samples 1 s and 2 s, to the last + 1 s
            assert list(resp.images) == []  # Colin Powell is someone else
            everyone = stub.Search(pb.SearchRequest(image=query, min_score=-1.0))
            assert {Path(i.uri).name for i in everyone.images} == {"powell.jpg"}
            assert everyone.videos[0].best_score > everyone.images[0].score + 0.1
        assert app.store is not None
        hits = app.store.search(app.query_pipeline.process([centre])[0][0].vector, -1.0, 10)
        assert len(hits) == 3
    finally:
        app.stop()

    # The collection now belongs to this model: another may not write into it, even of its dimension.
    with pytest.raises(IndexModelMismatch, match=model):
        FaceStore(milvus_uri, collection_for(collection_name, model), same_dim, app.query_pipeline.dim).open()
