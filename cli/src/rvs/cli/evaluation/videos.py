"""`rvs eval videos MANIFEST`: clips run through the whole embedded pipeline (folder -> sampler ->
embedder -> Milvus), then each query photo through the Search code path.

The manifest (JSON; paths relative to it):

    {"top_k": 10,
     "clips": [{"path": "party.mp4", "people": [{"name": "Alice", "segments": [[3, 7]]}]}],
     "queries": [{"name": "Alice", "photo": "alice.jpg"}, {"name": "Mallory", "photo": "m.jpg"},
                 {"name": "Bob", "frame": {"clip": "bob.mp4", "at_s": 2.5, "box": [0, 0, 320, 240]}}]}

A query is a photo, or a frame cut from a clip at `at_s` (optionally cropped to `box`, x0 y0 x1 y1);
a frame query leaves its own clip out: that clip counts neither as found nor as false, and neither do
the clips a query lists as `unsure` (where the labeller could not tell whether the person is there). A person in
`queries` who appears in no clip is a stranger. Every video returned that does not show the query's
person is a false video. Each query is searched once with a low min_score, then every threshold of
the sweep re-filters those results by score (a video is returned at t when its best face scores
>= t, at most top_k of them), so the clips are indexed once per model. `segments` (seconds, as the
1 fps sample times) are optional; with them the segment boundary error is measured at the model's
default threshold. Other keys (`notes`, `note`) are for readers."""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
from rvs.core.config import ModelSettings
from rvs.core.media.video import VideoSampler
from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.query.search import NoFace
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb

THRESHOLDS = [round(float(t), 2) for t in np.arange(0.20, 0.995, 0.01)]
MAX_FALSE_VIDEOS = 0.2  # the threshold rule: the lowest threshold keeping false videos per query at or below this


@dataclass
class QueryResult:
    name: str
    source: str  # the photo's path, or "clip@seconds" for a frame query (manifest paths)
    stranger: bool
    expected: list[str]  # clips that show the person (manifest paths), the ignored ones left out
    ignored: list[str]  # the clip a frame query was cut from, and the clips marked unsure
    scores: dict[str, float]  # best face score of every clip returned at the sweep's floor
    no_face: bool = False


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    found: int
    recall: float  # found / (person, clip) pairs
    false_videos_per_query: float
    strangers_matched: int  # stranger queries with at least one video


@dataclass
class VideoEval:
    model: str
    clips: int
    queries: int
    no_face: int  # queries whose photo or frame has no detectable face (their pairs count as missed)
    pairs: int  # (query, clip) pairs: each query of a person and each clip showing them
    found: int  # at the default threshold, among the top-k videos
    recall: float
    false_videos_per_query: float
    strangers: int
    strangers_matched: int
    mean_segment_error_s: float | None  # mean |boundary difference| of matched segments
    min_score: float  # the model's default threshold
    suggested_min_score: float | None  # lowest swept threshold with false videos per query <= 0.2
    top_k: int
    sweep: list[SweepPoint] = field(default_factory=list)
    per_query: list[QueryResult] = field(default_factory=list)


def returned(scores: dict[str, float], threshold: float, top_k: int) -> set[str]:
    """The videos a search at `threshold` returns: the top_k best of those scoring at least it."""
    kept = sorted((s, uri) for uri, s in scores.items() if s >= threshold)
    return {uri for _, uri in kept[::-1][:top_k]}


def measure(results: list[QueryResult], threshold: float, top_k: int) -> SweepPoint:
    pairs = sum(len(q.expected) for q in results)
    found = false = matched = 0
    for q in results:
        got = returned(q.scores, threshold, top_k)
        found += len(got & set(q.expected))
        false += len(got - set(q.expected))
        matched += bool(q.stranger and got)
    return SweepPoint(threshold, found, found / pairs if pairs else 0.0, false / max(len(results), 1), matched)


def suggest(sweep: list[SweepPoint], max_false: float = MAX_FALSE_VIDEOS) -> float | None:
    return next((p.threshold for p in sweep if p.false_videos_per_query <= max_false + 1e-9), None)


def _boundary_error(truth: list[tuple[float, float]], found: list[pb.Segment]) -> list[float]:
    errors = []
    for start, end in truth:
        best = min(
            found,
            key=lambda s: abs(s.start_ms / 1000 - start) + abs(s.end_ms / 1000 - end),
            default=None,
        )
        if best is not None:
            errors.append((abs(best.start_ms / 1000 - start) + abs(best.end_ms / 1000 - end)) / 2)
    return errors


