"""A full state directory (catalog, watcher state, spool) in embedded mode: a clear error, nothing
marked failed, no thread lost, and everything completes once space returns."""

from __future__ import annotations

import errno
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rvs.v1 import rvs_pb2 as pb

from conftest import free_port, lfw
from corpus import BLAIR, POWELL, RUMSFELD
from embedded_app import settings, start, wait_done

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB file system of the test's own (tmpfs), so it can be filled without harming the machine."""
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    used = {p.name: p.stat().st_size for p in directory.rglob("*") if p.is_file()}
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, used
    return filler


def test_full_state_directory_recovers_when_space_returns(
    tmp_path: Path, small_disk: Path, milvus_uri: str, collection_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    watch = tmp_path / "watch"
    watch.mkdir()
    s = settings(watch, small_disk, free_port(), 0, milvus_uri, collection_name)
    running = start(s, watch)
    try:
        filler = fill(small_disk)
        for person in (BLAIR, POWELL, RUMSFELD):
            shutil.copy(lfw(person, 1), watch / f"{person}.jpg")
        time.sleep(4)  # many scans and retries against the full disk
        assert "no space left" in caplog.text
        media = list(running.stub.ListMedia(pb.ListMediaRequest()).media)
        assert not [m for m in media if m.state == pb.MEDIA_STATE_FAILED], "a full disk is not the file's fault"
        app = running.app
        assert app.healthy(), f"not working: {app.parts.unhealthy()}"  # the sampler's and embedder's threads included

        filler.unlink()  # space returns
        media = wait_done(running.stub, expected=3, timeout_s=120)
        assert {m.state for m in media} == {pb.MEDIA_STATE_DONE}
        assert sorted(m.faces_found for m in media) == [1, 1, 1]
        assert app.store is not None and app.store.count() == 3  # each face once
    finally:
        running.channel.close()
        running.app.stop()
