from __future__ import annotations

import os
import time
from pathlib import Path

from rvs.sampler.sources.folder import FolderSource


def test_new_files_wait_until_settled(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "a.mp4"
    f.write_bytes(b"x" * 10)
    scanner = FolderSource(tmp_path, settle_s=0.3)
    assert scanner.scan({}).ready == []  # just appeared
    f.write_bytes(b"x" * 20)  # still being copied
    assert scanner.scan({}).ready == []
    time.sleep(0.35)
    ready = scanner.scan({}).ready
    assert [r.uri for r in ready] == [str(f)] and ready[0].size == 20


def test_known_unchanged_files_are_skipped_and_removed_ones_reported(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    st = f.stat()
    scanner = FolderSource(tmp_path, settle_s=0)
    assert scanner.scan({str(f): (st.st_size, str(st.st_mtime_ns))}).ready == []
    result = scanner.scan({str(f): (st.st_size, str(st.st_mtime_ns)), str(tmp_path / "gone.jpg"): (1, "1")})
    assert result.removed == [str(tmp_path / "gone.jpg")]


def test_hidden_and_partial_files_are_ignored(tmp_path: Path) -> None:
    for name in (".hidden.mp4", "a.mp4.part", "b.jpg.crdownload", "c.mp4~"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.jpg").write_bytes(b"x")
    assert FolderSource(tmp_path, settle_s=0).scan({}).ready == []


def test_symlinks_outside_are_not_followed_unless_allowed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    watched = tmp_path / "watched"
    outside.mkdir()
    watched.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    (watched / "inside.jpg").write_bytes(b"y")
    os.symlink(outside / "secret.jpg", watched / "link-out.jpg")
    os.symlink(watched / "inside.jpg", watched / "link-in.jpg")
    names = {Path(r.uri).name for r in FolderSource(watched, settle_s=0).scan({}).ready}
    assert names == {"inside.jpg", "link-in.jpg"}
    names = {Path(r.uri).name for r in FolderSource(watched, settle_s=0, follow_symlinks=True).scan({}).ready}
    assert names == {"inside.jpg", "link-in.jpg", "link-out.jpg"}