def query_image(query: dict[str, Any], base: Path) -> bytes:
    """The query's photo bytes, or its frame of a clip encoded as PNG (in memory only)."""
    if "photo" in query:
        return (base / query["photo"]).read_bytes()
    frame = query["frame"]
    with VideoSampler(base / frame["clip"]) as sampler:
        sample = sampler.frame_at(int(frame["at_s"] * 1000))
    if sample is None:
        raise ValueError(f"{frame['clip']} has no frame at {frame['at_s']} s")
    image = Image.fromarray(sample.rgb)
    if "box" in frame:
        image = image.crop(tuple(frame["box"]))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def evaluate(
    manifest_path: Path,
    model_settings: dict[str, object],
    milvus_uri: str,
    data_dir: Path,
    thresholds: list[float] = THRESHOLDS,
) -> VideoEval:
    manifest = json.loads(manifest_path.read_text())
    base = manifest_path.parent
    top_k = int(manifest.get("top_k", 5))
    clips = manifest["clips"]
    chosen = ModelSettings(**model_settings)  # type: ignore[arg-type]
    label = f"{chosen.model}+{chosen.detector}"  # as rvs eval names it
    with tempfile.TemporaryDirectory(prefix="rvs-eval-watch-") as tmp:
        watch = Path(tmp)
        uris = {}
        for i, clip in enumerate(clips):
            source = (base / clip["path"]).resolve()
            link = watch / f"{i:03d}_{source.name}"
            os.symlink(source, link)
            uris[str(link)] = clip["path"]
        common: dict[str, object] = {"data_dir": data_dir, "metrics_port": 0}
        collection = "eval_videos_" + re.sub(r"\W", "_", label)  # one per pairing
        model = {**common, **model_settings, "milvus_uri": milvus_uri, "collection": collection}
        settings = EmbeddedSettings(
            sampler=SamplerSettings(watch_dir=watch, settle_s=0, scan_interval_s=0.2, follow_symlinks=True, **common),  # type: ignore[arg-type]
            embedder=EmbedderSettings(**model),  # type: ignore[arg-type]
            query=QuerySettings(**model, port=0, web_port=0, search_candidates=16384),  # type: ignore[arg-type]
        )
        app = EmbeddedApp(settings)
        app.start()
        try:
            app.wait_idle(3600)  # every clip discovered (the folder scanned), sampled and embedded
            assert app.query is not None
            engine = app.query.engine
            min_score = engine.default_min_score
            showing: dict[str, list[dict[str, Any]]] = {}  # person -> [{"clip", "segments"}]
            for clip in clips:
                for person in clip.get("people", []):
                    showing.setdefault(person["name"], []).append({"clip": clip["path"], **person})
            results: list[QueryResult] = []
            errors: list[float] = []
            for query in manifest["queries"]:
                cut_from = [query["frame"]["clip"]] if "frame" in query else []
                ignored = cut_from + query.get("unsure", [])
                source = query.get("photo") or f"{cut_from[0]}@{query['frame']['at_s']}"
                expected = [p for p in showing.get(query["name"], []) if p["clip"] not in ignored]
                result = QueryResult(
                    query["name"], source, query["name"] not in showing, [p["clip"] for p in expected], ignored, {}
                )
                results.append(result)
                image = query_image(query, base)
                try:
                    faces = engine.analyse(image)
                except NoFace:  # the query fails: its pairs are missed
                    result.no_face = True
                    continue
                floor = engine.search_faces(faces, pb.SearchRequest(top_k=len(clips), min_score=min(thresholds)))
                hits = [(uris.get(v.uri, v.uri), v.best_score) for v in floor.videos]
                hits += [(uris.get(i.uri, i.uri), i.score) for i in floor.images]
                result.scores = {uri: round(score, 4) for uri, score in hits if uri not in ignored}
                at_default = engine.search_faces(faces, pb.SearchRequest(top_k=len(clips)))
                videos = {uris.get(v.uri, v.uri): v for v in at_default.videos}
                for person in expected:
                    hit = videos.get(person["clip"])
                    if hit is not None and person.get("segments"):
                        truth = [(float(a), float(b)) for a, b in person["segments"]]
                        errors.extend(_boundary_error(truth, list(hit.segments)))
        finally:
            app.stop()
    sweep = [measure(results, t, top_k) for t in thresholds]
    headline = measure(results, min_score, top_k)
    return VideoEval(
        model=label,
        clips=len(clips),
        queries=len(results),
        no_face=sum(q.no_face for q in results),
        pairs=sum(len(q.expected) for q in results),
        found=headline.found,
        recall=headline.recall,
        false_videos_per_query=headline.false_videos_per_query,
        strangers=sum(q.stranger for q in results),
        strangers_matched=headline.strangers_matched,
        mean_segment_error_s=sum(errors) / len(errors) if errors else None,
        min_score=min_score,
        suggested_min_score=suggest(sweep),
        top_k=top_k,
        sweep=sweep,
        per_query=results,
    )
