"""Embedder throughput: the prototype's per-frame loop vs rvs's batched pipeline, on the same frames,
with the recall of each.

Prototype (as the research code did it, facenet-pytorch's README recipe): for each frame,
`MTCNN(keep_all=True)(frame)` at full resolution returns the face crops, then InceptionResnetV1 embeds
that frame's crops. rvs: `FacePipeline.process` on batches of frames (detection on frames downscaled
to RVS_DETECT_MAX_SIDE, crops cut and resized as one tensor op, channels-last network).

The facenet weights cannot be downloaded here; a randomly initialised InceptionResnetV1 has the same
cost, so speed is measured with it. Recall is measured with networks that know faces:
- detection recall: of the faces the prototype finds at full resolution (probability >= 0.95, the
  score rvs indexes at), the portion rvs finds too (box IoU >= 0.5);
- identity recall (dlib-resnet, real weights): LFW people pasted into 1280x720 frames; a person counts
  as found in a frame when a face there scores >= the model's threshold against a *different* photo
  of them. Measured for detection at full resolution (as the prototype) and at rvs's setting.

Then every model+detector pairing (`--pairings`) on the same frames, against MTCNN + dlib-resnet in
the same run: faces/s, detection recall against the prototype's boxes, and identity recall at each
model's default threshold.

    uv run python bench/embedder.py [--frames 24] [--batch 16] [--detect-max-side 640] [--pairings ...]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import MTCNN, InceptionResnetV1
from PIL import Image

from rvs.core.config import ModelSettings
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.media.video import VideoSampler
from rvs.embedder.config import EmbedderSettings

from common import SHARED, facenet_weights, save, talking_head_clip

LFW = SHARED / "faces" / "lfw" / "images"
BACKGROUND = SHARED / "media/dlib/examples/video_frames/frame_000100.jpg"  # a street, no faces


@dataclass
class FrameSet:
    name: str
    frames: list[np.ndarray]
    people: list[list[str]]  # LFW names pasted into each frame (empty when unknown)


def talking_heads(n: int) -> FrameSet:
    clip = talking_head_clip(60, 1280, 720, 2.0)
    with VideoSampler(clip, fps=1.0) as s:
        frames = [x.rgb for x in s][:n]
    return FrameSet("720p talking head", frames, [[] for _ in frames])


def lfw_people(count: int) -> list[str]:
    """People with at least two photos: one is pasted into frames, the other is the query."""
    names = sorted(p.name for p in LFW.iterdir() if (p / f"{p.name}_0002.jpg").exists())
    step = max(1, len(names) // count)
    return names[::step][:count]


def composites(n: int, per_frame: int, tile: int, name: str) -> FrameSet:
    """Real LFW photos (faces ~45% of the photo) pasted side by side onto a real street frame."""
    people = lfw_people(n * per_frame)
    background = np.asarray(Image.open(BACKGROUND).convert("RGB").resize((1280, 720)))
    frames, names = [], []
    per_row = 1280 // (tile + 20)
    for i in range(n):
        canvas = background.copy()
        chosen = people[i * per_frame : (i + 1) * per_frame]
        for j, person in enumerate(chosen):
            photo = Image.open(LFW / person / f"{person}_0001.jpg").convert("RGB").resize((tile, tile))
            x, y = 10 + (j % per_row) * (tile + 20), 60 + (j // per_row) * (tile + 40)
            canvas[y : y + tile, x : x + tile] = np.asarray(photo)
        frames.append(canvas)
        names.append(chosen)
    return FrameSet(name, frames, names)


class Prototype:
    """The research prototype's loop: one frame at a time, MTCNN crops, then the network."""

    def __init__(self, weights: Path) -> None:
        self.mtcnn = MTCNN(keep_all=True, device="cpu").eval()
        self.net = InceptionResnetV1().eval()
        self.net.load_state_dict(torch.load(weights, weights_only=True))

    def boxes(self, frame: np.ndarray) -> np.ndarray:
        boxes, probs = self.mtcnn.detect(Image.fromarray(frame))
        return np.zeros((0, 4)) if boxes is None else boxes[np.asarray(probs) >= 0.95]

    def run(self, frames: list[np.ndarray]) -> int:
        faces = 0
        with torch.inference_mode():
            for frame in frames:
                crops = self.mtcnn(Image.fromarray(frame))
                if crops is not None:
                    faces += len(self.net(crops))
        return faces


