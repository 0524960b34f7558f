"""1-fps sampling speed of rvs's sampler vs `ffmpeg -vf fps=1` on the same files.

Both produce RGB frames (ours as numpy arrays, ffmpeg's as rawvideo written to /dev/null); ours
also downscales to the published size when the frame is larger. Prints a table; writes
bench/results/sampler.json.

    uv run python bench/sampler.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time

from rvs.core.media.video import VideoSampler

from common import save, talking_head_clip


def time_rvs(path: str, repeat: int) -> tuple[float, int, int]:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        with VideoSampler(path, fps=1.0, max_side=1280) as s:
            n = sum(1 for _ in s)
            decoded = s.frames_decoded
        best = min(best, time.perf_counter() - t0)
    return best, n, decoded


def time_ffmpeg(path: str, repeat: int) -> float:
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        raise SystemExit("ffmpeg is the baseline: install it (apt-get install ffmpeg)")
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-i",
                path,
                "-vf",
                "fps=1",
                "-pix_fmt",
                "rgb24",
                "-f",
                "rawvideo",
                "-y",
                "/dev/null",
            ],
            check=True,
        )
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for w, h in ((1280, 720), (1920, 1080)):
        for gop in (1.0, 10.0):
            clip = str(talking_head_clip(args.seconds, w, h, gop))
            ours, samples, decoded = time_rvs(clip, args.repeat)
            theirs = time_ffmpeg(clip, args.repeat)
            rows.append(
                {
                    "clip": f"{h}p H.264 GOP {gop:g}s, {args.seconds}s",
                    "rvs_s": ours,
                    "ffmpeg_s": theirs,
                    "speedup": theirs / ours,
                    "samples": samples,
                    "frames_decoded": decoded,
                    "frames_in_file": args.seconds * 30,
                }
            )
    print(f"{'clip':<30} {'rvs s':>7} {'ffmpeg s':>9} {'ffmpeg/rvs':>10} {'decoded':>10}")
    for r in rows:
        print(
            f"{r['clip']:<30} {r['rvs_s']:7.2f} {r['ffmpeg_s']:9.2f} {r['speedup']:9.2f}x"
            f" {r['frames_decoded']:>5}/{r['frames_in_file']}"
        )
    print("wrote", save("sampler", {"rows": rows}))


if __name__ == "__main__":
    main()
