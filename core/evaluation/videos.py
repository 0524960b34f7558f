"""`rvs eval videos MANIFEST`: clips run through the whole embedded pipeline (folder -> sampler ->
embedder -> Milvus), then each query photo through the Search code path.

The manifest (JSON; paths relative to it):

    {"top_k": 5,
     "clips": [{"path": "party.mp4", "people": [{"name": "Alice", "segments": [[3, 7]]}]}],
     "queries": [{"name": "Alice", "photo": "alice.jpg"}, {"name": "Mallory", "photo": "m.jpg"}]}

A person in `queries` who appears in no clip is a stranger: anything returned for them is a false
match. `segments` (seconds) are optional; with them the segment boundary error is measured."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rvs.embedded import EmbeddedApp, EmbeddedSettings
from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb


@dataclass
class VideoEval:
    model: str
    clips: int
    pairs: int  # (person, clip) pairs in the manifest
    found: int  # of those, the clip was among the person's top-k videos
    recall: float
    mean_segment_error_s: float | None  # mean |boundary difference| of matched segments
    strangers: int
    false_matches: int  # photos or videos returned for strangers above the threshold
    min_score: float


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


def evaluate(manifest_path: Path, model_settings: dict[str, object], milvus_uri: str, data_dir: Path) -> VideoEval:
    manifest = json.loads(manifest_path.read_text())
    base = manifest_path.parent
    top_k = int(manifest.get("top_k", 5))
    clips = manifest["clips"]
    with tempfile.TemporaryDirectory(prefix="rvs-eval-watch-") as tmp:
        watch = Path(tmp)
        names = {}
        for i, clip in enumerate(clips):
            source = (base / clip["path"]).resolve()
            link = watch / f"{i:03d}_{source.name}"
            os.symlink(source, link)
            names[clip["path"]] = str(link)
        common: dict[str, object] = {"data_dir": data_dir, "metrics_port": 0}
        model = {**common, **model_settings, "milvus_uri": milvus_uri}
        settings = EmbeddedSettings(
            sampler=SamplerSettings(watch_dir=watch, settle_s=0, scan_interval_s=0.2, follow_symlinks=True, **common),  # type: ignore[arg-type]
            embedder=EmbedderSettings(**model),  # type: ignore[arg-type]
            query=QuerySettings(**model, port=0, web_port=0),  # type: ignore[arg-type]
        )
        app = EmbeddedApp(settings)
        app.start()
        try:
            deadline = time.monotonic() + 3600
            while len(app.catalog.list_media(limit=1 << 30)) < len(clips) and time.monotonic() < deadline:
                time.sleep(0.2)  # not yet discovered
            app.wait_idle(max(0.0, deadline - time.monotonic()))
            assert app.query is not None
            engine = app.query.engine
            in_clips = {p["name"] for c in clips for p in c.get("people", [])}
            found = pairs = strangers = false_matches = 0
            errors: list[float] = []
            for query in manifest["queries"]:
                photo = (base / query["photo"]).read_bytes()
                answer = engine.search(pb.SearchRequest(image=photo, top_k=top_k))
                videos = {v.uri: v for v in answer.videos}
                if query["name"] not in in_clips:
                    strangers += 1
                    false_matches += len(answer.videos) + len(answer.images)
                    continue
                for clip in clips:
                    for person in clip.get("people", []):
                        if person["name"] != query["name"]:
                            continue
                        pairs += 1
                        hit = videos.get(names[clip["path"]])
                        if hit is not None:
                            found += 1
                            truth = [tuple(s) for s in person.get("segments", [])]
                            errors.extend(_boundary_error(truth, list(hit.segments)))  # type: ignore[arg-type]
            min_score = engine.default_min_score
        finally:
            app.stop()
    return VideoEval(
        model=str(model_settings.get("model")),
        clips=len(clips),
        pairs=pairs,
        found=found,
        recall=found / pairs if pairs else 0.0,
        mean_segment_error_s=sum(errors) / len(errors) if errors else None,
        strangers=strangers,
        false_matches=false_matches,
        min_score=min_score,
    )
