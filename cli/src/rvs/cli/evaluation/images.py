"""`rvs eval images DIR`: an identity-labelled photo folder (LFW layout, Person_Name/*.jpg) indexed
with rvs's own detector, encoder and Milvus store, then queried with every photo whose person has
another photo, through the same search and grouping code as the Search RPC (the query's own photo
left out of its results)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rvs.cli.evaluation import measures
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.faces.types import Face
from rvs.core.media.errors import MediaError
from rvs.core.media.images import decode_image
from rvs.core.media.kinds import IMAGE_SUFFIXES
from rvs.core.store.faces import FaceRow, FaceStore
from rvs.query.grouping import image_hits
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

THRESHOLDS = np.round(np.arange(-0.2, 1.0001, 0.01), 2)
# Results fetched per query for the precision/recall curve (the ranking measures use the top 20).
CURVE_DEPTH = 1000


@dataclass
class Photo:
    path: Path
    person: str
    media_id: str
    face: Face | None = None  # the labelled face: the one nearest the centre (LFW's convention)


@dataclass
class ImageEval:
    model: str
    photos: int
    people: int
    queries: int
    missed: int  # photos where no face passed detection; as queries they count as failures
    portion_at_20: float  # the prototype's measure
    normalised_portion_at_20: float
    rank1: float
    map_at_20: float
    curve: measures.Curve
    verification: measures.Verification | None = None
    missed_pairs: int = 0
    seconds: float = 0.0
    photos_per_s: float = 0.0  # detection + embedding of every photo read, indexing excluded
    extra: dict[str, object] = field(default_factory=dict)


def list_photos(root: Path, people: int | None = None) -> list[Photo]:
    """Every photo under root/<person>/; with `people`, the first N people with >= 2 photos plus as
    many one-photo people as distractors (sorted by name, so a run is repeatable)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    by_person = {f.name: sorted(x for x in f.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES) for f in folders}
    if people is not None:
        several = [n for n, ps in by_person.items() if len(ps) >= 2][:people]
        single = [n for n, ps in by_person.items() if len(ps) == 1][:people]
        by_person = {n: by_person[n] for n in sorted(several + single)}
    return [photo(root, p, person) for person, paths in by_person.items() for p in paths]


def photo(root: Path, path: Path, person: str) -> Photo:
    """A photo under root, its media id the sha256 of its path relative to root."""
    return Photo(path, person, hashlib.sha256(str(path.relative_to(root)).encode()).hexdigest())


def _centre_face(faces: list[Face], shape: tuple[int, ...]) -> Face | None:
    if not faces:
        return None
    cy, cx = shape[0] / 2, shape[1] / 2

    def distance(f: Face) -> float:
        x1, y1, x2, y2 = f.detection.box
        return ((x1 + x2) / 2 - cx) ** 2 + ((y1 + y2) / 2 - cy) ** 2

    return min(faces, key=distance)


@dataclass
class Throughput:
    photos: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.photos / self.seconds if self.seconds else 0.0


def embed(
    pipeline: FacePipeline, photos: list[Photo], store: FaceStore | None, pace: Throughput, batch: int = 16
) -> int:
    """Detect and embed every photo (indexing all its faces when a store is given); returns the
    number of photos in which no face passed detection."""
    missed = 0
    for start in range(0, len(photos), batch):
        chunk = photos[start : start + batch]
        images, kept = [], []
        for photo in chunk:
            try:
                images.append(decode_image(photo.path.read_bytes()))
                kept.append(photo)
            except (MediaError, OSError) as exc:
                log.warning("cannot read %s: %s", photo.path, exc)
        rows = []
        started = time.perf_counter()
        found = pipeline.process(images)
        pace.seconds += time.perf_counter() - started
        pace.photos += len(images)
        for photo, image, faces in zip(kept, images, found, strict=True):
            photo.face = _centre_face(faces, image.shape)
            for i, face in enumerate(faces):
                rows.append(
                    FaceRow(
                        media_id=photo.media_id,
                        uri=str(photo.path),
                        kind=pb.MEDIA_KIND_IMAGE,
                        time_ms=0,
                        face_index=i,
                        box=face.detection.box,
                        det_score=face.detection.score,
                        source="eval",
                        ingested_at_ms=0,
                        vector=face.vector,
                    )
                )
        missed += sum(p.face is None for p in chunk)
        if store is not None and rows:
            store.upsert(rows)
    return missed


