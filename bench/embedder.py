"""Embedder throughput: faces/s through detection + embedding at batch 1 vs batched.

Frames: 1-fps samples of a real talking-head clip at 720p (one face per frame) plus frames with
several real LFW faces pasted on a real background. Prints a table; writes bench/results/embedder.json.

    uv run python bench/embedder.py [--model dlib-resnet] [--batches 1,4,16,32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rvs.config import ModelSettings
from rvs.faces.pipeline import FacePipeline
from rvs.media.video import VideoSampler

from common import SHARED, save, talking_head_clip


def frames(n: int) -> list[np.ndarray]:
    clip = talking_head_clip(60, 1280, 720, 2.0)
    with VideoSampler(clip, fps=1.0) as s:
        out = [x.rgb for x in s][: n // 2]
    lfw = sorted((SHARED / "faces" / "lfw" / "images").glob("*/*_0001.jpg"))[: 4 * n]
    bg = np.asarray(
        Image.open(SHARED / "media/dlib/examples/video_frames/frame_000100.jpg").convert("RGB").resize((1280, 720))
    )
    for i in range(n - len(out)):
        canvas = bg.copy()
        for j in range(4):  # four people per frame
            face = np.asarray(Image.open(lfw[(4 * i + j) % len(lfw)]).convert("RGB"))
            canvas[100 : 100 + face.shape[0], 100 + 280 * j : 100 + 280 * j + face.shape[1]] = face
        out.append(canvas)
    return out


def run(pipeline: FacePipeline, images: list[np.ndarray], batch: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    faces = 0
    for i in range(0, len(images), batch):
        faces += sum(len(f) for f in pipeline.process(images[i : i + batch]))
    return time.perf_counter() - t0, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="dlib-resnet")
    parser.add_argument("--weights-path", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batches", default="1,16")
    args = parser.parse_args()
    weights = args.weights_path
    if args.model.startswith("facenet") and weights is None:
        from facenet_pytorch import InceptionResnetV1

        # Same network and cost as the published weights, which cannot be downloaded here.
        weights = Path("bench/.cache/facenet-random.pt")
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(InceptionResnetV1().state_dict(), weights)
    pipeline = FacePipeline(ModelSettings(model=args.model, weights_path=weights))
    pipeline.load()
    images = frames(args.frames)
    run(pipeline, images[:4], 4)  # warm-up
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        seconds, faces = run(pipeline, images, b)
        rows.append(
            {
                "batch": b,
                "seconds": seconds,
                "faces": faces,
                "faces_per_s": faces / seconds,
                "frames_per_s": len(images) / seconds,
            }
        )
    base = rows[0]["faces_per_s"]
    print(f"model {args.model} on {pipeline.device}, {len(images)} frames at 1280x720")
    print(f"{'batch':>5} {'faces':>6} {'seconds':>8} {'faces/s':>8} {'frames/s':>8} {'vs batch 1':>10}")
    for r in rows:
        print(
            f"{r['batch']:>5} {r['faces']:>6} {r['seconds']:8.2f} {r['faces_per_s']:8.2f} {r['frames_per_s']:8.2f}"
            f" {r['faces_per_s'] / base:9.2f}x"
        )
    print("wrote", save(f"embedder-{args.model}", {"model": args.model, "device": str(pipeline.device), "rows": rows}))


if __name__ == "__main__":
    main()
