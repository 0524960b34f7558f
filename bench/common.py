"""Helpers shared by the benchmark scripts: test clips, machine description, results files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RVS_SHARED_DIR", ROOT.parent / "shared"))
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"


def machine() -> dict[str, object]:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "pyav": av.__version__,
    }


def save(name: str, data: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(
        json.dumps({"machine": machine(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}, indent=2)
    )
    return path


def percentiles(values: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(values, n=100)
    return {"p50": statistics.median(values), "p95": qs[94], "p99": qs[98], "n": len(values)}


def talking_head_clip(seconds: int, width: int, height: int, gop_s: float, fps: int = 30) -> Path:
    """A real talking-head clip (shared/liveportrait d6.mp4, looped) re-encoded to the given size/GOP."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out_path = CACHE / f"talking_{seconds}s_{width}x{height}_gop{gop_s:g}.mp4"
    if out_path.exists():
        return out_path
    src = SHARED / "media" / "liveportrait" / "assets" / "examples" / "driving" / "d6.mp4"
    frames = []
    with av.open(str(src)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
    gop = round(gop_s * fps)
    tmp = out_path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        s = out.add_stream(
            "libx264",
            rate=fps,
            options={"preset": "veryfast", "crf": "23", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"},
        )
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        canvas = np.zeros((height, width, 3), np.uint8)
        side = min(width, height)
        x0 = (width - side) // 2
        for i in range(seconds * fps):
            src_frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
            canvas[:, x0 : x0 + side] = src_frame.to_ndarray(width=side, height=side, format="rgb24")
            vf = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    tmp.rename(out_path)
    return out_path
