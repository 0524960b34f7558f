"""Live streams: the sampler's CPU per stream, and how many 720p streams at 1 fps one machine keeps
up with, against ffmpeg's own decode of the same stream at 1 fps.

N streams of a real 720p talking-head clip (30 fps, a keyframe a second) are published in real time
into a local nginx-rtmp (ffmpeg -c copy: the publishers cost next to nothing) and sampled by one
SamplerService whose frames go to a null sink (JPEG-encoded as usual, then dropped). For each N:
CPU seconds of the sampler process per stream-second, the frames sampled against those due, and the
lag behind live at the start and end of the window (growing lag: not keeping up). Baseline: one
`ffmpeg -i rtmp://... -vf fps=1 -f rawvideo /dev/null` on the same stream, its CPU over the same
window. Writes bench/results/streams.json.

    uv run python bench/streams.py [--window 20] [--max-streams 24] [--record]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from rvs.sampler.app import SamplerService
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb

from common import ROOT, cpu_seconds, save, talking_head_clip

sys.path.insert(0, str(ROOT / "tests"))
from stream_server import available, rtmp_server


class Null:
    """A frame and event sink that keeps nothing."""

    def publish(self, message: pb.Frame | pb.MediaEvent) -> None:
        pass

    def flush(self, timeout_s: float | None = None) -> None:
        pass


def _gauges(registry: CollectorRegistry, name: str, streams: list[str]) -> list[float]:
    return [registry.get_sample_value(name, {"stream": s}) or 0.0 for s in streams]


def measure_rvs(urls: dict[str, str], window_s: float, record: Path | None, data: Path) -> dict[str, object]:
    settings = SamplerSettings(
        data_dir=data, streams=[f"{n}={u}" for n, u in urls.items()], metrics_port=0, recording_dir=record
    )
    registry = CollectorRegistry()
    service = SamplerService(settings, Null(), Null(), registry)  # type: ignore[arg-type]
    names = list(urls)
    service.start()
    try:
        deadline = time.monotonic() + 30
        while min(_gauges(registry, "rvs_stream_frames_sampled_total", names)) < 3:
            if time.monotonic() > deadline:
                raise SystemExit("the streams did not start within 30 s")
            time.sleep(0.2)
        lag_before = max(_gauges(registry, "rvs_stream_lag_seconds", names))
        frames_before = sum(_gauges(registry, "rvs_stream_frames_sampled_total", names))
        cpu_before, t0 = cpu_seconds(os.getpid()), time.monotonic()
        time.sleep(window_s)
        cpu = cpu_seconds(os.getpid()) - cpu_before
        elapsed = time.monotonic() - t0
        frames = sum(_gauges(registry, "rvs_stream_frames_sampled_total", names)) - frames_before
        lag_after = max(_gauges(registry, "rvs_stream_lag_seconds", names))
    finally:
        service.stop()
    due = len(names) * elapsed * settings.fps
    return {
        "streams": len(names),
        "cpu_s_per_stream_s": cpu / (len(names) * elapsed),
        "cores_busy": cpu / elapsed,
        "frames_sampled": frames,
        "frames_due": round(due, 1),
        "lag_s_start": round(lag_before, 2),
        "lag_s_end": round(lag_after, 2),
        "keeps_up": frames >= 0.9 * due and lag_after < lag_before + 2.0,
    }


def measure_ffmpeg(url: str, window_s: float) -> float:
    """CPU seconds per stream-second of ffmpeg decoding the stream and converting 1 fps to RGB."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg
    proc = subprocess.Popen(
        [ffmpeg, "-v", "error", "-i", url, "-vf", "fps=1", "-pix_fmt", "rgb24", "-f", "rawvideo", "-y", "/dev/null"]
    )
    try:
        time.sleep(5)  # connected and probed
        before, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(window_s)
        return (cpu_seconds(proc.pid) - before) / (time.monotonic() - t0)
    finally:
        proc.kill()
        proc.wait()


def _steps(most: int) -> list[int]:
    """1, 2, 4, 8... then `most` itself."""
    steps = [1]
    while steps[-1] * 2 < most:
        steps.append(steps[-1] * 2)
    return [*steps, most] if most > 1 else steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per step")
    parser.add_argument("--max-streams", type=int, default=24)
    parser.add_argument("--record", action="store_true", help="also record every segment (remux to MP4)")
    args = parser.parse_args()
    if why := available():
        raise SystemExit(why)
    clip = talking_head_clip(30, 1280, 720, 1.0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, rtmp_server(Path(tmp) / "nginx") as server:
        urls = {f"cam{i}": server.url(f"cam{i}") for i in range(args.max_streams)}
        for name in urls:
            server.publish(name, clip, copy=True)
        time.sleep(3)
        baseline = measure_ffmpeg(urls["cam0"], args.window)
        print(f"ffmpeg, 1 stream: {baseline:.3f} CPU s per stream-second")
        for n in _steps(args.max_streams):
            chosen = dict(list(urls.items())[:n])
            record = Path(tmp) / f"rec{n}" if args.record else None
            row = measure_rvs(chosen, args.window, record, Path(tmp) / f"data{n}")
            rows.append(row)
            print(
                f"rvs, {n} streams: {row['cpu_s_per_stream_s']:.3f} CPU s per stream-second "
                f"({row['cores_busy']:.2f} cores), {row['frames_sampled']:.0f}/{row['frames_due']} frames, "
                f"lag {row['lag_s_start']} -> {row['lag_s_end']} s: {'keeps up' if row['keeps_up'] else 'FALLS BEHIND'}"
            )
            if not row["keeps_up"]:
                break
    cores = os.cpu_count() or 1
    # The cost at the most streams that kept up: fixed costs spread, none of a backlog's skipped frames.
    kept_rows = [r for r in rows if r["keeps_up"]] or rows
    per_stream = float(kept_rows[-1]["cpu_s_per_stream_s"])  # type: ignore[arg-type]
    kept = max((int(r["streams"]) for r in rows if r["keeps_up"]), default=0)  # type: ignore[call-overload]
    summary = {
        "clip": "720p H.264 30 fps, keyframe every 1 s, over RTMP (nginx-rtmp, local)",
        "fps": 1.0,
        "recording": args.record,
        "ffmpeg_cpu_s_per_stream_s": baseline,
        "rows": rows,
        "most_streams_kept_up_measured": kept,
        "streams_per_2_cores_estimated": int(2 / per_stream),
        "cores_here": cores,
    }
    print(
        f"{per_stream:.3f} CPU s per stream-second (ffmpeg {baseline:.3f}): about {int(2 / per_stream)} "
        f"streams of 720p at 1 fps on 2 cores; measured keeping up: {kept} (on {cores} cores)"
    )
    path = save("streams" + ("-recording" if args.record else ""), summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