def rvs_run(pipeline: FacePipeline, frames: list[np.ndarray], batch: int) -> int:
    return sum(len(f) for i in range(0, len(frames), batch) for f in pipeline.process(frames[i : i + batch]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def detection_recall(reference: list[np.ndarray], found: list[list[np.ndarray]]) -> tuple[int, int]:
    hit = total = 0
    for ref_boxes, boxes in zip(reference, found, strict=True):
        for r in ref_boxes:
            total += 1
            hit += any(iou(r, b) >= 0.5 for b in boxes)
    return hit, total


def identity_recall(pipeline: FacePipeline, frame_set: FrameSet) -> tuple[int, int]:
    found = total = 0
    threshold = pipeline.encoder.default_min_score
    for frame, people in zip(frame_set.frames, frame_set.people, strict=True):
        vectors = np.stack([f.vector for f in pipeline.process([frame])[0]] or [np.zeros(pipeline.dim)])
        for person in people:
            photo = np.asarray(Image.open(LFW / person / f"{person}_0002.jpg").convert("RGB"))
            query = pipeline.process([photo])[0]
            total += 1
            found += bool(query) and float((vectors @ query[0].vector).max()) >= threshold
    return found, total


def pairing_rows(
    pairings: list[str], sets: list[FrameSet], reference: list[list[np.ndarray]], args: argparse.Namespace
) -> list[dict[str, object]]:
    """Each pairing on every frame set: faces/s (best of the repeats), detection and identity recall."""
    pipelines = {}
    for pairing in pairings:
        model, _, detector = pairing.partition("+")
        pipelines[pairing] = FacePipeline(
            ModelSettings(model=model, detector=detector or "mtcnn", detect_max_side=args.detect_max_side)
        )
        pipelines[pairing].load()
        rvs_run(pipelines[pairing], sets[0].frames[:4], 4)  # warm-up
    rows = []
    for fs, ref in zip(sets, reference, strict=True):
        seconds: dict[str, list[float]] = {p: [] for p in pairings}
        faces = {}
        for _ in range(args.repeats):  # alternate, so drift on a noisy machine hits every pairing
            for pairing, pipeline in pipelines.items():
                took, faces[pairing] = timed(rvs_run, pipeline, fs.frames, args.batch)
                seconds[pairing].append(took)
        for pairing, pipeline in pipelines.items():
            found = [[np.asarray(f.detection.box) for f in frame] for frame in pipeline.process(fs.frames)]
            hit, total = detection_recall(ref, found)
            person_hit, people = identity_recall(pipeline, fs) if fs.people[0] else (0, 0)
            rows.append(
                {
                    "set": fs.name,
                    "pairing": pairing,
                    "faces": faces[pairing],
                    "faces_per_s": faces[pairing] / min(seconds[pairing]),
                    "frames_per_s": len(fs.frames) / min(seconds[pairing]),
                    "detection_recall": hit / total if total else None,
                    "identity_found": person_hit,
                    "identity_people": people,
                }
            )
    return rows


def timed(fn, *args) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    faces = fn(*args)
    return time.perf_counter() - t0, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24, help="frames per set")
    parser.add_argument("--batch", type=int, default=EmbedderSettings().batch_size, help="rvs frames per batch")
    parser.add_argument("--detect-max-side", type=int, default=ModelSettings().detect_max_side)
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed runs; the best of each counts")
    parser.add_argument(
        "--pairings",
        default="dlib-resnet+mtcnn,sface+yunet,sface+mtcnn,facenet-casia+mtcnn",
        help="MODEL+DETECTOR,... (the first is the baseline)",
    )
    args = parser.parse_args()

    weights = facenet_weights("facenet-vggface2", None)
    assert weights is not None
    proto = Prototype(weights)
    rvs = FacePipeline(
        ModelSettings(model="facenet-vggface2", weights_path=weights, detect_max_side=args.detect_max_side)
    )
    rvs.load()

    sets = [
        talking_heads(args.frames),
        composites(args.frames, 4, 250, "720p, 4 LFW faces ~110 px"),
        composites(args.frames // 2, 12, 150, "720p, 12 LFW faces ~65 px"),
    ]
    proto.run(sets[0].frames[:2])
    rvs_run(rvs, sets[0].frames[:4], 4)  # warm-up
    rows = []
    for fs in sets:
        proto_s, rvs_s = [], []
        for _ in range(args.repeats):  # alternate, so drift on a noisy machine hits both
            seconds, proto_faces = timed(proto.run, fs.frames)
            proto_s.append(seconds)
            seconds, rvs_faces = timed(rvs_run, rvs, fs.frames, args.batch)
            rvs_s.append(seconds)
        reference = [proto.boxes(f) for f in fs.frames]
        found = [[np.asarray(f.detection.box) for f in faces] for faces in rvs.process(fs.frames)]
        hit, total = detection_recall(reference, found)
        rows.append(
            {
                "set": fs.name,
                "frames": len(fs.frames),
                "prototype_faces": proto_faces,
                "prototype_faces_per_s": proto_faces / min(proto_s),
                "rvs_faces": rvs_faces,
                "rvs_faces_per_s": rvs_faces / min(rvs_s),
                "speedup": (rvs_faces / min(rvs_s)) / (proto_faces / min(proto_s)),
                "detection_recall": hit / total,
                "reference_faces": total,
            }
        )
        print(f"{fs.name}: prototype {min(proto_s):.2f} s, rvs {min(rvs_s):.2f} s", flush=True)

    # Identity recall with a network that knows faces: full-resolution detection vs rvs's setting.
    identity = []
    for side in (4096, args.detect_max_side):
        pipeline = FacePipeline(ModelSettings(model="dlib-resnet", detect_max_side=side))
        pipeline.load()
        for fs in sets[1:]:
            found_n, total_n = identity_recall(pipeline, fs)
            identity.append({"set": fs.name, "detect_max_side": side, "found": found_n, "people": total_n})

    pairings = args.pairings.split(",")
    by_pairing = pairing_rows(pairings, sets, [[proto.boxes(f) for f in fs.frames] for fs in sets], args)

    print(
        f"\nfacenet InceptionResnetV1 on CPU ({torch.get_num_threads()} threads); rvs batch {args.batch}, "
        f"detection at long side <= {args.detect_max_side}"
    )
    print(f"{'frames':<28} {'proto faces/s':>13} {'rvs faces/s':>11} {'speedup':>8} {'det. recall':>11}")
    for r in rows:
        print(
            f"{r['set']:<28} {r['prototype_faces_per_s']:13.2f} {r['rvs_faces_per_s']:11.2f} {r['speedup']:7.2f}x"
            f" {r['detection_recall']:10.3f} ({r['reference_faces']} faces)"
        )
    print("\nidentity recall (dlib-resnet, threshold 0.92, query = another photo of the person)")
    for r in identity:
        side = "full resolution" if r["detect_max_side"] == 4096 else f"long side {r['detect_max_side']}"
        print(f"{r['set']:<28} {side:<16} {r['found']}/{r['people']} = {r['found'] / r['people']:.3f}")
    print(f"\nmodel+detector pairings (baseline {pairings[0]}), rvs batch {args.batch}")
    print(
        f"{'frames':<28} {'pairing':<22} {'faces/s':>8} {'vs base':>7} {'frames/s':>8} {'det. recall':>11} {'identity':>9}"
    )
    base = {r["set"]: r["faces_per_s"] for r in by_pairing if r["pairing"] == pairings[0]}
    for r in by_pairing:
        recall = "—" if r["detection_recall"] is None else f"{r['detection_recall']:.3f}"
        identity_text = f"{r['identity_found']}/{r['identity_people']}" if r["identity_people"] else "—"
        print(
            f"{r['set']:<28} {r['pairing']:<22} {r['faces_per_s']:8.1f} {r['faces_per_s'] / base[r['set']]:6.2f}x"  # type: ignore[operator]
            f" {r['frames_per_s']:8.2f} {recall:>11} {identity_text:>9}"
        )
    path = save(
        "embedder",
        {
            "batch": args.batch,
            "detect_max_side": args.detect_max_side,
            "rows": rows,
            "identity_recall": identity,
            "pairings": by_pairing,
        },
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