def read_pairs(path: Path, root: Path, folds: int | None) -> list[tuple[Path, Path, bool, int]]:
    """LFW pairs.txt: (photo a, photo b, same person, fold)."""
    lines = path.read_text().split("\n")
    per_fold = int(lines[0].split()[1])
    pairs = []
    for i, line in enumerate(x for x in lines[1:] if x.strip()):
        fold = i // (2 * per_fold)
        if folds is not None and fold >= folds:
            break
        parts = line.split()

        def photo(name: str, n: str) -> Path:
            return root / name / f"{name}_{int(n):04d}.jpg"

        if len(parts) == 3:
            pairs.append((photo(parts[0], parts[1]), photo(parts[0], parts[2]), True, fold))
        else:
            pairs.append((photo(parts[0], parts[1]), photo(parts[2], parts[3]), False, fold))
    return pairs


def evaluate(
    root: Path,
    pipeline: FacePipeline,
    store: FaceStore,
    people: int | None = None,
    pairs: Path | None = None,
    pair_folds: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ImageEval:
    started = time.monotonic()
    model = pipeline.pairing
    photos = list_photos(root, people)
    progress(f"{model}: indexing {len(photos)} photos")
    pace = Throughput()
    missed = embed(pipeline, photos, store, pace)

    by_person: dict[str, int] = {}
    for p in photos:
        by_person[p.person] = by_person.get(p.person, 0) + 1
    queries = [p for p in photos if by_person[p.person] >= 2]
    person_of = {p.media_id: p.person for p in photos}
    progress(f"{model}: {len(queries)} queries")
    portions, normalised, rank1, aps = [], [], [], []
    scores: list[float] = []
    relevant: list[bool] = []
    for q in queries:
        n_rel = by_person[q.person] - 1
        flags: list[bool] = []
        if q.face is not None:
            hits = store.search(q.face.vector, -1.0, CURVE_DEPTH + 1)
            images = image_hits(hits, CURVE_DEPTH + 1)
            results = [h for h in images if h.media_id != q.media_id]  # not the query itself
            flags = [person_of.get(h.media_id) == q.person for h in results]
            scores.extend(h.score for h in results)
            relevant.extend(flags)
        portions.append(measures.portion_at_k(flags))
        normalised.append(measures.normalised_portion_at_k(flags, n_rel))
        rank1.append(bool(flags[:1] and flags[0]))
        aps.append(measures.average_precision_at_k(flags, n_rel))
    n_relevant = sum(by_person[q.person] - 1 for q in queries)
    curve = measures.pr_curve(np.asarray(scores), np.asarray(relevant, bool), n_relevant, THRESHOLDS)
    result = ImageEval(
        model=model,
        photos=len(photos),
        people=len(by_person),
        queries=len(queries),
        missed=missed,
        portion_at_20=float(np.mean(portions)) if portions else 0.0,
        normalised_portion_at_20=float(np.mean(normalised)) if normalised else 0.0,
        rank1=float(np.mean(rank1)) if rank1 else 0.0,
        map_at_20=float(np.mean(aps)) if aps else 0.0,
        curve=curve,
    )
    if pairs is not None:
        result.verification, result.missed_pairs = _verify(pipeline, root, pairs, pair_folds, photos, pace, progress)
    result.seconds = time.monotonic() - started
    result.photos_per_s = pace.per_s
    return result


def _verify(
    pipeline: FacePipeline,
    root: Path,
    pairs_file: Path,
    folds: int | None,
    photos: list[Photo],
    pace: Throughput,
    progress: Callable[[str], None],
) -> tuple[measures.Verification, int]:
    pairs = read_pairs(pairs_file, root, folds)
    known = {p.path: p for p in photos}
    needed = sorted({x for a, b, _, _ in pairs for x in (a, b)} - set(known))
    progress(f"verification: {len(pairs)} pairs, {len(needed)} more photos to embed")
    extra = [Photo(p, p.parent.name, "") for p in needed if p.exists()]
    embed(pipeline, extra, None, pace)
    known.update({p.path: p for p in extra})
    scores: list[float] = []
    same: list[bool] = []
    fold: list[int] = []
    missed = 0
    for a, b, is_same, f in pairs:
        fa, fb = known.get(a), known.get(b)
        if fa is None or fb is None or fa.face is None or fb.face is None:
            missed += 1  # a face the detector missed: scored as a wrong answer
            scores.append(-2.0 if is_same else 2.0)
        else:
            scores.append(float(np.dot(fa.face.vector, fb.face.vector)))
        same.append(is_same)
        fold.append(f)
    return measures.verification_accuracy(np.asarray(scores), np.asarray(same), np.asarray(fold)), missed
