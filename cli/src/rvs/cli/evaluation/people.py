"""`rvs eval people DIR`: LFW people grouped by rvs.core.clustering. Every photo of N people with >= 4
photos is detected and embedded by rvs's own pipeline (its labelled face: the one nearest the centre),
then clustered from scratch (batch) and in two steps (half, then `update` with the other half), and
the people found are scored against the names, pairwise and BCubed."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rvs.cli.evaluation import images, measures
from rvs.core import clustering
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.faces.registry import MODELS
from rvs.core.media.kinds import IMAGE_SUFFIXES

MIN_PHOTOS = 4
DEFAULT_PEOPLE = 200
SWEEP_SHARES = (-0.1, 0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)  # rules_for's share, around the default


@dataclass
class Run:
    """One clustering of the photos, scored."""

    share: float
    min_score: float
    grouping: measures.Grouping
    people_formed: int
    loose_share: float
    seconds: float


@dataclass
class PeopleEval:
    model: str
    threshold: float  # the model's search threshold the rules derive from
    people: int
    photos: int
    no_face: int  # photos where no face passed detection: left out of the clustering
    batch: Run
    incremental: Run
    sweep: list[Run] = field(default_factory=list)
    embed_seconds: float = 0.0


def choose_people(root: Path, n: int) -> dict[str, list[Path]]:
    """N people with >= 4 photos, in the order of their names' sha256 (a fixed draw that does not
    favour the early alphabet), and their photos."""
    folders = (f for f in root.iterdir() if f.is_dir())
    photos = {f.name: sorted(p for p in f.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for f in folders}
    eligible = sorted((name for name, ps in photos.items() if len(ps) >= MIN_PHOTOS), key=_digest)
    return {name: photos[name] for name in sorted(eligible[:n])}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def evaluate(
    root: Path, pipeline: FacePipeline, n_people: int, progress: Callable[[str], None] = lambda _: None
) -> PeopleEval:
    people = choose_people(root, n_people)
    photos = [images.photo(root, path, person) for person, paths in people.items() for path in paths]
    progress(f"{pipeline.pairing}: embedding {len(photos)} photos of {len(people)} people")
    started = time.monotonic()
    no_face = images.embed(pipeline, photos, None, images.Throughput())
    embed_seconds = time.monotonic() - started
    units = [clustering.Unit(p.media_id, p.face.vector) for p in photos if p.face is not None]
    truth = {p.media_id: p.person for p in photos}
    threshold = pipeline.encoder.default_min_score
    share = MODELS[pipeline.model_name].people_share  # the model's default, as the clustering job uses it
    progress(f"{pipeline.pairing}: clustering {len(units)} faces")
    return PeopleEval(
        model=pipeline.pairing,
        threshold=threshold,
        people=len(people),
        photos=len(photos),
        no_face=no_face,
        batch=batch_run(units, truth, threshold, share),
        incremental=incremental_run(units, truth, threshold, share),
        sweep=[batch_run(units, truth, threshold, share) for share in SWEEP_SHARES],
        embed_seconds=embed_seconds,
    )


def batch_run(units: Sequence[clustering.Unit], truth: dict[str, str], threshold: float, share: float) -> Run:
    rules = clustering.rules_for(threshold, share=share)
    started = time.perf_counter()
    result = clustering.cluster(units, rules)
    seconds = time.perf_counter() - started
    person = {key: f"new {i}" for i, keys in enumerate(result.formed) for key in keys}
    return _score(units, truth, person, share, rules, seconds)


def incremental_run(units: Sequence[clustering.Unit], truth: dict[str, str], threshold: float, share: float) -> Run:
    """Half the faces (by key: a fixed, unbiased split) clustered, then the other half added."""
    rules = clustering.rules_for(threshold, share=share)
    ordered = sorted(units, key=lambda u: _digest(u.key))
    first, second = ordered[: len(ordered) // 2], ordered[len(ordered) // 2 :]
    started = time.perf_counter()
    start = clustering.cluster(first, rules)
    by_key = {u.key: u for u in units}
    existing = {f"first {i}": [by_key[k] for k in keys] for i, keys in enumerate(start.formed)}
    step = clustering.update(existing, [by_key[k] for k in start.loose], second, rules)
    seconds = time.perf_counter() - started
    person = {key: pid for pid, members in existing.items() for key in (u.key for u in members)}
    person.update(step.joined)
    person.update({key: f"second {i}" for i, keys in enumerate(step.formed) for key in keys})
    return _score(units, truth, person, share, rules, seconds)


def _score(
    units: Sequence[clustering.Unit],
    truth: dict[str, str],
    person: dict[str, str],
    share: float,
    rules: clustering.ClusterRules,
    seconds: float,
) -> Run:
    """`person`: each clustered unit's person id; a unit not in it is loose."""
    predicted = [person.get(u.key, "") for u in units]
    return Run(
        share=share,
        min_score=round(rules.min_score, 4),
        grouping=measures.grouping(predicted, [truth[u.key] for u in units]),
        people_formed=len(set(person.values())),
        loose_share=predicted.count("") / len(units) if units else 0.0,
        seconds=seconds,
    )


def table(results: list[PeopleEval]) -> str:
    """One row per model and run (batch, incremental), then each model's sweep over the bar."""
    head = (
        "| model | run | bar (share) | people (true) | faces (no face) | pairwise P / R / F1 | BCubed P / R / F1 "
        "| loose | seconds |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {r.model} | {name} | {run.min_score:.3f} ({run.share:g}) | {run.people_formed} ({r.people}) "
        f"| {r.photos - r.no_face} ({r.no_face}) | {_prf(run.grouping, 'pairwise')} | {_prf(run.grouping, 'bcubed')} "
        f"| {run.loose_share:.3f} | {run.seconds:.2f} |"
        for r in results
        for name, run in (("batch", r.batch), ("incremental", r.incremental))
    ]
    parts = [head, *rows]
    for r in results:
        parts += [
            "",
            f"{r.model}: batch runs over the bar (share of the gap from the threshold {r.threshold:g} to 1)",
            "",
            "| share | bar | pairwise P / R / F1 | BCubed P / R / F1 | people | loose |",
            "|---|---|---|---|---|---|",
        ]
        parts += [
            f"| {s.share:g} | {s.min_score:.3f} | {_prf(s.grouping, 'pairwise')} | {_prf(s.grouping, 'bcubed')} "
            f"| {s.people_formed} | {s.loose_share:.3f} |"
            for s in r.sweep
        ]
    return "\n".join(parts)


def _prf(g: measures.Grouping, kind: str) -> str:
    p, r, f = (getattr(g, f"{kind}_{x}") for x in ("precision", "recall", "f1"))
    return f"{p:.3f} / {r:.3f} / {f:.3f}"
