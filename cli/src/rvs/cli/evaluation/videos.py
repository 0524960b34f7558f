"""`rvs eval videos MANIFEST`: clips run through the whole embedded pipeline (folder -> sampler ->
embedder -> Milvus), then each query photo through the Search code path.

The manifest (JSON; paths relative to it):

    {"top_k": 10,
     "clips": [{"path": "party.mp4", "people": [{"name": "Alice", "segments": [[3.2, 7.85]]}]}],
     "queries": [{"name": "Alice", "photo": "alice.jpg"}, {"name": "Mallory", "photo": "m.jpg"},
                 {"name": "Bob", "frame": {"clip": "bob.mp4", "at_s": 2.5, "box": [0, 0, 320, 240]}}]}

A query is a photo, or a frame cut from a clip at `at_s` (optionally cropped to `box`, x0 y0 x1 y1);
a frame query leaves its own clip out: that clip counts neither as found nor as false, and neither do
the clips a query lists as `unsure` (where the labeller could not tell whether the person is there). A person in
`queries` who appears in no clip is a stranger. Every video returned that does not show the query's
person is a false video. Each query is searched for real at every threshold of the sweep
(`min_score=t`, the manifest's top_k), so whatever rule the search applies besides the threshold
(grouping, evidence a video needs) is measured; the clips are indexed once per model.

`segments` are optional: the intervals [start, end) in seconds in which the person is really on
screen, from the first frame showing them to the first frame without them (or the clip's end), in
the sampler's time (0 at the stream's first frame) -- not the times of the 1 fps samples. With them
the segment boundary error is measured at the model's default threshold: each true segment is
matched with the returned segment (pb.Segment start_ms/end_ms) overlapping it most, and the error is
|start difference| and |end difference|. Other keys (`notes`, `note`) are for readers."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
from rvs.cli.evaluation import video_people
from rvs.cli.evaluation.video_people import VideoPeople
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
    # What a search at each threshold returned: clips and photos (manifest paths), the ignored left
    # out; thresholds at which nothing came back are left out.
    returned: dict[float, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    found: int
    recall: float  # found / (person, clip) pairs
    false_videos_per_query: float
    strangers_matched: int  # stranger queries with at least one video


@dataclass(frozen=True)
class SegmentMatch:
    """A true segment of a person in a clip returned for them, and the returned segment overlapping
    it most (None: no returned segment overlaps it); or (truth None) a returned segment of that clip
    that overlaps none of the person's true segments."""

    query: str  # the query's source
    clip: str
    truth: tuple[float, float] | None  # [start, end) in seconds
    found: tuple[float, float] | None  # start_ms / 1000, end_ms / 1000 of the pb.Segment
    start_error_s: float | None
    end_error_s: float | None


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
    mean_segment_error_s: float | None  # mean |boundary difference| over the matched segments' starts and ends
    min_score: float  # the model's default threshold
    suggested_min_score: float | None  # lowest swept threshold with false videos per query <= 0.2
    top_k: int
    sweep: list[SweepPoint] = field(default_factory=list)
    per_query: list[QueryResult] = field(default_factory=list)
    mean_start_error_s: float | None = None
    mean_end_error_s: float | None = None
    max_segment_error_s: float | None = None  # the largest start or end error
    segments_missed: int = 0  # true segments of returned clips that no returned segment overlaps
    segments_extra: int = 0  # returned segments (of a person's own clips) that overlap none of their true segments
    segments: list[SegmentMatch] = field(default_factory=list)
    people: VideoPeople | None = None  # the clips' tracks and the query faces clustered into people


Search = Callable[[pb.SearchRequest], pb.SearchResponse]


def _key(threshold: float) -> float:
    return round(threshold, 4)


def returned_by(response: pb.SearchResponse, top_k: int, ignored: list[str], uri: Callable[[str], str]) -> list[str]:
    """The clips, then the photos, a response returns (as manifest paths), the ignored left out, at
    most top_k of each."""
    videos = [c for c in (uri(v.uri) for v in response.videos) if c not in ignored]
    images = [c for c in (uri(i.uri) for i in response.images) if c not in ignored]
    return videos[:top_k] + images[:top_k]


def sweep_query(
    search: Search, thresholds: list[float], top_k: int, ignored: list[str], uri: Callable[[str], str]
) -> dict[float, list[str]]:
    """One real search per threshold (min_score=t): what each returns, thresholds with nothing left
    out. Each asks for top_k more than the ignored clips, so that they take no one's place."""
    out = {}
    for t in thresholds:
        got = returned_by(search(pb.SearchRequest(top_k=top_k + len(ignored), min_score=t)), top_k, ignored, uri)
        if got:
            out[_key(t)] = got
    return out


