"""The sampler service on a real folder, with the in-memory bus: what reaches the bus and when."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from rvs.core.bus import removal
from rvs.core.bus.memory import MemoryFrameBus
from rvs.v1 import rvs_pb2 as pb

from media_factory import cfr_times, write_photo, write_video
from recorder import wait_for


def drain(bus: MemoryFrameBus) -> list[pb.Frame]:
    return bus.poll(10_000, 0.1)


def test_photos_videos_and_bad_files(sampler, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, bus, events = sampler()
    watch = tmp_path / "watch"
    (watch / "sub").mkdir()
    write_photo(watch / "sub" / "blair.jpg", seed=1)
    write_video(watch / "clip.mp4", lambda t: np.zeros((120, 160, 3), np.uint8), cfr_times(3, 10))
    (watch / "notes.txt").write_text("hello")
    (watch / "fake.mp4").write_text("not a video")
    wait_for(lambda: len(events.of("sampled")) == 2 and len(events.of("failed")) == 2)
    frames = drain(bus)
    assert sorted((Path(f.uri).name, f.sample_index, f.time_ms) for f in frames) == [
        ("blair.jpg", 0, 0),
        ("clip.mp4", 0, 0),
        ("clip.mp4", 1, 1000),
        ("clip.mp4", 2, 2000),
    ]
    assert {e.failed.reason for e in events.of("failed")} == {"UNSUPPORTED_TYPE", "DECODE_ERROR"}
    video = next(f for f in frames if f.uri.endswith("clip.mp4"))
    assert video.encoding == pb.FRAME_ENCODING_JPEG and video.kind == pb.MEDIA_KIND_VIDEO
    assert len(video.media_id) == 64 and video.source == str(watch.resolve())


def test_slow_copy_is_ingested_once_complete(sampler, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, bus, events = sampler(settle_s=1.0)  # well above the pauses below, on a busy machine too
    data = write_photo(tmp_path / "powell.jpg", seed=2).read_bytes()
    target = tmp_path / "watch" / "slow.jpg"
    with open(target, "wb") as f:
        for i in range(0, len(data), len(data) // 8):
            f.write(data[i : i + len(data) // 8])
            f.flush()
            time.sleep(0.15)  # slower than a scan, faster than the settle time
    wait_for(lambda: len(events.of("sampled")) == 1)
    time.sleep(0.5)
    assert len(events.of("discovered")) == 1 and not events.of("failed")
    assert len(drain(bus)) == 1


def test_copies_renames_and_restart_do_not_reingest(sampler, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service, _, events = sampler()
    watch = tmp_path / "watch"
    write_photo(watch / "a.jpg", seed=2)
    wait_for(lambda: len(events.of("sampled")) == 1)
    shutil.copy(watch / "a.jpg", watch / "copy.jpg")
    (watch / "a.jpg").rename(watch / "renamed.jpg")
    time.sleep(1.0)
    assert len(events.of("discovered")) == 1 and not events.of("removed")
    service.stop()

    _, bus2, events2 = sampler()  # restart on the same state
    time.sleep(1.0)
    assert events2.events == [] and drain(bus2) == []


def test_deleted_files_can_be_removed_from_the_index(sampler, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, events = sampler(remove_deleted=True)
    watch = tmp_path / "watch"
    powell, other = write_photo(tmp_path / "powell.jpg", seed=2), write_photo(tmp_path / "other.jpg", seed=3)
    shutil.copy(powell, watch / "a.jpg")
    shutil.copy(powell, watch / "b.jpg")  # same content
    write_photo(watch / "c.jpg", seed=1)
    wait_for(lambda: len(events.of("sampled")) == 2)
    (watch / "a.jpg").unlink()
    time.sleep(0.5)
    assert events.of("removed") == []  # b.jpg still holds that content
    (watch / "b.jpg").unlink()
    shutil.copy(other, watch / "c.jpg")  # overwritten with other content
    wait_for(lambda: len(events.of("removed")) == 2)
    wait_for(lambda: len(events.of("sampled")) == 3)  # the new content, once it has settled


def test_a_removal_stops_the_ingest_in_progress_for_good(tmp_path: Path) -> None:
    """A removed item is not sampled further, not resumed at restart, not found again by a rescan;
    a new copy of its content is a new ingest."""
    from prometheus_client import CollectorRegistry

    from rvs.sampler.app import SamplerService
    from rvs.sampler.config import SamplerSettings

    from recorder import Recorder

    watch = tmp_path / "watch"
    watch.mkdir()
    gray = np.full((120, 160, 3), 128, np.uint8)
    write_video(watch / "clip.mp4", lambda t: gray, cfr_times(20, 2), rate=2)
    settings = SamplerSettings(watch_dir=watch, data_dir=tmp_path / "data", settle_s=0.3, scan_interval_s=0.1)

    def start() -> tuple[SamplerService, MemoryFrameBus, Recorder]:
        bus, events = MemoryFrameBus(capacity=2), Recorder()  # the sampler waits on a full bus: mid-video
        service = SamplerService(settings, bus, events, CollectorRegistry())
        service.start()
        return service, bus, events

    service, bus, events = start()
    wait_for(lambda: bus.pending() == 2)
    media_id = events.of("discovered")[0].media_id
    service.media_removed(pb.MediaEvent(media_id=media_id, at_ms=int(time.time() * 1000), removed=pb.MediaRemoved()))
    frames = drain(bus)
    wait_for(lambda: service.idle() and bool(frames.extend(drain(bus)) or True), 10)
    time.sleep(0.5)
    frames += drain(bus)
    assert 2 <= len(frames) <= 3  # of 20: the frame it was handing over when told, then no more
    assert events.of("sampled") == [] and events.of("failed") == []
    service.stop()

    service, bus, events = start()  # restart, with rescans: nothing resumed, nothing rediscovered
    time.sleep(1.5)
    assert drain(bus) == [] and events.events == []

    shutil.copy(watch / "clip.mp4", watch / "uploaded-again.mp4")
    wait_for(lambda: len(events.of("discovered")) == 1)
    frames = []
    wait_for(lambda: bool(frames.extend(drain(bus)) or events.of("sampled")), 30)
    frames += drain(bus)
    assert events.of("discovered")[0].media_id == media_id and len(frames) == 20
    service.stop()


def test_caught_up_only_once_what_the_folder_held_at_start_is_sampled(sampler, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What `rvs up --once` waits for: not before the first scan, nor while a file settles or samples."""
    watch = tmp_path / "watch"
    watch.mkdir()
    write_photo(watch / "blair.jpg", seed=1)
    service, _, events = sampler(settle_s=0.5)
    assert not service.caught_up()
    wait_for(service.caught_up, 20)
    assert [e.media_id for e in events.of("sampled")] == [events.of("discovered")[0].media_id]
    assert service.healthy()


def test_content_removed_by_retention_is_not_ingested_again(sampler, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service, _, events = sampler()
    watch = tmp_path / "watch"
    write_photo(watch / "old.jpg", seed=4)
    write_photo(watch / "deleted.jpg", seed=5)
    wait_for(lambda: len(events.of("sampled")) == 2)
    ids = {Path(e.discovered.uri).name: e.media_id for e in events.of("discovered")}
    service.media_removed(removal(ids["old.jpg"], expired=True))
    service.media_removed(removal(ids["deleted.jpg"]))  # DeleteMedia: a new version is a new ingest
    for name in ("old.jpg", "deleted.jpg"):  # the same content, touched: found again
        os.utime(watch / name, ns=(time.time_ns(), time.time_ns() + 10**9))
    wait_for(lambda: len(events.of("discovered")) == 3)
    time.sleep(1.0)  # scans on: the expired one stays out
    again = events.of("discovered")[2:]
    assert [e.media_id for e in again] == [ids["deleted.jpg"]]
    service.stop()

    _, _, events2 = sampler()  # a restart remembers it
    shutil.copy(watch / "old.jpg", watch / "copy-of-old.jpg")
    time.sleep(1.5)
    assert events2.of("discovered") == []
