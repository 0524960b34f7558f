"""The eval report: a Markdown table (one row per model), JSON, and a precision/recall plot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rvs.evaluation.images import ImageEval
from rvs.evaluation.videos import VideoEval

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
    lines = [
        "| model | clips | (person, clip) pairs | found in top-k | mean segment error (s) "
        "| strangers queried | false matches | threshold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        err = f"{r.mean_segment_error_s:.2f}" if r.mean_segment_error_s is not None else "—"
        lines.append(
            f"| {r.model} | {r.clips} | {r.pairs} | {r.found}/{r.pairs} ({r.recall:.2f}) | {err} "
            f"| {r.strangers} | {r.false_matches} | {r.min_score:.2f} |"
        )
    return "\n".join(lines)


def as_json(results: list[Any]) -> str:
    return json.dumps([dataclasses.asdict(r) for r in results], indent=2, default=str)


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
