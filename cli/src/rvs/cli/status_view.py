"""`rvs status`: every media item's state and progress. On a terminal it redraws live, with a
progress bar per item, until everything is finished; piped, it prints plain lines (once, or with
--follow a line whenever an item changes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from rvs.v1 import rvs_pb2 as pb

FINISHED = {pb.MEDIA_STATE_DONE, pb.MEDIA_STATE_FAILED, pb.MEDIA_STATE_DELETED}
# Past this many items the live view shows only those in progress, and counts the rest.
MAX_ROWS = 30

Fetch = Callable[[], list[pb.Media]]
FetchReindex = Callable[[], "pb.ReindexStatus | None"]  # None: the service keeps no catalog


def reindex_lines(r: pb.ReindexStatus | None) -> list[str]:
    """The index's model, and a reindex's progress with every item whose source is gone."""
    if r is None or not r.active_model:
        return []
    if not r.target_model:
        last = f"; last reindex into {r.last_model}: {r.items_done}/{r.items_total} items" if r.last_model else ""
        lines = [f"index: model {r.active_model}{last}"]
    else:
        lines = [
            f"index: model {r.active_model}; reindex into {r.target_model}: {r.items_done}/{r.items_total} items"
            f" re-read, {len(r.missing)} missing (searches use {r.active_model} until it switches)"
        ]
    lines += [f"  missing: {m.uri or m.media_id}  ({m.reason}: {m.detail})" for m in r.missing]
    return lines


def _reindex_running(fetch: FetchReindex | None) -> bool:
    r = fetch() if fetch else None
    return bool(r and r.target_model)


def state_name(m: pb.Media) -> str:
    return pb.MediaState.Name(m.state).removeprefix("MEDIA_STATE_").lower()


def _total(m: pb.Media) -> str:
    if m.sampling_complete or m.state in FINISHED:
        return f"{m.frames_sampled}"
    return f"{m.frames_sampled}/{m.frames_expected or '?'}"


def plain_line(m: pb.Media) -> str:
    line = f"{state_name(m):<10} {m.frames_embedded:>5}/{_total(m):<9} {m.faces_found:>6}  {m.uri}"
    if m.error_reason:
        line += f"  ({m.error_reason}: {m.error_detail})"
    if notes := _notes(m):
        line += f"  [{notes}]"
    return line


def rejected(m: pb.Media) -> str:
    return _by_reason(m.faces_rejected)


def _by_reason(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {reason.lower().replace('_', ' ')}" for reason, n in sorted(counts.items()))


def _notes(m: pb.Media) -> str:
    notes = [f"not indexed: {rejected(m)}"] if m.faces_rejected else []
    if m.frames_failed:
        notes.append(f"frames failed: {_by_reason(m.frames_failed)}")
    return "; ".join(notes)


def summary(media: list[pb.Media]) -> str:
    counts: dict[str, int] = {}
    for m in media:
        counts[state_name(m)] = counts.get(state_name(m), 0) + 1
    return f"{len(media)} media: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def print_table(media: list[pb.Media], out: Callable[[str], None], reindex: pb.ReindexStatus | None = None) -> None:
    for line in reindex_lines(reindex):
        out(line)
    out(f"{'state':<10} {'embedded/sampled':>15} {'faces':>6}  uri")
    for m in media:
        out(plain_line(m))
    out("")
    out(summary(media))


def follow_lines(
    fetch: Fetch, out: Callable[[str], None], interval_s: float, fetch_reindex: FetchReindex | None = None
) -> None:
    """A line whenever an item's progress (or a reindex's) changes, until nothing is in progress."""
    seen: dict[str, tuple[int, int, int, int]] = {}
    last_reindex: list[str] = []
    while True:
        reindex = reindex_lines(fetch_reindex()) if fetch_reindex else []
        if reindex != last_reindex:
            for line in reindex:
                out(line)
            last_reindex = reindex
        media = fetch()
        for m in media:
            key = (m.state, m.frames_embedded, m.frames_sampled, m.faces_found)
            if seen.get(m.media_id) != key:
                seen[m.media_id] = key
                out(plain_line(m))
        if all(m.state in FINISHED for m in media) and not _reindex_running(fetch_reindex):
            out(summary(media))
            return
        time.sleep(interval_s)


def live(fetch: Fetch, console: Console, interval_s: float, fetch_reindex: FetchReindex | None = None) -> None:
    """Progress bars redrawn in place until every item is finished (and a reindex has switched)."""
    columns = (
        TextColumn("{task.fields[state]:<9}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("frames {task.fields[faces]:>5} faces"),
        TextColumn("{task.description}", style="bold"),
        TextColumn("{task.fields[error]}", style="red"),
    )
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console, auto_refresh=False) as progress:
        overall = progress.add_task("all media", total=None, state="", faces=0, error="")
        reindex_task: TaskID | None = None
        while True:
            r = fetch_reindex() if fetch_reindex else None
            if r is not None and (r.target_model or reindex_task is not None):
                lines = reindex_lines(r)
                gone = "; ".join(x.strip() for x in lines[1:])
                what = f"items into {r.target_model or r.last_model} (searches: {r.active_model})"
                if reindex_task is None:
                    reindex_task = progress.add_task(
                        what, total=r.items_total or None, state="reindex", faces="", error=""
                    )
                progress.update(reindex_task, description=what, total=r.items_total, completed=r.items_done, error=gone)
            media = fetch()
            many = len(media) > MAX_ROWS
            for m in media:
                fields: dict[str, Any] = {
                    "state": state_name(m),
                    "faces": m.faces_found,
                    "error": f"{m.error_reason}: {m.error_detail}" if m.error_reason else _notes(m),
                }
                if m.state in FINISHED:
                    total: int | None = max(m.frames_sampled, 1)
                else:
                    total = m.frames_sampled if m.sampling_complete else (m.frames_expected or None)
                visible = not many or m.state not in FINISHED
                if m.media_id not in tasks:
                    tasks[m.media_id] = progress.add_task(m.uri, total=total, visible=visible, **fields)
                progress.update(tasks[m.media_id], total=total, completed=m.frames_embedded, visible=visible, **fields)
            done = sum(m.state in FINISHED for m in media)
            progress.update(
                overall, total=len(media), completed=done, state="total", faces=sum(m.faces_found for m in media)
            )
            progress.refresh()
            if done == len(media) and not (r and r.target_model):
                break
            time.sleep(interval_s)
    console.print(summary(media), highlight=False)
    for line in reindex_lines(fetch_reindex() if fetch_reindex else None):
        console.print(line, highlight=False)
