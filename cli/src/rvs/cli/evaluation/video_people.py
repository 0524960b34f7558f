"""People on the real-video set (`rvs eval videos`): the indexed clips' tracks and the query photos'
faces clustered as the clustering job clusters them (the model's rules), scored against the
manifest's labels.

A track is labelled with the clip's person when the clip lists one person, or with the one person
whose `segments` its time span overlaps; a track of a clip whose people cannot be told apart (several
people without segments, or with the same segments) is clustered but not scored. A query's face is
labelled with the query's name (a stranger too: nobody else should join them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rvs.cli.evaluation import measures
from rvs.core import clustering
from rvs.core.faces.registry import MODELS
from rvs.core.tracks import Track
from rvs.query.search import SearchEngine
from rvs.v1 import rvs_pb2 as pb


@dataclass(frozen=True)
class VideoPeople:
    min_score: float  # the clustering bar
    units: int  # tracks and query faces clustered
    scored: int  # of which labelled
    people_formed: int
    loose: int
    grouping: measures.Grouping  # over the labelled units


def track_label(clip: dict[str, Any], track: Track) -> str | None:
    """Who the track shows, from the manifest; None when the clip's labels cannot tell."""
    people = clip.get("people", [])
    if len(people) == 1:
        return str(people[0]["name"])
    start, end = track.start_ms / 1000, track.last_ms / 1000
    overlapping = {p["name"] for p in people for a, b in p.get("segments", []) if float(a) <= end and start < float(b)}
    return overlapping.pop() if len(overlapping) == 1 else None


def evaluate(
    engine: SearchEngine,
    clips: Sequence[dict[str, Any]],
    clip_of: dict[str, str],  # indexed uri -> manifest path
    queries: Sequence[tuple[str, np.ndarray]],  # (name, face vector) of each query with a face
) -> VideoPeople:
    assert engine.people is not None and engine.catalog is not None
    pipeline, store = engine.active
    by_path = {c["path"]: c for c in clips}
    units: list[clustering.Unit] = []
    labels: dict[str, str | None] = {}
    for media in engine.catalog.list_media(pb.MEDIA_STATE_DONE, 0, 10_000):
        clip = by_path.get(clip_of.get(media.uri, ""))
        if clip is None or media.kind != pb.MEDIA_KIND_VIDEO:
            continue
        for track in engine.people.units.video_tracks(store, media.media_id):
            units.append(clustering.Unit(track.id, track.template, len(track.faces)))
            labels[track.id] = track_label(clip, track)
    for i, (name, vector) in enumerate(queries):
        units.append(clustering.Unit(f"query {i}", vector))
        labels[f"query {i}"] = name
    share = MODELS[pipeline.model_name].people_share
    rules = clustering.rules_for(pipeline.encoder.default_min_score, share)
    result = clustering.cluster(units, rules)
    person = {key: f"person {i}" for i, keys in enumerate(result.formed) for key in keys}
    scored = [u.key for u in units if labels[u.key] is not None]
    return VideoPeople(
        min_score=round(rules.min_score, 4),
        units=len(units),
        scored=len(scored),
        people_formed=len(result.formed),
        loose=len(result.loose),
        grouping=measures.grouping([person.get(k, "") for k in scored], [str(labels[k]) for k in scored]),
    )


def table(rows: Sequence[tuple[str, VideoPeople]]) -> str:
    lines = [
        "People on the clips: tracks and query faces clustered with the model's rules (rvs.core.clustering)",
        "",
        "| model | bar | units (scored) | people formed | loose | pairwise P / R / F1 | BCubed P / R / F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, p in rows:
        g = p.grouping
        lines.append(
            f"| {model} | {p.min_score:.3f} | {p.units} ({p.scored}) | {p.people_formed} | {p.loose} "
            f"| {g.pairwise_precision:.3f} / {g.pairwise_recall:.3f} / {g.pairwise_f1:.3f} "
            f"| {g.bcubed_precision:.3f} / {g.bcubed_recall:.3f} / {g.bcubed_f1:.3f} |"
        )
    return "\n".join(lines)