def measure(results: list[QueryResult], threshold: float) -> SweepPoint:
    """Recall, false videos per query and strangers matched from what the searches at `threshold`
    returned (every query must have been searched there)."""
    pairs = sum(len(q.expected) for q in results)
    found = false = matched = 0
    for q in results:
        got = set(q.returned.get(_key(threshold), []))
        found += len(got & set(q.expected))
        false += len(got - set(q.expected))
        matched += bool(q.stranger and got)
    return SweepPoint(threshold, found, found / pairs if pairs else 0.0, false / max(len(results), 1), matched)


def suggest(sweep: list[SweepPoint], max_false: float = MAX_FALSE_VIDEOS) -> float | None:
    return next((p.threshold for p in sweep if p.false_videos_per_query <= max_false + 1e-9), None)


def match_segments(
    truth: list[tuple[float, float]], found: list[tuple[float, float]]
) -> tuple[list[tuple[tuple[float, float], tuple[float, float] | None]], list[tuple[float, float]]]:
    """Each true segment [start, end) with the found segment [start, end] (seconds; a single sample's
    has start == end) overlapping it most, or None; and the found segments that overlap no true one."""

    def overlap(t: tuple[float, float], f: tuple[float, float]) -> float | None:
        if f[0] < t[1] and f[1] >= t[0]:
            return min(f[1], t[1]) - max(f[0], t[0])
        return None

    pairs: list[tuple[tuple[float, float], tuple[float, float] | None]] = []
    for t in truth:
        touching = [(o, f) for f in found if (o := overlap(t, f)) is not None]
        pairs.append((t, max(touching)[1] if touching else None))
    extra = [f for f in found if all(overlap(t, f) is None for t in truth)]
    return pairs, extra


def _segment_matches(query: str, clip: str, truth: list[tuple[float, float]], hit: pb.VideoHit) -> list[SegmentMatch]:
    found = [(s.start_ms / 1000, s.end_ms / 1000) for s in hit.segments]
    pairs, extra = match_segments(truth, found)
    out = []
    for t, f in pairs:
        errors = (round(abs(f[0] - t[0]), 3), round(abs(f[1] - t[1]), 3)) if f else (None, None)
        out.append(SegmentMatch(query, clip, t, f, *errors))
    return out + [SegmentMatch(query, clip, None, f, None, None) for f in extra]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


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
            matches: list[SegmentMatch] = []
            query_faces: list[tuple[str, np.ndarray]] = []  # each query's searched face, for people
            searched = sorted({*thresholds, min_score})

            def uri(u: str) -> str:
                return uris.get(u, u)

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
                search = functools.partial(engine.search_faces, faces)
                query_faces.append((query["name"], faces[0].vector))
                # Every clip's best score at the sweep's floor, for the per-query table.
                floor = search(pb.SearchRequest(top_k=max(len(clips), top_k), min_score=min(thresholds)))
                hits = [(uri(v.uri), v.best_score) for v in floor.videos]
                hits += [(uri(i.uri), i.score) for i in floor.images]
                result.scores = {u: round(score, 4) for u, score in hits if u not in ignored}
                result.returned = sweep_query(search, searched, top_k, ignored, uri)
                at_default = search(pb.SearchRequest(top_k=top_k + len(ignored), min_score=min_score))
                videos = {uri(v.uri): v for v in at_default.videos}
                for person in expected:
                    hit = videos.get(person["clip"])
                    if hit is not None and person.get("segments"):
                        truth = [(float(a), float(b)) for a, b in person["segments"]]
                        matches += _segment_matches(source, person["clip"], truth, hit)
            people = video_people.evaluate(engine, clips, uris, query_faces)
        finally:
            app.stop()
    sweep = [measure(results, t) for t in thresholds]
    headline = measure(results, min_score)
    starts = [m.start_error_s for m in matches if m.start_error_s is not None]
    ends = [m.end_error_s for m in matches if m.end_error_s is not None]
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
        mean_segment_error_s=_mean(starts + ends),
        min_score=min_score,
        suggested_min_score=suggest(sweep),
        top_k=top_k,
        sweep=sweep,
        per_query=results,
        mean_start_error_s=_mean(starts),
        mean_end_error_s=_mean(ends),
        max_segment_error_s=max(starts + ends, default=None),
        segments_missed=sum(m.found is None for m in matches),
        segments_extra=sum(m.truth is None for m in matches),
        segments=matches,
        people=people,
    )
