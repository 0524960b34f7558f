"""Helpers shared by the benchmark scripts: test clips, machine description, results files."""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from rvs.core.store.faces import FaceStore

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RVS_SHARED_DIR", ROOT.parent / "shared"))
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"


def machine() -> dict[str, object]:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": next(
            (
                x.split(":", 1)[1].strip()
                for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")
            ),
            platform.processor(),
        ),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "pyav": av.__version__,
    }


def facenet_weights(model: str, given: Path | None) -> Path | None:
    """The weights file for a facenet model: the one given, else a randomly initialised
    InceptionResnetV1 (the published weights cannot be downloaded here; the cost is the same)."""
    if given is not None or not model.startswith("facenet"):
        return given
    path = CACHE / "facenet-random.pt"
    if not path.exists():
        import torch
        from facenet_pytorch import InceptionResnetV1

        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save(InceptionResnetV1().state_dict(), path)
    return path


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


def peak_rss_mib(pid: int) -> float:
    """The kernel's high-water mark of a process's resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def tree_rss_mib(pid: int) -> dict[int, float]:
    """Current resident memory (MiB) of a process and all its descendants, by pid."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            rss = next(x for x in Path(f"/proc/{p}/status").read_text().splitlines() if x.startswith("VmRSS:"))
            out[p] = int(rss.split()[1]) / 1024
        except (OSError, StopIteration):
            continue
        todo += children.get(p, [])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (its own threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def talking_head_clip(seconds: int, width: int, height: int, gop_s: float, fps: int = 30, source: str = "d6") -> Path:
    """A real talking-head clip (shared/liveportrait driving/<source>.mp4, looped) re-encoded to the
    given size/GOP."""
    CACHE.mkdir(parents=True, exist_ok=True)
    name = f"talking_{seconds}s_{width}x{height}_gop{gop_s:g}" + ("" if source == "d6" else f"_{source}")
    out_path = CACHE / f"{name}.mp4"
    if out_path.exists():
        return out_path
    src = SHARED / "media" / "liveportrait" / "assets" / "examples" / "driving" / f"{source}.mp4"
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


def query_photo(path: Path) -> bytes:
    canvas = Image.new("RGB", (640, 480), (120, 120, 120))
    canvas.paste(Image.open(path).convert("RGB").resize((250, 250)), (195, 115))
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def wait_indexed(store: FaceStore, timeout_s: float = 7200, stall_s: float = 900) -> float:
    """Flush and wait until the index covers every row; seconds waited. A build that makes no
    progress for `stall_s` is given up (Milvus retries a failing build without end)."""
    t0 = progressed = time.perf_counter()
    store.client.flush(store.collection)
    indexed = -1
    while time.perf_counter() - t0 < timeout_s:
        info = store.client.describe_index(store.collection, "embedding")
        # Not pending_index_rows: Milvus 2.3.5 left it at 1,000,000 with every row indexed.
        if info.get("indexed_rows", 0) >= info.get("total_rows", 1):
            break
        if info.get("indexed_rows", 0) > indexed:
            indexed, progressed = info.get("indexed_rows", 0), time.perf_counter()
        elif time.perf_counter() - progressed > stall_s:
            raise RuntimeError(f"the index build made no progress for {stall_s:.0f} s: {info}")
        time.sleep(1)
    return time.perf_counter() - t0


def timed_search_rpcs(stub: Any, photos: list[bytes], queries: int) -> list[float]:
    """Milliseconds of each of `queries` Search RPCs over `photos` in turn, after one warm-up."""
    import grpc

    from rvs.v1 import rvs_pb2 as pb

    stub.Search(pb.SearchRequest(image=photos[0]), timeout=600)
    ms = []
    for i in range(queries):
        t = time.perf_counter()
        try:
            stub.Search(pb.SearchRequest(image=photos[i % len(photos)]), timeout=600)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # NO_FACE still costs a full RPC
                raise
        ms.append((time.perf_counter() - t) * 1000)
    return ms
