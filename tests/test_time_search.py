"""Search by time and retention on the embedded app (sface+yunet, embedded Milvus): "where and when
was this person last seen?" in one call, and media older than the limit leaving Search, ListMedia
and Milvus while the recent ones stay."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from rvs.cli.embedded import EmbeddedSettings
from rvs.cli.main import main
from rvs.core.clock import now_ms
from rvs.core.instants import parse_instant, show_instant
from rvs.core.retention import DAY_MS
from rvs.v1 import rvs_pb2 as pb

from conftest import error_reason, free_port, lfw, shared
from corpus import BUSH, search
from embedded_app import settings, start, wait_done
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video
from recorder import wait_for

pytestmark = pytest.mark.e2e


class Clock:
    """The time retention reads: the real one until a test moves it."""

    def __init__(self) -> None:
        self.at_ms: int | None = None

    def __call__(self) -> int:
        return now_ms() if self.at_ms is None else self.at_ms


def write_batch(folder: Path, name: str, bush_at: tuple[int, int], x: int, photo: int) -> None:
    """A 6-s clip with Bush on screen at `bush_at` (s), and another photo of him."""
    background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (640, 360))
    photos = {lfw(BUSH, 1): load_rgb(lfw(BUSH, 1))}
    write_video(
        folder / f"{name}.mp4",
        scene(background, [Appearance(lfw(BUSH, 1), *bush_at, x=x)], photos),
        cfr_times(6, 25),
        gop=25,
    )
    shutil.copy(lfw(BUSH, photo), folder / f"{name}.jpg")


def names(response: pb.SearchResponse) -> tuple[list[str], list[str]]:
    return [Path(v.uri).stem for v in response.videos], [Path(i.uri).stem for i in response.images]


def test_last_seen_newest_first_in_a_window_and_retention(
    tmp_path_factory: pytest.TempPathFactory, milvus_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    watch, data = tmp_path_factory.mktemp("watch"), tmp_path_factory.mktemp("data")
    web_port = free_port()
    s = settings(watch, data, free_port(), free_port(), milvus_uri, f"time_{int(time.time())}", web_port=web_port)
    sface = {"model": "sface", "detector": "yunet"}
    s = EmbeddedSettings(
        sampler=s.sampler,
        embedder=s.embedder.model_copy(update=sface),
        query=s.query.model_copy(update={**sface, "retention_days": 1.0, "retention_interval_s": 0.2}),
    )
    staging = tmp_path_factory.mktemp("staging")
    write_batch(staging, "old", (1, 4), 40, 2)
    write_batch(staging, "new", (2, 5), 320, 5)
    clock = Clock()
    r = start(s, watch, clock)
    try:
        stub = r.stub
        for f in staging.glob("old.*"):
            shutil.copy(f, watch / f.name)
        first = {Path(m.uri).stem + Path(m.uri).suffix: m for m in wait_done(stub, expected=2)}
        old_end = max(m.discovered_at_ms + m.duration_ms for m in first.values())
        while now_ms() <= old_end + 2500:  # the second batch is found after the first has ended (by more
            # than the second to which an ISO time below is rounded)
            time.sleep(0.1)
        for f in staging.glob("new.*"):
            shutil.copy(f, watch / f.name)
        media = {Path(m.uri).name: m for m in wait_done(stub, expected=4)}
        new_start = min(media["new.mp4"].discovered_at_ms, media["new.jpg"].discovered_at_ms)
        query = lfw(BUSH, 10)

        best = search(stub, query)
        assert sorted(names(best)[0]) == ["new", "old"] and sorted(names(best)[1]) == ["new", "old"]
        for hit in best.videos:  # every segment has its wall-clock times: a file's discovery + offset
            entry = media[Path(hit.uri).name]
            assert (hit.stream, hit.started_at_ms) == ("", 0)
            assert [(g.start_at_ms, g.end_at_ms) for g in hit.segments] == [
                (entry.discovered_at_ms + g.start_ms, entry.discovered_at_ms + g.end_ms) for g in hit.segments
            ]

        newest = search(stub, query, order=pb.SEARCH_ORDER_NEWEST)
        assert names(newest) == (["new", "old"], ["new", "old"])
        assert newest.videos[0].segments[0].end_at_ms > newest.videos[1].segments[0].end_at_ms
        # "Where was he last seen?": one call, the first hit.
        assert names(search(stub, query, order=pb.SEARCH_ORDER_NEWEST, top_k=1)) == (["new"], ["new"])

        after = search(stub, query, order=pb.SEARCH_ORDER_NEWEST, seen_after_ms=new_start)
        assert names(after) == (["new"], ["new"])
        assert all(g.end_at_ms > new_start for v in after.videos for g in v.segments)
        before = search(stub, query, seen_before_ms=new_start)
        assert names(before) == (["old"], ["old"])
        assert all(g.start_at_ms < new_start for v in before.videos for g in v.segments)
        with pytest.raises(grpc.RpcError) as err:
            search(stub, query, seen_after_ms=new_start, seen_before_ms=new_start)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_reason(err.value) == "INVALID_PARAMETER"
        assert "seen_after_ms" in (err.value.details() or "")

        # The page's API: the same options, as its query string (ISO 8601 or unix ms).
        since = show_instant(new_start - 1000)  # ISO 8601, to the second
        url = f"http://127.0.0.1:{web_port}/api/search?order=newest&seen_after={urllib.parse.quote(since)}"
        with urllib.request.urlopen(urllib.request.Request(url, data=query.read_bytes()), timeout=60) as answer:
            result = json.loads(answer.read())["result"]
        page = json_format.ParseDict(result, pb.SearchResponse(), ignore_unknown_fields=True)
        grpc_answer = search(stub, query, order=pb.SEARCH_ORDER_NEWEST, seen_after_ms=parse_instant(since))
        assert names(page) == names(grpc_answer) == (["new"], ["new"])
        assert page.videos[0].segments[0].start_at_ms == grpc_answer.videos[0].segments[0].start_at_ms > 0

        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["search", str(query), "--newest", "--after", since, "--target", f"127.0.0.1:{r.app.query.port}"])  # type: ignore[union-attr]
        out = capsys.readouterr().out
        assert done.value.code in (0, None) and "new.mp4" in out and "old.mp4" not in out and "seen " in out

        # A day later (by the job's clock) the first batch is older than RVS_RETENTION_DAYS.
        store = r.app.store
        assert store is not None and store.count(first["old.mp4"].media_id) > 0
        clock.at_ms = new_start + DAY_MS
        old_ids = [m.media_id for m in first.values()]

        def states() -> set[int | None]:
            return {e.state if (e := r.app.catalog.get(i)) else None for i in old_ids}

        wait_for(lambda: states() == {pb.MEDIA_STATE_DELETED}, 30)  # both, whichever goes first
        listed = {Path(m.uri).name: m.state for m in stub.ListMedia(pb.ListMediaRequest()).media}
        assert listed == {
            "old.mp4": pb.MEDIA_STATE_DELETED,
            "old.jpg": pb.MEDIA_STATE_DELETED,
            "new.mp4": pb.MEDIA_STATE_DONE,
            "new.jpg": pb.MEDIA_STATE_DONE,
        }
        assert names(search(stub, query)) == (["new"], ["new"])
        # Milvus shows a delete to counts a moment later.
        wait_for(lambda: store.count(first["old.mp4"].media_id) + store.count(first["old.jpg"].media_id) == 0, 30)
        assert store.count(media["new.mp4"].media_id) > 0
        # Counted once each removal returns (the catalog shows it just before).
        wait_for(lambda: r.app.registry.get_sample_value("rvs_retention_removed_total") == 2, 10)

        # The old files are still in the folder: touched, they are not ingested again.
        for name in ("old.mp4", "old.jpg"):
            os.utime(watch / name, ns=(time.time_ns(), time.time_ns() + 10**9))
        time.sleep(2.0)  # ten scans
        assert {Path(m.uri).name: m.state for m in stub.ListMedia(pb.ListMediaRequest()).media} == listed

        # Later, the second batch has aged out too, and the first removals are older than the limit:
        # forgotten by the catalog (the second batch's removals, made after that, are not yet).
        removed_at = max(
            m.updated_at_ms for m in stub.ListMedia(pb.ListMediaRequest()).media if m.uri.startswith(str(watch / "old"))
        )
        cutoff = max(removed_at, media["new.mp4"].discovered_at_ms + media["new.mp4"].duration_ms) + 1
        while now_ms() <= cutoff + 1000:  # the second batch's removals come after the cutoff
            time.sleep(0.1)
        clock.at_ms = cutoff + DAY_MS
        wait_for(lambda: states() == {None}, 30)
        assert {Path(m.uri).name: m.state for m in stub.ListMedia(pb.ListMediaRequest()).media} == {
            "new.mp4": pb.MEDIA_STATE_DELETED,
            "new.jpg": pb.MEDIA_STATE_DELETED,
        }
        assert not search(stub, query).matched
        wait_for(lambda: r.app.registry.get_sample_value("rvs_retention_purged_total") == 2, 10)
    finally:
        r.channel.close()
        r.app.stop()
