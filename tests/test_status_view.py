"""`rvs status` rendering: live bars on a terminal, change lines with --follow, a table when piped."""

from __future__ import annotations

import io

from rich.console import Console

from rvs.cli import status_view
from rvs.v1 import rvs_pb2 as pb


def scripted() -> status_view.Fetch:
    """A video embedding frame after frame, then done; a photo that failed from the start."""
    step = iter(range(100))

    def fetch() -> list[pb.Media]:
        i = next(step)
        video = pb.Media(
            media_id="v",
            uri="/in/clip.mp4",
            state=pb.MEDIA_STATE_DONE if i >= 3 else pb.MEDIA_STATE_EMBEDDING,
            frames_sampled=min(12, 4 * (i + 1)),
            frames_expected=12,
            sampling_complete=i >= 2,
            frames_embedded=min(12, 4 * i),
            faces_found=i,
        )
        photo = pb.Media(
            media_id="p",
            uri="s3://inbox/bad.jpg",
            state=pb.MEDIA_STATE_FAILED,
            error_reason="DECODE_ERROR",
            error_detail="not an image",
        )
        return [video, photo]

    return fetch


def test_live_view_redraws_bars_until_everything_is_finished() -> None:
    out = io.StringIO()
    status_view.live(scripted(), Console(file=out, force_terminal=True, width=160), interval_s=0)
    screen = out.getvalue()
    assert screen.count("\x1b[1A") >= 3 * 2  # three redraws of the rows in place
    assert "8/12" in screen and "12/12" in screen and "━" in screen
    assert "DECODE_ERROR: not an image" in screen
    assert screen.rstrip().endswith("2 media: 1 done, 1 failed")


def test_follow_prints_a_line_per_change_and_stops_when_finished() -> None:
    lines: list[str] = []
    status_view.follow_lines(scripted(), lines.append, interval_s=0)
    video = [line for line in lines if "clip.mp4" in line]
    assert [line.split()[:2] for line in video] == [
        ["embedding", "0/4/12"],
        ["embedding", "4/8/12"],
        ["embedding", "8/12"],
        ["done", "12/12"],
    ]
    assert sum("bad.jpg" in line for line in lines) == 1  # unchanged: printed once
    assert lines[-1] == "2 media: 1 done, 1 failed"


def test_piped_table_is_plain_text() -> None:
    lines: list[str] = []
    fetch = scripted()
    for _ in range(3):
        fetch()
    status_view.print_table(fetch(), lines.append)
    assert lines[0].split() == ["state", "embedded/sampled", "faces", "uri"]
    assert lines[1].split()[:3] == ["done", "12/12", "3"]
    assert "(DECODE_ERROR: not an image)" in lines[2]
    assert all("\x1b" not in line for line in lines)


def test_frames_that_failed_are_shown_with_their_reason() -> None:
    media = pb.Media(
        uri="/in/clip.mp4",
        state=pb.MEDIA_STATE_DONE,
        frames_sampled=8,
        frames_embedded=8,
        faces_found=7,
        faces_rejected={"LOW_CONFIDENCE": 2},
        frames_failed={"EMBED_FAILED": 1},
    )
    assert status_view.plain_line(media).endswith("[not indexed: 2 low confidence; frames failed: 1 embed failed]")


def test_a_reindex_is_shown_until_it_switches() -> None:
    """The reindex's items done of total and every missing source; live and --follow wait for the switch."""
    gone = pb.MissingItem(media_id="g", uri="/in/gone.jpg", reason="SOURCE_GONE", detail="deleted")
    running = pb.ReindexStatus(
        active_model="dlib-resnet", target_model="facenet-casia", items_total=3, items_done=1, missing=[gone]
    )
    switched = pb.ReindexStatus(
        active_model="facenet-casia", last_model="facenet-casia", items_total=3, items_done=2, missing=[gone]
    )
    assert status_view.reindex_lines(running) == [
        "index: model dlib-resnet; reindex into facenet-casia: 1/3 items re-read, 1 missing"
        " (searches use dlib-resnet until it switches)",
        "  missing: /in/gone.jpg  (SOURCE_GONE: deleted)",
    ]
    assert status_view.reindex_lines(switched)[0] == (
        "index: model facenet-casia; last reindex into facenet-casia: 2/3 items"
    )
    assert status_view.reindex_lines(None) == []
    done = [pb.Media(media_id="p", uri="/in/p.jpg", state=pb.MEDIA_STATE_DONE, frames_sampled=1, frames_embedded=1)]
    states = iter([running, running, switched, switched])
    lines: list[str] = []
    status_view.follow_lines(lambda: done, lines.append, 0, lambda: next(states))
    assert [line.split(";")[0] for line in lines if line.startswith("index")] == [
        "index: model dlib-resnet",
        "index: model facenet-casia",
    ]
    out = io.StringIO()
    status_view.live(lambda: done, Console(file=out, width=200), 0, iter([running, switched, switched]).__next__)
    assert "items into facenet-casia" in out.getvalue() and "index: model facenet-casia" in out.getvalue()
