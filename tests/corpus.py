"""The test corpus: clips built from real LFW photos with faces at known times, and query helpers."""

from __future__ import annotations

import shutil
from pathlib import Path

from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import lfw, shared
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video

BUSH, BLAIR, POWELL = "George_W_Bush", "Tony_Blair", "Colin_Powell"
RUMSFELD, SCHROEDER = "Donald_Rumsfeld", "Gerhard_Schroeder"
STRANGERS = [("Vladimir_Putin", 1), ("Serena_Williams", 1), ("Hugo_Chavez", 1), ("Jacques_Chirac", 1)]


def build_corpus(watch: Path) -> None:
    background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (640, 360))
    photos = {p: load_rgb(p) for p in (lfw(BUSH, 1), lfw(BLAIR, 1), lfw(POWELL, 1), lfw(BUSH, 3))}
    clip_a = [Appearance(lfw(BUSH, 1), 1, 4), Appearance(lfw(BLAIR, 1), 7, 10, x=300, y=60)]
    write_video(watch / "clip_a.mp4", scene(background, clip_a, photos), cfr_times(12, 25), gop=25)
    clip_b = [Appearance(lfw(POWELL, 1), 2, 6), Appearance(lfw(BUSH, 3), 2, 6, x=360, y=80)]
    (watch / "nested" / "deeper").mkdir(parents=True)
    write_video(
        watch / "nested" / "deeper" / "clip_b.mp4",
        scene(background, clip_b, photos),
        cfr_times(10, 30),
        rate=30,
        gop=300,
    )
    write_video(watch / "no_faces.mp4", scene(background, [], photos), cfr_times(6, 25), gop=50)
    shutil.copy(lfw(RUMSFELD, 1), watch / "rumsfeld.jpg")
    shutil.copy(lfw(SCHROEDER, 1), watch / "schroeder.jpg")
    (watch / "broken.mp4").write_text("not a video")


def search(stub: rvs_pb2_grpc.SearchServiceStub, photo: Path, **kw: object) -> pb.SearchResponse:
    return stub.Search(pb.SearchRequest(image=photo.read_bytes(), **kw), timeout=60)  # type: ignore[arg-type]


def segments(resp: pb.SearchResponse) -> dict[str, list[tuple[int, int]]]:
    return {Path(v.uri).name: [(s.start_ms, s.end_ms) for s in v.segments] for v in resp.videos}


def near(actual: list[tuple[int, int]], expected: list[tuple[int, int]], tol_ms: int = 1000) -> bool:
    return len(actual) == len(expected) and all(
        abs(a0 - e0) <= tol_ms and abs(a1 - e1) <= tol_ms for (a0, a1), (e0, e1) in zip(actual, expected, strict=True)
    )
