"""The eval report: Markdown tables (one row per model), JSON, and plots (precision/recall against the
threshold for photos, recall against false videos per query for clips)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from rvs.cli.evaluation.images import ImageEval
from rvs.cli.evaluation.videos import MAX_FALSE_VIDEOS, VideoEval

PROTOTYPE_PORTION = 0.098  # the research prototype, FaceNet on LFW


def image_table(results: list[ImageEval]) -> str:
    lines = [
        "| model | photos | people | queries | no face found | top-20 portion (prototype: 0.098) "
        "| normalised | rank-1 | mAP@20 | LFW verification (k-fold CV) | best-F1 threshold (P / R) | photos/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t, p, rec, _ = r.curve.best_f1()
        verification = (
            f"{r.verification.accuracy:.3f} ± {r.verification.std:.3f} at {r.verification.threshold:.3f}"
            f" ({r.verification.folds} folds)"
            if r.verification
            else "—"
        )
        lines.append(
            f"| {r.model} | {r.photos} | {r.people} | {r.queries} | {r.missed} | {r.portion_at_20:.3f} "
            f"| {r.normalised_portion_at_20:.3f} | {r.rank1:.3f} | {r.map_at_20:.3f} | {verification} "
            f"| {t:.2f} ({p:.3f} / {rec:.3f}) | {r.photos_per_s:.1f} |"
        )
    return "\n".join(lines)


def video_table(results: list[VideoEval]) -> str:
    """One row per model at its default threshold, then each model's threshold sweep."""
    lines = [
        "| model | clips | queries (strangers) | no face | (query, clip) pairs found in top-k "
        "| false videos per query | strangers with a match | mean segment error (s) | threshold "
        f"| lowest threshold with false videos per query <= {MAX_FALSE_VIDEOS} (recall there) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        err = f"{r.mean_segment_error_s:.2f}" if r.mean_segment_error_s is not None else "—"
        at = next((p for p in r.sweep if p.threshold == r.suggested_min_score), None)
        suggested = f"{at.threshold:.2f} ({at.recall:.2f})" if at else "—"
        lines.append(
            f"| {r.model} | {r.clips} | {r.queries} ({r.strangers}) | {r.no_face} "
            f"| {r.found}/{r.pairs} ({r.recall:.2f}) | {r.false_videos_per_query:.2f} "
            f"| {r.strangers_matched}/{r.strangers} | {err} | {r.min_score:.2f} | {suggested} |"
        )
    for r in results:
        marked = [t for t in (r.min_score, r.suggested_min_score) if t is not None]
        lines += [
            "",
            f"{r.model}: sweep (every 0.05 where something changed, the last, the default and the suggested threshold)",
            "",
            "| threshold | recall | found | false videos per query | strangers with a match |",
            "|---|---|---|---|---|",
        ]
        previous = None
        for i, p in enumerate(r.sweep):
            values = (p.found, p.false_videos_per_query, p.strangers_matched)
            every = round(p.threshold * 100) % 5 == 0 and values != previous
            if every or i == len(r.sweep) - 1 or any(abs(p.threshold - t) < 1e-9 for t in marked):
                lines.append(
                    f"| {p.threshold:.2f} | {p.recall:.2f} | {p.found}/{r.pairs} | {p.false_videos_per_query:.2f} "
                    f"| {p.strangers_matched}/{r.strangers} |"
                )
                previous = values
    return "\n".join(lines)


def video_queries_table(r: VideoEval) -> str:
    """Per query: the best score of a clip showing the person and of any other clip."""
    lines = [
        f"{r.model}: per query (best video score; * found at the default {r.min_score:.2f})",
        "",
        "| query | source | its clips: best score | best other clip: score |",
        "|---|---|---|---|",
    ]
    for q in r.per_query:
        own = ", ".join(
            f"{Path(c).name} {q.scores[c]:.3f}{'*' if q.scores[c] >= r.min_score else ''}"
            if c in q.scores
            else f"{Path(c).name} —"
            for c in q.expected
        )
        others = sorted(((s, c) for c, s in q.scores.items() if c not in q.expected), reverse=True)
        other = f"{Path(others[0][1]).name} {others[0][0]:.3f}" if others else "—"
        kind = " (no face)" if q.no_face else (" (stranger)" if q.stranger else "")
        lines.append(f"| {q.name}{kind} | {Path(q.source).name} | {own or '—'} | {other} |")
    return "\n".join(lines)


def video_segments_table(r: VideoEval) -> str:
    """Per true segment of a clip returned for its person at the default threshold: the returned
    segment overlapping it most and the boundary errors; empty when the manifest has no segments."""
    if not r.segments:
        return ""

    def s(x: float | None) -> str:
        return "—" if x is None else f"{x:.2f}"

    lines = [
        f"{r.model}: segment boundaries at the default {r.min_score:.2f}: mean error {s(r.mean_segment_error_s)} s "
        f"(start {s(r.mean_start_error_s)}, end {s(r.mean_end_error_s)}), max {s(r.max_segment_error_s)} s; "
        f"{len(r.segments) - r.segments_extra} true segments, {r.segments_missed} with no returned segment, "
        f"{r.segments_extra} returned segments outside every true one",
        "",
        "| query | clip | true segment (s) | returned segment (s) | start error (s) | end error (s) |",
        "|---|---|---|---|---|---|",
    ]
    for m in r.segments:
        found = f"{m.found[0]:.2f}-{m.found[1]:.2f}" if m.found else "—"
        truth = f"{m.truth[0]:.2f}-{m.truth[1]:.2f}" if m.truth else "— (none)"
        lines.append(
            f"| {Path(m.query).name} | {Path(m.clip).name} | {truth} | {found} "
            f"| {s(m.start_error_s)} | {s(m.end_error_s)} |"
        )
    return "\n".join(lines)


def video_plot(results: list[VideoEval], path: Path) -> None:
    """Recall against false videos per query over the sweep, one curve per model, thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, r in enumerate(results):
        colour = f"C{i}"
        fv = [p.false_videos_per_query for p in r.sweep]
        ax.plot(fv, [p.recall for p in r.sweep], color=colour, marker=".", label=r.model)
        last = None
        for p in r.sweep:  # label every 0.1 where the curve has moved
            at = (p.false_videos_per_query, p.recall)
            if round(p.threshold * 100) % 10 == 0 and at != last:
                ax.annotate(
                    f"{p.threshold:.1f}", at, fontsize=7, color=colour, xytext=(3, 3), textcoords="offset points"
                )
                last = at
        ax.plot([r.false_videos_per_query], [r.recall], color=colour, marker="o", markersize=9, fillstyle="none")
    ax.axvline(MAX_FALSE_VIDEOS, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("false videos per query (symlog)")
    ax.set_ylabel("recall of (query, clip) pairs")
    ax.set_ylim(0, 1.02)
    ax.set_title("rvs eval videos: threshold sweep (circle: model default, dotted: 0.2 false videos per query)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def as_json(results: list[Any]) -> str:
    """Indented JSON, with each list of numbers or strings on one line (the sweep's searches return
    thousands of them)."""
    text = json.dumps([dataclasses.asdict(r) for r in results], indent=2, default=str)
    return re.sub(r"\[\n\s*([^\[\]{}]*?)\n\s*\]", lambda m: "[" + re.sub(r",\n\s*", ", ", m[1]) + "]", text)


def plot(results: list[ImageEval], path: Path, defaults: dict[str, float]) -> None:
    """Precision and recall against the threshold, one colour per model, defaults marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, r in enumerate(results):
        colour = f"C{i}"
        ax.plot(r.curve.thresholds, r.curve.precision, color=colour, label=f"{r.model} precision")
        ax.plot(r.curve.thresholds, r.curve.recall, color=colour, linestyle="--", label=f"{r.model} recall")
        if r.model in defaults:
            ax.axvline(defaults[r.model], color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("min_score (cosine similarity)")
    ax.set_ylabel("precision / recall")
    ax.set_ylim(0, 1.02)
    ax.set_title("rvs eval images: every result at or above the threshold (dotted: model default)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
